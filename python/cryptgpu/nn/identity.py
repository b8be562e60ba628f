"""torch.nn.Identity: returns its input (its home until 2026-12-07 was
layers.py, which re-exports it)."""

from __future__ import annotations

from .module import Module


class Identity(Module):
    """Returns its input (of any type, as torch's). Its arguments are taken
    and ignored, as torch's (``nn.Identity(54, unused_argument1=0.1)``, its
    documentation's example; until 2026-12-07 a TypeError)."""

    _tensor_first = False

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        """Returns ``x`` unchanged."""
        return x
