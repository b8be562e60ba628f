"""Review s29 (2026-12-07) of the day's conversion changes.

S2-a. fx's patches undone after a trace (model_state._fx_put_back) asked
      ``hasattr`` of every global of every forward's module: a global whose
      ``__getattr__`` raises KeyError (a config object) broke every
      conversion of a model defined next to it.
S2-b. torch's name checks of ``register_parameter`` refused conversion's
      own calls: a torch parameter named as an attribute of cryptgpu's
      class (``kind``, ``encrypt``) no longer converted (KeyError).

Tolerances (f = 16, conftest): derived next to each assertion.
"""

import pytest
import torch
from review_s29_models import Chain, Gen, Plain
from torch import nn

import cryptgpu
from conftest import ENC, ULP, prod_tol, usable

D = torch.float64


def _x(*shape, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=D) * 2) - 1


def test_global_with_raising_getattr_does_not_break_conversion(session):
    """S2-a: until review s29 NotImplementedError "'_Patcher__fx_already_patched'"
    at ``return self._d[k]``."""
    torch.manual_seed(0)
    m = Plain().double()
    x = _x(3, 4)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt()
    with torch.no_grad():
        want = m(x)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    # lin: |x| <= 1, |w|, |b| <= 0.5 (init bound 1/sqrt(4)), 4 products and the
    # bias's encoding; times 2 (exact on the fixed-point grid) doubles it
    assert (got - want).abs().max().item() <= 2 * (prod_tol(4, 1.0, 0.5) + ENC)
    assert usable()


def test_installed_torch_still_marks_its_fx_patches():
    """_fx_put_back finds fx's patches by the attribute fx sets on them
    (``__fx_already_patched`` inside its class ``_Patcher``): a torch that
    renames it would leave the undo doing nothing, silently."""
    from torch.fx import _symbolic_trace

    from cryptgpu.nn import model_state

    p = _symbolic_trace._Patcher()
    space = {"f": lambda: 1}
    with p:
        p.patch(space, "f", lambda *a, **k: 2)
        patched = space["f"]
    assert model_state.FX_MARK in patched.__dict__


class _Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.kind = nn.Parameter(torch.linspace(-1, 1, 4))
        self.encrypt = nn.Parameter(torch.linspace(1, -0.5, 4))
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x * self.kind + self.encrypt)


def test_parameters_named_as_cryptgpu_attributes_convert(session):
    """S2-b: until review s29 KeyError "attribute 'kind' already exists"."""
    torch.manual_seed(0)
    m = _Named().double()
    x = _x(3, 4)
    pm = cryptgpu.nn.from_pytorch(m, x)
    names = {n for n, _ in pm.named_parameters()}
    assert {"kind", "encrypt", "lin.weight", "lin.bias"} <= names
    pm.encrypt()
    with torch.no_grad():
        want = m(x)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    # h = x * kind + encrypt: |x|, |kind| <= 1, one product truncated and the
    # encodings (prod_tol(1, 1, 1) + ENC), |h| <= 2; then lin (|w|, |b| <= 0.5):
    # 4 products of h (|h| <= 2) with w, each carrying 0.5 * err(h), and the bias
    err_h = prod_tol(1, 1.0, 1.0) + ENC
    tol = 4 * 0.5 * err_h + prod_tol(4, 2.0, 0.5) + ENC
    assert (got - want).abs().max().item() <= tol
    assert usable()


class _ThroughAttribute(nn.Module):
    """``y = h.<attr>; y <op>= c`` changes ``h`` in torch; ``h`` is read
    afterwards (S1-a)."""

    def __init__(self, attr, op):
        super().__init__()
        self.attr, self.op = attr, op

    def forward(self, x):
        h = x * 1.0
        y = getattr(h, self.attr)
        if self.op == "+":
            y += 1
        elif self.op == "*":
            y *= 2
        else:
            y -= 3
        return h


ATTRS = [("T", "+"), ("data", "*"), ("mT", "-"), ("H", "+"), ("mH", "*"), ("real", "-")]


@pytest.mark.parametrize("attr,op", ATTRS)
def test_augmented_assignment_through_an_attribute_view_is_refused(session, attr, op):
    """S1-a: until review s29 converted without a dummy, and the converted
    model returned ``h`` unchanged (1.0 to 12.0 off torch's, no error)."""
    with pytest.raises(NotImplementedError) as e:
        cryptgpu.nn.from_pytorch(_ThroughAttribute(attr, op))
    assert f"y {op}= " in str(e.value) and "test_review_s29.py:" in str(e.value)  # the line
    assert usable()


class _AttributeResult(nn.Module):
    def forward(self, x):
        h = x * 1.0
        y = h.T
        y += 1  # h not read afterwards: converts
        return y


def test_augmented_assignment_through_an_attribute_converts_when_base_unread(session):
    x = _x(3, 4)
    pm = cryptgpu.nn.from_pytorch(_AttributeResult()).encrypt()
    want = _AttributeResult()(x.clone())
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    # x encoded (ENC), times 1.0 (exact on the grid, one truncation: ULP), + 1 exact
    assert (got - want).abs().max().item() <= ENC + ULP
    assert usable()


