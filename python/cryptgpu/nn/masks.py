"""Public attention masks (torch's bool and float forms, ``is_causal``,
key padding) as the attention applies them: a dropped position's score
is replaced, an additive part added (nn/attention.py).
"""

from __future__ import annotations

import math
import operator

import torch

from ..tensor import SharedTensor
from . import nan_guard, row_fills

# What a masked-out score becomes: far below any unmasked one, so that after
# the max shift its exp is clamped (e^-16 = 1.1e-7 of the row's largest),
# and small enough to stay inside the fixed-point range.
MASKED = -1.0e4

# A public entry at or below this has no fixed-point encoding: a -inf-like
# mask entry (-inf, a float dtype's minimum)
LOWEST = torch.finfo(torch.float16).min


class _Mask:
    """A public attention mask: the positions dropped (``keep`` 0: their
    score is replaced by MASKED, whatever it was), which of those were
    dropped by a bool mask or -inf (``hard`` 1) rather than by a finite
    fill such as a dtype's minimum or -1e9, and a finite additive part
    (``add``). Until 2026-12-05 a dropped position's score was only
    lowered by 1e4, and a score 1e4 above the kept ones (unnormalised or
    adversarial queries) still took the weight: the causal mask let a
    token attend to the future."""

    def __init__(self, add=None, keep=None, hard=None, raw=None, eps=None):
        self.add, self.keep, self.hard = add, keep, hard
        # the float mask's values as torch adds them (0 at -inf entries) and
        # the spacing of its dtype (torch.finfo().eps), for :meth:`resolved`
        self.raw, self.eps = raw, eps

    def reshape(self, *shape):
        parts = (self.add, self.keep, self.hard, self.raw)
        return _Mask(*(None if t is None else t.reshape(*shape) for t in parts), eps=self.eps)

    def dim(self) -> int:
        return (self.add if self.add is not None else self.keep).dim()

    def __add__(self, other):
        if other is None:
            return self
        add = other.add if self.add is None else _add_mask(self.add, other.add)
        keep = _both(self.keep, other.keep, lambda a, b: a * b)
        hard = _both(self.hard, other.hard, lambda a, b: a | b)
        raw = _both(self.raw, other.raw, lambda a, b: a + b)  # torch adds the masks
        eps = _both(self.eps, other.eps, min)  # float32 + float64 is float64
        return _Mask(add, keep, hard, raw, eps)

    def resolved(self):
        """This mask with its rows dropped everywhere by finite fills
        weighed as torch weighs them. softmax(s + c) = softmax(s): where
        the dtype keeps a score's differences under the row's largest fill c
        (its spacing there below 1: -1e4 in float32, -1e9 in float64), the
        row is shifted by c, and the positions within 1e4 of it keep their
        scores; where the fill absorbs the scores (a dtype's minimum, -1e9
        in float32), the positions at c weigh equally (the additive parts
        of other masks absorbed too) and those 1e4 or more below it drop
        out (until 2026-12-06 every such row weighed equally, its scores
        lost: a key padding mask of -1e4 gave the mean of V)."""
        if self.keep is None or self.raw is None:
            return self
        if bool((self.keep.amax(-1) > 0).all()):  # every row keeps a position
            return self  # (the usual case: nothing broadcast at each call)
        keep, hard, raw = torch.broadcast_tensors(
            self.keep, torch.zeros(()) if self.hard is None else self.hard, self.raw
        )
        hard = hard.bool()
        soft = (keep == 0) & ~hard
        full = ((keep.amax(-1) == 0) & soft.any(-1)).unsqueeze(-1)
        if not bool(full.any()):
            return self
        val = raw.masked_fill(hard, -math.inf)
        top = val.amax(-1, keepdim=True)
        scores_kept = full & (self.eps * top.abs() < 1)
        near = val - top > MASKED
        keep = torch.where(scores_kept, near.long(), keep)
        add = (self.add if self.add is not None else torch.zeros(())).expand_as(raw)
        add = torch.where(scores_kept & near, val - top, add)
        add = torch.where(full & ~scores_kept, 0.0, add)  # absorbed with the scores
        hard = hard | (full & ~scores_kept & ~near)
        return _Mask(add, keep, hard, raw, self.eps)

    def apply(self, scores):
        """scores with the dropped positions set to MASKED (an integer
        factor 0/1, exact and local; -2e4 where a bool or -inf dropped it,
        so that a row dropped partly by finite fills weighs only those) and
        the additive part added, the public terms in one addition. Where a
        row is dropped everywhere by finite fills (its weights are equal)
        and autograd records, the gradient passes to the dropped positions
        as torch's does through ``s + fill``; elsewhere torch's is zero
        after the softmax there (up to 1e-7 of a weight), as ours."""
        fill = self.add
        if self.keep is not None:
            drop = 1 - self.keep
            if scores.requires_grad and self._absorbs():
                scores = scores - scores.detach() * drop
            else:
                scores = scores * self.keep
            dropped = drop if self.hard is None else drop + self.hard.long()
            fill = _add_mask(fill, dropped.double() * MASKED)
        return scores if fill is None else scores + fill

    def _soft(self):
        """1 where a finite fill (not bool or -inf) dropped the position."""
        soft = 1 - self.keep
        return soft if self.hard is None else soft * (~self.hard.bool()).long()

    def _absorbs(self) -> bool:
        """Whether a row is dropped everywhere, by finite fills somewhere."""
        return bool(((self.keep.amax(-1) == 0) & (self._soft().amax(-1) > 0)).any())

    def rows_kept(self):
        """0 for the rows with every position dropped by bool or -inf
        entries (None if there is none): torch's attention gives those rows
        zeros. A row dropped by finite fills (transformers' dtype minimum: a
        left-padded token's row) keeps its softmax of equal scores, the
        same weight at each position, as torch's (until 2026-12-06 zeros:
        a left-padded OPT's loss and gradients were wrong; until
        2026-12-05 a uniform average for every kind)."""
        if self.keep is None:
            return None
        any_kept = (self.keep + self._soft()).amax(-1, keepdim=True)
        return None if bool(any_kept.all()) else any_kept


