"""Models for test_probe_oh_checks.py kept out of the test file, whose
asserts pytest rewrites: here ``and``/``or``/``in`` compile as in a
user's module (probe OH, 2026-12-07)."""

import torch


class InTuple(torch.nn.Module):
    def forward(self, x):
        assert x.size(1) in (2, 3), "2 or 3 channels"
        return x * 2


class InListReversed(torch.nn.Module):
    def forward(self, x):
        assert x.size(1) in [3, 2], "2 or 3 channels"
        return x * 2


class InRange(torch.nn.Module):
    def forward(self, x):
        assert x.size(1) in range(1, 4), "1 to 3 channels"
        return x * 2


class NotInList(torch.nn.Module):
    def forward(self, x):
        assert x.size(1) not in [4, 5], "not 4 or 5"
        return x * 2


class IfNotIn(torch.nn.Module):
    def forward(self, x):
        if x.size(1) not in (2, 3):
            raise ValueError("channels")
        return x * 2


class InSet(torch.nn.Module):
    def forward(self, x):
        assert x.size(1) in {6, 8}, "bad"
        return x * 2


class IfAnd(torch.nn.Module):
    """The probe's: `and` whose first operand is false on the dummy."""

    def __init__(self):
        super().__init__()
        self.block_size = 8

    def forward(self, x):
        if x.size(1) > self.block_size and x.size(0) > 1:
            raise ValueError("too long for a batch")
        return x * 2


class AssertOr(torch.nn.Module):
    def forward(self, x):
        assert x.size(1) == 2 or x.size(1) == 5, "2 or 5"
        return x * 2


class IfNotOr(torch.nn.Module):
    def forward(self, x):
        if not (x.size(1) == 2 or x.size(1) == 5):
            raise ValueError("2 or 5")
        return x * 2


class MultiLine(torch.nn.Module):
    def forward(self, x):
        if (x.size(1) != 2
                and x.size(1) != 3):  # fmt: skip
            raise ValueError("channels")
        return x * 2


class Mixed(torch.nn.Module):
    """Membership inside and/or, in a loop (one check per pass)."""

    def forward(self, x):
        for i in range(2):
            assert x.size(1) in (2, 3) and (x.size(0) > i or x.dim() == 3), "loop %d" % i  # noqa: UP031
        return x * 2


class Formatted(torch.nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):
        if self.how == "%":
            assert x.size(-1) == 4, "expected %d features, got %d" % (4, x.size(-1))  # noqa: UP031
        elif self.how == "format":
            assert x.size(-1) == 4, "expected {} features, got {}".format(4, x.size(-1))  # noqa: UP032
        elif self.how == "f":
            if x.size(-1) != 4:
                raise ValueError(f"expected 4 features, got {x.size(-1)}")
        else:  # a message of a non-size: left out, not its template
            assert x.size(-1) == 4, "expected {}, dtype {}".format(4, x.dtype)  # noqa: UP032
        return x * 2


class IsTensor(torch.nn.Module):
    def forward(self, x):
        assert isinstance(x, torch.Tensor)
        return x * 2


class IfNotTensor(torch.nn.Module):
    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError("x must be a tensor")
        return x * 2


class NoGrad(torch.nn.Module):
    def forward(self, x):
        assert x.requires_grad is False
        return x * 2


class SetItem(torch.nn.Module):
    def forward(self, x):
        h = x * 2
        h[:, 0] = 0
        return h
