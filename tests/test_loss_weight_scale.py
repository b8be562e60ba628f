"""Class losses with small public weights, and the targets torch refuses,
against float64 torch: CrossEntropyLoss / NLLLoss (module, functional,
torch's module on a SharedTensor, a converted forward) with class weights
of 1e-6 and inverse class frequencies (until 2026-12-07 encoded as given:
losses 0.6% to 100% off, gradients 2.4e-3 off); BCE / BCEWithLogits with
small weights; ``ignore_index`` with one-hot or probability targets (torch's
RuntimeError; it was ignored silently); class indices, one-hot and binary
targets of the dtypes torch refuses (torch's error; they were taken).

Tolerances (f = 16), as test_losses': log_softmax within LOGSM = 1e-2 of
torch's per entry on rows of 4 logits in [-3, 3], softmax within SM =
3e-4. A sample's cross-entropy is its effective target row (the weights,
label smoothing) times log_softmax, so within LOGSM times the row's mass;
each product of a shared entry by a public one adds a truncation (TRUNC)
in the weights' up-scaled units, where the largest kept weight is in
[1, 2), so TRUNC times the largest weight in torch's units.
"""

import re

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import TRUNC, usable

LOGSM, SM = 1e-2, 3e-4
N, C = 16, 4
# class weights torch's mean does not depend on the scale of: 1e-6 (below
# one unit of 2^-16) and inverse class frequencies (1e-5 .. 3e-4)
WEIGHTS = {
    "micro": torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64) * 1e-6,
    "inverse_frequency": 1.0 / torch.tensor([50000.0, 20000.0, 3000.0, 8000.0]).double(),
}


def _data(rng):
    x = torch.rand(N, C, generator=rng, dtype=torch.float64) * 6 - 3
    y = torch.randint(0, C, (N,), generator=rng)
    y[3] = -100  # one row ignored (torch's default index)
    return x, y


class _Crit(tnn.Module):
    """A forward that computes its loss (converted by from_pytorch)."""

    def __init__(self, crit, log_probs: bool):
        super().__init__()
        self.crit, self.log_probs = crit, log_probs

    def forward(self, x, y):
        return self.crit(F.log_softmax(x, 1) if self.log_probs else x, y)


def _loss(kind, form, w, reduction, eps):
    """(private loss function, torch's) for CE / NLL in one of the forms."""
    kw = dict(weight=w, reduction=reduction)
    if kind == "ce":
        kw["label_smoothing"] = eps
        ours, theirs, log_probs = cryptgpu.nn.CrossEntropyLoss, tnn.CrossEntropyLoss, False
        fn = F.cross_entropy
    else:
        ours, theirs, log_probs = cryptgpu.nn.NLLLoss, tnn.NLLLoss, True
        fn = F.nll_loss

    def prep(x):
        return F.log_softmax(x, 1) if log_probs else x

    def want(x, y):
        return fn(prep(x), y, **kw)

    if form == "module":
        return (lambda x, y: ours(**kw)(prep(x), y)), want
    if form == "functional":
        return (lambda x, y: fn(prep(x), y, **kw)), want
    if form == "torch_module":
        return (lambda x, y: theirs(**kw)(prep(x), y)), want
    pm = cryptgpu.nn.from_pytorch(_Crit(theirs(**kw), log_probs))
    return (lambda x, y: pm(x, y)), want


