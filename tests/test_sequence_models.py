"""Sequence-model habits a user probe found wrong or refused (2026-12-05,
tenth session): Embedding's ``padding_idx`` and ``scale_grad_by_freq``
in training, torch's shape checks of attention masks (a transposed
key_padding_mask was silently misread), a torch state_dict with a packed
``in_proj_weight`` loaded into a converted model, Softmax without a dim,
and the conversion's messages (no false train/eval-branch warning for a
buffer compared with a number; the packing hint only for models that pack).

Tolerances (f = 16): an Embedding gradient row is a sum of k output
gradients, each one truncated product (of a public 0/1 or 1/count entry):
within k ULP plus the gradient's own encoding; attention outputs within
ATT = 5e-4 (a softmax row's 3e-4 through one Linear, test_transformer).
"""

import warnings

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, ULP, assert_close, usable

D = torch.float64
ATT = 5e-4


def pt(x):
    return x.get_plain_text(dtype=D)


def _embedding_grads(emb, ids, private_ids):
    """(our weight gradient, torch's) for the loss sum(out * w)."""
    torch.manual_seed(5)
    m = cryptgpu.nn.from_pytorch(emb, ids).encrypt().train()
    w = torch.randn(*ids.shape, emb.embedding_dim, dtype=D)
    x = cryptgpu.cryptensor(F.one_hot(ids, emb.num_embeddings).double()) if private_ids else ids
    (m(x) * w).sum().backward()
    emb.zero_grad()
    (emb(ids) * w).sum().backward()
    return pt(m.weight.grad), emb.weight.grad


@pytest.mark.parametrize("private_ids", [False, True])
def test_embedding_padding_row_gets_no_gradient(session, private_ids):
    emb = torch.nn.Embedding(6, 3, padding_idx=0).double()
    ids = torch.tensor([[0, 2, 0, 5], [2, 2, 0, 1]])  # the padding id three times
    got, want = _embedding_grads(emb, ids, private_ids)
    assert want[0].abs().max() == 0
    assert got[0].abs().max() == 0  # exactly: the row is masked, not computed
    assert_close(got, want, 3 * (ULP + 2 * ENC))  # id 2 occurs three times
    m = cryptgpu.nn.Embedding(6, 3, padding_idx=-1)  # torch's constructor
    assert m.padding_idx == 5 and m.weight[5].abs().max() == 0


def test_embedding_scale_grad_by_freq_matches_torch(session):
    emb = torch.nn.Embedding(5, 4, scale_grad_by_freq=True).double()
    ids = torch.tensor([1, 2, 2, 2, 3])
    got, want = _embedding_grads(emb, ids, private_ids=False)
    # row 2: three gradients, each scaled by the public 1/3 and truncated
    assert_close(got, want, 3 * (ULP + 2 * ENC))
    m = cryptgpu.nn.from_pytorch(emb, ids).encrypt().train()
    x = cryptgpu.cryptensor(F.one_hot(ids, 5).double())
    with pytest.raises(NotImplementedError, match="public ids"):
        m(x)


