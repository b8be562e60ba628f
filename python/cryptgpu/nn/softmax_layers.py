"""torch.nn.Softmax and LogSoftmax, converted: softmax over ``dim``
privately (CrypTen's approximation); ``dim=None`` is torch's legacy
implicit choice, with torch's deprecation warning (as ``F.softmax(x)``,
``F.log_softmax(x)`` and ``F.softmin(x)``: one rule, ``_plain.softmax_dim``)."""

from __future__ import annotations

from .._plain import softmax_dim
from .module import Module
from .stats import SOFTMAX


class Softmax(Module):
    """softmax over ``dim``, privately (CrypTen's approximation)."""

    kind = SOFTMAX
    _name = "softmax"

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def _dim(self, x) -> int:
        # torch's implicit dim (deprecated there): 0 for 0-, 1- and 3-D inputs, else 1
        return softmax_dim(self._name, self.dim, x.dim(), 5)

    def forward(self, x):
        """softmax(x) over ``self.dim``."""
        return x.softmax(self._dim(x))


class LogSoftmax(Softmax):
    """log_softmax over ``dim``, privately."""

    _name = "log_softmax"

    def forward(self, x):
        """log_softmax(x) over ``self.dim``."""
        return x.log_softmax(self._dim(x))
