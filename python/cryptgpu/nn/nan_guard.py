"""``torch.nan_to_num`` after a masked softmax in a converted forward: the
usual guard of hand-written attention,
``nan_to_num(softmax(s.masked_fill(mask, -inf)), nan=0.0)``.

Shares are finite, so ``nan_to_num`` of a private tensor is a copy
(SharedTensor.nan_to_num). But where torch's scores are -inf along a
whole row, torch's softmax gives NaN there and its nan_to_num then gives
``nan`` (0 by default), while ours (a masked score is -1e4, masks.py) gives
equal weights. The positions torch holds at -inf are public (the mask's),
so in a converted forward such a row becomes ``nan`` as torch's, exactly
(a product by a public 0/1 and a public addition); a log_softmax's other
-inf entries become ``neginf`` where it is given (torch's default, the
dtype's lowest value, has no fixed-point encoding: they keep our masked
value, about -1e4).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from ..tensor import SharedTensor

_SOFTMAX = {torch.softmax, F.softmax, torch.special.softmax}
_LOG_SOFTMAX = {torch.log_softmax, F.log_softmax}
_CASTS = {"float", "double", "to", "type_as", "contiguous"}


def guarded(args: tuple, node, env: dict) -> tuple:
    """``args`` of a private op (graph ``node``; ``env``: the values so
    far); for a ``nan_to_num`` of a softmax or log_softmax whose input
    holds public -inf entries filling whole rows (along its dim), the
    private operand with those rows set to ``nan`` (see the module's text)."""
    if node.target not in (torch.nan_to_num, "nan_to_num") or not args:
        return args
    y = args[0]
    found = _softmax(node.args[0]) if isinstance(y, SharedTensor) else None
    if found is None:
        return args
    src, dim, log = found
    inf = _minus_inf(src, env)
    if inf is None:
        return args
    try:
        inf = torch.broadcast_to(inf, tuple(y.shape))
        full = inf.all(dim, keepdim=True).expand_as(inf)
    except (RuntimeError, IndexError):  # shapes torch itself would refuse
        return args
    nan = _arg(node, args, env, 1, "nan", 0.0)
    fill = full.double() * (0.0 if nan is None else float(nan))
    drop = full
    neginf = _arg(node, args, env, 3, "neginf", None) if log else None
    if neginf is not None:
        part = inf & ~full
        fill, drop = fill + part.double() * float(neginf), full | part
    if not bool(drop.any()):
        return args
    return (y * (~drop).long() + fill, *args[1:])


def _arg(node, args: tuple, env: dict, i: int, name: str, default):
    return args[i] if len(args) > i else _value(node.kwargs.get(name, default), env)


def _value(a, env: dict):
    """A node's value so far (None where it has none), or the constant ``a``."""
    return env.get(a.name) if isinstance(a, torch.fx.Node) else a


def _through(n):
    """The node a cast of ``n`` (``.float()``, ``.to(...)``) casts."""
    while isinstance(n, torch.fx.Node) and n.op == "call_method" and n.target in _CASTS:
        n = n.args[0]
    return n


def _softmax(n):
    """(its input, its dim, whether a log_softmax) for a softmax node
    (function, method or nn.Softmax layer; through casts), else None."""
    n = _through(n)
    if not isinstance(n, torch.fx.Node) or not n.args:
        return None
    dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    if n.op == "call_module":
        owner = n.graph.owning_module
        m = None if owner is None else dict(owner.named_modules()).get(n.target)
        if not isinstance(m, (torch.nn.Softmax, torch.nn.LogSoftmax)):
            return None
        dim, log = m.dim, isinstance(m, torch.nn.LogSoftmax)
    elif n.target in _SOFTMAX or n.target == "softmax":
        log = False
    elif n.target in _LOG_SOFTMAX or n.target == "log_softmax":
        log = True
    else:
        return None
    return (n.args[0], dim, log) if isinstance(dim, int) else None


def _is_minus_inf(v, env: dict) -> bool:
    """Whether the fill ``v`` is -inf: a Python number compared in float64
    (torch.as_tensor would make float32, where float64's lowest value,
    a finite fill, overflows to -inf), a public tensor in its own dtype."""
    v = _value(v, env)
    if isinstance(v, SharedTensor):
        return False
    if isinstance(v, (int, float)):
        return v == -math.inf
    if not torch.is_tensor(v):
        return False
    return v.is_floating_point() and v.numel() > 0 and bool(torch.isneginf(v).all())


def _minus_inf(n, env: dict, depth: int = 0):
    """Where torch's value of node ``n`` is -inf by a public mask: a public
    bool tensor (broadcastable to its shape), or None where none is known.
    Follows ``masked_fill(cond, -inf)``, ``torch.where(cond, x, -inf)``, the
    addition of a public float mask with -inf entries, casts, and products
    and quotients by a positive number."""
    n = _through(n)
    if not isinstance(n, torch.fx.Node) or depth > 8:
        return None
    t, a = n.target, n.args

    def inner(x):
        got = _minus_inf(x, env, depth + 1)
        return False if got is None else got

    def known(mask):
        return None if mask is False else mask

    if t == "masked_fill" and len(a) == 3 and _is_minus_inf(a[2], env):
        cond = _value(a[1], env)
        return known(inner(a[0]) | cond) if torch.is_tensor(cond) else None
    if t is torch.where and len(a) == 3:
        cond = _value(a[0], env)
        if not torch.is_tensor(cond):
            return None
        if _is_minus_inf(a[2], env):
            return known(inner(a[1]) | ~cond)
        if _is_minus_inf(a[1], env):
            return known(inner(a[2]) | cond)
        return None
    if t in (operator.add, torch.add, "add") and len(a) == 2:
        found = []
        for x in a:
            v = _value(x, env)
            if torch.is_tensor(v) and not isinstance(v, SharedTensor) and v.is_floating_point():
                found.append(torch.isneginf(v))
            else:
                found.append(inner(x))
        out = found[0] | found[1]
        return out if torch.is_tensor(out) else None
    if t in (operator.truediv, operator.mul, "div", "mul") and len(a) == 2:
        k = a[1]
        if isinstance(k, (int, float)) and not isinstance(k, bool) and 0 < k < math.inf:
            return _minus_inf(a[0], env, depth + 1)
    return None
