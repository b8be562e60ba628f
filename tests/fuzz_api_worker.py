"""Property-based cases over the public tensor API, run in a worker process.

``tests/test_fuzz_api.py`` starts this script in a child process and reads
back what it wrote, so that an abort, a segfault or a hang of the engine
fails that test (naming the case) instead of taking pytest down.

Every case draws an operation and its arguments (shapes with 0-size and 0-d
dims, sizes up to 2^62, NaN/inf/huge values, bad src/dst, bad conv and pool
geometry, misuse of sessions) and runs it twice: on the secret-shared tensor
and on the same values in float64 torch. The case passes when

- torch raises and we raise an exception of the same type (a subclass
  counts: ``ShapeError`` is both a ``RuntimeError`` and a ``ValueError``);
- torch succeeds and we return its shape and values within the op's
  fixed-point tolerance (``TOL``, derived below); or we refuse with
  ``MemoryError``/``ValueError`` a result too large to hold, or with
  ``ValueError`` an input outside the fixed-point range; nothing else;
- never: a Rust panic (``InternalError``), an exception that is not an
  ``Exception``, an abort, a hang.

After every exception the session must still compute (checked on the next
case, and by a probe after each raised case).

Usage: python fuzz_api_worker.py --cases N --seed S --log FILE --out FILE
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import cryptgpu

F = 16
ULP = 2.0**-F
# Inputs are drawn on the 2^-6 grid, within +-8: every input is encoded
# exactly, sums are exact in the ring, and a product of two inputs (2^-12
# grid, |.| <= 64) is representable exactly; so the only errors are the
# truncations of the protocol.
#
# Tolerances, as a count of truncations (each within one unit 2^-f), plus a
# relative part for public-scalar encoding where the scalar is not on the
# grid (never, here: scalars are drawn on the grid too):
TOL = {
    "exact": 0.0,  # data movement, add, sum, relu, max, comparisons
    "one_trunc": ULP,  # shared*shared, matmul, public-float multiply
    "mean": 2 * ULP,  # a sum (exact) divided by a public int: <= 2 units
    "pool_avg": 2 * ULP,
}
# Results past this many bytes per party may be refused with MemoryError or
# ValueError (the issue: "a result that would not fit memory").
BIG = 1 << 28

GRID = 64  # values k/64

LAYER_OPS = ("conv2d", "max_pool2d", "avg_pool2d")
SESSION_SEED = [0]
counts: dict[str, int] = {}
failures: list[str] = []


def vals(n):
    return st.lists(st.integers(-8 * GRID, 8 * GRID), min_size=n, max_size=n).map(
        lambda v: [x / GRID for x in v]
    )


small_shape = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)
nonempty_shape = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)
huge_int = st.sampled_from([2**31, 2**32, 2**40, 2**62, 2**63 - 1, -(2**31), -7])
dim_arg = st.one_of(st.integers(-5, 4), st.just(None))


@st.composite
def tensor_of(draw, shape_strategy=small_shape, special=True):
    shape = draw(shape_strategy)
    n = math.prod(shape)
    t = torch.tensor(draw(vals(n)), dtype=torch.float64).reshape(shape)
    if special and n and draw(st.integers(0, 30)) == 0:
        bad = draw(
            st.sampled_from(
                [math.nan, math.inf, -math.inf, 1e300, -(2.0**48), 2.0**31, -(2.0**31) + 1]
            )
        )
        t.view(-1)[draw(st.integers(0, n - 1))] = bad
    return t


def encodable(t) -> bool:
    if t.numel() == 0:
        return True
    # The encoding range at f = 16: |x| < 2^(63 - 2f) = 2^31.
    return bool(torch.isfinite(t).all()) and bool((t.abs() < 2.0**31).all())


def scalar():
    return st.one_of(
        st.integers(-8 * GRID, 8 * GRID).map(lambda v: v / GRID),
        st.integers(-20, 20),
        # outside the encoding range, or products that leave it
        st.sampled_from([2**31, 2**40, 2**62, -(2**33), 1e12, -3.0e9, 2**25, 1e7]),
    )


@st.composite
def unary_case(draw):
    op = draw(
        st.sampled_from(
            [
                "neg",
                "abs",
                "relu",
                "sum",
                "mean",
                "max",
                "min",
                "amax",
                "argmax",
                "reshape",
                "view",
                "permute",
                "transpose",
                "flatten",
                "unsqueeze",
                "squeeze",
                "expand",
                "pad",
                "getitem",
                "t",
                "clone",
                "sign",
            ]
        )
    )
    t = draw(tensor_of())
    d = t.dim()
    if op in ("sum", "mean"):
        arg = draw(st.one_of(dim_arg, st.lists(st.integers(-4, 3), max_size=3).map(tuple)))
        return (op, t, (arg, draw(st.booleans())))
    if op in ("max", "min", "amax", "argmax"):
        return (op, t, (draw(dim_arg), draw(st.booleans())))
    if op in ("reshape", "view"):
        n = math.prod(t.shape)
        guess = draw(
            st.one_of(
                st.lists(st.integers(-1, 6), max_size=4),
                st.just([n]),
                st.just([-1]),
                st.lists(huge_int, min_size=1, max_size=3),
            )
        )
        return (op, t, tuple(guess))
    if op == "permute":
        perm = (
            draw(st.permutations(list(range(d))))
            if draw(st.booleans())
            else draw(st.lists(st.integers(-5, 4), max_size=4))
        )
        return (op, t, tuple(perm))
    if op in ("transpose",):
        return (op, t, (draw(st.integers(-5, 4)), draw(st.integers(-5, 4))))
    if op in ("unsqueeze", "squeeze"):
        return (op, t, (draw(st.integers(-6, 5)),))
    if op == "flatten":
        return (op, t, (draw(st.integers(-5, 4)), draw(st.integers(-5, 4))))
    if op == "expand":
        sizes = draw(st.lists(st.one_of(st.integers(-1, 5), huge_int), min_size=0, max_size=d + 2))
        return (op, t, tuple(sizes))
    if op == "pad":
        p = draw(st.lists(st.one_of(st.integers(-3, 3), huge_int), min_size=0, max_size=2 * d + 1))
        return (op, t, (tuple(p), draw(scalar())))
    if op == "getitem":
        idx = draw(
            st.one_of(
                st.integers(-6, 5),
                st.slices(6),
                st.tuples(st.integers(-6, 5), st.slices(6)),
                st.just(Ellipsis),
                st.just(None),
            )
        )
        return (op, t, (idx,))
    return (op, t, ())


@st.composite
def binary_case(draw):
    op = draw(st.sampled_from(["add", "sub", "mul", "matmul", "lt", "gt", "eq", "ge", "le"]))
    a = draw(tensor_of())
    kind = draw(st.sampled_from(["shared", "public", "scalar"]))
    if op == "matmul":
        m, k, n = (draw(st.integers(0, 4)) for _ in range(3))
        k2 = k if draw(st.integers(0, 5)) else draw(st.integers(0, 5))
        lead = draw(st.lists(st.integers(1, 3), max_size=1))
        a = torch.tensor(draw(vals(math.prod(lead) * m * k)), dtype=torch.float64).reshape(
            *lead, m, k
        )
        if draw(st.booleans()):
            a = a.reshape(-1) if a.dim() == 2 and m == 1 else a
        b = torch.tensor(draw(vals(k2 * n)), dtype=torch.float64).reshape(k2, n)
        if kind == "scalar":
            kind = "shared"
        return (op, a, (kind, b))
    if kind == "scalar":
        return (op, a, (kind, draw(scalar())))
    # Broadcastable or not: a shape drawn near a's.
    shape = list(a.shape)
    shape = draw(
        st.one_of(
            st.just(tuple(shape)),
            st.just(tuple(shape[1:])),
            st.just(tuple(1 if draw(st.booleans()) else s for s in shape)),
            small_shape,
        )
    )
    b = torch.tensor(draw(vals(math.prod(shape))), dtype=torch.float64).reshape(shape)
    return (op, a, (kind, b))


@st.composite
def layer_case(draw):
    op = draw(st.sampled_from(["conv2d", "max_pool2d", "avg_pool2d"]))
    geo = st.one_of(st.integers(-1, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)))
    big = st.one_of(geo, huge_int)
    shape = draw(
        st.one_of(
            st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
            small_shape,
        )
    )
    x = torch.tensor(draw(vals(math.prod(shape))), dtype=torch.float64).reshape(shape)
    if op == "conv2d":
        cin = shape[1] if len(shape) == 4 else draw(st.integers(1, 3))
        wshape = (
            draw(st.integers(1, 3)),
            cin if draw(st.integers(0, 5)) else draw(st.integers(1, 4)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
        )
        w = torch.tensor(draw(vals(math.prod(wshape))), dtype=torch.float64).reshape(wshape)
        blen = wshape[0] if draw(st.integers(0, 4)) else draw(st.integers(0, 4))
        b = torch.tensor(draw(vals(blen)), dtype=torch.float64) if draw(st.booleans()) else None
        kw = dict(
            stride=draw(st.one_of(st.integers(1, 3), big)),
            padding=draw(st.one_of(st.integers(0, 2), big)),
            dilation=draw(st.one_of(st.integers(1, 2), geo)),
        )
        return (op, x, (draw(st.sampled_from(["shared", "public"])), w, b, kw))
    kw = dict(
        kernel_size=draw(st.one_of(st.integers(1, 3), big)),
        stride=draw(st.one_of(st.none(), st.integers(1, 3), geo)),
        padding=draw(st.one_of(st.integers(0, 1), geo)),
    )
    return (op, x, (kw,))


@st.composite
def io_case(draw):
    """cryptensor/get_plain_text with bad src/dst, dtypes and values."""
    t = draw(tensor_of(special=True))
    dtype = draw(st.sampled_from([torch.float64, torch.float32, torch.int64, torch.bool]))
    src = draw(st.one_of(st.integers(0, 2), st.sampled_from([-1, 3, 2**64, 1.0, "0", None])))
    dst = draw(st.one_of(st.none(), st.integers(0, 2), st.sampled_from([-1, 3, 2**70, "x"])))
    return ("io", t, (dtype, src, dst))


MISUSE = ("stale_tensor", "mixed_sessions", "after_uninit", "reveal_after_uninit")


@st.composite
def misuse_case(draw):
    """Sessions used wrongly: each must raise RuntimeError, and the next
    session must work."""
    return (
        "misuse",
        draw(tensor_of(nonempty_shape, special=False)),
        (draw(st.sampled_from(MISUSE)),),
    )


def run_misuse(t, kind, session_seed):
    x = cryptgpu.cryptensor(t)
    try:
        if kind == "stale_tensor":
            cryptgpu.init(seed=session_seed)
            (x + 1).get_plain_text()
        elif kind == "mixed_sessions":
            cryptgpu.init(seed=session_seed)
            (x * cryptgpu.cryptensor(t)).get_plain_text()
        elif kind == "after_uninit":
            cryptgpu.uninit()
            cryptgpu.cryptensor(t)
        else:
            cryptgpu.uninit()
            x.get_plain_text()
        got = None
    except BaseException as e:  # noqa: BLE001
        got = e
    finally:
        cryptgpu.init(seed=session_seed)
    return RuntimeError("misuse"), got, 0.0, None


def to_plain(y):
    if isinstance(y, tuple):
        y = y[0]
    return y.get_plain_text(dtype=torch.float64)


def apply(op, x, args):
    """Run a unary-family op on x, a SharedTensor or a torch tensor: the
    SharedTensor API mirrors torch's, so one call serves both sides."""
    if op in ("neg", "abs", "relu", "clone", "t", "sign"):
        return getattr(x, op)()
    if op in ("sum", "mean", "max", "min", "amax", "argmax"):
        dim, keep = args
        return getattr(x, op)() if dim is None else getattr(x, op)(dim, keepdim=keep)
    if op in ("reshape", "view", "permute", "expand", "transpose", "flatten"):
        return getattr(x, op)(*args)
    if op in ("unsqueeze", "squeeze"):
        return getattr(x, op)(*args)
    if op == "pad":
        if isinstance(x, torch.Tensor):
            return torch.nn.functional.pad(x, args[0], value=args[1])
        return x.pad(args[0], value=args[1])
    if op == "getitem":
        return x[args[0]]
    raise AssertionError(op)


