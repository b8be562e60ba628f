"""Probe NB (2026-12-07: torchvision architectures through from_pytorch),
with torch-only stand-ins for torchvision (CI does not install it):

* a ``torch.fx.wrap``'ped function (torchvision's ``stochastic_depth``,
  Swin's ``_get_relative_position_bias``) was a leaf node, refused even in
  eval mode where StochasticDepth is the identity: its body is traced now;
  one whose body does not trace (Swin's ``shifted_window_attention``) is
  refused saying why (and naming Hugging Face's Swin for torchvision's);
* the conversion check's reference copy came back in train mode for a
  GraphModule whose deepcopy builds a new one (torchvision's
  DualGraphModule, ``create_feature_extractor``): a correct conversion was
  refused, blaming BatchNorm folding; and converting such a model in train
  mode left it running its eval graph;
* ``nn.SyncBatchNorm`` (DDP recipes' ``--sync-bn``) was refused: on one
  process it is BatchNorm, of any rank from 2;
* DenseNet(memory_efficient=True)'s ``requires_grad`` branch ended the
  trace with an fx error naming nothing; an fx error now names the module.

Tolerances (f = 16) come from conftest's model: an input's encoding is
within ENC = 2^-17, a sum of k products of encoded values within
prod_tol(k, |x|, |w|), each truncation within ULP = 2^-16.
"""

import copy
import warnings

import fx_wrapped_helpers as wh  # called as wh.f: torch.fx.wrap patches that module's names
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

import cryptgpu
from conftest import ENC, ULP, assert_close, prod_tol, usable

D = torch.float64


def pt(x):
    return x.get_plain_text(dtype=D)


def uniform(*shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=D) * 2 - 1) * scale


class StochasticDepth(tnn.Module):
    """torchvision.ops.StochasticDepth: the wrapped function with the
    module's training flag."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        return wh.stochastic_depth(x, self.p, self.mode, self.training)


class Block(tnn.Module):
    """torchvision's MBConv / CNBlock residual: x + sd(conv(x))."""

    def __init__(self, p: float):
        super().__init__()
        self.conv, self.sd = tnn.Conv2d(3, 3, 3, padding=1), StochasticDepth(p)

    def forward(self, x):
        return x + self.sd(self.conv(x))


def test_wrapped_stochastic_depth_converts_as_the_identity_in_eval(session):
    torch.manual_seed(0)
    m = Block(0.2).double().eval()
    x = uniform(2, 3, 6, 6, scale=2.0)
    # its train-mode graph draws noise: converting warns as for timm's drop_path
    with pytest.warns(UserWarning, match="StochasticDepth"):
        pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x)))
    # the conv (27 products, |x| <= 2, |w| < 1/sqrt(27) < 0.2), its bias's
    # encoding, and the residual input's encoding
    assert_close(got, m(x).detach(), prod_tol(27, 2.0, 0.2) + 2 * ENC)
    # in training the converted model runs eval's graph (no drop), as warned
    pm.train()
    got = pt(pm(cryptgpu.cryptensor(x)))
    assert_close(got, (x + m.conv(x)).detach(), prod_tol(27, 2.0, 0.2) + 2 * ENC)


def test_wrapped_stochastic_depth_of_p_0_converts_without_a_warning(session):
    m = Block(0.0).double().train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # p = 0: the identity in both modes
        pm = cryptgpu.nn.from_pytorch(m, uniform(1, 3, 4, 4))
    assert not [n for n in pm._graph.nodes if n.target is wh.stochastic_depth]


class WindowBias(tnn.Module):
    """Swin's relative position bias: a parameter table read at a buffer of
    indices by a wrapped function, added to attention logits."""

    def __init__(self, w: int = 2, heads: int = 2):
        super().__init__()
        self.w = w
        self.table = tnn.Parameter(uniform((2 * w - 1) ** 2, heads, scale=0.5, seed=1))
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij"))
        rel = (coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]).permute(1, 2, 0)
        rel = rel + (w - 1)
        self.register_buffer("index", (rel[..., 0] * (2 * w - 1) + rel[..., 1]).flatten())

    def forward(self, logits):
        return logits + wh.relative_bias(self.table, self.index, [self.w, self.w])


