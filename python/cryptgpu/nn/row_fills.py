"""A hand-written masked softmax in a converted forward, weighed as float64
torch weighs it: ``softmax(s.masked_fill(causal, -inf) + (1 - pad) * -1e4)``,
``torch.where(m, s, -1e9)``, ``(s + mask) * scale``.

The fills are public, so each entry of the softmax's input is known in
public to be either a fill (a public value, maybe -inf) or a private score
plus a public offset, ``k * s + a``. Per row, torch's weights depend only
on those public values' differences to the row's largest one, ``A`` (the
scores themselves are moderate): an entry 1e4 or more below ``A`` (-inf
included) has weight 0 (e^-1e4 in float64), and the others are weighed by
``k * s + (a - A)`` (a fill by ``value - A``). :func:`resolved` follows
the fills from the softmax back to the scores ``s`` (masked_fill,
torch.where, additions and subtractions of public values, products and
quotients by a positive number, casts) and computes that input from ``s``
once: an integer factor 0/1 and a public addition (exact and local).

Until 2026-12-08 each fill was made where it was written, -inf as -1e4
(masks.py): a -inf next to a finite fill near -1e4 in the same row (a
left-padded row under a causal -inf and an additive -1e4 padding mask)
tied with it, and such a row weighed its future keys; a row of -1e9 and
-1e4 fills kept its -1e9 keys, and a -inf scaled by 1e-4 became -1
(probe OX, finding 1). A value that reaches the softmax by any other op
(a transpose, a private mask) keeps masks.py's treatment.
"""

from __future__ import annotations

import math
import operator

import torch

from ..tensor import SharedTensor
from .nan_guard import _CASTS, _softmax

# masks.MASKED: a dropped entry, 1e4 below the row's largest public value
MASKED = -1.0e4

_ADD = {operator.add, torch.add, "add"}
_SUB = {operator.sub, torch.sub, "sub"}
_SCALE = {operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div"}


class _Part:
    """Node value as ``k * base + val`` where not ``fill``, ``val`` where
    ``fill``; ``grad``: where torch's gradient reaches ``base`` (an
    addition absorbs, a masked_fill replaces). Pure (fill None): the base."""

    def __init__(self, base, k=1.0, fill=None, val=None, grad=None):
        self.base, self.k, self.fill, self.val, self.grad = base, k, fill, val, grad

    def parts(self):
        if self.fill is None:
            f = torch.zeros((), dtype=torch.bool)
            return f, torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.bool)
        return self.fill, self.val, self.grad


def _value(a, env: dict):
    return env.get(a.name) if isinstance(a, torch.fx.Node) else a


def _public(v):
    """A public number or float/int tensor as float64, else None."""
    if isinstance(v, bool) or isinstance(v, SharedTensor):
        return None
    if isinstance(v, (int, float)):
        return torch.tensor(float(v), dtype=torch.float64), torch.finfo(torch.float64).eps
    if torch.is_tensor(v) and v.dtype != torch.bool and not v.is_complex():
        # the addition's dtype: float32 scores (or float64) beside a
        # bfloat16/float16 value add in float32 (with the value's own eps a
        # bfloat16 bias of 200 dropped every score: a review)
        dt = torch.promote_types(torch.float32, v.dtype) if v.is_floating_point() else None
        eps = torch.finfo(dt or torch.float64).eps
        return v.detach().double(), eps
    return None


