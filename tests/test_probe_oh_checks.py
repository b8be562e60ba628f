"""Probe OH (2026-12-07), items 6, 8, 9, 10 and 11.

- 6: membership size checks (``assert x.size(1) in (2, 3)``, ``in [3,
  2]``, ``in range(1, 4)``, ``not in [4, 5]``, ``if ... not in (2, 3):
  raise``) kept only the first ``==`` Python's ``in`` asked: a valid 3
  channels failed the check, ``[3, 2]`` failed its own dummy; ``in {6,
  8}`` was refused with the user's message as the reason.
- 9: ``and``/``or`` in a check converted only where the dummy gave every
  operand the same truth value.
- 10: ``%``/``.format`` messages came back as their template; a forward's
  own ``assert isinstance(x, torch.Tensor)`` was refused with an empty
  reason, ``h[:, 0] = 0`` as "'_Proxy' object does not support item
  assignment", neither naming the line.
- 8: ``register_parameter`` took "a.b", "", "forward", 3 and a float.
- 11: a custom optimiser's ``torch.zeros_like(p)`` state: the
  SecretValueError now names the forms that work.

Tolerance (f = 16, conftest): the models compute ``x * 2`` of an encoded
input: twice its encoding error (2 ENC) plus the output's own rounding to
the grid when opened (ENC).
"""

import probe_oh_models as pm_
import pytest
import torch

import cryptgpu
from conftest import ENC, TRUNC, usable

D = torch.float64
TOL = 3 * ENC  # 2 x the input's encoding error, plus the output's rounding


def _same_as_torch(model, converted, shapes):
    """Each shape: torch's exception type, or its output within TOL."""
    for shape in shapes:
        x = torch.randn(*shape, dtype=D)
        try:
            want = model(x)
        except Exception as e:
            with pytest.raises(type(e)):
                converted(cryptgpu.cryptensor(x))
            assert usable()
            continue
        got = converted(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
        assert (got - want).abs().max().item() <= TOL, shape


@pytest.mark.parametrize(
    "kind", [pm_.InTuple, pm_.InListReversed, pm_.InRange, pm_.NotInList, pm_.IfNotIn]
)
def test_membership_checks_keep_every_item(session, kind):
    model = kind()
    converted = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 2, 6)).encrypt()
    _same_as_torch(model, converted, [(2, c, 6) for c in range(1, 7)])


def test_membership_in_a_set_is_refused_naming_the_line(session):
    with pytest.raises(NotImplementedError, match=r"assert x.size\(1\) in \{6, 8\}.*a tuple"):
        cryptgpu.nn.from_pytorch(pm_.InSet(), torch.zeros(2, 6))
    assert usable()


@pytest.mark.parametrize("kind", [pm_.IfAnd, pm_.AssertOr, pm_.IfNotOr, pm_.MultiLine, pm_.Mixed])
def test_and_or_checks_convert_whatever_the_dummys_truth_values(session, kind):
    model = kind()
    converted = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 2)).encrypt()
    shapes = [(b, c) for b in (1, 2, 3) for c in (1, 2, 3, 5, 9)] + [(2, 2, 2), (1, 9, 2)]
    _same_as_torch(model, converted, shapes)


@pytest.mark.parametrize("how", ["%", "format", "f"])
def test_formatted_messages_are_filled_at_each_call(session, how):
    model = pm_.Formatted(how)
    converted = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 4)).encrypt()
    x = torch.zeros(2, 5)
    with pytest.raises(Exception) as theirs:
        model(x)
    with pytest.raises(theirs.type) as ours:
        converted(cryptgpu.cryptensor(x))
    assert str(theirs.value) == "expected 4 features, got 5"
    assert str(ours.value).startswith("expected 4 features, got 5 (the model's forward check")
    assert usable()


def test_a_message_of_more_than_sizes_is_left_out_not_its_template(session):
    converted = cryptgpu.nn.from_pytorch(pm_.Formatted("dtype"), torch.zeros(2, 4))
    with pytest.raises(AssertionError) as ours:
        converted(cryptgpu.cryptensor(torch.zeros(2, 5)))
    assert str(ours.value).startswith("the model's forward check failed")  # no "expected {}"
    assert usable()