def test_wrapped_helper_of_a_weight_table_traces_and_trains(session):
    m = WindowBias().double()
    x = uniform(3, 2, 4, 4, seed=2)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    assert not [n for n in pm._graph.nodes if n.target is wh.relative_bias]
    pm.train()
    out = pm(cryptgpu.cryptensor(x))
    # a table entry plus an input: two encodings, no product
    assert_close(pt(out), m(x).detach(), 2 * ENC)
    g = uniform(3, 2, 4, 4, seed=3)
    (out * g).sum().backward()
    (m(x) * g).sum().backward()
    # a table entry's gradient sums at most 3 batches x 4 positions of g
    # (each encoded, ENC, and its product with the shared 1, a truncation)
    assert_close(pt(pm.table.grad), m.table.grad, 12 * (ENC + ULP))


class Windows(tnn.Module):
    def forward(self, x):
        return wh.shifted_window_attention(x, 4) + 1


class Pair(tnn.Module):
    def forward(self, x):
        a, b = wh.pair(x)
        return a + b


def test_wrapped_function_whose_body_does_not_trace_is_refused_saying_why(session):
    x = uniform(1, 2, 8, 8)
    with pytest.raises(
        NotImplementedError,
        match=r"shifted_window_attention.*body torch.fx cannot trace \(TraceError.*"
        r"torchvision's Swin Transformer.*not supported.*Hugging Face's Swin",
    ):
        cryptgpu.nn.from_pytorch(Windows(), x)
    assert usable()
    with pytest.raises(NotImplementedError, match=r"function pair .*returned a tuple"):
        cryptgpu.nn.from_pytorch(Pair(), x)
    assert usable()


class DualGraph(torch.fx.GraphModule):
    """torchvision's DualGraphModule (create_feature_extractor) in small: a
    graph per mode, swapped by train(); its deepcopy builds a new one,
    which starts in train mode."""

    def __init__(self, root, train_graph, eval_graph):
        super().__init__(root, train_graph)
        self.train_graph, self.eval_graph = train_graph, eval_graph
        self.train()

    def train(self, mode: bool = True):
        if mode and not self.training:
            self.graph = self.train_graph
        elif not mode and self.training:
            self.graph = self.eval_graph
        return super().train(mode)

    def __deepcopy__(self, memo):
        fake = tnn.Module()
        fake.__dict__ = copy.deepcopy(self.__dict__, memo)
        return DualGraph(fake, fake.__dict__["train_graph"], fake.__dict__["eval_graph"])


class Features(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = tnn.Conv2d(3, 4, 3, padding=1), tnn.BatchNorm2d(4)

    def forward(self, x):
        h = self.bn(self.conv(x))
        if self.training:  # as torchvision's two traces: the graphs differ
            h = h * 1.5
        return {"feat": F.relu(h)}


def _dual_graph():
    torch.manual_seed(3)
    net = Features().double()
    net.bn.running_mean.uniform_(-1, 1)
    net.bn.running_var.uniform_(0.5, 2)
    net.bn.weight.data.uniform_(0.5, 1.5)
    train_graph = torch.fx.Tracer().trace(net.train())
    eval_graph = torch.fx.Tracer().trace(net.eval())
    return DualGraph(net, train_graph, eval_graph)


@pytest.mark.parametrize("fold", [None, False])
def test_check_runs_its_reference_in_the_models_own_modes(session, fold):
    fx = _dual_graph().eval()
    assert copy.deepcopy(fx).training  # the habit of such a class
    x = uniform(2, 3, 5, 5, scale=2.0, seed=4)
    with pytest.warns(UserWarning, match="eval mode's operations"):
        pm = cryptgpu.nn.from_pytorch(fx, x, fold_batchnorm=fold).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x))["feat"])
    # the conv (27 products, |x| <= 2, |w| < 0.2; folded: weights times the
    # BatchNorm's scale, below 1.5 / sqrt(0.5) < 2.2, so |w| < 0.44), then
    # (unfolded) the scale's product: 2.2 times the conv's error, a
    # truncation and the shift's encoding
    tol = 2.2 * prod_tol(27, 2.0, 0.44) + 2 * ULP
    assert_close(got, fx(x)["feat"].detach(), tol)


