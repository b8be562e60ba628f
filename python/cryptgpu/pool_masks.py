"""The one-hot window masks that max pooling returns with ``return_indices``
(CrypTen's form): shape [N, C, OH, OW, kh, kw], the hot slot at the window
position of the maximum, ties to the first in-bounds maximum in row-major
window order, as torch's indices; a padding slot is never hot.
"""

from __future__ import annotations

import torch

from ._plain import check_positions


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


def adaptive_max_with_mask(x, oh: int, ow: int):
    """(values, mask) of ``F.adaptive_max_pool2d`` on an NCHW input whose
    windows differ in size: each of torch's windows gathered into kh x kw
    slots (kh, kw the largest window's), a short window's extra slots
    repeating its last row or column, which come after their source in
    row-major order and so never win a tie; one tournament per window.
    Recorded through the gather and the maximum (the gradient goes to the
    selected element)."""
    h, w = x.shape[-2], x.shape[-1]
    rows, cols = adaptive_bounds(h, oh), adaptive_bounds(w, ow)
    kh = max(b - a for a, b in rows)
    kw = max(b - a for a, b in cols)
    check_positions(x.numel() // (h * w) * oh * ow * kh * kw, "adaptive_max_pool2d")
    r = torch.tensor([[a + min(j, b - a - 1) for j in range(kh)] for a, b in rows])
    c = torch.tensor([[a + min(j, b - a - 1) for j in range(kw)] for a, b in cols])
    # flat input position of slot (i, j, u, v): row r[i, u], column c[j, v]
    flat = r[:, None, :, None] * w + c[None, :, None, :]  # oh, ow, kh, kw
    y = x.flatten(-2).index_select(-1, flat.reshape(-1))
    v, a = y.reshape(tuple(x.shape[:-2]) + (oh, ow, kh * kw)).max(-1)
    return v, a.reshape(tuple(a.shape[:-1]) + (kh, kw))
