"""The one-hot window masks that max pooling returns with ``return_indices``
(CrypTen's form): shape [N, C, OH, OW, kh, kw], the hot slot at the window
position of the maximum, ties to the first in-bounds maximum in row-major
window order, as torch's indices; a padding slot is never hot.
"""

from __future__ import annotations

import torch


def adaptive_bounds(n: int, o: int) -> list:
    """torch's adaptive windows of n positions into o: [start, end) each."""
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def off_padding(mask, hw, k, st, pad, dil):
    """The engine's window mask (``pool_windows``: [N, C, OH, OW, kh*kw], a
    padded slot holding a copy of its window's first in-bounds element, so
    that a tie can mark it) with every padded slot's mark moved to that
    first in-bounds slot, reshaped to [N, C, OH, OW, kh, kw]. Local: two
    products with public 0/1 factors (exact) and a sum."""
    if pad != (0, 0):
        h, w = hw
        pos = torch.arange(1, h * w + 1, dtype=torch.float64).reshape(1, 1, h, w)
        cols = torch.nn.functional.unfold(pos, k, dil, pad, st)[0]  # kh*kw, OH*OW; 0: padding
        oh, ow = mask.shape[-3], mask.shape[-2]
        inside = (cols.T > 0).reshape(oh, ow, k[0] * k[1])
        first = torch.nn.functional.one_hot(inside.to(torch.int64).argmax(-1), k[0] * k[1])
        on_pad = (mask * (~inside).double()).sum(-1, keepdim=True)
        mask = mask * inside.double() + on_pad * first.double()
    return mask.reshape(tuple(mask.shape[:-1]) + tuple(k))