def test_converting_a_dual_graph_model_in_train_mode_leaves_its_train_graph(session):
    """from_pytorch put each module's training flag back, not the class's
    own train(): the model kept running its eval graph in train mode."""
    fx = _dual_graph().train()
    x = uniform(2, 3, 5, 5, seed=7)
    want = fx(x)["feat"].detach()
    with pytest.warns(UserWarning, match="eval mode's operations"):
        cryptgpu.nn.from_pytorch(fx)
    assert fx.training and fx.graph is fx.train_graph
    assert torch.equal(fx(x)["feat"], want)  # batch statistics and the * 1.5


def _sync_net():
    torch.manual_seed(1)
    m = tnn.Sequential(
        tnn.Conv2d(2, 3, 3),
        tnn.SyncBatchNorm(3),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(3 * 4 * 4, 4),
        tnn.SyncBatchNorm(4),  # a 2-D input: BatchNorm1d's rank
    ).double()
    for bn in (m[1], m[5]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("fold", [True, False])
def test_sync_batchnorm_converts_as_batchnorm_in_eval(session, fold):
    m = _sync_net().eval()
    x = uniform(2, 2, 6, 6, scale=2.0, seed=5)
    pm = cryptgpu.nn.from_pytorch(m, x, fold_batchnorm=fold).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x)))
    # conv (18 products, |x| <= 2, weights |w|; folded: times the scale s1),
    # times s1 (a truncation, the shift's encoding): e1; the Linear carries
    # e1 by its largest row sum of |w| and adds its own 48 products (of its
    # inputs' largest |h|); the last BatchNorm scales by s2 (a truncation,
    # its shift's encoding)
    s1, s2 = (bn.weight / (bn.running_var + bn.eps).sqrt() for bn in (m[1], m[5]))
    s1, s2 = s1.abs().max().item(), s2.abs().max().item()
    wc, wl = m[0].weight.abs().max().item(), m[4].weight.abs().max().item()
    e1 = s1 * prod_tol(18, 2.0, wc * max(s1, 1.0)) + 2 * ULP
    h = m[:4](x).abs().max().item()
    rows = m[4].weight.abs().sum(1).max().item()
    tol = s2 * (rows * e1 + prod_tol(48, h, wl) + ENC) + 2 * ULP
    assert_close(got, m(x).detach(), tol)
    n_bn = sum(isinstance(mm, cryptgpu.nn.BatchNorm) for mm in pm.modules())
    assert n_bn == (1 if fold else 2)  # the one after the conv folds
    with pytest.raises(ValueError, match="expected at least 2D input"):
        pm[5](cryptgpu.cryptensor(torch.ones(4)))  # torch's SyncBatchNorm check
    assert usable()


def test_sync_batchnorm_trains_as_batchnorm(session):
    """As test_autograd's BatchNorm2d training test: one training step of
    conv + SyncBatchNorm + ReLU against float64 torch (on one process
    torch's SyncBatchNorm computes BatchNorm)."""
    torch.manual_seed(0)
    m = tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.SyncBatchNorm(3), tnn.ReLU()).double()
    m[1].weight.data.uniform_(0.5, 1.5)
    m[1].bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(4, 2, 6, 6, dtype=D)
    g = torch.randn(4, 3, 4, 4, dtype=D)
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(m).train()).encrypt().train()
    ref = m.train()(x)
    (ref * g).sum().backward()
    out = pm(cryptgpu.cryptensor(x))
    (out * g).sum().backward()
    # forward: batch statistics and inv_sqrt (1e-8 relative on [0.1, 130])
    assert_close(pt(out), ref.detach(), 64 * ULP)
    terms = 4 * 4 * 4  # gradient terms summed per channel
    for p, t in zip(pm.parameters(), m.parameters()):
        assert_close(pt(p.grad), t.grad, terms * 16 * ULP * max(1.0, t.grad.abs().max().item()))
    bn = [mm for mm in pm.modules() if isinstance(mm, cryptgpu.nn.BatchNorm)][0]
    assert_close(pt(bn._buffers["running_mean"]), m[1].running_mean, 8 * ULP)
    assert_close(pt(bn._buffers["running_var"]), m[1].running_var, 64 * ULP)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 2, 2, 2)])
