"""Compound checks on sizes, read from the forward's source (probe OH,
2026-12-07): ``and``/``or``/``not`` and membership (``x.size(1) in (2,
3)``) in an ``assert`` or an ``if`` whose body only raises.

Python asks a traced value for its truth one operand at a time, and short
circuits: guards.SizeChecks, which sees one operand per question, recorded
a check of each operand alone, so ``assert A or B`` or ``if A and B:
raise`` converted only where every operand had the same truth value, and
``x.size(1) in (2, 3)`` (Python's ``x.size(1) == 2``, then ``== 3``) kept
only the first comparison (a valid 3 then failed the check). Here the
statement's condition is evaluated once, as a whole, from its syntax tree:
each operand becomes a node, combined with ``and``/``or``/``not`` and
membership at run time, and the truth values handed back to Python are
one assignment of the operands under which the statement passes (the
branch the traced graph follows). Needs the source and Python 3.11's
instruction positions; otherwise, and for a form not read here, the
check goes the way guards.py takes.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import itertools
import linecache
import os
import sys

import torch


def all_of(*values) -> bool:
    """``a and b and ...`` of a check's operands, at run time."""
    return all(bool(v) for v in values)


def any_of(*values) -> bool:
    """``a or b or ...`` of a check's operands, at run time."""
    return any(bool(v) for v in values)


def not_of(value) -> bool:
    """``not a`` of a check's operand, at run time."""
    return not value


def member(value, items) -> bool:
    """``value in items`` of a check, at run time (``items`` a tuple or a
    range of numbers)."""
    return value in items


def message(how: str, template, args, kwargs):
    """A check's message made at run time of its sizes and constants:
    ``template % args`` ("%"), ``template.format(*args, **kwargs)``
    ("format") or the pieces of an f-string joined ("f"); None if that
    fails."""
    try:
        if how == "%":
            return template % args
        if how == "format":
            return template.format(*args, **kwargs)
        return "".join(
            p if isinstance(p, str) else format(_convert(p[0], p[1]), p[2]) for p in template
        )
    except Exception:  # a format the run-time values do not fit
        return None


def _convert(v, conversion: int):
    return {115: str, 114: repr, 97: ascii}.get(conversion, lambda a: a)(v)


class _Abort(Exception):
    """A traced value asked for its truth while a condition is evaluated
    here (min() of sizes): the form is left to guards.py."""


class Unsupported(NotImplementedError):
    """A check whose form this module sees but cannot keep exactly."""


_TREES: dict = {}


def _tree(filename: str):
    """The parsed source of a file (cached by its text), or None."""
    lines = linecache.getlines(filename)
    if not lines:
        return None
    hit = _TREES.get(filename)
    if hit is not None and hit[0] is lines:  # linecache's same list: no O(file) join
        return hit[2]
    text = "".join(lines)
    if hit is not None and hit[1] == text:
        _TREES[filename] = (lines, text, hit[2])
        return hit[2]
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    tree._cg_checks = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assert, ast.If)):
            tree._cg_checks.append(node)
        for child in ast.iter_child_nodes(node):
            child._cg_parent = node
    _TREES[filename] = (lines, text, tree)
    return tree


def _span(node):
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)


def _within(inner, outer) -> bool:
    (a, b), (c, d) = inner, outer
    return c <= a and b <= d


def instruction(frame):
    """The instruction a frame is at, or None."""
    for ins in dis.get_instructions(frame.f_code):
        if ins.offset == frame.f_lasti:
            return ins
    return None


def statement(frame, ins):
    """(the Assert or If statement whose condition holds the instruction,
    its tree's parent chain) or None."""
    pos = getattr(ins, "positions", None)
    if pos is None or pos.lineno is None or pos.col_offset is None:
        return None
    tree = _tree(frame.f_code.co_filename)
    if tree is None:
        return None
    at = ((pos.lineno, pos.col_offset), (pos.end_lineno, pos.end_col_offset))
    best = None
    for node in tree._cg_checks:
        if node.test.lineno <= pos.lineno and _within(at, _span(node.test)):
            if best is None or _within(_span(node.test), _span(best.test)):
                best = node
    return best, at


