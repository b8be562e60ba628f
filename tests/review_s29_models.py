"""A model defined next to a global whose ``__getattr__`` raises KeyError
(tests/test_review_s29.py, S2-a: fx's undo asked it and broke conversion)."""

from torch import nn


class Config:
    """A config object of the pattern that answers a missing name with
    KeyError, at module level next to the model (S2-a)."""

    def __init__(self):
        self._d = {"scale": 2.0}

    def __getattr__(self, k):
        return self._d[k]


CFG = Config()


class Plain(nn.Module):
    """A linear layer doubled."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x) * 2.0


class Gen(nn.Module):
    """A size check holding a generator (S3-b; here: pytest rewrites a test
    file's asserts)."""

    def forward(self, x):
        assert x.size(1) in (4, 6) and all(s > 0 for s in x.shape), "gen"
        return x * 2


class Chain(nn.Module):
    """A size check holding a chained comparison (S3-b)."""

    def forward(self, x):
        assert 2 <= x.size(1) <= 5 or x.size(0) == 7, "chain"
        return x * 2