def tol_of(op, kind=None):
    if op in ("mul",) and kind in ("shared", "scalar", "public"):
        return TOL["one_trunc"]
    if op == "matmul":
        return TOL["one_trunc"]
    if op == "mean":
        return TOL["mean"]
    if op == "avg_pool2d":
        return TOL["pool_avg"]
    if op == "conv2d":
        return TOL["one_trunc"]
    return TOL["exact"]


def numel(shape) -> int:
    return math.prod(int(s) for s in shape)


def run_both(case):
    """(torch result or exception, our result or exception, tolerance)."""
    op, t, args = case
    if op == "misuse":
        return run_misuse(t, args[0], SESSION_SEED[0])
    if op == "io":
        dtype, src, dst = args
        tt = t.to(dtype) if encodable(t) or dtype.is_floating_point else t
        # Every problem the arguments have is a correct reason to refuse
        # (torch has no order to follow here): the set of acceptable types.
        bad = []
        if not isinstance(src, int) or isinstance(src, bool):
            bad.append(TypeError)
        elif not 0 <= src <= 2:
            bad.append(ValueError)
        if dst is not None and (not isinstance(dst, int) or isinstance(dst, bool)):
            bad.append(TypeError)
        elif dst is not None and not 0 <= dst <= 2:
            bad.append(ValueError)
        if not encodable(tt.to(torch.float64)):
            bad.append(ValueError)
        want = tuple(bad) if bad else tt.to(torch.float64)
        try:
            got = cryptgpu.cryptensor(tt, src=src).get_plain_text(dst=dst, dtype=torch.float64)
        except BaseException as e:  # noqa: BLE001
            got = e
        return want, got, 0.0, None
    if op in ("add", "sub", "mul", "matmul", "lt", "gt", "eq", "ge", "le"):
        kind, other = args
        try:
            want = getattr(t, op)(other if kind != "scalar" else other)
            want = want.to(torch.float64)
        except Exception as e:  # noqa: BLE001
            want = e
        try:
            x = cryptgpu.cryptensor(t)
            y = cryptgpu.cryptensor(other) if kind == "shared" else other
            got = to_plain(getattr(x, op)(y))
        except BaseException as e:  # noqa: BLE001
            got = e
        return want, got, tol_of(op, kind), None
    if op == "conv2d":
        kind, w, b, kw = args
        try:
            want = torch.nn.functional.conv2d(t, w, b, **kw)
        except Exception as e:  # noqa: BLE001
            want = e
        try:
            x = cryptgpu.cryptensor(t)
            ww = cryptgpu.cryptensor(w) if kind == "shared" else w
            got = to_plain(x.conv2d(ww, b, **kw))
        except BaseException as e:  # noqa: BLE001
            got = e
        return want, got, tol_of(op), None
    if op in ("max_pool2d", "avg_pool2d"):
        (kw,) = args
        try:
            want = getattr(torch.nn.functional, op)(t, **kw)
        except Exception as e:  # noqa: BLE001
            want = e
        try:
            got = to_plain(getattr(cryptgpu.cryptensor(t), op)(**kw))
        except BaseException as e:  # noqa: BLE001
            got = e
        return want, got, tol_of(op), None
    # unary
    huge = None
    try:
        want = apply(op, t, args)
        if isinstance(want, tuple):  # torch.return_types (values, indices)
            want = want[0]
        if numel(want.shape) * 8 > BIG:
            huge = numel(want.shape)
            want = None
        else:
            want = want.to(torch.float64)
    except Exception as e:  # noqa: BLE001
        want = e
    try:
        got = apply(op, cryptgpu.cryptensor(t), args)
        if op == "argmax":
            got = got.get_plain_text(dtype=torch.float64)
            if isinstance(want, torch.Tensor):
                # ours is one-hot over the reduced dim (indices would leak):
                # turn torch's index into the same form.
                want = one_hot_like(t, args, want)
        elif huge is None:
            got = to_plain(got)
    except BaseException as e:  # noqa: BLE001
        got = e
    return want, got, tol_of(op), huge


