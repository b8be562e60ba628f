"""A forward's checks on its input's sizes (probe ND, 2026-12-07):
nanoGPT's ``assert t <= self.block_size`` ended the conversion with
torch.fx's "symbolically traced variables cannot be used as inputs to
control flow", naming no line. A check on sizes (an assert, or an ``if``
whose body only raises) now runs at each call of the converted model and
raises the forward's own exception type; any other branch on a traced
value is refused with its line named.

Tolerance (f = 16, conftest): as test_probe_nd's, ids given in plaintext:
each embedding row is its encoding (ENC); the head is a Linear of 4
inputs (prod_tol) carrying that error times its weights' sum of
magnitudes.
"""

import pytest
import torch
from size_check_models import Caught, Kinds, Named

import cryptgpu
from conftest import ENC, prod_tol, usable

D = torch.float64


class Checked(torch.nn.Module):
    """nanoGPT's first lines, with its assert and an ``if ...: raise``."""

    def __init__(self, V=10, T=8, E=4):
        super().__init__()
        self.block_size = T
        self.wte, self.wpe = torch.nn.Embedding(V, E), torch.nn.Embedding(T, E)
        self.head = torch.nn.Linear(E, V)

    def forward(self, idx):
        if idx.dim() != 2:
            raise ValueError("expected (batch, time) ids")
        b, t = idx.size()
        assert t <= self.block_size, f"Cannot forward sequence of length {t}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        return self.head(self.wte(idx) + self.wpe(pos))


def _tol(model, ids):
    h = (model.wte(ids) + model.wpe(torch.arange(ids.shape[1]))).abs().max().item()
    w = model.head.weight.abs()
    return prod_tol(4, h, w.max().item()) + w.sum(1).max().item() * 2 * ENC + ENC


def test_nanogpts_assert_on_sizes_converts_and_checks_each_call(session):
    torch.manual_seed(0)
    model = Checked().double()
    pm = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 5, dtype=torch.long)).encrypt()
    for t in (3, 8):  # any length the assert lets through, as in torch
        ids = torch.randint(0, 10, (2, t))
        got = pm(ids).get_plain_text(dtype=D)
        assert (got - model(ids)).abs().max().item() <= _tol(model, ids)
    too_long = torch.randint(0, 10, (2, 9))
    with pytest.raises(AssertionError):
        model(too_long)  # torch's
    with pytest.raises(AssertionError, match=r"assert t <= self.block_size.*test_size_checks"):
        pm(too_long)
    assert usable()
    with pytest.raises(ValueError, match=r"expected \(batch, time\) ids"):
        pm(torch.randint(0, 10, (2, 3, 4)))
    assert usable()
    pm.train()  # the train-mode graph keeps the checks too
    with pytest.raises(AssertionError):
        pm(too_long)
    assert usable()


