"""A forward's Python flag arguments (``forward(self, x,
return_hidden=False)``: ``if return_hidden: return y, h``) traced as
constants (probe OC, 2026-12-07).

torch.fx traces every argument as a value, so a branch on a flag ended the
conversion with "symbolically traced variables cannot be used as inputs to
control flow", whatever the dummy input gave. Where a trace fails on a
branch that reads an argument whose value is a bool, int, float or str
(the dummy input's, by position, else the forward's default), the model is
traced again with that argument fixed to that value (torch.fx's
``concrete_args``): the converted graph runs that branch, and a call with
another value is refused (TypeError naming the argument and the value the
model was converted with), as an argument traced as None is
(tracing.check_optional). An argument the forward only computes with
(``x / temperature``) stays an input: another value at a call is used.
"""

from __future__ import annotations

import inspect
import operator
import weakref

import torch

from ..tensor import SharedTensor

_SCALARS = (bool, int, float, str)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
# model -> {argument: the value it is traced with}, for tracing._trace
_FIXED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SPECIALIZED = " has been specialized to have value "  # torch.fx's assert message


def fixed(model: torch.nn.Module) -> dict:
    """The arguments of ``model``'s forward traced as constants (name ->
    value) in the conversion under way."""
    return dict(_FIXED.get(model, {}))


def traced(trace, model: torch.nn.Module, dummy_input):
    """``trace(model)`` (tracing.trace_modes), retraced with each flag
    argument a failed trace branched on fixed to its value (see the
    module's text). A failure with no branch named (``range(n)`` of an
    argument) is retried with every such argument fixed, then with only
    those the trace needs."""
    values = _values(model, dummy_input)
    held: dict = {}
    _FIXED[model] = held
    tried_all = False
    while True:
        try:
            return trace(model)
        except NotImplementedError as e:
            node = _node(e)
            reads = _reads(node) if node is not None else set()
            more = {n: values[n] for n in reads if n in values and n not in held}
            if more:
                held.update(more)
                continue
            rest = {n: v for n, v in values.items() if n not in held}
            if node is not None or tried_all or not rest:
                raise _named(e, reads - values.keys(), dummy_input) from e.__cause__
            tried_all = True
            held.update(rest)
            try:
                trace(model)
            except NotImplementedError:
                for n in rest:
                    del held[n]
                raise e from e.__cause__
            for n, v in rest.items():  # keep only those the trace needs
                del held[n]
                try:
                    trace(model)
                except NotImplementedError:
                    held[n] = v


def _values(model: torch.nn.Module, dummy_input) -> dict:
    """The forward's arguments with a bool, int, float or str value: the
    dummy input's (by position), else the forward's default."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    many = isinstance(dummy_input, tuple) and not isinstance(dummy_input, torch.Size)
    given = dummy_input if many else (() if dummy_input is None else (dummy_input,))
    out, i = {}, 0
    for p in params:
        v = p.default
        if p.kind in _POSITIONAL:
            if i < len(given) and given[i] is not None:
                v = given[i]
            i += 1
        if type(v) in _SCALARS:
            out[p.name] = v
    return out


def _node(e: BaseException):
    """The traced value a failed trace branched on (guards.SizeChecks)."""
    for err in (e, e.__cause__):
        node = getattr(err, "_cryptgpu_node", None)
        if isinstance(node, torch.fx.Node):
            return node
    return None


def _reads(node: torch.fx.Node) -> set:
    """The names of the forward's arguments that ``node`` is computed from."""
    out, todo, seen = set(), [node], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder" and not str(n.target).startswith("*"):
            out.add(n.target)
        todo.extend(n.all_input_nodes)
    return out


def _named(e: NotImplementedError, names: set, dummy_input) -> NotImplementedError:
    """``e``, naming the arguments the failed branch reads that had no
    value to be traced with (a required argument the dummy input leaves
    out, or no dummy input)."""
    if not names or dummy_input is not None:
        return e
    listed = ", ".join(repr(n) for n in sorted(names))
    return NotImplementedError(
        f"{e} (the branch reads the forward's argument {listed}: if it is a Python flag, "
        "give its value (a bool, int, float or str) in the dummy input, to be traced as a "
        "constant)"
    )


def guard(gm: torch.fx.GraphModule) -> None:
    """Replace torch.fx's check of each argument traced as a constant (an
    ``==`` and a ``torch._assert``, an AssertionError at a call) by
    :func:`same`; the graph is recompiled by the caller."""
    g = gm.graph
    for node in list(g.nodes):
        if node.op != "call_function" or node.target is not torch._assert:
            continue
        cond, msg = (list(node.args) + [None, None])[:2]
        if not (isinstance(msg, str) and _SPECIALIZED in msg and isinstance(cond, torch.fx.Node)):
            continue
        if cond.target is not operator.eq or cond.args[0].op != "placeholder":
            continue
        holder, value = cond.args
        with g.inserting_before(node):
            g.call_function(same, (holder, msg.split(_SPECIALIZED)[0], value))
        g.erase_node(node)
        if not cond.users:
            g.erase_node(cond)


def same(value, name: str, converted) -> None:
    """A converted graph's check of the forward argument ``name``, traced
    as the constant ``converted``: TypeError for another ``value``."""
    v = value
    if isinstance(v, torch.Tensor) and v.dim() == 0:  # (the conversion check's dummy)
        v = v.item()
    if isinstance(converted, bool) or isinstance(v, bool):
        ok = type(v) is type(converted) and v == converted
    elif isinstance(converted, str):
        ok = isinstance(v, str) and v == converted
    else:
        ok = isinstance(v, (int, float)) and v == converted
    if ok:
        return
    shown = "a private tensor" if isinstance(value, SharedTensor) else f"{name}={value!r}"
    raise TypeError(
        f"this model was converted with {name}={converted!r}: its forward branches on "
        f"{name}, so the converted model runs the branch of that value, and cannot take "
        f"{shown}; convert it again with a dummy input that gives that value (one "
        "converted model for each value)"
    )
