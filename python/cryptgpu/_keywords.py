"""torch's keyword names for a torch function's leading arguments
(``torch.mul(input=x, other=y)``, ``F.linear(input=x, weight=w)``,
``torch.where(condition=c, input=x, other=y)``, ``F.pixel_shuffle(x,
upscale_factor=2)``), moved to their positions: the one normalisation of
SharedTensor's ``__torch_function__`` (torch_dispatch) and a converted
graph's function calls (nn/conversion), whose implementations take those
arguments by position under names of their own (``x``, ``r``) or by
position only (``operator.mul``). Until 2026-12-07 the eager path moved
``input=`` alone (so ``torch.where(condition=, input=, other=)`` failed) and
a converted graph moved nothing: TypeErrors naming internal helpers, after
the conversion check had passed (in plaintext, on torch's own functions).
"""

from __future__ import annotations

import inspect

from torch.fx.operator_schemas import get_signature_for_torch_op

_SIGNATURES: dict = {}
# numpy's names, which torch's argument parser accepts for its own (torch.sum(h,
# axis=1), keepdims=, torch.add(x=a, other=b)): refused in a converted forward
# until 2026-12-07 (a user probe)
_ALIASES = (("axis", "dim"), ("keepdims", "keepdim"), ("x", "input"), ("a", "input"))
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _signatures(func) -> list:
    """torch's signatures of ``func`` (one per overload, from its schema;
    ``self`` named ``input`` as torch's documentation does), or its Python
    signature, or none."""
    try:
        return _SIGNATURES[func]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable: not a torch function
        return []
    try:
        found = get_signature_for_torch_op(func) or [inspect.signature(func)]
    except (TypeError, ValueError, RuntimeError, AttributeError):  # a builtin without either
        found = []
    _SIGNATURES[func] = found
    return found


def positional(func, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of a call of torch's ``func`` with the required
    parameters given by keyword right after the positional ones moved to
    their positions, by the first of torch's overloads that takes the call;
    optional parameters (``bias=``, ``dim=`` where it has a default) and
    keyword-only ones stay keywords. ``input=`` of a function without a
    known signature (``F.max_pool2d``'s dispatcher) is moved as before."""
    if not kwargs:
        return tuple(args), {}
    args, kwargs = tuple(args), dict(kwargs)
    sigs = _signatures(func)
    for alias, name in _ALIASES:  # torch's argument parser takes these as well
        if alias in kwargs and name not in kwargs:
            names = [sg.parameters for sg in sigs]
            if any(name in ps for ps in names) and not any(alias in ps for ps in names):
                kwargs[name] = kwargs.pop(alias)
    sig = _first_binding(sigs, args, kwargs)
    if sig is not None:
        moved, left = args, dict(kwargs)
        for p in list(sig.parameters.values())[len(args) :]:
            if p.kind not in _POSITIONAL or p.default is not p.empty or p.name not in left:
                break
            moved += (left.pop(p.name),)
        # kept only where the moved call still means that overload: torch.max(s,
        # dim=t) with a 0-d t moved to (s, t) is max(input, other), which
        # reduced nothing (a review)
        if _first_binding(sigs, moved, left) is sig:
            args, kwargs = moved, left
    if not args and "input" in kwargs:  # torch.mean(input=x) where no signature says
        args = (kwargs.pop("input"),)
    return args, kwargs


def _first_binding(sigs: list, args: tuple, kwargs: dict):
    """The first of torch's overloads that takes the call, or None."""
    for sig in sigs:
        try:
            sig.bind(*args, **kwargs)
        except TypeError:
            continue
        return sig
    return None


def call(fn, func, args: tuple, kwargs: dict):
    """``fn`` (the implementation of torch's ``func``) on the call's
    arguments, torch's keywords moved by :func:`positional`."""
    args, kwargs = positional(func, args, kwargs)
    return fn(*args, **kwargs)
