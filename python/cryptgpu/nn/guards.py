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

import ast
import builtins
import contextlib
import dis
import inspect
import linecache
import operator
import os
import sys

import torch

from . import size_exprs

_SIZE_METHODS = frozenset(("size", "dim", "ndimension", "numel", "nelement"))
_SIZE_ATTRS = frozenset(("shape", "ndim"))
_FX = os.sep + os.path.join("torch", "fx") + os.sep


# the exception types of the checks traced so far, by name and id (a
# graph's arguments cannot hold a class; a class defined again, a notebook
# cell run twice, is another one)
_KINDS: dict[str, type] = {}


def size_check(ok: bool, kind: str, text: str, parts=None) -> None:
    """Raise the exception type named ``kind`` with ``text`` unless ``ok``:
    a forward's check on its input's sizes, run at each call of the
    converted model (``parts``: its message made of this call's sizes,
    size_exprs.message, put before ``text``)."""
    if not ok:
        said = size_exprs.message(*parts) if parts is not None else None
        text = f"{said} ({text})" if said else text
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
        frame, why = _forward_frame(), ""
        if isinstance(obj, torch.fx.Proxy) and obj.tracer is self and frame is not None:
            # and/or/not and membership, read as a whole (size_exprs.py)
            self._cg_why = ""
            truth = size_exprs.answer(self, obj, frame, of_sizes, self._size_check)
            if truth is not None:
                return truth
            why = f"; this check holds {self._cg_why}" if self._cg_why else ""
            ins = size_exprs.instruction(frame)
            if ins is not None and ins.opname == "CONTAINS_OP" and of_sizes(obj.node):
                raise size_exprs.Unsupported(  # Python's `in` asks `x == item` per item
                    f"membership of a size in a container at {_line(frame)}: it converts "
                    "only in a check on sizes alone (the condition of an assert, or of an "
                    "if whose body only raises, outside a try block, each of its operands "
                    "computed from sizes: `assert x.size(1) in (2, 3)`), in a forward whose "
                    f"source file Python can read (Python 3.11 or later){why}"
                )
            check = _check(frame)
            if check is not None and of_sizes(obj.node):
                passes, kind, said = check
                said, parts = _said(self, frame, said)
                self._size_check(obj, kind, said, parts, passes, _line(frame))
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
                        f"{pytest if rewritten else ''}{why})"
                    )
            raise

    def _size_check(self, cond, kind, said, parts, passes, where):
        """Record :func:`size_check` of ``cond`` (``passes``: the truth
        that passes) raising ``kind``."""
        if not passes:
            cond = self.create_proxy("call_function", operator.not_, (cond,), {})
        text = f"the model's forward check failed on this input's sizes: {where}"
        text = f"{said} ({text})" if said else text
        name = f"{kind.__module__}.{kind.__qualname__}@{id(kind):x}"
        _KINDS[name] = kind
        args = (cond, name, text) + ((parts,) if parts is not None else ())
        self.create_proxy("call_function", size_check, args, {})


def _said(tracer, frame, said):
    """(constant message, run-time parts) of the check the frame is at,
    read from its source where it can be (a ``%``/``.format`` message made
    at run time, not its template); else the bytecode's reading."""
    ins = size_exprs.instruction(frame)
    found = size_exprs.statement(frame, ins) if ins is not None else None
    if not found or found[0] is None:
        return said, None
    node = size_exprs.said(found[0]) if _stmt_raises(found[0]) else None
    if node is None:
        return said, None
    ev = size_exprs.Evaluation(tracer, frame, frame.f_code.co_filename)
    return size_exprs.message_of(ev, node, of_sizes)


def _stmt_raises(stmt) -> bool:
    return isinstance(stmt, ast.Assert) or size_exprs._raises_only(stmt.body)


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
            elif ins.argrepr == "%" or ins.argval == "format" or op == "BINARY_MODULO":
                # a template filled at the call: not its text (argval: 3.12's
                # LOAD_ATTR argrepr reads 'NULL|self + format', review s29)
                texts.append(None)
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


_OURS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
    os.path.dirname(os.path.abspath(os.__file__)) + os.sep,  # the standard library
)


def traced_failure(e: BaseException):
    """(words, whether they replace the error's own) for an error raised
    while torch.fx traced a forward, from the innermost line of the
    user's code in its traceback: a ``raise``/``assert`` of the forward
    itself (a check that does not trace: ``isinstance(x, torch.Tensor)``
    is False for fx's Proxy), an item assignment into a traced value, or
    else ", at `line` (file:no)" to add; ("", False) where no such line."""
    tb, mine = e.__traceback__, None
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_OURS):
            mine = tb
        last, tb = tb, tb.tb_next
    if mine is None:
        return "", False
    line = _line(mine.tb_frame) if mine is last else _tb_line(mine)
    op = next(
        (i.opname for i in dis.get_instructions(mine.tb_frame.f_code) if i.offset == mine.tb_lasti),
        "",
    )
    if mine is last and op == "STORE_SUBSCR" and "item assignment" in str(e):
        return (
            f"item assignment into a traced value (`h[idx] = v`) at {line}: torch.fx records "
            "no node for it; build the result out of place, with torch.cat/torch.stack/"
            "torch.where or a product with a public mask (h = h * keep, where keep is "
            "1 where h is kept and 0 where it is set)",
            True,
        )
    if mine is last and op in ("RAISE_VARARGS", "RERAISE"):
        src, line = _raising_check(mine, line)
        hint = "only a check on sizes (x.size(), x.shape, x.dim(), x.numel()) converts"
        if "isinstance(" in src:
            hint = (
                "isinstance(x, torch.Tensor) is False for them; a converted model's inputs "
                "are tensors (shared or torch) at every call: drop the check"
            )
        elif any(w in src for w in (".dtype", ".device", ".requires_grad", ".is_contiguous")):
            hint = (
                "x.dtype, x.device, x.requires_grad and x.is_contiguous() are not known "
                f"on them ({hint}): drop the check"
            )
        elif " in {" in src or "in set(" in src:
            hint = "a set never finds a traced size in it: write a tuple, `in (6, 8)`"
        said = f"{type(e).__name__}({str(e)!r})" if str(e) else type(e).__name__
        return (
            f"the forward's own check raised {said} while torch.fx traced it, at {line}: "
            f"torch.fx runs the forward on Proxy objects, not on the input's tensors, and {hint}",
            True,
        )
    return f", at {line}", False


def _raising_check(tb, line: str):
    """(source text, its `line` words) of the check whose raise a
    traceback entry is at: the ``if`` above a raise, else the line."""
    name = tb.tb_frame.f_code.co_filename
    src = linecache.getline(name, tb.tb_lineno)
    tree = size_exprs._tree(name)
    for node in tree._cg_checks if tree is not None else ():
        if isinstance(node, ast.If) and node.body and node.body[-1].lineno == tb.tb_lineno:
            lines = range(node.test.lineno, node.test.end_lineno + 1)
            src = "".join(linecache.getline(name, n) for n in lines) + src
            text = linecache.getline(name, node.lineno).strip()
            return src, f"`{text}` ({os.path.basename(name)}:{node.lineno})"
    return src, line


def _tb_line(tb) -> str:
    name, no = tb.tb_frame.f_code.co_filename, tb.tb_lineno
    text = linecache.getline(name, no).strip()
    return f"`{text}` ({os.path.basename(name)}:{no})" if text else f"{name}:{no}"