class _WeightData(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        w = self.lin.weight.data
        w += 1
        return self.lin(x)


@pytest.mark.parametrize("dummy", [False, True])
def test_augmented_assignment_to_parameter_data_is_refused(session, dummy):
    """S1-a: until review s29 converted without a dummy, and the converted
    model never changed its weight (torch's changes at every call)."""
    torch.manual_seed(0)
    m = _WeightData().double()
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    with pytest.raises(NotImplementedError) as e:
        cryptgpu.nn.from_pytorch(m, _x(3, 4) if dummy else None)
    assert "`w += 1`" in str(e.value) and "'lin.weight'" in str(e.value)
    for k, v in m.state_dict().items():  # the caller's model as it was: exactly
        assert torch.equal(v, before[k]), k
    assert usable()


class _PublicInPlace(nn.Module):
    def forward(self, x):
        m = torch.ones((x.size(0), 1), dtype=x.dtype)
        m += torch.ones((1, x.size(1)), dtype=x.dtype)  # public tensors only
        return x * m


def test_public_in_place_broadcasting_past_target_raises(session):
    """S1-b: until review s29 the converted model returned a [2, 4] result
    where torch raises (the public nodes skipped the shape check)."""
    small = _x(2, 1)
    pm = cryptgpu.nn.from_pytorch(_PublicInPlace(), small).encrypt()
    got = pm(cryptgpu.cryptensor(small)).get_plain_text(dtype=D)
    # x encoded (ENC) times 2 (a public integer: exact, no truncation)
    assert (got - _PublicInPlace()(small)).abs().max().item() <= 2 * ENC
    bad = _x(2, 4, seed=1)
    with pytest.raises(RuntimeError) as want:
        _PublicInPlace()(bad)
    with pytest.raises(RuntimeError) as ours:
        pm(cryptgpu.cryptensor(bad))
    assert str(ours.value) == str(want.value)  # torch's words
    assert usable()


class _Remembers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.last, self.steps = None, 0

    def forward(self, x):
        h = self.lin(x)
        self.last = h.detach()
        self.steps += 1
        return h


@pytest.mark.parametrize("dummy", [False, True])
def test_conversion_leaves_non_tensor_attributes_as_they_were(session, dummy):
    """S3-a: until review s29 conversion left a torch.fx Proxy in
    ``model.last`` and ``model.steps`` at 2 (one per trace)."""
    torch.manual_seed(0)
    m = _Remembers().double()
    keys = list(vars(m))
    cryptgpu.nn.from_pytorch(m, _x(3, 4) if dummy else None)
    assert m.last is None and m.steps == 0
    assert list(vars(m)) == keys  # nothing added (fx's _tensor_constant0, ...)
    assert m.training
    assert usable()


class _Peeks(nn.Module):
    """Notes where conversion keeps its copies of the model's tensors."""

    def __init__(self, seen):
        super().__init__()
        self.lin, self.seen = nn.Linear(4, 2), seen

    def forward(self, x):
        from cryptgpu.nn import model_state

        self.seen.extend(v[2].device.type for v in model_state._SAVED.values())
        return self.lin(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a model on a GPU")
def test_conversion_keeps_its_copies_of_a_gpu_model_on_the_cpu():
    """S4-a: until review s29 conversion cloned every parameter and buffer
    on the model's device (a model on a GPU took twice its GPU memory)."""
    seen = []
    m = _Peeks(seen).cuda()
    cryptgpu.nn.from_pytorch(m)
    assert seen and set(seen) == {"cpu"}


def test_optimiser_state_refusal_keeps_the_users_step_line(session):
    """S3-c: until review s29 the rewrapped SecretValueError dropped the
    traceback (``from None``): the user's ``step()`` line was not shown."""
    import traceback

    from test_probe_oh_checks import _Momentum

    w = cryptgpu.cryptensor(torch.randn(3), requires_grad=True)
    (w * w).sum().backward()
    with pytest.raises(cryptgpu.SecretValueError) as e:
        _Momentum([w], torch.zeros_like).step()
    shown = "".join(traceback.format_tb(e.value.__traceback__))
    assert 'st["m"].mul_(group["beta"])' in shown  # the user's step's line
    assert usable()


@pytest.mark.parametrize(
    "cls,words", [(Gen, "a generator or comprehension"), (Chain, "a chained comparison")]
)
def test_size_check_refusal_names_the_form_not_read(session, cls, words):
    """S3-b: until review s29 the refusal blamed the membership (every
    operand is computed from sizes) or called it "a branch on a size"."""
    with pytest.raises(NotImplementedError) as e:
        cryptgpu.nn.from_pytorch(cls(), torch.ones(2, 4, dtype=D))
    assert words in str(e.value) and "review_s29_models.py:" in str(e.value)
    assert usable()
