"""Models for test_size_checks.py kept out of the test file, whose
asserts pytest rewrites (a compound ``assert a and b`` then traces as
other code): here they compile as a user's module does."""

import torch


class Named(Exception):
    """A check's exception whose __init__ takes other arguments."""

    def __init__(self, want, got):
        super().__init__(f"want {want}, got {got}")


class Kinds(torch.nn.Module):
    """Checks raising an attribute's class, a two-argument class, and
    checks written with and/or and inside a no_grad block."""

    def __init__(self):
        super().__init__()
        self.Error = KeyError

    def forward(self, x):
        if x.size(0) > 3:
            raise self.Error("batch too big")
        assert x.dim() == 2 and x.size(1) >= 2, "need [B, >= 2]"
        if x.size(1) > 6 or x.size(1) == 5:
            raise Named(6, x.size(1))
        with torch.no_grad():
            assert x.size(1) != 3, "not 3"
        return x * 2


class Caught(torch.nn.Module):
    """A raise on sizes that the forward catches itself: not a check."""

    def forward(self, x):
        if x.size(0) > 2:
            try:
                raise ValueError("caught below")
            except ValueError:
                pass
        return x * 2
