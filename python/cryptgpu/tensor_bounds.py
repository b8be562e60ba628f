"""Public comparison operands and clamp bounds beyond the encoding's range.

A shared value is a ring word x 2^f, and the encoding refuses a public
value at or beyond 2^(63-2f) (2^31 at f = 16) and every infinite or NaN
one. A comparison of a shared x with such a public c still has torch's
answer: the sign of x - c is the comparison's, exact while
|x - c| < 2^(63-f) (the sign bit of the ring word, ``lt``'s docstring).
So c is held as its exact ring words round(c 2^f) (a public sharing of
the word 1 times c 2^f as a public integer: local, no truncation, no
message), after ``far`` (2^(62-f), 2^46 at f = 16) is put in place of
anything beyond it: +-inf, 1e20. For every shared |x| < 2^(62-f), far
beyond the encoding's range, x - c then keeps its sign and stays inside
2^(63-f). A NaN operand has torch's answer (every comparison False,
``!=`` True), set on the result's bit at those positions from public
0/1 factors.

Nothing here runs for an operand that encodes: the ordinary comparison
is tried first and only its EncodingError (raised before any message)
comes here.
"""

from __future__ import annotations

import numpy as np
import torch

from ._native import EncodingError
from ._plain import _ibuf
from .tensor_base import TensorBase


def far(f: int) -> float:
    """The stand-in for a public value beyond every shared one: 2^(62-f)."""
    return 2.0 ** (62 - f)


def encodes(c, f: int) -> bool:
    """Whether every value of the public ``c`` (a number or array) encodes
    at ``f`` fractional bits: finite and below 2^(63-2f)."""
    a = _as_array(c)
    if a is None:  # not a real value: not ours to hold
        return True
    return bool(np.isfinite(a).all()) and (
        a.size == 0 or float(np.abs(a).max()) < 2.0 ** (63 - 2 * f)
    )


def beyond_64_bits(v) -> bool:
    """A Python int outside [-2^63, 2^64): torch cannot compare with it
    (OverflowError); its EncodingError stays."""
    return isinstance(v, int) and not -(2**63) <= v < 2**64


def exact_public(x: TensorBase, c) -> TensorBase:
    """A public sharing of ``c`` (finite, |c| <= 2^(62-f)) as its exact
    ring words in ``x``'s session, of c's shape: the word 1 times
    round(c 2^f) as public integers (local)."""
    s = x._s()
    f = s.precision_bits
    a = np.asarray(c, dtype=np.float64)
    words = np.rint(np.ascontiguousarray(a) * 2.0**f).astype(np.int64)
    one = x._public(np.full(a.shape, 2.0**-f))  # encodes as the word 1
    if a.size == 0:
        return one
    return x._wrap(s.mul_public_int(one._t, _ibuf(words.reshape(-1))))


def minus_far(x: TensorBase, other, what: str):
    """(x - other, NaN positions or None) for a comparison of ``x`` with a
    plaintext ``other`` that does not encode: values beyond ``far`` (and
    +-inf) replaced by +-far, NaN by 0 (its positions returned, a bool
    array of other's shape, or None when it has none)."""
    c = x._plain(other, what)
    if c.dtype.kind not in "fiu":
        raise EncodingError(f"{what}: a public operand of dtype {c.dtype} cannot be compared")
    c = c.astype(np.float64)
    nan = np.isnan(c)
    lim = far(x._s().precision_bits)
    c = np.clip(np.where(nan, 0.0, c), -lim, lim)
    return x.sub(exact_public(x, c)), (nan if nan.any() else None)


def nan_is(bit: TensorBase, nan, value: int) -> TensorBase:
    """A comparison's 0/1 ring-integer ``bit`` with ``value`` (torch's
    answer for NaN) at the positions ``nan`` (None: none)."""
    if nan is None:
        return bit
    s = bit._s()
    nan = np.broadcast_to(nan, tuple(bit.shape))
    keep = bit._wrap(s.mul_public_int(bit._t, _ibuf((~nan).reshape(-1))))
    if not value:
        return keep
    return keep + bit._public(nan.astype(np.float64) * 2.0**-s.precision_bits)


def clamp_bound(v, side: str, f: int):
    """A public clamp bound that does not encode, as a float64 tensor
    ``clamp`` can use with :func:`plus`: on its own side (a max at +inf
    or beyond ``far``, a min at -inf or below -far) it bounds no shared
    value and is put at +-far; NaN, or a bound beyond far on the other
    side (the result itself would be beyond every share), is EncodingError.
    A bound that encodes (or a shared one) is returned as it is."""
    if v is None or isinstance(v, TensorBase) or encodes(v, f):
        return v
    a = torch.as_tensor(_as_array(v), dtype=torch.float64)
    lim = far(f)
    sign = 1.0 if side == "max" else -1.0
    if bool(torch.isnan(a).any()) or bool((a * sign <= -lim).any()):
        bad = a[torch.isnan(a) | (a * sign <= -lim)].reshape(-1)[0].item()
        raise EncodingError(
            f"clamp with a bound of {bad} as {side}: a share cannot hold the result"
        )
    return a.clamp(-lim, lim)


def _as_array(v):
    """A real plaintext value as a float64 array; None for anything else (a
    complex value, a string: the ordinary path raises its own error)."""
    if isinstance(v, torch.Tensor):
        if v.is_complex():
            return None
        return v.detach().to(torch.float64).numpy()
    a = np.asarray(v)
    return a.astype(np.float64) if a.dtype.kind in "biuf" else None


def plus(x: TensorBase, c) -> TensorBase:
    """x + c for a public ``c``: the ordinary sum where c encodes, else
    c's exact ring words (|c| <= far) added (broadcasting)."""
    f = x._s().precision_bits
    if encodes(c, f):
        return x + c
    return x + exact_public(x, _as_array(c))