def _both(a, b, op):
    return b if a is None else (a if b is None else op(a, b))


def _additive(mask, allowed_when_true: bool):
    """A public :class:`_Mask` from a bool or float one (None stays None):
    a bool mask keeps the positions where it is ``allowed_when_true``; a
    float mask is added, its entries at or below MASKED (-inf, a dtype's
    minimum, -1e9) dropping their position as torch's -inf does."""
    if mask is None:
        return None
    if isinstance(mask, SharedTensor):
        raise NotImplementedError("attention masks must be public (plaintext tensors)")
    m = torch.as_tensor(mask)
    if m.dtype == torch.bool:
        keep = m if allowed_when_true else ~m
        return _Mask(keep=keep.long(), hard=~keep)
    eps = torch.finfo(m.dtype).eps
    m = m.double()
    low = m <= MASKED
    if not bool(low.any()):  # (its values still join another mask's raw ones)
        return _Mask(add=m, raw=m, eps=eps)
    inf = torch.isneginf(m)
    return _Mask(m.masked_fill(low, 0.0), (~low).long(), inf, m.masked_fill(inf, 0.0), eps)


def _causal(q_len: int, k_len: int) -> _Mask:
    return _additive(torch.ones(q_len, k_len, dtype=torch.bool).tril(), True)


def _add_mask(acc, m):
    if m is None:
        return acc
    return m if acc is None else acc + m


def masked_operands(args: tuple, node, env: dict) -> tuple:
    """``args`` of a private op (graph ``node``; ``env``: the values so
    far), each through :func:`minus_inf_masked`; for an addition of a
    private tensor and a public one with such entries, the private one's
    value is also zeroed there (an integer factor: exact and local; its
    gradient passes), as in torch's floats ``s + finfo.min`` is the minimum
    whatever s was: a row masked everywhere (a left-padded token's, in
    transformers' eager attention) then has equal scores and torch's
    uniform weights (until 2026-12-06 its scores stayed, 1e4 lower, and a
    masked score 1e4 above the kept ones took the weight). Where the
    private operand was itself filled with such a value (GPT-2's
    ``torch.where(causal, w, finfo.min)``), the sum is lower still, as
    torch's ``min + min`` is -inf: such a position drops out of the row."""
    args = nan_guard.guarded(args, node, env)  # nan_to_num of a -inf masked softmax
    args = row_fills.resolved(args, node, env)  # a softmax of public fills: torch's weights
    if node.target in nan_guard.TESTS:  # isnan's public stand-in: torch's NaN and -inf stay
        return args
    out = [minus_inf_masked(a) for a in args]
    if node.target in (torch.full_like, "new_full"):  # a public value: -inf stays -inf
        # (not a dtype's minimum: our float32 one has no float64 minimum); until
        # 2026-12-07 -1e4, and no NaN guard saw the -inf
        out = [a if isinstance(a, float) and a == -math.inf else b for a, b in zip(args, out)]
    adding = node.target in (operator.add, torch.add, "add")
    private = [i for i in (0, 1) if len(args) > 1 and isinstance(args[i], SharedTensor)]
    other = args[1 - private[0]] if adding and len(private) == 1 else None
    if isinstance(other, torch.Tensor) and other.is_floating_point():
        low = other <= LOWEST
        if bool(low.any()):  # value x * keep, gradient 1 (as s + fill's)
            x = args[private[0]]
            hard = _filled(node.args[private[0]], env)
            near, fill = _rows_kept(x, other, low, hard, node)
            if near is not None:  # rows whose scores torch keeps (float64's -1e9)
                low, out[1 - private[0]] = low & ~near, fill
            out[private[0]] = x - x.detach() * low.long()
            if hard is not None:
                out[private[0]] = out[private[0]] + (low & hard).double() * MASKED
    return tuple(out)


