"""``torch.einsum`` on SharedTensors (and plaintext operands): each pair of
operands becomes one batched matmul (the shared product, or a product with
a public tensor), with the letters summed away in one operand alone summed
first, and the result permuted into the output's order. Operands are
contracted left to right. A letter repeated within one operand (a trace,
a diagonal) first takes that operand's diagonal: public positions, local.
"""

from __future__ import annotations

import math
import string


def _parse(eq: str, shapes: list) -> tuple[list[str], str]:
    """(each operand's letters, the output's letters) with ``...`` replaced
    by capital letters for the broadcast dims, and the implicit output
    (letters seen once, sorted, after the ellipsis dims) made explicit."""
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise RuntimeError(
            f"einsum(): {'more' if len(shapes) > len(terms) else 'fewer'} operands were "
            "provided than specified in the equation "
            f"({len(terms)} in the equation, {len(shapes)} given)"
        )
    spare = [c for c in string.ascii_uppercase if c not in eq]
    widest = 0
    out_terms = []
    for t, shape in zip(terms, shapes):
        if not set(t.replace("...", "")) <= set(string.ascii_letters):
            raise RuntimeError(f"einsum(): invalid subscript given in {t!r}")
        if "..." in t:
            k = len(shape) - (len(t) - 3)
            if k < 0:
                raise RuntimeError(
                    f"einsum(): the subscripts {t!r} have more dims than the operand"
                )
            widest = max(widest, k)
            t = t.replace("...", "".join(spare[len(spare) - k :]))
        if len(t) != len(shape):
            raise RuntimeError(
                f"einsum(): the number of subscripts in the equation ({len(t)}) does not "
                f"match the number of dimensions ({len(shape)}) for operand {len(out_terms)}"
                + ("" if "..." in eq else " and no ellipsis was given")
            )
        out_terms.append(t)
    dots = "".join(spare[len(spare) - widest :])
    if arrow:
        out = rhs.replace("...", dots)
    else:
        seen = "".join(out_terms)
        out = dots + "".join(sorted(c for c in set(seen) if seen.count(c) == 1 and c not in dots))
    if len(set(out)) != len(out):
        raise RuntimeError(f"einsum(): output subscript appears more than once in {out!r}")
    return out_terms, out


def _diagonals(x, t: str, k: int):
    """x (letters t) with each letter that t repeats taken once, along the
    diagonal of its dims (torch's ``diagonal``: the diagonal goes last)."""
    while len(set(t)) != len(t):
        c = next(c for c in t if t.count(c) > 1)
        i = t.index(c)
        j = t.index(c, i + 1)
        if x.shape[i] != x.shape[j]:
            raise RuntimeError(
                f"einsum(): subscript {c} is repeated for operand {k} but the sizes don't "
                f"match, {x.shape[j]} != {x.shape[i]}"
            )
        x = x.diagonal(0, i, j)
        t = t[:i] + t[i + 1 : j] + t[j + 1 :] + c
    return x, t


def _sizes(terms, shapes) -> dict:
    sizes: dict = {}
    for t, shape in zip(terms, shapes):
        for c, n in zip(t, shape):
            have = sizes.get(c)
            if have is None or have == 1:
                sizes[c] = n  # 1 broadcasts to any size, 0 included
            elif n != 1 and n != have:
                raise RuntimeError(
                    f"einsum(): operands do not broadcast: subscript {c!r} has size {n} and {have}"
                )
    return sizes


def _sum_alone(x, t: str, keep: str):
    """x with the letters of ``t`` not in ``keep`` summed away."""
    drop = [i for i, c in enumerate(t) if c not in keep]
    if not drop:
        return x, t
    return x.sum(drop), "".join(c for c in t if c in keep)


def _pair(a, ta: str, b, tb: str, keep: str, sizes: dict):
    """a (letters ta) times b (letters tb) with the letters outside
    ``keep`` that both hold contracted: one batched matmul."""
    batch = [c for c in ta if c in tb and c in keep]
    con = [c for c in ta if c in tb and c not in keep]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]

    def arrange(x, t, order, shape):
        x = x.permute(*[t.index(c) for c in order]) if list(t) != order else x
        full = [sizes[c] for c in order]
        if list(x.shape) != full:
            x = x.expand(*full)  # size-1 dims broadcast as torch's einsum
        return x.reshape(tuple(shape))

    nb, nl, nc, nr = (math.prod(sizes[c] for c in g) for g in (batch, left, con, right))
    a3 = arrange(a, ta, batch + left + con, (nb, nl, nc))
    b3 = arrange(b, tb, batch + con + right, (nb, nc, nr))
    y = a3.matmul(b3)
    return y.reshape(tuple(sizes[c] for c in batch + left + right)), "".join(batch + left + right)


def _from_sublists(args: tuple):
    """(equation, operands) from torch's sublist form of einsum."""
    letters = string.ascii_letters

    def term(sub) -> str:
        out = []
        for i in sub:
            if i is Ellipsis:
                out.append("...")
            elif isinstance(i, int) and 0 <= i < len(letters):
                out.append(letters[i])
            else:
                raise RuntimeError(f"einsum(): a sublist subscript must be in [0, 52), not {i!r}")
        return "".join(out)

    ops, terms = list(args[0::2]), [term(s) for s in args[1::2]]
    arrow = ""
    if len(ops) > len(terms):  # an odd count: the last item is the output sublist
        if hasattr(ops[-1], "shape"):
            raise RuntimeError("einsum(): a sublist must follow each operand")
        arrow = "->" + term(ops.pop())
    return ",".join(terms) + arrow, tuple(ops)


def einsum(equation: str, *operands):
    """``torch.einsum(equation, *operands)`` (or the list form) where one
    or more operands are SharedTensors."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):  # the sublist form: op, [0, 1], op, [1, 2], [0, 2]
        equation, operands = _from_sublists((equation,) + tuple(operands))
    shapes = [tuple(x.shape) for x in operands]
    terms, out = _parse(equation, shapes)
    for c in out:
        if c not in "".join(terms):
            raise RuntimeError(f"einsum(): output subscript {c!r} does not appear in the inputs")
    pairs = [_diagonals(x, t, k) for k, (x, t) in enumerate(zip(operands, terms))]
    xs, ts = [p[0] for p in pairs], [p[1] for p in pairs]
    sizes = _sizes(ts, [tuple(x.shape) for x in xs])
    x, t = _sum_alone(xs[0], ts[0], out + "".join(ts[1:]))
    for i in range(1, len(xs)):
        later = out + "".join(ts[i + 1 :])
        y, ty = _sum_alone(xs[i], ts[i], later + t)
        x, t = _pair(x, t, y, ty, later, sizes)
    if t != out:
        x = x.permute(*[t.index(c) for c in out])
    return x
