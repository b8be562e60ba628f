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

Since 2026-12-07 (probe OH) the NaN rows of such a softmax are also
followed to a guard further on: ``nan_to_num(p @ v)``, after a dropout, a
scale, a sum, a transpose, ``+ 1``, a LayerNorm or a Linear (:func:`nan_mask`:
elementwise ops keep a NaN where an operand has one, moves move it,
products, sums and normalisations spread it along what they reduce, as
torch's float arithmetic does); ``x.isnan()`` / ``torch.isnan(x)`` (and
``isfinite`` / ``isinf``) of such a value answer torch's positions instead
of all False, so ``p.masked_fill(p.isnan(), 0)`` and
``torch.where(p.isnan(), 0., p)`` are torch's. Where such a NaN reaches a
guard through an op not followed here, the guard raises
NotImplementedError naming its line (until then the row silently kept the
mean of V). A -inf fill made by ``torch.full_like(s, -inf)`` or
``s.new_full(shape, -inf)`` counts as the literal -inf (masks.py).
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
    private operand with those rows set to ``nan``, and for one of a value
    those rows reach (:func:`nan_mask`), its NaN positions set so; for an
    ``isnan`` / ``isinf`` / ``isfinite`` of such a value, a public operand
    with torch's NaN (and -inf) positions (see the module's text)."""
    if not args or not isinstance(args[0], SharedTensor) or not node.args:
        return args
    if node.target in TESTS:
        return (_as_torch_sees(args[0], node, env), *args[1:])
    if node.target not in (torch.nan_to_num, "nan_to_num"):
        return args
    y = args[0]
    found = _with_upstream(_direct(node.args[0], env, tuple(y.shape)), node, env)
    if found is None:
        nan_at = nan_mask(node.args[0], env, node)
        if nan_at is None:
            return args
        nan = _arg(node, args, env, 1, "nan", 0.0)
        return (y * (~nan_at).long() + nan_at.double() * float(nan or 0.0), *args[1:])
    full, inf, log = found
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


def _direct(n, env: dict, shape: tuple):
    """(torch's NaN rows, its -inf positions, whether a log_softmax) for
    ``n`` a softmax or log_softmax (through casts) of public -inf fills,
    as public bool tensors of ``shape``; else None."""
    found = _softmax(n)
    if found is None:
        return None
    src, dim, log = found
    inf = _minus_inf(src, env)
    if inf is None:
        return None
    try:
        inf = torch.broadcast_to(inf, shape)
        return inf.all(dim, keepdim=True).expand_as(inf), inf, log
    except (RuntimeError, IndexError):  # shapes torch itself would refuse
        return None


def _with_upstream(found, guard, env: dict):
    """``found`` (:func:`_direct` of the softmax ``guard`` reads) with the
    rows its input's own NaN (from a softmax above it) makes NaN: a row of
    torch's softmax with a NaN anywhere is NaN throughout."""
    if found is None:
        return None
    src, dim, _ = _softmax(guard.args[0])
    up = nan_mask(src, env, guard)
    if up is None:
        return found
    full, inf, log = found
    try:
        rows = torch.broadcast_to(up, full.shape).any(dim, keepdim=True).expand_as(full)
    except (RuntimeError, IndexError) as e:  # (shapes a softmax keeps: not reached)
        raise NotImplementedError(_refusal(guard, src)) from e
    return full | rows, inf & ~rows, log


def _as_torch_sees(y: SharedTensor, node, env: dict) -> torch.Tensor:
    """For ``isnan(y)`` (``isinf``, ``isfinite``): a public stand-in of
    y's shape, NaN where torch's y is NaN, -inf where it is -inf (a
    log_softmax's masked entries), 0 elsewhere (shares are finite)."""
    shape = tuple(y.shape)
    found = _with_upstream(_direct(node.args[0], env, shape), node, env)
    if found is not None:
        full, inf, log = found
        out = torch.zeros(shape, dtype=torch.float64)
        out = out.masked_fill(inf & ~full, -math.inf) if log else out
        return out.masked_fill(full, math.nan)
    nan_at = nan_mask(node.args[0], env, node)
    out = torch.zeros(shape, dtype=torch.float64)
    return out if nan_at is None else out.masked_fill(nan_at, math.nan)


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


# ---- torch's NaN rows followed from a masked softmax to a later guard ----

# NaN tests: run on a public stand-in of their private operand (masks.py)
TESTS = {torch.isnan, torch.isinf, torch.isfinite, "isnan", "isinf", "isfinite"}
# a NaN operand gives NaN at the same place (broadcast): elementwise ops
_POINTWISE = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    operator.pos,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.neg,
    torch.exp,
    torch.tanh,
    torch.sigmoid,
    torch.relu,
    torch.abs,
    torch.square,
    F.relu,
    F.gelu,
    F.silu,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "exp",
    "tanh",
    "sigmoid",
    "relu",
    "abs",
    "square",
    "clone",
    "half",
    "type",
    "bfloat16",
} | _CASTS
_POINTWISE_LAYERS = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.Identity,
    torch.nn.ReLU,
    torch.nn.GELU,
    torch.nn.Tanh,
    torch.nn.Sigmoid,
    torch.nn.SiLU,
)
# moves: the same op moves the NaN positions (a public bool tensor)
_MOVES = {
    torch.transpose,
    torch.permute,
    torch.reshape,
    torch.flatten,
    torch.unsqueeze,
    torch.squeeze,
    torch.t,
    torch.swapaxes,
    torch.movedim,
    operator.getitem,
    "transpose",
    "permute",
    "t",
    "view",
    "reshape",
    "unsqueeze",
    "squeeze",
    "flatten",
    "expand",
    "unflatten",
    "swapaxes",
    "movedim",
    "repeat",
}
# products and reductions: run on NaN-or-0 stand-ins (0 never makes a NaN here)
_SPREADS = {
    operator.matmul,
    torch.matmul,
    torch.bmm,
    F.linear,
    torch.sum,
    torch.mean,
    F.layer_norm,
    torch.softmax,
    F.softmax,
    torch.log_softmax,
    F.log_softmax,
    "matmul",
    "bmm",
    "sum",
    "mean",
    "softmax",
    "log_softmax",
}
# (the tests and guards give no NaN of torch's, as methods and as functions)
_NO_VALUES = {
    *("size", "dim", "numel", "isnan", "isinf", "isfinite", "nan_to_num", len),
    *(torch.isnan, torch.isinf, torch.isfinite, torch.nan_to_num),
}