def test_attention_masks_of_the_wrong_shape_raise_as_torch(session):
    torch.manual_seed(0)
    att = torch.nn.MultiheadAttention(8, 2).double()
    m = cryptgpu.nn.from_pytorch(att, (torch.randn(5, 2, 8),) * 3).encrypt()
    x = torch.randn(5, 2, 8, dtype=D)  # [S, N, E]
    xs = cryptgpu.cryptensor(x)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1, 3:] = True
    for bad in (kpm.T, kpm[:, :4]):  # [S, N] instead of [N, S]; too short
        with pytest.raises(AssertionError):
            att(x, x, x, key_padding_mask=bad)
        with pytest.raises(AssertionError, match="key_padding_mask shape"):
            m(xs, xs, xs, key_padding_mask=bad)
    with pytest.raises(RuntimeError):
        att(x, x, x, attn_mask=torch.zeros(5, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="2D attn_mask"):
        m(xs, xs, xs, attn_mask=torch.zeros(5, 4, dtype=torch.bool))
    got = pt(m(xs, xs, xs, key_padding_mask=kpm)[0])
    assert_close(got, att(x, x, x, key_padding_mask=kpm)[0].detach(), ATT)


def test_torch_state_dict_with_packed_in_projection_loads(session):
    torch.manual_seed(1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.att = torch.nn.MultiheadAttention(8, 2, batch_first=True)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(self.att(x, x, x)[0])

    x = torch.randn(2, 4, 8, dtype=D)
    m = cryptgpu.nn.from_pytorch(Net().double(), x).encrypt()
    other = Net().double()  # other weights, torch's names (att.in_proj_weight)
    assert "att.in_proj_weight" in other.state_dict()
    assert m.load_state_dict(other.state_dict()) == ([], [])
    assert_close(pt(m(cryptgpu.cryptensor(x))), other(x).detach(), ATT)
    with pytest.raises(RuntimeError, match="unexpected keys"):
        m.load_state_dict({**other.state_dict(), "att.extra": torch.zeros(1)})
    # a state dict of the earlier layout (three projections) loads too
    old = dict(other.state_dict())
    for kind in ("weight", "bias"):
        for name, part in zip(("q", "k", "v"), old.pop(f"att.in_proj_{kind}").chunk(3)):
            old[f"att.{name}_proj.{kind}"] = part
    m2 = cryptgpu.nn.from_pytorch(Net().double(), x).encrypt()
    assert m2.load_state_dict(old) == ([], [])
    assert_close(pt(m2(cryptgpu.cryptensor(x))), other(x).detach(), ATT)


@pytest.mark.parametrize("shape,layer", [((2, 3, 4), "Softmax"), ((2, 5), "LogSoftmax")])
def test_softmax_without_dim_uses_torchs_implicit_dim(session, shape, layer):
    x = torch.randn(*shape, dtype=D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of the implicit dim
        want = getattr(torch.nn, layer)()(x)
        got = pt(getattr(cryptgpu.nn, layer)()(cryptgpu.cryptensor(x)))
    assert_close(got, want, 1e-3)  # log_softmax's range-reduced log of the row sum


def test_buffer_compared_with_a_number_gives_no_branch_warning(session):
    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("keep", torch.tensor([1.0, 0.0, 1.0, 1.0]))

        def forward(self, x):
            return x * (self.keep == 1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        m = cryptgpu.nn.from_pytorch(Masked(), torch.randn(2, 4))
    x = torch.randn(2, 4, dtype=D)
    assert_close(pt(m.encrypt()(cryptgpu.cryptensor(x))), x * torch.tensor([1, 0, 1, 1]), ENC)


def test_untraceable_mask_in_a_recurrent_model_gets_the_mask_hint(session):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(4, 4, batch_first=True)

        def forward(self, x):
            t = x.shape[1]
            mask = torch.triu(torch.ones(t, t), 1)
            return self.gru(x)[0] + mask.sum()

    with pytest.raises(NotImplementedError) as e:
        cryptgpu.nn.from_pytorch(Net(), torch.randn(1, 3, 4))
    assert "torch.ones((T, T))" in str(e.value)
    assert "pack_padded_sequence" not in str(e.value)


def test_finfo_of_a_traced_dtype_is_named_behind_a_buffer_slice(session):
    """A rotary-cache slice self.cos[:T] fails the first tracer (buffers
    as constants) and traces with the second; torch.finfo(att.dtype) then
    fails the second. Until 2026-12-05 only the first error was shown (the
    slice, which converts) and the finfo hint never came."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.register_buffer("cos", torch.ones(8, 4))

        def forward(self, x):
            t = x.size(1)
            h = self.lin(x) * self.cos[:t]
            att = h @ h.transpose(1, 2)
            causal = torch.tril(torch.ones((t, t), dtype=torch.bool))
            return att.masked_fill(~causal, torch.finfo(att.dtype).min).softmax(-1)

    with pytest.raises(NotImplementedError) as e:
        cryptgpu.nn.from_pytorch(Net(), torch.randn(2, 4, 4))
    assert "torch.finfo(torch.float32).min" in str(e.value)  # the hint
    assert "with buffers as graph values: torch.finfo()" in str(e.value)
    assert usable()


def test_attention_parameters_pair_with_torchs_in_order(session):
    """MultiheadAttention holds torch's parameters (packed in_proj_weight
    and in_proj_bias, out_proj), so named_parameters() lists torch's names
    in torch's order and zip(torch, ours) pairs each gradient with its own
    (ours had three q/k/v projections: 13 parameters against torch's 9 in a
    probe's model, paired wrongly)."""
    torch.manual_seed(6)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    net = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.Linear(24, 2)).double()
    x = torch.randn(2, 3, 8, dtype=D)
    m = cryptgpu.nn.from_pytorch(net, x).encrypt().train()
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in net.named_parameters()]
    y = torch.tensor([0, 1])
    cryptgpu.nn.CrossEntropyLoss()(m(cryptgpu.cryptensor(x)), y).backward()
    F.cross_entropy(net(x), y).backward()
    for ours, theirs in zip(m.parameters(), net.parameters()):
        # gradients through a softmax, a LayerNorm and a ReLU: test_transformer's 1e-3
        assert_close(pt(ours.grad), theirs.grad, 1e-3)


def test_attention_built_directly_as_torchs(session):
    torch.manual_seed(7)
    ours = cryptgpu.nn.MultiheadAttention(8, 2, batch_first=True)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    theirs.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    x = torch.randn(2, 3, 8, dtype=D)
    want = theirs(x, x, x)[0].detach()
    assert_close(ours(x, x, x)[0].detach(), want, 1e-5)  # plaintext: float32 parameters
    ours.encrypt()
    xs = cryptgpu.cryptensor(x)
    assert_close(pt(ours(xs, xs, xs)[0]), want, ATT)
    kv = cryptgpu.cryptensor(torch.randn(2, 5, 8, dtype=D))
    assert tuple(ours(xs, kv, kv)[0].shape) == (2, 3, 8)  # cross-attention: split weights
