"""A forward's checks on its input's sizes, kept as checks in the
converted graph (probe ND, 2026-12-07).

torch.fx cannot branch on a traced value, sizes included, so nanoGPT's
``assert t <= self.config.block_size`` ended the conversion with fx's
"symbolically traced variables cannot be used as inputs to control flow",
naming no line. Sizes are public, so a check on them can run at every
call: where the branch is a check (an ``assert``, or an ``if`` whose body
only raises) on a value computed from sizes alone (``x.size()``,
``x.shape``, ``x.dim()``, ``x.numel()`` and arithmetic on them), the tracer
follows the branch that does not raise and records :func:`size_check`,
which raises the forward's own exception type at a call whose sizes fail
it. A branch on anything else is still refused, now naming the line.
"""

from __future__ import annotations

import builtins
import contextlib
import dis
import inspect
import linecache
import operator
import os
import sys

import torch

_SIZE_METHODS = frozenset(("size", "dim", "ndimension", "numel", "nelement"))
_SIZE_ATTRS = frozenset(("shape", "ndim"))
_FX = os.sep + os.path.join("torch", "fx") + os.sep


# the exception types of the checks traced so far, by name and id (a
# graph's arguments cannot hold a class; a class defined again, a notebook
# cell run twice, is another one)
_KINDS: dict[str, type] = {}


def size_check(ok: bool, kind: str, text: str) -> None:
    """Raise the exception type named ``kind`` with ``text`` unless ``ok``:
    a forward's check on its input's sizes, run at each call of the
    converted model."""
    if not ok:
        cls = _KINDS.get(kind, RuntimeError)
        try:
            err = cls(text)
        except Exception:  # an __init__ of other arguments: made without it
            err = cls.__new__(cls)
            err.args = (text,)
        raise err


def unpack_check(size, n: int) -> None:
    """Python's error for ``b, t = x.size()`` where x has another number
    of dimensions than the traced one (a graph reads each by index)."""
    if len(size) < n:
        raise ValueError(f"not enough values to unpack (expected {n}, got {len(size)})")
    if len(size) > n:
        raise ValueError(f"too many values to unpack (expected {n})")


def every_path_stops(node: torch.fx.Node, stop, fails) -> bool:
    """Whether every path back from ``node`` through its inputs reaches a
    node where ``stop`` holds before one where ``fails`` holds (shared by
    :func:`of_sizes` and ``inplace.is_number``)."""
    todo, seen = [node], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if stop(n):
            continue
        if fails(n):
            return False
        todo.extend(n.all_input_nodes)
    return True


def _size_read(n: torch.fx.Node) -> bool:
    if n.op == "call_method":
        return n.target in _SIZE_METHODS
    return n.op == "call_function" and n.target is builtins.getattr and n.args[1] in _SIZE_ATTRS


def of_sizes(node: torch.fx.Node) -> bool:
    """Whether ``node``'s value comes from sizes alone: every path back
    to an input, a parameter or a module call passes a size read."""
    return every_path_stops(
        node, _size_read, lambda n: n.op in ("placeholder", "get_attr", "call_module")
    )


class SizeChecks:
    """A torch.fx Tracer mixin: a check on sizes (see the module's text)
    becomes a :func:`size_check` node; any other branch on a traced value
    is refused with the forward's line named."""

    def to_bool(self, obj):
        frame = _forward_frame()
        if isinstance(obj, torch.fx.Proxy) and obj.tracer is self and frame is not None:
            check = _check(frame)
            if check is not None and of_sizes(obj.node):
                passes, kind, said = check
                cond = (
                    obj if passes else self.create_proxy("call_function", operator.not_, (obj,), {})
                )
                text = f"the model's forward check failed on this input's sizes: {_line(frame)}"
                text = f"{said} ({text})" if said else text
                name = f"{kind.__module__}.{kind.__qualname__}@{id(kind):x}"
                _KINDS[name] = kind
                self.create_proxy("call_function", size_check, (cond, name, text), {})
                return passes
        try:
            return super().to_bool(obj)
        except Exception as e:  # the line, for wrapped.where
            if frame is not None and isinstance(obj, torch.fx.Proxy):
                what = "a size" if of_sizes(obj.node) else "a traced value"
                rewritten = any(n.startswith("@py_assert") for n in frame.f_code.co_varnames)
                pytest = "; pytest rewrote this file's asserts: write `assert a and b` as two"
                with contextlib.suppress(AttributeError):
                    e._cryptgpu_node = obj.node  # (a flag argument's: flags.py)
                    e._cryptgpu_at = (
                        f"{_line(frame)}: a branch on {what} (a check on sizes traces: an "
                        "assert, or an if whose body only raises, outside a try block"
                        f"{pytest if rewritten else ''})"
                    )
            raise


def _forward_frame():
    """The frame whose code asked a traced value for its truth (the one
    calling fx's ``Proxy.__bool__``), or None."""
    f = sys._getframe(1)
    while f is not None and not (f.f_code.co_name == "__bool__" and _FX in f.f_code.co_filename):
        f = f.f_back
    return None if f is None else f.f_back


