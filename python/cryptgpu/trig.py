"""sin and cos of a shared tensor (``torch.sin`` / ``torch.cos``, CrypTen's
``x.sin()`` / ``x.cos()`` / ``x.cossin()``).

Method (ours; CrypTen raises e^(ix/2^n) to the 2^n-th power by repeated
complex squaring, whose error grows with |x|):

1. Turns, for free. With x held as the ring integer X = x 2^f, the public
   integer K = round(2^(64 - f) / (2 pi)) makes X K mod 2^64 the fraction
   of a turn x / (2 pi) mod 1 at 64 bits: the ring's own wrap takes the
   whole turns away, locally, for every |x| the encoding allows (K's
   rounding, half a unit at most, would be 2.4e-5 radians at |x| = 2^31;
   the K of f = 16 is 0.023 units off: 1.1e-6 radians).
2. 29 bits of it. Dividing that by 2^35 (one exact truncation, 2 rounds)
   leaves w, the turn fraction at F = 29 fractional bits. The value is
   spread over the whole ring, so the truncation's wrap corrections may be
   off, but only by whole multiples of 2^64 / 2^35, i.e. whole turns,
   which sin and cos ignore: w is right modulo 1 within one unit of
   2^-29, and lies in [-1.25, 1.75) (the halves' quotients, the correction
   and the bias; ``trunc.rs``).
3. An eighth of the angle, phi = (pi / 4) w in (-1.38, 1.38): cos phi
   and sin phi / w by Taylor polynomials in u = w^2 (degrees 6 and 5,
   within 1e-9 there), both in one stacked Horner evaluation at F bits,
   where a product's truncation costs 2^-29, not 2^-f.
4. Three double-angle steps, each one stacked product [c - s, 2s] times
   [c + s, c] = [cos 2phi, sin 2phi]; the last one as a ring product (1
   round) truncated exactly to f bits (mul_shift's shift stops at 16).

Every truncation inside is exact whatever the session's mode (products of
magnitude up to 2^60 at F bits, which the probabilistic protocol fails
about 1 time in 8). F is 29, but at most f + 16 and at least f
(:func:`_bits`). Cost: 23 rounds; per element P0 sends 62 ring
elements, P1 42 and P2 37 (``tests/test_trig.py`` counts the rounds and
P0's). Measured within 1.0 units of 2^-f of torch's float64 sin / cos of
the encoded input for |x| from 1 to 2^31 at f = 16 (2.3 units at f = 24,
8 at f = 28 and 16 at f = 30, where F = f leaves no extra bits).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import _session
from . import autograd as ag
from ._plain import _ibuf


def _bits(f: int) -> int:
    """F: fractional bits of the turn fraction and the polynomial work (29,
    or f where f is more; at most f + 16, mul_shift's largest shift)."""
    return max(f, min(29, f + 16))


_PHI = math.pi / 4  # phi = (2 pi w) / 8: three doublings give 2 pi w

# cos phi = a0 + u (a1 + a2 u + ... + a6 u^5), sin phi = w (b0 + ... + b5 u^5)
_COS = [(-1) ** k * _PHI ** (2 * k) / math.factorial(2 * k) for k in range(7)]
_SIN = [(-1) ** k * _PHI ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(6)]


def _force_exact(session) -> None:
    """Exact truncation for the next engine calls whatever the mode; the
    next operation's ``_s()`` sets the mode's own choice again
    (``_session.sync_truncation``)."""
    if not _session._ctx.exact_now:
        session.set_exact_truncation(True)
        _session._ctx.exact_now = True


def _rows(values, like, F: int):
    """A public [2, 1, ...] tensor of two row constants (cos's, sin's), in
    units that put c at 2^F in the ring (c 2^(F - f) at f bits)."""
    f = like._s().precision_bits
    t = torch.tensor(values, dtype=torch.float64) * 2.0 ** (F - f)
    return t.reshape(2, *([1] * (like.dim() - 1)))


def _mul(s, a, b, shift: int):
    """a * b / 2^(f + shift) with one exact truncation (same shapes)."""
    _force_exact(s)  # (each SharedTensor operation in between sets the mode's)
    return a._wrap(s.mul_shift(a._t, b._t, shift))


def _cossin_raw(x):
    """(cos x, sin x) as SharedTensors at f bits, nothing recorded."""
    from .tensor_shape import cat

    s = x._s()
    f = s.precision_bits
    F = _bits(f)
    k = np.array([round(2.0 ** (64 - f) / (2 * math.pi))], dtype=np.int64)
    turns = x._wrap(s.mul_public_int(x._t, _ibuf(k)))  # x / (2 pi) mod 1 at 64 bits
    w = x._wrap(s.div_public_int_exact(turns._t, 1 << (64 - F), False))
    u = _mul(s, w, w, F - f)
    w2, u2 = w.unsqueeze(0), u.unsqueeze(0)
    z = cat([u2, u2], 0)
    # first Horner step: [a6, b5] u + [a5, b4], a public integer product
    top = np.array([round(_COS[6] * 2.0**F), round(_SIN[5] * 2.0**F)], dtype=np.int64)
    top = np.broadcast_to(top.reshape(2, *([1] * x.dim())), z.shape)
    acc = z._wrap(s.mul_public_int(z._t, _ibuf(np.ascontiguousarray(top).ravel())))
    acc = acc._wrap(s.div_public_int_exact(acc._t, 1 << F, False))
    acc = acc + _rows([_COS[5], _SIN[4]], z, F)
    for kc, ks in ((4, 3), (3, 2), (2, 1), (1, 0)):
        acc = _mul(s, acc, z, F - f) + _rows([_COS[kc], _SIN[ks]], z, F)
    acc = _mul(s, acc, cat([u2, w2], 0), F - f) + _rows([_COS[0], 0.0], z, F)
    for last in (False, False, True):
        c, sn = acc[0:1], acc[1:2]
        a, b = cat([c - sn, sn * 2], 0), cat([c + sn, c], 0)
        if last:  # the ring product (1 round), then to f bits (2 rounds)
            acc = a._wrap(s.mul_int(a._t, b._t))
            acc = acc._wrap(s.div_public_int_exact(acc._t, 1 << (2 * F - f), False))
        else:
            acc = _mul(s, a, b, F - f)
    return acc[0], acc[1]


def cossin(x):
    """(cos x, sin x) of a shared x, as CrypTen's ``x.cossin()`` (its
    method; torch has none): one evaluation gives both (module docstring).
    Under autograd each output is recorded with the other as its
    derivative."""
    recorded = ag.needs_grad(x)
    with ag.inside(recorded):
        c, s = _cossin_raw(x)
    if recorded:
        ag.record(c, (x,), lambda g: (-(g * s),))
        ag.record(s, (x,), lambda g: (g * c,))
    return c, s


def cos(x):
    """cos x of a shared x, as ``torch.cos``: :func:`cossin`'s first;
    its gradient -sin x from the same evaluation."""
    return cossin(x)[0]


def sin(x):
    """sin x of a shared x, as ``torch.sin``: :func:`cossin`'s second;
    its gradient cos x from the same evaluation."""
    return cossin(x)[1]