@pytest.mark.parametrize("weights", sorted(WEIGHTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("form", ["module", "functional", "torch_module", "converted"])
@pytest.mark.parametrize("kind,eps", [("ce", 0.0), ("ce", 0.1), ("nll", 0.0)])
def test_small_class_weights_follow_torch(session, rng, kind, eps, form, reduction, weights):
    """torch's weighted mean divides by the kept labels' weights, so it
    does not depend on their scale; "sum" and "none" do, and keep their
    relative precision: the weights are up-scaled by a power of two."""
    w = WEIGHTS[weights]
    x, y = _data(rng)
    private, plain = _loss(kind, form, w, reduction, eps)
    xs, xt = cryptgpu.cryptensor(x, requires_grad=True), x.clone().requires_grad_()
    lp, lt = private(xs, y), plain(xt, y)
    (lp if lp.dim() == 0 else lp.sum()).backward()
    (lt if lt.dim() == 0 else lt.sum()).backward()
    kept = (y != -100).double()
    rows = w[y.clamp(min=0)] * kept  # each sample's label weight, 0 if ignored
    mass = ((1 - eps) * rows + eps / C * w.sum() * kept).double()  # a row's target sum
    top, d = float(rows.max()), float(rows.sum())
    if reduction == "mean":
        # the weighted mean of LOGSM * mass; N C products' truncations over
        # the up-scaled divisor d / top (>= 1) and the division's
        tol = LOGSM * float(mass.sum()) / d + (N * C * top / d + 2) * TRUNC
        gtol = SM * float(mass.max()) / d + 8 * TRUNC  # (sum y) softmax - y over d
    elif reduction == "sum":
        # LOGSM * mass summed; N C truncations in up-scaled units (TRUNC *
        # top each in torch's), and the final division by the scale
        tol = LOGSM * float(mass.sum()) + (N * C * top + 2) * TRUNC
        gtol = SM * float(mass.max()) + 8 * TRUNC
    else:
        tol = LOGSM * mass + (C * top + 2) * TRUNC  # per sample
        gtol = SM * float(mass.max()) + 8 * TRUNC
    got = lp.get_plain_text(dtype=torch.float64)
    assert got.shape == lt.shape
    assert bool(((got - lt.detach()).abs() <= tol).all()), (got, lt, tol)
    g = xs.grad.get_plain_text(dtype=torch.float64)
    assert float((g - xt.grad).abs().max()) <= gtol, ((g - xt.grad).abs().max(), gtol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["bce", "bce_with_logits", "bce_with_logits_pos_weight"])
def test_small_binary_weights_follow_torch(session, rng, loss, reduction):
    """BCE's per-element weight of 1e-5 (and pos_weight, which stays in a
    factor pw y + 1 - y of size 1): each weighted element was a product
    below one unit, the sum of 1024 of them off by tens of units."""
    x = torch.rand(128, 8, generator=rng, dtype=torch.float64) * 4 - 2
    t = (torch.rand(128, 8, generator=rng) > 0.5).double()
    w = (torch.rand(8, generator=rng, dtype=torch.float64) + 0.5) * 1e-5
    if loss == "bce":
        kw = dict(weight=w, reduction=reduction)
        fn, prep = F.binary_cross_entropy, torch.sigmoid
        per = 0.015  # an element's loss, p in [0.12, 0.88] (test_crypten_compat's)
    else:
        key = "pos_weight" if loss.endswith("pos_weight") else "weight"
        kw = {key: w, "reduction": reduction}
        fn, prep = F.binary_cross_entropy_with_logits, (lambda v: v)
        per = 6e-3  # an element's loss (test_crypten_compat's bound)
    xs = cryptgpu.cryptensor(prep(x))
    got = fn(xs, t, **kw).get_plain_text(dtype=torch.float64)
    want = fn(prep(x), t, **kw)
    scale = float(w.max()) if "weight" in kw else 1.0  # an element's weight (pos_weight: 1)
    k = x.numel() if reduction == "sum" else 1
    # each element within `per` times its weight; k truncations, up-scaled
    # (TRUNC * scale each in torch's units), and the final division's
    tol = k * (per * scale + scale * TRUNC) + 2 * TRUNC
    assert float((got - want).abs().max()) <= tol, ((got - want).abs().max(), tol)


def _onehot(y):
    return F.one_hot(y.clamp(min=0), C).double()


@pytest.mark.parametrize("ignore_index", [0, 2])
def test_ignore_index_with_probability_targets_is_torchs_runtime_error(session, rng, ignore_index):
    """torch refuses ignore_index >= 0 with floating point (one-hot,
    probability) targets; it was silently ignored (the loss of every row)."""
    x, y = _data(rng)
    y[3] = 1
    onehot = _onehot(y)
    with pytest.raises(RuntimeError) as theirs:
        F.cross_entropy(x, onehot, ignore_index=ignore_index)
    words = f"^{re.escape(str(theirs.value))}"  # torch's words, then cryptgpu's hint
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    for target in (onehot, cryptgpu.cryptensor(onehot, src=1)):
        for call in (
            lambda t: cryptgpu.nn.CrossEntropyLoss(ignore_index=ignore_index)(xs, t),
            lambda t: tnn.CrossEntropyLoss(ignore_index=ignore_index, reduction="sum")(xs, t),
            lambda t: F.cross_entropy(xs, t, ignore_index=ignore_index, label_smoothing=0.1),
            lambda t: F.cross_entropy(xs, t, weight=WEIGHTS["micro"], ignore_index=ignore_index),
        ):
            with pytest.raises(RuntimeError, match=words) as ours:
                call(target)
            assert "all zeros" in str(ours.value)  # the way to mask a sample
    with pytest.raises(RuntimeError, match=words):  # public logits, a shared target
        F.cross_entropy(x, cryptgpu.cryptensor(onehot, src=1), ignore_index=ignore_index)
    # NLLLoss: torch takes no [N, C] target at all; a shared one-hot (ours)
    # refuses ignore_index as cross-entropy does
    lsm = xs.log_softmax(1)
    with pytest.raises(RuntimeError, match=words):
        F.nll_loss(lsm, cryptgpu.cryptensor(onehot, src=1), ignore_index=ignore_index)
    with pytest.raises(RuntimeError, match=words):
        cryptgpu.nn.NLLLoss(ignore_index=ignore_index)(lsm, cryptgpu.cryptensor(onehot, src=1))
    with pytest.raises(RuntimeError) as theirs:
        F.nll_loss(x.log_softmax(1), onehot)
    with pytest.raises(RuntimeError, match=f"^{re.escape(str(theirs.value))}$"):
        F.nll_loss(lsm, onehot)
    # a converted forward with torch's module
    pm = cryptgpu.nn.from_pytorch(_Crit(tnn.CrossEntropyLoss(ignore_index=ignore_index), False))
    with pytest.raises(RuntimeError, match=words):
        pm(xs, cryptgpu.cryptensor(onehot, src=1))
    assert usable()


def test_negative_ignore_index_with_probability_targets_is_computed(session, rng):
    """torch takes a negative ignore_index (its default -100, or -1) with
    probability targets, ignoring it: so do we."""
    x, y = _data(rng)
    onehot = _onehot(y)  # row 3 (label -100) is class 0's
    xs = cryptgpu.cryptensor(x)
    for target in (onehot, cryptgpu.cryptensor(onehot, src=1)):
        for ii in (-100, -1):
            got = F.cross_entropy(xs, target, ignore_index=ii).get_plain_text(dtype=torch.float64)
            # a mean over N rows of mass 1: LOGSM, and N truncations over N
            want = F.cross_entropy(x, onehot, ignore_index=ii)
            assert abs(float(got) - float(want)) <= LOGSM + 2 * TRUNC


@pytest.mark.parametrize(
    "dtype", [torch.int8, torch.int16, torch.int32, torch.bool, torch.float32, torch.float64]
)
def test_class_index_dtypes_torch_refuses_raise_its_error(session, rng, dtype):
    """torch's cross_entropy / nll_loss take class indices of int64 or
    uint8 only; other dtypes were taken (int32, bool, ...) or refused in
    cryptgpu's words (floats)."""
    x, y = _data(rng)
    y[3] = 1
    labels = y.to(dtype)
    xs = cryptgpu.cryptensor(x)
    for fn, xin, xsin in (
        (F.cross_entropy, x, xs),
        (F.nll_loss, x.log_softmax(1), xs.log_softmax(1)),
    ):
        with pytest.raises(RuntimeError) as theirs:
            fn(xin, labels)
        with pytest.raises(type(theirs.value), match=f"^{re.escape(str(theirs.value))}$"):
            fn(xsin, labels)
    with pytest.raises(RuntimeError, match=re.escape(str(theirs.value))):
        cryptgpu.nn.CrossEntropyLoss()(xs[0], labels[0])  # one sample, a 0-d label
    assert usable()


def test_class_index_dtypes_torch_takes_are_computed(session, rng):
    """int64 and uint8 labels (torch's two) give torch's loss."""
    x, y = _data(rng)
    y[3] = 1
    xs = cryptgpu.cryptensor(x)
    for labels in (y, y.to(torch.uint8)):
        got = F.cross_entropy(xs, labels).get_plain_text(dtype=torch.float64)
        assert abs(float(got) - float(F.cross_entropy(x, labels))) <= LOGSM  # a mean of LOGSM


def test_target_dtypes_torch_refuses_raise_its_error(session, rng):
    """An integer one-hot for cross-entropy, integer or bool binary targets:
    torch's errors (RuntimeError; NotImplementedError for bool with
    logits), where they were taken."""
    x, y = _data(rng)
    y[3] = 1
    xs = cryptgpu.cryptensor(x)
    t = (torch.rand(N, C, generator=rng) > 0.5).long()
    cases = [(F.cross_entropy, x, xs, _onehot(y).long())]
    for dtype in (torch.int64, torch.int32, torch.uint8, torch.bool):
        cases.append((F.binary_cross_entropy_with_logits, x, xs, t.to(dtype)))
        cases.append((F.binary_cross_entropy, x.sigmoid(), xs.sigmoid(), t.to(dtype)))
    for fn, xin, xsin, target in cases:
        with pytest.raises((RuntimeError, NotImplementedError)) as theirs:
            fn(xin.float(), target)
        with pytest.raises(type(theirs.value), match=f"^{re.escape(str(theirs.value))}$"):
            fn(xsin, target)
    for module in (tnn.BCEWithLogitsLoss(), cryptgpu.nn.BCEWithLogitsLoss()):
        with pytest.raises(RuntimeError, match="can't be cast"):
            module(xs, t)
    assert usable()


@pytest.mark.parametrize("w", [[1.0, 1e4, 1.0], [1.0, 50.0, 3.0]])
def test_nll_mean_gradient_with_large_weights(session, w):
    """NLLLoss(weight=) mean: the gradient -w_y / sum(w) is one public
    factor (probe MA; until 2026-12-07 1 / sum(w) was rounded to 2^-16 and
    then times w_y: 6.8% off for a weight of 1e4, 2.7% for inverse
    frequencies). x's gradient: one product of the shared upstream 1 by the
    public factor (extra fractional bits below 1/4): within a unit, TRUNC."""
    logp = torch.log_softmax(torch.tensor([[0.1, 0.2, 0.3], [0.3, -0.2, 0.5], [1.0, 0.0, -1.0]]), 1)
    logp = logp.double()
    labels = torch.tensor([0, 1, 2])
    wt = torch.tensor(w, dtype=torch.float64)
    for loss in (
        lambda a: cryptgpu.nn.NLLLoss(weight=wt)(a, labels),
        lambda a: F.nll_loss(a, labels, weight=wt),
    ):
        t = logp.clone().requires_grad_()
        F.nll_loss(t, labels, weight=wt).backward()
        x = cryptgpu.cryptensor(logp, requires_grad=True)
        out = loss(x)
        out.backward()
        # the value: 3 products of entries below 2.5 by weights (each a
        # truncation in the up-scaled units) then one by 1 / sum(w)
        assert (
            abs(out.get_plain_text(dtype=torch.float64) - F.nll_loss(logp, labels, weight=wt))
            <= 5 * TRUNC
        )
        assert (x.grad.get_plain_text(dtype=torch.float64) - t.grad).abs().max() <= TRUNC
    assert usable()
