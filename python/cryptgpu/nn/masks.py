"""Public attention masks (torch's bool and float forms, ``is_causal``,
key padding) as the attention applies them: a dropped position's score
is replaced, an additive part added (nn/attention.py).
"""

from __future__ import annotations

import torch

from ..tensor import SharedTensor

# What a masked-out score becomes: far below any unmasked one, so that after
# the max shift its exp is clamped (e^-16 = 1.1e-7 of the row's largest),
# and small enough to stay inside the fixed-point range.
MASKED = -1.0e4


class _Mask:
    """A public attention mask: the positions dropped (``keep`` 0: their
    score is replaced by MASKED, whatever it was) and a finite additive
    part (``add``). Until 2026-12-05 a dropped position's score was only
    lowered by 1e4, and a score 1e4 above the kept ones (unnormalised or
    adversarial queries) still took the weight: the causal mask let a
    token attend to the future."""

    def __init__(self, add=None, keep=None):
        self.add, self.keep = add, keep

    def reshape(self, *shape):
        return _Mask(*(None if t is None else t.reshape(*shape) for t in (self.add, self.keep)))

    def dim(self) -> int:
        return (self.add if self.add is not None else self.keep).dim()

    def __add__(self, other):
        if other is None:
            return self
        add = other.add if self.add is None else _add_mask(self.add, other.add)
        keep = (
            other.keep
            if self.keep is None
            else (self.keep if other.keep is None else self.keep * other.keep)
        )
        return _Mask(add, keep)

    def apply(self, scores):
        """scores with the dropped positions set to MASKED (an integer
        factor 0/1, exact and local) and the additive part added."""
        if self.keep is not None:
            scores = scores * self.keep + (1 - self.keep).double() * MASKED
        return scores if self.add is None else scores + self.add

    def rows_kept(self):
        """0 for the rows with every position dropped (None if there is
        none): their weights are zeroed, as torch's attention gives those
        rows zeros (until 2026-12-05: a uniform average)."""
        if self.keep is None:
            return None
        any_kept = self.keep.amax(-1, keepdim=True)
        return None if bool(any_kept.all()) else any_kept


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
        return _Mask(keep=keep.long())
    m = m.double()
    low = m <= MASKED
    if not bool(low.any()):
        return _Mask(add=m)
    return _Mask(add=m.masked_fill(low, 0.0), keep=(~low).long())


def _causal(q_len: int, k_len: int) -> _Mask:
    return _additive(torch.ones(q_len, k_len, dtype=torch.bool).tril(), True)


def _add_mask(acc, m):
    if m is None:
        return acc
    return m if acc is None else acc + m


def minus_inf_masked(a):
    """A public float tensor entering a private op: entries at or below
    float16's lowest value (-inf, or the dtype minimum that transformers
    uses as minus infinity in attention masks) have no fixed-point encoding
    and become MASKED, the value of our own attention masks (after a
    softmax's max shift, a clamped exp: 1e-7 of the row's largest weight)."""
    if isinstance(a, torch.Tensor) and a.is_floating_point():
        low = a <= torch.finfo(torch.float16).min
        if bool(low.any()):
            return a.masked_fill(low, MASKED)
    if isinstance(a, float) and a <= torch.finfo(torch.float16).min:
        return MASKED  # masked_fill(mask, float("-inf"))
    return a