def _compound(test) -> bool:
    """Whether a condition has ``and``/``or`` or membership at its top
    (under ``not``s): the forms this module evaluates."""
    while isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test = test.operand
    if isinstance(test, ast.BoolOp):
        return True
    return isinstance(test, ast.Compare) and isinstance(test.ops[0], (ast.In, ast.NotIn))


def _in_try(node) -> bool:
    p = getattr(node, "_cg_parent", None)
    while p is not None and not isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if isinstance(p, ast.Try) or type(p).__name__ == "TryStar":
            return True
        p = getattr(p, "_cg_parent", None)
    return False


def _raises_only(body) -> bool:
    """Whether a block ends in a raise on every path (straight code, then
    ``raise``)."""
    if not body or not isinstance(body[-1], ast.Raise) or body[-1].exc is None:
        return False
    stops = (ast.Return, ast.Break, ast.Continue, ast.Try, ast.For, ast.While, ast.With)
    return not any(isinstance(n, stops) for s in body[:-1] for n in ast.walk(s))


class _Open:
    """A check statement being answered: the truth values still to give."""

    def __init__(self, frame, stmt, answers):
        self.frame, self.stmt, self.answers = frame, stmt, answers


class Evaluation:
    """A condition evaluated once, from its syntax tree, in the frame's
    names: operands as traced values or constants, ``and``/``or``/``not``
    and membership recorded as nodes."""

    def __init__(self, tracer, frame, filename):
        self.tracer, self.frame, self.filename = tracer, frame, filename
        self.env = {**frame.f_globals, **frame.f_locals}
        self.leaves: list = []  # (node, value, kind, container length)

    def value(self, node):
        """An expression's value (run with the frame's names)."""
        code = compile(ast.Expression(body=node), self.filename, "eval")
        self.tracer._cg_evaluating = True
        try:
            return eval(code, self.env)  # the forward's own expression, once more
        finally:
            self.tracer._cg_evaluating = False

    def drop_after(self, mark: int) -> None:
        """Erase the unused nodes recorded after the graph's first
        ``mark`` (an evaluation given up: Python's own run records its
        operands)."""
        for n in reversed(list(self.tracer.graph.nodes)[mark:]):
            if not n.users:
                self.tracer.graph.erase_node(n)

    def proxy(self, fn, *args):
        return self.tracer.create_proxy("call_function", fn, args, {})

    def condition(self, node):
        """The condition's value: a traced value, or a constant where
        Python's short circuit settles it without one."""
        if isinstance(node, ast.BoolOp):
            is_and, traced = isinstance(node.op, ast.And), []
            for v in node.values:
                got = self.condition(v)
                if isinstance(got, torch.fx.Proxy):
                    traced.append(got)
                elif bool(got) != is_and:  # settled: and of a falsy, or of a truthy
                    return bool(got)
            if not traced:
                return is_and
            return self.proxy(all_of if is_and else any_of, *traced)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            got = self.condition(node.operand)
            return self.proxy(not_of, got) if isinstance(got, torch.fx.Proxy) else not got
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], (ast.In, ast.NotIn))
        ):
            return self.membership(node)
        got = self.value(node)
        self.leaves.append((node, got, "plain", 1))
        return got

    def membership(self, node):
        left, items = self.value(node.left), self.value(node.comparators[0])
        negate = isinstance(node.ops[0], ast.NotIn)
        if not isinstance(left, torch.fx.Proxy) and not _traced_in(items):
            got = (left not in items) if negate else (left in items)
            self.leaves.append((node, got, "plain", 0))
            return got
        if not isinstance(left, torch.fx.Proxy) or _traced_in(items):
            raise Unsupported(
                "membership with a traced container (write `x.size(1) in (2, 3)`: a size "
                "in a constant tuple, list, range or set)"
            )
        if isinstance(items, (set, frozenset, dict)):
            kind, kept = "hashed", tuple(items)  # Python's lookup: never found
        elif isinstance(items, (tuple, list, range)):
            kind, kept = "sequence", items if isinstance(items, range) else tuple(items)
        else:
            raise Unsupported(
                f"membership in a {type(items).__name__} (a constant tuple, list, range "
                "or set converts)"
            )
        got = self.proxy(member, left, kept)
        self.leaves.append((node, got, kind, len(kept)))
        return self.proxy(not_of, got) if negate else got