class Sub(torch.nn.Module):
    """A check on ``x.shape`` inside a submodule, with ``if not ...``."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        if not x.shape[-1] == self.lin.in_features:
            raise IndexError("last dimension must be 4")
        return self.lin(x)


def test_a_check_in_a_submodule_raises_its_own_type(session):
    torch.manual_seed(1)
    model = torch.nn.Sequential(Sub(), torch.nn.ReLU()).double()
    pm = cryptgpu.nn.from_pytorch(model, torch.zeros(2, 4)).encrypt()
    x = torch.randn(3, 4, dtype=D)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    w = model[0].lin.weight
    tol = prod_tol(4, x.abs().max().item(), w.abs().max().item()) + ENC  # one Linear
    assert (got - model(x)).abs().max().item() <= tol
    with pytest.raises(IndexError, match="last dimension must be 4"):
        pm(cryptgpu.cryptensor(torch.randn(3, 5)))
    assert usable()


class OnValues(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Reshaping(torch.nn.Module):
    def forward(self, x):
        if x.size(1) > 4:  # not a check: the two branches compute different things
            x = x * 2
        return x


def test_other_branches_are_refused_naming_their_line(session):
    with pytest.raises(NotImplementedError, match=r"if x.sum\(\) > 0:.*a branch on a traced value"):
        cryptgpu.nn.from_pytorch(OnValues(), torch.zeros(2, 3))
    with pytest.raises(NotImplementedError, match=r"if x.size\(1\) > 4:.*a branch on a size"):
        cryptgpu.nn.from_pytorch(Reshaping(), torch.zeros(2, 3))
    assert usable()


def test_a_check_raises_the_forwards_own_class_and_compound_checks_convert(session):
    """The model is in size_check_models.py: pytest rewrites this file's
    asserts (a compound one is then refused, naming pytest)."""
    pm = cryptgpu.nn.from_pytorch(Kinds(), torch.zeros(2, 4)).encrypt()
    x = torch.randn(2, 4, dtype=D)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    assert (got - 2 * x).abs().max().item() <= 2 * ENC  # an exact product of encodings
    cases = [
        ((5, 4), KeyError, "batch too big"),  # self.Error: an attribute's class
        ((2, 1), AssertionError, r"need \[B, >= 2\]"),  # the second test of an `and`
        ((2, 4, 1), AssertionError, r"need \[B, >= 2\]"),  # its first
        ((2, 7), Named, "x.size\\(1\\) > 6 or"),  # either side of an `or`
        ((2, 5), Named, "x.size\\(1\\) > 6 or"),
        ((2, 3), AssertionError, "not 3"),  # inside `with torch.no_grad():`
    ]
    for shape, kind, words in cases:
        with pytest.raises(kind, match=words):
            pm(cryptgpu.cryptensor(torch.zeros(shape)))
        assert usable()


def test_a_class_defined_again_is_the_one_raised(session):
    class Err(Exception):
        pass

    class Net(torch.nn.Module):
        def forward(self, x):
            if x.size(0) > 2:
                raise Err("too big")
            return x * 2

    cryptgpu.nn.from_pytorch(Net(), torch.zeros(1, 2))
    first = Err

    class Err(Exception):  # noqa: F811 - a notebook cell run again
        pass

    pm = cryptgpu.nn.from_pytorch(Net(), torch.zeros(1, 2))
    with pytest.raises(Err):
        pm(cryptgpu.cryptensor(torch.zeros(3, 2)))
    assert Err is not first
    assert usable()


class Unpacks(torch.nn.Module):
    def forward(self, x):
        b, t, c = x.size()
        return x.reshape(b * t, c) * 2


def test_unpacking_sizes_of_another_rank_is_pythons_value_error(session):
    pm = cryptgpu.nn.from_pytorch(Unpacks(), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match=r"not enough values to unpack \(expected 3, got 2\)"):
        pm(cryptgpu.cryptensor(torch.zeros(3, 4)))
    with pytest.raises(ValueError, match=r"too many values to unpack \(expected 3\)"):
        pm(cryptgpu.cryptensor(torch.zeros(1, 2, 3, 4)))
    assert usable()


class Lengths(torch.nn.Module):
    def forward(self, x):
        assert len(x.shape) == 2
        return x


def test_len_of_a_shape_is_refused_naming_dim(session):
    with pytest.raises(NotImplementedError, match=r"x.dim\(\) for len\(x.shape\)"):
        cryptgpu.nn.from_pytorch(Lengths(), torch.zeros(2, 3))
    assert usable()


class Compound(torch.nn.Module):
    def forward(self, x):
        assert x.dim() == 2 and x.size(1) == 4  # rewritten by pytest in this file
        return x


def test_a_compound_assert_pytest_rewrote_is_refused_naming_pytest(session):
    with pytest.raises(NotImplementedError, match="pytest rewrote this file's asserts"):
        cryptgpu.nn.from_pytorch(Compound(), torch.zeros(2, 4))
    assert usable()


def test_a_raise_the_forward_catches_is_no_check(session):
    """Review (2026-12-07): the raise inside a try in the failing branch
    counted as a check, so a call torch runs through raised."""
    with pytest.raises(NotImplementedError, match=r"if x.size\(0\) > 2:.*a branch on a size"):
        cryptgpu.nn.from_pytorch(Caught(), torch.zeros(1, 2))
    assert usable()
