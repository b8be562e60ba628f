"""Rounding of shared values, exactly: ``floor``, ``ceil``, ``trunc``,
``frac``, and division by a public divisor with torch's rounding modes
(``x // d``, ``torch.div(x, d, rounding_mode="floor" | "trunc")``,
``floor_divide``) and its remainders (``x % d``, ``remainder``, ``fmod``).

Method (ours). With x held as the ring integer X = x 2^f and a public
divisor d on the fixed-point grid (D = d 2^f a whole number: any integer,
0.5, 0.25, 1.5, ...), one exact truncation gives an integer Q within 2 of
X / D (within 1 for D a power of two, ``trunc.rs``). The rest R = X - Q D
is exact as ring integers and lies within 2 D (D) of 0, so the rounding
mode's integer is Q plus or minus a few indicators [R < j D], all taken in
one batched comparison call: floor(X / D) = Q - [R < 0] for a power of
two, Q + [R >= D] - [R < 0] - [R < -D] otherwise; ceil alike; trunc picks
floor or ceil by [x < 0] (one more ring product). No approximation: the
result is torch's for every encodable x. Cost: 2 rounds for Q, one
comparison call (10 rounds), and 1 more for trunc.

A shared divisor (``x // y``) would need the fixed-point quotient, which
is off by units of 2^-f: its floor would be wrong next to every integer,
so it is refused (NotImplementedError), as a divisor off the grid is
(``x // 0.1``: 0.1 is not a multiple of 2^-f). ``round`` (ties to even)
takes floor(x + 1/2) and the tie test x - 1/2 = 0 mod 2 together
(:func:`_half_even`). torch's gradients: zero for the rounded results, 1
for the remainders and ``frac``.
"""

from __future__ import annotations

import numpy as np

from . import autograd as ag
from ._plain import DivisionByZeroError, _ibuf
from .tensor_base import TensorBase

MODES = ("floor", "ceil", "trunc")


def _divisor(x, other, what: str):
    """(x broadcast as torch would, D = d 2^f as an int) for a public
    divisor holding one value on the fixed-point grid."""
    if isinstance(other, TensorBase):
        refuse_shared_divisor(what)
    _, yp = x._other(other, what)
    if yp.size and not np.isfinite(yp).all():
        bad = yp.ravel()[~np.isfinite(yp.ravel())][0]
        raise NotImplementedError(f"{what} of a SharedTensor by {bad}: fixed point has no {bad}")
    if yp.size and not np.all(yp == yp.flat[0]):
        raise NotImplementedError(f"{what} of a SharedTensor by a tensor of different divisors")
    shape = tuple(x._bcast_shape(yp.shape))
    if shape != tuple(x.shape):
        x = x.expand(shape)  # recorded: the gradient sums back
    if yp.size == 0:
        return x, None
    d = float(yp.flat[0])
    if d == 0:
        raise DivisionByZeroError(f"{what} of a SharedTensor by zero")
    f = x._s().precision_bits
    big = d * 2.0**f
    if not np.isfinite(big) or not big.is_integer() or abs(big) >= 2.0**46:
        raise NotImplementedError(
            f"{what} by {d}: the divisor must be a multiple of 2^-{f} below 2^{46 - f} in "
            "magnitude (an integer, 0.5, 1.25, ...), where the result is exact"
        )
    return x, int(big)


def refuse_shared_divisor(what: str):
    """NotImplementedError for a SharedTensor divisor (``x // y``, ``7 % x``)."""
    raise NotImplementedError(
        f"{what} by a SharedTensor: only a public divisor is exact (x // 2, x % 1.5); "
        "x / y gives the fixed-point quotient"
    )


def _ring_int(x, value: int):
    """A public ring integer shaped like x (its word is ``value``)."""
    return x._public_like(value * 2.0 ** -x._s().precision_bits)


def quotient(x, big: int, mode: str):
    """mode(X / D) (floor, ceil or trunc) as a SharedTensor of ring
    integers (the value n held as the word n), nothing recorded."""
    s = x._s()
    if big < 0:  # the same quotient of -X by -D
        x, big = x.neg(), -big
    q = x._wrap(s.div_public_int_exact(x._t, big, False))
    rest = x._wrap(s.sub(x._t, s.mul_public_int(q._t, _ibuf(np.array([big], dtype=np.int64)))))
    d = big * 2.0**-s.precision_bits  # rest - j d is R - j D as ring integers
    spread = 1 if big & (big - 1) == 0 else 2
    lows = [rest + j * d for j in range(spread)]  # [R < -jD]
    highs = [rest - j * d for j in range(1, spread)]  # 1 - [R - jD < 0] = [R >= jD]
    ups = [(rest - j * d).neg() for j in range(spread)]  # [R > jD]
    downs = [(rest + j * d).neg() for j in range(1, spread)]  # 1 - [..] = [R <= -jD]
    parts = {"floor": lows + highs, "ceil": ups + downs}
    parts["trunc"] = parts["floor"] + parts["ceil"] + [x]
    flat = parts[mode]
    bits = x._cat([t.unsqueeze(0) for t in flat], 0)._ltz_bit("round")

    def tally(first: int, sign: int):
        """floor (sign -1) or ceil (+1) from its 2 spread - 1 bits at
        ``first``: Q -+ their sum +- (spread - 1), the complements' ones."""
        total = bits[first : first + 2 * spread - 1].sum(0)
        out = q + total if sign > 0 else q - total
        return out if spread == 1 else out - _ring_int(q, sign * (spread - 1))

    if mode == "floor":
        return tally(0, -1)
    if mode == "ceil":
        return tally(0, 1)
    lo, hi = tally(0, -1), tally(2 * spread - 1, 1)
    neg = bits[len(flat) - 1]
    return lo + lo._wrap(s.mul_int(neg._t, (hi - lo)._t))  # [x < 0] picks ceil