@pytest.mark.parametrize(
    "kind, line, why",
    [
        (pm_.IsTensor, "`assert isinstance(x, torch.Tensor)`", "isinstance"),
        (pm_.IfNotTensor, "`if not isinstance(x, torch.Tensor):`", "isinstance"),
        (pm_.NoGrad, "`assert x.requires_grad is False`", "requires_grad"),
    ],
)
def test_a_check_that_does_not_trace_is_refused_naming_its_line(session, kind, line, why):
    with pytest.raises(NotImplementedError) as e:
        cryptgpu.nn.from_pytorch(kind(), torch.zeros(2, 4))
    text = str(e.value)
    assert "own check raised" in text and line in text  # the line, named
    assert why in text.split(line)[-1]  # and what there does not trace
    assert "probe_oh_models.py" in text
    assert usable()


def test_item_assignment_is_refused_naming_the_line_and_the_workaround(session):
    with pytest.raises(NotImplementedError, match=r"`h\[:, 0\] = 0` \(probe_oh_models.py:\d+\)"):
        cryptgpu.nn.from_pytorch(pm_.SetItem(), torch.zeros(2, 4))
    assert usable()
    with pytest.raises(NotImplementedError, match="torch.where"):
        cryptgpu.nn.from_pytorch(pm_.SetItem(), torch.zeros(2, 4))
    assert usable()


def test_register_parameter_checks_names_and_values_as_torch(session):
    m, t = cryptgpu.nn.Module(), torch.nn.Module()
    p = cryptgpu.cryptensor(torch.ones(2))
    for name, value, err in [
        ("a.b", p, KeyError),
        ("", p, KeyError),
        ("forward", p, KeyError),
        (3, p, TypeError),
        ("q", 3.0, TypeError),
    ]:
        torch_value = torch.nn.Parameter(torch.ones(2)) if value is p else value
        with pytest.raises(err):
            t.register_parameter(name, torch_value)
        with pytest.raises(err):
            m.register_parameter(name, value)
        assert usable()
    with pytest.raises(KeyError):
        m.register_module("forward", cryptgpu.nn.Linear(2, 2))
    m.register_parameter("w", p)
    m.register_parameter("v", torch.nn.Parameter(torch.ones(2)))
    m.register_parameter("u", torch.ones(2))
    m.register_parameter("n", None)
    m.register_module("lin", cryptgpu.nn.Linear(2, 2))
    assert list(m.state_dict()) == ["w", "v", "u", "lin.weight", "lin.bias"]
    assert usable()


class _Momentum(cryptgpu.optim.Optimizer):
    def __init__(self, params, zeros):
        super().__init__(params, dict(lr=0.1, beta=0.9))
        self.zeros = zeros

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                if "m" not in st:
                    st["m"] = self.zeros(p)
                st["m"].mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
                p.add_(st["m"], alpha=-group["lr"])


def test_torch_zeros_like_state_in_an_optimiser_names_the_shared_forms(session):
    w = cryptgpu.cryptensor(torch.randn(3), requires_grad=True)
    (w * w).sum().backward()
    with pytest.raises(cryptgpu.SecretValueError, match=r"p\.clone\(\)\.zero_\(\)"):
        _Momentum([w], torch.zeros_like).step()
    assert usable()
    w0 = torch.randn(3, dtype=D)
    w = cryptgpu.cryptensor(w0, requires_grad=True)
    opt = _Momentum([w], lambda p: p.clone().zero_())
    ref, m = w0.clone(), torch.zeros(3, dtype=D)
    for _ in range(2):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
        m = 0.9 * m + 0.1 * 2 * ref
        ref = ref - 0.1 * m
    # per step: the gradient's product and three scaled updates, each
    # one truncation (TRUNC), carried into the next step: 8 in all
    assert (w.get_plain_text(dtype=D) - ref).abs().max().item() <= 8 * TRUNC + ENC
    assert usable()