def one_hot_like(t, args, idx):
    dim, keep = args
    if dim is None:
        oh = torch.zeros(t.numel(), dtype=torch.float64)
        oh[int(idx)] = 1
        return oh.reshape(t.shape)
    d = dim % t.dim() if t.dim() else 0
    i = idx if keep or t.dim() == 0 else idx.unsqueeze(d)
    oh = torch.zeros_like(t).scatter_(d, i.long(), 1.0) if t.dim() else torch.ones(())
    return oh


def probe():
    """The session still computes after whatever the case did."""
    y = cryptgpu.cryptensor(torch.tensor([1.5, -2.0])) * cryptgpu.cryptensor(
        torch.tensor([2.0, 3.0])
    )
    r = y.get_plain_text(dtype=torch.float64)
    assert torch.allclose(r, torch.tensor([3.0, -6.0], dtype=torch.float64), atol=2 * ULP), r


def judge_exception(op, t, want, got, huge, out_of_range):
    """None when raising `got` is right, else what is wrong."""
    name = type(got).__name__
    if isinstance(got, cryptgpu.InternalError) or not isinstance(got, Exception):
        return f"panic or fatal error: {name}: {got}"
    if not str(got).strip():
        return f"{name} without a message"
    if isinstance(want, (BaseException, tuple)):
        wt = want if isinstance(want, tuple) else (type(want),)
        if isinstance(got, wt):
            return None
        if op in LAYER_OPS and isinstance(got, RuntimeError):
            # Several problems at once (a bad dim and a bad kernel size):
            # torch reports one, we may report another of its errors.
            return None
        if op in ("getitem", "permute") and isinstance(got, (IndexError, ValueError, RuntimeError)):
            # An index tuple or a dims list with several faults (a duplicate
            # and an out-of-range dim; a bad step after too many indices):
            # torch's choice of which to report first is not one order.
            if isinstance(want, (IndexError, ValueError, RuntimeError)):
                return None
        names = "/".join(w.__name__ for w in wt)
        return f"torch raises {names} ({want}), we raise {name}: {got}"
    if huge is not None and isinstance(got, (MemoryError, ValueError)):
        return None  # a result of `huge` elements refused
    if out_of_range and isinstance(got, ValueError):
        return None  # a public operand or the result outside the encoding range
    if op in LAYER_OPS and 0 in tuple(t.shape) and isinstance(got, RuntimeError):
        # torch skips its argument checks on empty input and answers zero
        # channels with zero output channels; we refuse (README).
        return None
    if (
        isinstance(want, torch.Tensor)
        and not bool(torch.isfinite(want).all())
        and isinstance(got, ValueError)
    ):
        return None  # torch's answer is NaN/inf (a mean over nothing): not encodable
    return f"torch succeeds, we raise {name}: {got}"