def _check(frame):
    """(the truth value that passes, the exception type raised otherwise,
    its message where it is one constant string) when the frame is at the
    branch of a check: a conditional jump, outside any ``try``/``with``,
    whose other way ends in a raise on every path, without looping or
    returning (``assert c``, pytest's rewritten assert, ``if c: raise
    E(...)``, ``if not c: raise E(...)``); else None."""
    try:
        code = list(dis.get_instructions(frame.f_code))
        guarded = list(dis.Bytecode(frame.f_code).exception_entries)
    except Exception:  # code dis cannot read
        return None
    at = next((i for i, ins in enumerate(code) if ins.offset == frame.f_lasti), None)
    # Python 3.13 asks for the truth at TO_BOOL, or at a comparison made
    # for a branch (COMPARE_OP bool(<=)), just before the jump
    if at is not None and code[at].opname in ("TO_BOOL", "COMPARE_OP", "CONTAINS_OP"):
        at += 1
    jump = code[at].opname if at is not None else ""
    if not (jump.startswith("POP_JUMP") and jump.endswith(("IF_TRUE", "IF_FALSE"))):
        return None
    offsets = {ins.offset: i for i, ins in enumerate(code)}
    for e in guarded:  # a try could catch it; a with block (its exit) re-raises
        handler = code[offsets.get(e.target, 0) :][:3]
        if e.start <= code[at].offset < e.end and "WITH_EXCEPT_START" not in [
            ins.opname for ins in handler
        ]:
            return None
    # the failing way falls through (assert c, if c: raise), or is the
    # jump's target (the first test of `assert a and b`, of `if a or b:
    # raise`, an else that raises)
    passes = jump.endswith("IF_TRUE")
    # a try (or a with block) inside the failing way could catch its raise
    inner = [(e.start, e.end) for e in guarded if not e.start <= code[at].offset < e.end]
    found = _raising(code, at + 1, code[at].argval, frame, inner)
    if found is None:
        passes = not passes
        start = offsets.get(code[at].argval, -1)
        found = _raising(code, start, code[at + 1].offset, frame, inner)
    if found is None:
        return None
    kind, texts = found
    text = texts[0] if len(texts) == 1 else None
    return passes, kind or RuntimeError, text


def _raising(code: list, start: int, passing: int, frame, inner: list):
    """(the first exception type loaded, the constant strings loaded) when
    every path from instruction ``start`` ends in a raise before reaching
    offset ``passing``, jumping only forward, and no raise is inside one of
    the ``inner`` (start, end) ranges a handler covers; else None."""
    if start < 0:
        return None
    at = {ins.offset: i for i, ins in enumerate(code)}
    kind, texts, todo, seen, value = None, [], [start], set(), None
    while todo:
        i = todo.pop()
        while i not in seen and i < len(code) and len(seen) < 4000:
            seen.add(i)
            ins = code[i]
            op = ins.opname
            if ins.offset == passing or op.startswith(("RETURN", "YIELD", "FOR_ITER")):
                return None
            if op in ("RAISE_VARARGS", "RERAISE"):
                if any(a <= ins.offset < b for a, b in inner):  # caught, maybe
                    return None
                break
            value = _loaded(ins, value, frame)  # what a load chain names, statically
            if kind is None and isinstance(value, type) and issubclass(value, BaseException):
                kind = value
            if op == "LOAD_ASSERTION_ERROR":
                kind = kind or AssertionError
            elif op.startswith(("FORMAT_", "BUILD_STRING")):
                texts.append(None)  # a message made at the call: not known here
            elif op == "LOAD_CONST" and isinstance(ins.argval, str):
                texts.append(ins.argval)
            if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
                target = at.get(ins.argval, -1)
                if target <= i:  # a loop
                    return None
                if "IF" not in op and "OR_POP" not in op:  # unconditional
                    i = target
                    continue
                todo.append(target)
            i += 1
        else:
            if i not in seen:  # ran off the code, or too long to follow
                return None
    return kind, texts


def _loaded(ins, value, frame):
    """The object a chain of loads names (``ValueError``, ``self.Error``,
    ``errs.ShapeError``, a class of an enclosing function), read without
    running any code (no property, no traced value); None otherwise."""
    op, name = ins.opname, ins.argval
    if op in ("LOAD_GLOBAL", "LOAD_NAME"):
        return frame.f_globals.get(name, getattr(builtins, str(name), None))
    if op in ("LOAD_FAST", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_FAST_CHECK"):
        return frame.f_locals.get(name)
    if op in ("LOAD_ATTR", "LOAD_METHOD") and value is not None:
        if isinstance(value, torch.fx.Proxy):
            return None
        try:
            return inspect.getattr_static(value, str(name))
        except AttributeError:
            return None
    return None


class SizeUnpacking:
    """A torch.fx Proxy mixin: ``b, t = x.size()`` (or ``x.shape``) also
    records :func:`unpack_check`, so an input of another rank gets
    Python's ValueError, not an IndexError from inside the graph; other
    unpacking as torch.fx's own."""

    def __iter__(self):
        frame = sys._getframe(1)
        ins = next(
            (i for i in dis.get_instructions(frame.f_code) if i.offset >= frame.f_lasti), None
        )
        if ins is None or ins.opname != "UNPACK_SEQUENCE":
            return self.tracer.iter(self)
        if of_sizes(self.node):
            self.tracer.create_proxy("call_function", unpack_check, (self, ins.argval), {})
        return iter([self[i] for i in range(ins.argval)])


def _line(frame) -> str:
    """'`<source line>` (file:line)' of a frame."""
    name, no = frame.f_code.co_filename, frame.f_lineno
    text = linecache.getline(name, no).strip()
    return f"`{text}` ({os.path.basename(name)}:{no})" if text else f"{name}:{no}"