def test_a_bare_sync_batchnorm_takes_any_rank_from_2(session, shape):
    """Batch statistics over every dim but the channels, as torch's; the
    test_layers tolerance at std 1: the input's encoding over the std a few
    times, |x - mean| units for 1/std in fixed point, inv_sqrt's 1e-4."""
    x = uniform(*shape, scale=2.0, seed=len(shape))
    m = tnn.SyncBatchNorm(3).double().train()
    pm = cryptgpu.nn.from_pytorch(copy.deepcopy(m), torch.ones(2, 3, 4, 4)).encrypt().train()
    want = m(x)
    got = pt(pm(cryptgpu.cryptensor(x)))
    dims = [0] + list(range(2, len(shape)))
    std = x.std(dims, unbiased=False).min().item()
    xc = (x - x.mean(dims, keepdim=True)).abs().max().item()
    assert_close(got, want.detach(), 8 * ENC / std + 3 * xc * ULP / std + 1e-4)


class DenseLayer(tnn.Module):
    """torchvision's _DenseLayer: gradient checkpointing taken on
    ``any_requires_grad`` of its inputs (memory_efficient=True)."""

    def __init__(self, cin: int, growth: int, memory_efficient: bool):
        super().__init__()
        self.norm, self.conv = tnn.BatchNorm2d(cin), tnn.Conv2d(cin, growth, 3, padding=1)
        self.memory_efficient = memory_efficient

    def bn_function(self, inputs):
        return self.conv(F.relu(self.norm(torch.cat(inputs, 1))))

    def any_requires_grad(self, inputs) -> bool:
        for tensor in inputs:
            if tensor.requires_grad:
                return True
        return False

    def forward(self, inputs):
        if self.memory_efficient and self.any_requires_grad(inputs):
            return cp.checkpoint(lambda *i: self.bn_function(list(i)), *inputs, use_reentrant=False)
        return self.bn_function(inputs)


class Dense(tnn.Module):
    def __init__(self, memory_efficient: bool = True):
        super().__init__()
        self.l1 = DenseLayer(3, 2, memory_efficient)
        self.l2 = DenseLayer(5, 2, memory_efficient)

    def forward(self, x):
        feats = [x]
        feats.append(self.l1(feats))
        feats.append(self.l2(feats))
        return torch.cat(feats, 1)


def test_requires_grad_branch_of_a_memory_efficient_densenet_converts(session):
    torch.manual_seed(5)
    m = Dense().double().eval()
    x = uniform(2, 3, 4, 4, seed=6)
    with pytest.warns(UserWarning, match=r"'l1' \(.*DenseLayer\) and 1 more.*requires_grad"):
        pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    got = pt(pm(cryptgpu.cryptensor(x)))

    # BatchNorm at default statistics (scale 1 / sqrt(1 + eps), shift 0):
    # a truncation and the input's encoding; l1's conv: 27 products (|x| <=
    # 1) of inputs off by that, carried by its largest sum of |w|, plus its
    # bias's encoding: e1; l2's conv the same over 45 inputs (x and l1's
    # outputs, up to h) off by e1 and its BatchNorm's truncation
    def conv_error(conv, e_in, xmax):
        rows = conv.weight.abs().sum((1, 2, 3)).max().item()
        k, w = conv.weight[0].numel(), conv.weight.abs().max().item()
        return rows * e_in + prod_tol(k, xmax, w) + ENC

    e1 = conv_error(m.l1.conv, ULP + ENC, 1.0)
    h = max(1.0, m.l1([x]).abs().max().item())
    e2 = conv_error(m.l2.conv, e1 + ULP + ENC, h)
    assert_close(got, m(x).detach(), e2)
    # the same graph as memory_efficient=False (and no warning there)
    plain = Dense(memory_efficient=False).double().eval()
    plain.load_state_dict(m.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other = cryptgpu.nn.from_pytorch(plain, x)
    ops = [(n.op, n.target) for n in other._graph.nodes]
    assert [(n.op, n.target) for n in pm._graph.nodes] == ops


class Branchy(tnn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class HoldsBranchy(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.block = tnn.Linear(4, 4), Branchy()

    def forward(self, x):
        return self.block(self.lin(x))


def test_a_tracing_error_names_the_module_whose_forward_raised_it(session):
    with pytest.raises(
        NotImplementedError,
        match=r"control flow \(in the forward of 'block' \(test_probe_nb\.Branchy\)\)",
    ):
        cryptgpu.nn.from_pytorch(HoldsBranchy(), torch.ones(2, 4))
    assert usable()