def _part(n, env: dict, depth: int = 0):
    """The :class:`_Part` of private node ``n``, or None where a value
    does not follow (NaN or +inf fills: masks.py's treatment stays)."""
    if not isinstance(n, torch.fx.Node) or not isinstance(env.get(n.name), SharedTensor):
        return None
    base = _Part(n)
    if depth > 12 or not n.args:
        return base
    t, a = n.target, n.args
    if n.op == "call_method" and t in _CASTS:
        inner = _part(a[0], env, depth + 1)
        return base if inner is None or inner.fill is None else inner
    if (t == "masked_fill" or t is torch.masked_fill) and len(a) == 3 and not n.kwargs:
        return _filled(base, a[0], _value(a[1], env), _value(a[2], env), env, depth, True)
    if t is torch.where and len(a) == 3 and not n.kwargs:
        cond, x, y = (_value(v, env) for v in a)
        if isinstance(y, SharedTensor) and not isinstance(x, SharedTensor):
            return _filled(base, a[2], cond, x, env, depth, True)  # the fill where cond
        return _filled(base, a[1], cond, y, env, depth, False)  # the fill where not cond
    if (t in _ADD or t in _SUB) and len(a) == 2 and not n.kwargs:
        x, y = (_value(v, env) for v in a)
        if isinstance(x, SharedTensor) and isinstance(y, SharedTensor):
            return base  # private + private
        i = 0 if isinstance(x, SharedTensor) else 1
        pub = _public(y if i == 0 else x)
        if pub is None or (t in _SUB and i == 1):
            return base
        inner = _part(a[i], env, depth + 1)
        if inner is None:
            return None
        p, eps = pub
        fill, val, grad = inner.parts()
        val = val + p if t in _ADD else val - p
        if bool(torch.isnan(val).any()) or bool((val == math.inf).any()):
            return None
        # a private entry the addition's dtype cannot hold beside the value
        # (float32's -1e9, a dtype's minimum): torch's sum is the value
        fill = fill | torch.isneginf(val) | (eps * val.abs() >= 1)
        return _Part(inner.base, inner.k, fill, val, grad & ~torch.isneginf(val))
    if t in _SCALE and len(a) == 2 and not n.kwargs:
        i = 1 if isinstance(_value(a[0], env), SharedTensor) else 0  # (0.5 * s too)
        c = _value(a[i], env)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
            return base
        if i == 0 and t not in (operator.mul, torch.mul, "mul"):
            return base  # c / s
        inner = _part(a[1 - i], env, depth + 1)
        if inner is None or inner.fill is None:
            return base if inner is not None else None
        c = float(c) if t in (operator.mul, torch.mul, "mul") else 1.0 / float(c)
        return _Part(inner.base, inner.k * c, inner.fill, inner.val * c, inner.grad)
    return base


def _filled(base, x_node, cond, v, env: dict, depth: int, where_true: bool):
    """The part of ``x`` (node ``x_node``) with the public ``v`` put where
    ``cond`` is True (``where_true``: ``x.masked_fill(cond, v)``,
    ``torch.where(cond, v, x)``) or False (``torch.where(cond, x, v)``)."""
    if not (torch.is_tensor(cond) and cond.dtype == torch.bool) or isinstance(cond, SharedTensor):
        return base
    pub = _public(v)
    if pub is None:
        return base
    p = pub[0]
    if bool(torch.isnan(p).any()) or bool((p == math.inf).any()):
        return None
    inner = _part(x_node, env, depth + 1)
    if inner is None:
        return None
    at = cond if where_true else ~cond
    fill, val, grad = inner.parts()
    return _Part(inner.base, inner.k, fill | at, torch.where(at, p, val), grad & ~at)


def softmax_dim(node):
    """The dim of a softmax or log_softmax graph ``node`` (function, method
    or nn.Softmax / nn.LogSoftmax layer; not a cast of one), else None."""
    if not isinstance(node, torch.fx.Node) or (node.op == "call_method" and node.target in _CASTS):
        return None
    got = _softmax(node)  # nan_guard's reading of a softmax node
    return None if got is None or isinstance(got[1], bool) else got[1]


def resolved(args: tuple, node, env: dict) -> tuple:
    """``args`` of graph ``node``; for a softmax of a private value that
    public fills reach (see the module's text), that value computed from
    the scores as torch weighs it."""
    dim = softmax_dim(node)
    if dim is None or not args or not isinstance(args[0], SharedTensor):
        return args
    part = _part(node.args[0], env)
    if part is None or part.fill is None:
        return args  # no fill reaches it (an ordinary softmax: unchanged)
    y = args[0]
    shape = tuple(y.shape)
    if not -len(shape) <= dim < len(shape) or 0 in shape:
        return args  # (torch's own error follows; an empty softmax has no rows)
    fill, val, grad = (torch.broadcast_to(t, shape) for t in part.parts())
    if not bool(fill.any()) and float(val.abs().max()) < -MASKED:
        return args  # moderate public offsets only (a bias): the sum is exact as it is
    top = val.amax(dim, keepdim=True)
    gone = torch.isneginf(top)  # a row of -inf: torch's NaN, equal weights here (README)
    rel = torch.where(gone, 0.0, val - torch.where(gone, 0.0, top))
    rel = torch.where(gone.expand(shape), 0.0, rel)
    kept = rel > MASKED
    scores = _value(part.base, env)
    if part.k != 1.0:
        scores = scores * part.k
    out = scores * (kept & ~fill).long() + torch.where(kept, rel, MASKED)
    passes = grad & fill & kept & ~gone.expand(shape)
    if scores.requires_grad and bool(passes.any()):  # torch's s + min: gradient 1, value min
        out = out + (scores - scores.detach()) * passes.long()
    return (out, *args[1:])