def check(case):
    op, t, args = case
    want, got, tol, huge = run_both(case)
    key = op
    out_of_range = (
        op in ("add", "sub", "mul", "lt", "gt", "eq", "ge", "le")
        and args[0] == "scalar"
        and abs(args[1]) >= 2**31
    ) or (isinstance(want, torch.Tensor) and not encodable(want))
    if op != "io" and not encodable(t):
        # NaN, inf or |x| >= 2^31: refused when shared, whatever the op.
        if not isinstance(got, ValueError):
            raise AssertionError(f"non-encodable input not refused with ValueError: {got!r}")
        counts["unencodable"] = counts.get("unencodable", 0) + 1
        return
    if isinstance(got, BaseException):
        key += ":" + type(got).__name__
        problem = judge_exception(op, t, want, got, huge, out_of_range)
        try:
            probe()
        except Exception as e:  # noqa: BLE001
            cryptgpu.init(seed=SESSION_SEED[0])  # so that one failure does not hide the next
            problem = (problem or "") + f"; session unusable afterwards: {e}"
        if problem:
            raise AssertionError(problem) from got
    else:
        if isinstance(want, (BaseException, tuple)):
            raise AssertionError(f"torch raises {want!r}, we return {got}")
        if op == "mul" and args[0] == "scalar" and abs(args[1]) >= 2**31 and got.numel():
            # A public factor of 2^(63-2f) or more wraps even x = 1: refused
            # (README: smaller factors are not checked, x being secret).
            raise AssertionError(f"a product outside the encoding range was not refused: {got}")
        if huge is not None:
            key += ":huge"
        elif not encodable(want) and op in ("add", "sub", "mul", "matmul", "conv2d"):
            # A product of a near-limit input leaves |r| < 2^31: documented
            # to wrap (README, "Range per op"); the secret cannot be checked.
            key += ":out_of_range"
        elif not encodable(t):
            raise AssertionError(f"accepted a non-encodable input, returned {got}")
        else:
            if tuple(got.shape) != tuple(want.shape):
                raise AssertionError(f"shape {tuple(got.shape)}, torch {tuple(want.shape)}")
            err = (got - want).abs().max().item() if got.numel() else 0.0
            # Comparisons and data movement are exact; tolerance otherwise
            # counts truncations (TOL above); 1e-12 is float64 rounding.
            if err > tol + 1e-12:
                raise AssertionError(f"error {err} > tolerance {tol}: got {got}, want {want}")
    counts[key] = counts.get(key, 0) + 1