def _traced_in(items) -> bool:
    if isinstance(items, torch.fx.Proxy):
        return True
    if isinstance(items, (tuple, list, set, frozenset)):
        return any(isinstance(i, torch.fx.Proxy) for i in items)
    return False


def _witness(test, leaves, wanted: bool):
    """The to_bool answers, in Python's order, for one assignment of the
    traced operands under which ``test`` is ``wanted``; None if none is."""
    found = {id(n): (v, kind, size) for n, v, kind, size in leaves}
    free = [n for n, v, kind, _ in leaves if isinstance(v, torch.fx.Proxy) and kind != "hashed"]
    if len(free) > 12:
        return None
    for values in itertools.product((True, False), repeat=len(free)):
        pick = {id(n): t for n, t in zip(free, values)}
        answers: list = []
        if _truth(test, found, pick, answers) == wanted:
            return answers
    return None


def _truth(node, found: dict, pick: dict, answers: list) -> bool:
    """A condition's truth with the traced operands given ``pick``'s
    values, Python's short circuit followed and its questions (node,
    answer) put in ``answers``."""
    if isinstance(node, ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        for v in node.values:
            if _truth(v, found, pick, answers) != is_and:
                return not is_and
        return is_and
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _truth(node.operand, found, pick, answers)
    v, kind, size = found[id(node)]
    if kind == "plain":
        if isinstance(v, torch.fx.Proxy):
            answers.append((node, pick[id(node)]))
            return pick[id(node)]
        return bool(v)
    inside = False if kind == "hashed" else pick[id(node)]
    if kind == "sequence":  # one question per item, up to the first found
        answers.extend([(node, True)] if inside else [(node, False)] * size)
    return inside != isinstance(node.ops[0], ast.NotIn)


def _kind(stmt, frame):
    """The exception type a check raises, read without running code."""
    if isinstance(stmt, ast.Assert):
        return AssertionError
    exc = stmt.body[-1].exc
    exc = exc.func if isinstance(exc, ast.Call) else exc
    names = []
    while isinstance(exc, ast.Attribute):
        names.append(exc.attr)
        exc = exc.value
    if not isinstance(exc, ast.Name):
        return RuntimeError
    v = frame.f_locals.get(exc.id, frame.f_globals.get(exc.id, getattr(builtins, exc.id, None)))
    for name in reversed(names):
        if v is None or isinstance(v, torch.fx.Proxy):
            return RuntimeError
        try:
            v = inspect.getattr_static(v, name)
        except AttributeError:
            return RuntimeError
    return v if isinstance(v, type) and issubclass(v, BaseException) else RuntimeError


def said(stmt):
    """The message expression of a check statement, or None."""
    if isinstance(stmt, ast.Assert):
        return stmt.msg
    exc = stmt.body[-1].exc
    return exc.args[0] if isinstance(exc, ast.Call) and exc.args else None


def message_of(ev: Evaluation, node, of_sizes):
    """(a constant message, or None; the run-time parts for
    :func:`message`, or None): a constant string as it is; a ``%``, a
    ``.format`` or an f-string made of sizes and constants at run time;
    anything else left out (not the unfilled template)."""
    if node is None:
        return None, None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, None
    mark = len(ev.tracer.graph.nodes)
    text, parts = _message_parts(ev, node, of_sizes)
    if parts is None:
        ev.drop_after(mark)  # what it read of more than sizes: not in the graph
    return text, parts


def _message_parts(ev: Evaluation, node, of_sizes):
    try:
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            args = ev.value(node.right)
            parts = ("%", node.left.value, args, {})
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
            and not any(isinstance(a, ast.Starred) for a in node.args)
            and all(k.arg is not None for k in node.keywords)
        ):
            args = tuple(ev.value(a) for a in node.args)
            kwargs = {k.arg: ev.value(k.value) for k in node.keywords}
            parts = ("format", node.func.value.value, args, kwargs)
        elif isinstance(node, ast.JoinedStr):
            pieces = []
            for p in node.values:
                if isinstance(p, ast.Constant):
                    pieces.append(p.value)
                    continue
                spec = p.format_spec
                if spec is not None and not all(isinstance(s, ast.Constant) for s in spec.values):
                    return None, None
                spec = "".join(s.value for s in spec.values) if spec is not None else ""
                pieces.append((ev.value(p.value), p.conversion, spec))
            parts = ("f", tuple(pieces), (), {})
        else:
            return None, None
    except Exception:  # an argument that does not evaluate here
        return None, None
    ok = []

    def see(a):
        if isinstance(a, torch.fx.Proxy):
            ok.append(of_sizes(a.node))
        elif not isinstance(a, (int, float, str, bool, type(None), torch.Size)):
            ok.append(False)
        return a

    torch.fx.node.map_aggregate(parts[2:], see)
    for p in parts[1] if parts[0] == "f" else ():
        if not isinstance(p, str):
            see(p[0])
    return (None, parts) if all(ok) else (None, None)