def _rows_kept(x, other, low, hard, node):
    """For ``x + other`` (x private, ``low``: other's entries at or below
    float16's lowest) whose sum goes to a softmax: the rows (along its dim)
    masked everywhere by finite fills that ``other``'s dtype keeps a score's
    differences under (its spacing at the row's largest fill c below 1:
    float64's -1e9, not float32's), where torch's ``softmax(s + c)`` is
    ``softmax(s)``. Returns (where x keeps its score, the public operand
    with ``other - c`` there and MASKED at the other low entries), or
    (None, None). Until 2026-12-07 such a row's scores became -1e4 each:
    equal weights, 0.16 off float64 torch, where the same fill given to
    MultiheadAttention kept them (:meth:`_Mask.resolved`))."""
    dim = _softmax_dim(node)
    shape = torch.broadcast_shapes(tuple(x.shape), tuple(other.shape))
    if dim is None or not -len(shape) <= dim < len(shape):
        return None, None
    full = low.expand(shape).all(dim, keepdim=True)
    top = other.double().expand(shape).amax(dim, keepdim=True)
    kept = full & (torch.finfo(other.dtype).eps * top.abs() < 1)  # (-inf's: not kept)
    if not bool(kept.any()):
        return None, None
    near = kept & (other.double() - top > MASKED)
    if hard is not None:
        near = near & ~hard.bool()  # twice masked (torch's min + fill): drops out
    if not bool(near.any()):
        return None, None
    return near, torch.where(near, other.double() - top, minus_inf_masked(other).double())


_SOFTMAX = {torch.softmax, torch.log_softmax, torch.nn.functional.softmax}
_SOFTMAX |= {torch.nn.functional.log_softmax, torch.special.softmax}
# what a softmax of the sum is still a softmax of, up to a constant per row
_THROUGH = {"float", "double", "to", "type_as", "contiguous", "add", "sub"}


def _softmax_dim(node, depth: int = 0):
    """The dim of the softmax that every use of ``node`` reaches (through
    casts and additions), or None."""
    dims = set()
    for user in node.users if depth < 4 else ():
        target, args, kw = user.target, user.args, user.kwargs
        first = bool(args) and args[0] is node
        if user.op == "call_module":  # nn.Softmax(dim=-1)
            owner = node.graph.owning_module
            m = None if owner is None else dict(owner.named_modules()).get(target)
            if not isinstance(m, (torch.nn.Softmax, torch.nn.LogSoftmax)):
                return None
            dims.add(m.dim)
        elif target in ("softmax", "log_softmax") or target in _SOFTMAX:
            if not first:
                return None
            dims.add(args[1] if len(args) > 1 else kw.get("dim"))
        elif target in _THROUGH or target in (operator.add, operator.sub, torch.add):
            if not (first or target in ("add", operator.add, torch.add)):
                return None  # (s + c) subtracted from something
            dims.add(_softmax_dim(user, depth + 1))
        else:
            return None
    return dims.pop() if len(dims) == 1 and isinstance(next(iter(dims)), int) else None


def _filled(node, env: dict):
    """The positions that ``node``, a ``torch.where(cond, x, fill)`` or
    ``x.masked_fill(cond, fill)`` of a public bool cond, set to a fill at or
    below float16's lowest, or None."""
    if not isinstance(node, torch.fx.Node) or len(node.args) != 3:
        return None
    if node.target is not torch.where and node.target != "masked_fill":
        return None
    cond = node.args[0] if node.target is torch.where else node.args[1]
    cond, fill = (env[a.name] if isinstance(a, torch.fx.Node) else a for a in (cond, node.args[2]))
    if not (torch.is_tensor(cond) and cond.dtype == torch.bool):
        return None
    if isinstance(fill, SharedTensor) or not bool((torch.as_tensor(fill) <= LOWEST).all()):
        return None
    return ~cond if node.target is torch.where else cond


def minus_inf_masked(a):
    """A public float tensor entering a private op: entries at or below
    float16's lowest value (-inf, or the dtype minimum that transformers
    uses as minus infinity in attention masks) have no fixed-point encoding
    and become MASKED, the value of our own attention masks (after a
    softmax's max shift, a clamped exp: 1e-7 of the row's largest weight)."""
    if isinstance(a, torch.Tensor) and a.is_floating_point():
        low = a <= LOWEST
        if bool(low.any()):
            return a.masked_fill(low, MASKED)
    if isinstance(a, float) and a <= LOWEST:
        return MASKED  # masked_fill(mask, float("-inf"))
    return a


def at_softmax(args: tuple, node, env: dict) -> tuple:
    """``args`` of a layer call ``node``: for an nn.Softmax / nn.LogSoftmax
    of public fills, its input as torch weighs it (row_fills.py)."""
    return row_fills.resolved(args, node, env)