class _Lost:
    """A NaN of torch's reached ``node``, an op not followed here."""

    def __init__(self, node):
        self.node = node


def nan_mask(start, env: dict, guard):
    """Where torch's value of graph node ``start`` is NaN because a softmax
    above it has a row filled entirely by public -inf entries: a public
    bool tensor of its shape, or None where there is none. Raises
    NotImplementedError (naming ``guard``'s line) where such a NaN reaches
    ``start`` through an op not followed (see the module's text)."""
    if not isinstance(start, torch.fx.Node):
        return None
    above, todo = set(), [start]
    while todo:
        n = todo.pop()
        if n not in above:
            above.add(n)
            todo.extend(n.all_input_nodes)
    masks: dict = {}
    for n in start.graph.nodes:  # in order: inputs first
        if n in above:
            masks[n] = _step(n, masks, env)
        if n is start:
            break
    got = masks.get(start)
    if isinstance(got, _Lost):
        raise NotImplementedError(_refusal(guard, got.node))
    return got


def _refusal(guard, lost) -> str:
    from .inplace import SOURCE, _shown  # (inplace's module imports no nn module of ours)

    name = guard.target if isinstance(guard.target, str) else guard.target.__name__
    where = _shown(guard.meta.get(SOURCE)) or f"node {guard.name!r}"
    op = lost.target if isinstance(lost.target, str) else getattr(lost.target, "__name__", "")
    return (
        f"{name} at {where}: a softmax row that the public mask fills entirely with -inf is "
        f"NaN in torch, and that NaN reaches this guard through {op or lost.op} (node "
        f"{lost.name!r}), which a converted model cannot follow exactly; put "
        "torch.nan_to_num directly on the softmax (torch.nan_to_num(F.softmax(...))), or "
        "mask with a finite fill such as -1e9"
    )


def _step(n, masks: dict, env: dict):
    """The NaN positions of node ``n`` (see :func:`nan_mask`)."""
    t, value = n.target, env.get(n.name)
    if n.op in ("placeholder", "get_attr", "output") or t in _NO_VALUES or t is getattr:
        return None  # (sizes, and a guard's own output: no NaN of torch's)
    ins = [masks.get(a) for a in n.all_input_nodes]
    if any(isinstance(m, _Lost) for m in ins):
        return ins[[isinstance(m, _Lost) for m in ins].index(True)]
    nan_in = any(m is not None for m in ins)
    if not nan_in:
        found = _softmax(n) if _through(n) is n else None
        if found is None:
            return None
        full = _direct(n, env, tuple(value.shape)) if _tensor(value) else None
        if full is None or not bool(full[0].any()):
            return None
        return _Lost(n) if full[2] else full[0]  # a log_softmax's other -inf: not followed
    if not _tensor(value):
        return _Lost(n)
    shape = tuple(value.shape)
    try:
        out = _rule(n, masks, env, shape)
    except (RuntimeError, IndexError, KeyError, TypeError, ValueError, AttributeError):
        return _Lost(n)
    if out is None or isinstance(out, _Lost):
        return out
    if not (torch.is_tensor(out) and tuple(out.shape) == shape):
        return _Lost(n)
    if _through(n) is n and _softmax(n) is not None:  # its own -inf rows as well
        own = _direct(n, env, shape)
        if own is not None and bool(own[0].any()):
            if own[2]:
                return _Lost(n)  # a log_softmax's other -inf: not followed
            out = out | own[0]
    return out if bool(out.any()) else None