def why_not(test) -> str:
    """The form in a check's condition that is not read as a whole, in
    words for a refusal, or "" (review s29: the refusal blamed the
    membership or called it a branch on a size)."""
    for n in ast.walk(test):
        if isinstance(n, (ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)):
            return "a generator or comprehension over traced values (write it out)"
        if isinstance(n, ast.Compare) and len(n.ops) > 1:
            return "a chained comparison (write `a <= b <= c` as `a <= b and b <= c`)"
    return ""


def answer(tracer, obj, frame, of_sizes, record):
    """The truth to give Python for ``obj`` where the frame is at a
    compound check on sizes (recording the check once per statement
    through ``record(cond, kind, text, parts, passes, line)``), or None where
    guards.py's own reading applies."""
    if getattr(tracer, "_cg_evaluating", False):
        raise _Abort
    if sys.version_info < (3, 11):
        return None
    if any(n.startswith("@py_assert") for n in frame.f_code.co_varnames):
        return None  # pytest's rewrite: its own flow (guards.py's hint)
    ins = instruction(frame)
    found = statement(frame, ins) if ins is not None else None
    if not found or found[0] is None:
        return None
    stmt, at = found
    opened = getattr(tracer, "_cg_open", None)
    if opened is not None and opened.frame is frame and opened.stmt is stmt and opened.answers:
        node, truth = opened.answers[0]
        if _within(at, _span(node)) or _within(_span(node), at):
            opened.answers.pop(0)
            return truth
    tracer._cg_open = None
    if not _compound(stmt.test) or _in_try(stmt):
        return None
    if isinstance(stmt, ast.If) and not _raises_only(stmt.body):
        return None
    passes = isinstance(stmt, ast.Assert)  # an if's body raises: passes when false
    ev = Evaluation(tracer, frame, frame.f_code.co_filename)
    mark = len(tracer.graph.nodes)
    try:
        cond = ev.condition(stmt.test)
    except Unsupported as e:
        raise Unsupported(f"{e}, at {_line(stmt, frame)}") from None
    except Exception:  # _Abort, or an operand that does not evaluate here
        ev.drop_after(mark)
        tracer._cg_why = why_not(stmt.test)  # (for guards.py's refusal)
        return None
    traced = [v for _, v, _, _ in ev.leaves if isinstance(v, torch.fx.Proxy)]
    if not all(of_sizes(v.node) for v in traced):
        ev.drop_after(mark)
        return None  # a branch on more than sizes: guards.py refuses it
    answers = _witness(stmt.test, ev.leaves, passes)
    if answers is None:
        raise Unsupported(
            "a check on sizes whose passing way Python cannot take while torch.fx traces "
            "it (membership of a size in a set or dict: write a tuple, `in (6, 8)`), at "
            + _line(stmt, frame)
        )
    if isinstance(cond, torch.fx.Proxy):
        text, parts = message_of(ev, said(stmt), of_sizes)
        record(cond, _kind(stmt, frame), text, parts, passes, _line(stmt, frame))
    opened = _Open(frame, stmt, answers)
    node, truth = opened.answers.pop(0) if answers else (None, None)
    if node is None or not (_within(at, _span(node)) or _within(_span(node), at)):
        raise Unsupported(f"a check on sizes of a form not read here, at {_line(stmt, frame)}")
    tracer._cg_open = opened if opened.answers else None
    return truth


def _line(stmt, frame) -> str:
    name = frame.f_code.co_filename
    text = linecache.getline(name, stmt.lineno).strip()
    return f"`{text}` ({os.path.basename(name)}:{stmt.lineno})"