def run_worker(strategy, check_case, session_seed=SESSION_SEED) -> int:
    """Parse --cases/--seed/--log/--out, run ``check_case`` on ``--cases``
    hypothesis examples of ``strategy`` (logging each before it runs), and
    write the result file the test reads. Shared with fuzz_nn_worker.py."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    session_seed[0] = a.seed % 2**63
    cryptgpu.init(seed=session_seed[0])
    log = open(a.log, "w", buffering=1)  # noqa: SIM115
    ran = [0]
    seen: set[str] = set()

    @seed(a.seed)
    @settings(
        max_examples=a.cases,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(strategy)
    def prop(case):
        log.write(repr(case) + "\n")
        ran[0] += 1
        try:
            check_case(case)
        except AssertionError as e:
            # Collected, not raised: one run reports every kind of failure.
            kind = f"{case[0]}: {str(e)[:80]}"
            if kind not in seen:
                seen.add(kind)
                failures.append(f"{e}\n    case: {case!r}")

    status = "ok"
    try:
        prop()
    except Exception:  # noqa: BLE001
        status = traceback.format_exc()
    if failures and status == "ok":
        status = f"{len(failures)} kinds of failure"
    with open(a.out, "w") as f:
        json.dump(
            {"status": status, "cases": ran[0], "counts": counts, "failures": failures}, f, indent=1
        )
    return 0 if status == "ok" else 1


def main():
    cases = st.one_of(unary_case(), binary_case(), layer_case(), io_case(), misuse_case())
    return run_worker(cases, check)


if __name__ == "__main__":
    sys.exit(main())