def _fixed(n):
    """Ring integers n as the fixed-point values n (times 2^f, local)."""
    s = n._s()
    return n._wrap(s.mul_public_int(n._t, _ibuf(np.array([1 << s.precision_bits]))))


def _recorded(out, x, through: bool):
    """torch's gradient: zero for a rounded value, 1 for a remainder."""
    if through:
        ag.record(out, (x,), lambda g: (g,))
    else:
        ag.record(out, (x,), lambda g: (g * 0,))
    return out


def rounded(x, other, mode: str, what: str):
    """mode(x / other) for a public ``other`` (1 for floor / ceil / trunc)."""
    xb, big = _divisor(x, other, what)  # (a broadcast is recorded as such)
    recorded = ag.needs_grad(xb)
    with ag.inside(recorded):
        out = xb * 0 if big is None else _fixed(quotient(xb, big, mode))
    return _recorded(out, xb, False) if recorded else out


def remainder(x, other, mode: str, what: str):
    """x - d mode(x / d): ``%`` / ``remainder`` with mode "floor" (the
    divisor's sign), ``fmod`` with "trunc" (the dividend's sign)."""
    xb, big = _divisor(x, other, what)
    recorded = ag.needs_grad(xb)
    with ag.inside(recorded):
        if big is None:
            out = xb * 0
        else:
            n = quotient(xb, big, mode)
            s = xb._s()
            prod = s.mul_public_int(n._t, _ibuf(np.array([big], dtype=np.int64)))
            out = xb._wrap(s.sub(xb._t, prod))
    return _recorded(out, xb, True) if recorded else out


def by_mode(x, other, mode):
    """``x.div(other, rounding_mode=mode)`` for "floor" and "trunc"."""
    if mode not in ("floor", "trunc"):
        raise RuntimeError(
            f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found {mode!r}"
        )
    return rounded(x, other, mode, f"div with rounding_mode={mode!r}")


def round_even(x, decimals: int = 0):
    """torch's ``round`` (ties to even) and ``round(decimals=d)`` for d > 0,
    as round(x 10^d) / 10^d: the product exact (integer), the division by
    10^d the exact truncation (within 2 units of 2^-f of torch's)."""
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool):
        raise TypeError(f"round(): argument 'decimals' must be int, not {type(decimals).__name__}")
    if decimals < 0:
        raise NotImplementedError(
            "round with decimals < 0 on a SharedTensor (x / 10^k is not exact in fixed point)"
        )
    recorded = ag.needs_grad(x)
    with ag.inside(recorded):
        y = x * (10 ** int(decimals)) if decimals else x
        out = _fixed(_half_even(y))
        if decimals:
            out = out / (10 ** int(decimals))
    return _recorded(out, x, False) if recorded else out


def _half_even(x):
    """round(x), ties to even, as ring integers: floor(x + 1/2), one less
    where x - 1/2 is a multiple of 2 (the tie below an odd integer). Both
    quotients by 2 (2x + 1 and x - 1/2, stacked) in one exact truncation,
    their rests against 0 in one comparison call: 12 rounds."""
    s = x._s()
    two = 2 << s.precision_bits  # 2 as ring units: the divisor of both
    both = x._cat([(x * 2 + 1.0).unsqueeze(0), (x - 0.5).unsqueeze(0)], 0)
    q = both._wrap(s.div_public_int_exact(both._t, two, False))
    prod = s.mul_public_int(q._t, _ibuf(np.array([two], dtype=np.int64)))
    rest = both._wrap(s.sub(both._t, prod))  # within 2 of 0, a power of two's
    bits = x._cat([rest[0:1], rest[1:2], rest[1:2].neg()], 0)._ltz_bit("round")
    # floor(x + 1/2) = Q1 - [R1 < 0]; the tie: R2 == 0, 1 - [R2 < 0] - [R2 > 0]
    return q[0] - bits[0] - _ring_int(q[0], 1) + bits[1] + bits[2]
