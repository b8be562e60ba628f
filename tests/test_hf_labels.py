"""``labels=`` in converted transformers models (since 2026-12-06; until then
a TypeError): the graph is traced with the labels and computes
transformers' own loss from them (public class ids, as transformers takes
them), ``out.loss``; without labels the loss nodes are skipped and
``out.loss`` is None, as in transformers. Against float64 torch.

Tolerances (f = 16): the losses are means of log-softmax terms of logits
that these small models give within 2e-4 of float64 (test_huggingface.py,
test_hf_decoders.py); the private log-softmax's exp and log add about 1e-4
each, so a loss of 1 to 4 is within 1e-3 (measured up to 3.4e-5, logits
up to 2.6e-4). Gradients, within 1% of the largest: BERT's classifier's is
a product of the pooled activations (within 2e-4) and the softmax's error
(measured 4.7e-5 of 4.6e-2); GPT-2's LM head is tied to its token
embedding, whose gradient comes back through LayerNorm's 1 / std, about 1%
at 16 bits (README; measured 1.6e-3 of 0.40).
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import usable

T = pytest.importorskip(
    "transformers", reason="transformers is a test dependency (pip install '.[test]')"
)
pytest.importorskip(
    "transformers.utils.fx",
    reason="the fx tracer exists in transformers 4.x only; the test extra pins transformers<5",
)

V, B, S = 20, 2, 6
LOSS_TOL = 1e-3  # derived in the module docstring
GRAD_REL = 1e-2  # of the largest gradient, derived there too

SMALL = dict(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture
def local():
    cryptgpu.init(seed=5)
    yield
    cryptgpu.uninit()


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


def onehot(ids):
    return cryptgpu.cryptensor(F.one_hot(ids, V).double(), src=1)


def _bert(cls, **kw):
    torch.manual_seed(0)
    cfg = T.BertConfig(**SMALL, intermediate_size=32, **NO_DROPOUT, **kw)
    return getattr(T, cls)(cfg).double().eval()


def _gpt2():
    torch.manual_seed(0)
    off = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # torch's draws are not ours
    cfg = T.GPT2Config(vocab_size=V, n_embd=16, n_layer=1, n_head=2, n_positions=16, **off)
    return T.GPT2LMHeadModel(cfg).double().eval()


def _llama():
    torch.manual_seed(0)
    cfg = T.LlamaConfig(**SMALL, intermediate_size=32, num_key_value_heads=2, pad_token_id=0)
    return T.LlamaForCausalLM(cfg).double().eval()


def _vit():
    torch.manual_seed(0)
    cfg = T.ViTConfig(
        image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, **NO_DROPOUT,
    )  # fmt: skip
    return T.ViTForImageClassification(cfg).double().eval()


def _ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, V, (B, S), generator=g)


def _token_labels(n):
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, n, (B, S), generator=g)
    y[0, :2] = -100  # transformers' ignore_index: positions left out of the mean
    return y


CASES = {
    # name: (model, torch inputs, private inputs, labels)
    "bert-classes": (
        lambda: _bert("BertForSequenceClassification", num_labels=3),
        "text",
        torch.tensor([0, 2]),
    ),
    "bert-regression": (
        lambda: _bert("BertForSequenceClassification", num_labels=1),
        "text",
        torch.tensor([0.5, -1.25], dtype=torch.float64),
    ),
    "bert-multi-label": (
        lambda: _bert(
            "BertForSequenceClassification",
            num_labels=3,
            problem_type="multi_label_classification",
        ),
        "text",
        torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64),
    ),
    "bert-tokens": (
        lambda: _bert("BertForTokenClassification", num_labels=4),
        "text",
        _token_labels(4),
    ),
    "bert-masked-lm": (lambda: _bert("BertForMaskedLM"), "text", _token_labels(V)),
    "gpt2-lm": (_gpt2, "padded", _token_labels(V)),
    "llama-lm": (_llama, "padded", _token_labels(V)),
    "vit-classes": (_vit, "image", torch.tensor([1, 2])),
}


def _inputs(kind):
    if kind == "image":
        x = torch.randn(B, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        return {"pixel_values": x}, {"pixel_values": cryptgpu.cryptensor(x)}
    ids = _ids()
    mask = torch.ones(B, S, dtype=torch.long)
    if kind == "padded":
        mask[1, :2] = 0  # left padding, as decoders are fed
    return (
        {"input_ids": ids, "attention_mask": mask},
        {"input_ids": onehot(ids), "attention_mask": mask},
    )


@pytest.mark.parametrize("case", list(CASES))
def test_loss_from_labels_matches_float64_and_is_none_without(local, case):
    build, kind, labels = CASES[case]
    m = build()
    problem = m.config.problem_type
    pm = cryptgpu.nn.from_pytorch(m).encrypt()
    # converting leaves the user's model and config as they were
    assert m.config.problem_type == problem
    assert not any("loss" in name for name, _ in m.named_modules())
    assert not any("loss" in name for name, _ in pm.named_modules())
    plain, private = _inputs(kind)
    with torch.no_grad():
        want = m(**plain, labels=labels)
    out = pm(**private, labels=labels)
    assert abs(pt(out.loss).item() - want.loss.item()) <= LOSS_TOL
    assert torch.allclose(pt(out.logits), want.logits, atol=LOSS_TOL, rtol=0)
    bare = pm(**private)
    assert bare.loss is None and "loss" not in bare
    assert torch.allclose(pt(bare.logits), want.logits, atol=LOSS_TOL, rtol=0)


@pytest.mark.parametrize("case", ["bert-classes", "gpt2-lm"])
def test_private_training_step_with_labels_matches_torch(local, case):
    build, kind, labels = CASES[case]
    m = build().train()
    pm = cryptgpu.nn.from_pytorch(m).encrypt().train()
    plain, private = _inputs(kind)
    m(**plain, labels=labels).loss.backward()
    pm(**private, labels=labels).loss.backward()
    head = "classifier" if case == "bert-classes" else "lm_head"
    want = getattr(m, head).weight.grad
    got = pt(getattr(pm, head).weight.grad)
    assert want.abs().max() > 1e-2  # a gradient to compare, not zeros
    assert torch.allclose(got, want, atol=GRAD_REL * want.abs().max().item(), rtol=0)
    # one SGD step, as a fine-tuning loop takes it, then the loss again
    opt = cryptgpu.optim.SGD(pm.parameters(), lr=0.5)
    opt.step()
    torch.optim.SGD(m.parameters(), lr=0.5).step()
    with torch.no_grad():
        want = m(**plain, labels=labels).loss
    assert abs(pt(pm(**private, labels=labels).loss).item() - want.item()) <= 2 * LOSS_TOL


def test_bad_labels_are_refused_clearly(local):
    m = _bert("BertForSequenceClassification", num_labels=3)
    pm = cryptgpu.nn.from_pytorch(m)
    _, private = _inputs("text")
    with pytest.raises(NotImplementedError, match="labels must be public"):
        pm(**private, labels=cryptgpu.cryptensor(torch.tensor([0.0, 2.0])))
    assert usable()
    # float labels on a classifier whose problem_type is unset: transformers
    # takes them as multi-label targets, the graph was traced for class ids
    with pytest.raises(NotImplementedError, match="multi_label_classification"):
        pm(**private, labels=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert usable()
    with pytest.raises(ValueError):  # torch: "Expected input batch_size (2) to match ..."
        pm(**private, labels=torch.tensor([0, 1, 2]))
    assert usable()
    # and the model still answers a good call
    assert pm(**private, labels=torch.tensor([0, 2])).loss is not None


def test_no_input_ids_is_transformers_value_error(local):
    """``pm(None)`` on a text model: transformers' ValueError (until
    2026-12-06 a TypeError naming attention_mask)."""
    pm = cryptgpu.nn.from_pytorch(_bert("BertForSequenceClassification", num_labels=3))
    with pytest.raises(ValueError, match="input_ids"):
        pm(None)
    assert usable()


def test_attention_key_biases_get_exactly_zero_gradient_without_a_dummy_input(local):
    """A key projection's bias adds the same amount to every score of a
    softmax row, so its gradient is 0 (torch's ~1e-17); the converted model
    makes it exactly 0, so that Adam does not move it on fixed-point noise.
    Until 2026-12-06 that needed a dummy input, which a transformers model
    is converted without: AdamW moved BERT's key bias by about lr a step."""
    m = _bert("BertForSequenceClassification", num_labels=3).train()
    pm = cryptgpu.nn.from_pytorch(m).encrypt().train()
    _, private = _inputs("text")
    pm(**private, labels=torch.tensor([0, 2])).loss.backward()
    attention = pm.bert.encoder.layer[0].attention.self
    assert torch.equal(pt(attention.key.bias.grad), torch.zeros(16, dtype=torch.float64))
    assert pt(attention.value.bias.grad).abs().max() > 0  # the others are not masked


def test_labels_by_keyword_only_and_the_config_as_transformers(local):
    """The converted model's positional inputs are not transformers' (BERT's
    fourth is position_ids, DistilBERT's third head_mask, ViT's second
    head_mask): labels given by position are refused rather than taken
    from a tensor meant for another input. ``pm.config`` is the model's
    config (num_labels, id2label), a copy."""
    m = _bert("BertForSequenceClassification", num_labels=3)
    pm = cryptgpu.nn.from_pytorch(m)
    _, private = _inputs("text")
    x, mask = private["input_ids"], private["attention_mask"]
    with pytest.raises(TypeError, match="keyword"):
        pm(x, mask, None, torch.tensor([0, 2]))
    assert usable()
    assert pm(x, mask, None, labels=torch.tensor([0, 2])).loss is not None
    assert pm.config.num_labels == 3 and pm.config.id2label == m.config.id2label
    pm.config.num_labels = 5
    assert m.config.num_labels == 3  # a copy: the torch model's is its own
    vit = cryptgpu.nn.from_pytorch(_vit())
    images, _ = _inputs("image")
    with pytest.raises(TypeError, match="keyword"):
        vit(cryptgpu.cryptensor(images["pixel_values"]), torch.tensor([1, 2]))
    assert usable()


def test_return_dict_false_and_a_forward_of_ones_own_taking_labels(local):
    """``return_dict=False`` models return ``(loss, logits)`` with labels and
    ``(logits,)`` without, as transformers; a torch model of one's own whose
    forward takes ``labels`` converts and takes them by position, as
    written (both broke when labels were first traced: a review)."""
    m = _bert("BertForSequenceClassification", num_labels=3)
    m.config.return_dict = False
    pm = cryptgpu.nn.from_pytorch(m)
    plain, private = _inputs("text")
    y = torch.tensor([0, 2])
    with torch.no_grad():
        want_loss, want_logits = m(**plain, labels=y)
    loss, logits = pm(**private, labels=y)
    assert abs(pt(loss).item() - want_loss.item()) <= LOSS_TOL
    (bare,) = pm(**private)
    assert torch.allclose(pt(bare), want_logits, atol=LOSS_TOL, rtol=0)

    class Own(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x, labels):
            return F.cross_entropy(self.fc(x), labels)

    torch.manual_seed(0)
    own = Own().double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])
    po = cryptgpu.nn.from_pytorch(own, (x, y))
    assert abs(pt(po(cryptgpu.cryptensor(x), y)).item() - own(x, y).item()) <= LOSS_TOL


def test_an_encoder_decoder_fed_by_its_labels_needs_them(local):
    """T5 makes its decoder's inputs from the labels: with them the loss is
    transformers' (trained privately as any other); without them the graph
    has no decoder inputs, a ValueError as transformers' (until the review
    it returned an output without logits, silently)."""
    torch.manual_seed(0)
    cfg = T.T5Config(
        vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    m = T.T5ForConditionalGeneration(cfg).double().eval()
    pm = cryptgpu.nn.from_pytorch(m)
    plain, private = _inputs("text")
    y = _ids()[:, :4].contiguous()  # (transformers views it)
    with torch.no_grad():
        want = m(**plain, labels=y)
    out = pm(**private, labels=y)
    assert abs(pt(out.loss).item() - want.loss.item()) <= LOSS_TOL
    with pytest.raises(ValueError, match="labels"):
        pm(**private)
    assert usable()