def _tensor(v) -> bool:
    return isinstance(v, (SharedTensor, torch.Tensor))


def _layer(n):
    owner = n.graph.owning_module
    return None if owner is None else dict(owner.named_modules()).get(n.target)


def _rule(n, masks: dict, env: dict, shape: tuple):
    t, a = n.target, n.args
    if n.op == "call_module":
        m = _layer(n)
        if isinstance(m, _POINTWISE_LAYERS):
            return _union(n, masks, shape)
        z = _stand_in(a[0], masks, env)
        if isinstance(m, torch.nn.Linear):
            return F.linear(z, torch.zeros(m.weight.shape, dtype=z.dtype)).isnan()
        if isinstance(m, torch.nn.LayerNorm):
            return F.layer_norm(z, m.normalized_shape, eps=1.0).isnan()
        if isinstance(m, (torch.nn.Softmax, torch.nn.LogSoftmax)):
            return F.softmax(z, m.dim).isnan()
        return _Lost(n)
    if t in _POINTWISE:
        return _union(n, masks, shape)
    if t is torch.where and len(a) == 3:
        cond = _value(a[0], env)
        if not torch.is_tensor(cond) or isinstance(cond, SharedTensor):
            return _Lost(n)
        return torch.where(cond, _bools(a[1], masks, shape), _bools(a[2], masks, shape))
    if t in ("masked_fill", torch.masked_fill) and len(a) == 3:
        cond = _value(a[1], env)
        if isinstance(a[2], torch.fx.Node) or isinstance(cond, SharedTensor):
            return _Lost(n)
        return _bools(a[0], masks, shape) & ~torch.as_tensor(cond, dtype=torch.bool)
    if t in _MOVES:
        m = _bools(a[0], masks, tuple(env[a[0].name].shape)).contiguous()
        rest = torch.fx.node.map_arg((a[1:], n.kwargs), lambda x: env[x.name])
        fn = getattr(m, t) if isinstance(t, str) else (lambda *x, **k: t(m, *x, **k))
        return fn(*rest[0], **rest[1])
    if t in (torch.cat, torch.stack) and a and isinstance(a[0], (list, tuple)):
        parts = [_bools(x, masks, tuple(env[x.name].shape)) for x in a[0]]
        rest = torch.fx.node.map_arg((a[1:], n.kwargs), lambda x: env[x.name])
        return t(parts, *rest[0], **rest[1])
    if t in _SPREADS:
        z = torch.fx.node.map_arg((a, n.kwargs), lambda x: _stand_in(x, masks, env))
        if t is F.layer_norm:  # (its eps 1: a row of zeros is 0, not 0/0)
            return F.layer_norm(z[0][0], z[0][1], eps=1.0).isnan()
        fn = getattr(z[0][0], t) if isinstance(t, str) else t
        out = fn(*z[0][1:], **z[1]) if isinstance(t, str) else fn(*z[0], **z[1])
        return out.isnan()
    return _Lost(n)


def _bools(x, masks: dict, shape: tuple) -> torch.Tensor:
    """The NaN positions of argument ``x`` (False for any other), as a
    bool tensor broadcast to ``shape``."""
    m = masks.get(x) if isinstance(x, torch.fx.Node) else None
    if isinstance(m, _Lost):
        raise ValueError("not followed")
    return torch.zeros(shape, dtype=torch.bool) if m is None else m.broadcast_to(shape)


def _union(n, masks: dict, shape: tuple) -> torch.Tensor:
    """The NaN positions of an elementwise op: any operand's (a cast's
    only its input's: ``a.type_as(p)`` takes p's dtype, not its NaN)."""
    out = torch.zeros(shape, dtype=torch.bool)
    one = n.op != "call_module" and n.target in _CASTS | {"type"} and n.args
    for x in [n.args[0]] if one else n.all_input_nodes:
        m = masks.get(x)
        if m is not None:
            out = out | m.broadcast_to(shape)
    return out


def _stand_in(x, masks: dict, env: dict):
    """Argument ``x`` as torch sees its NaNs: a private value a float64
    tensor of NaN at its NaN positions and 0 elsewhere; a public one as is."""
    if not isinstance(x, torch.fx.Node):
        return x
    v = env[x.name]
    m = masks.get(x)
    if isinstance(v, SharedTensor) or m is not None:
        z = torch.zeros(tuple(v.shape), dtype=torch.float64)
        return z if m is None else z.masked_fill(m, math.nan)
    if torch.is_tensor(v) and v.is_floating_point():
        return v.double()
    return v
