"""What a user probe of the SharedTensor API (2026-12-06) found: var and std
with an empty list of dims (``dim=()``, torch's "every dim", as sum's and
mean's) reduced nothing, so ``x.var(dim=(), correction=0)`` was the sum of
squares over 1 (14.7 for torch's 1.23) and ``x.var(dim=())`` refused;
``torch.linalg.norm(x, dim=())`` answered where torch refuses; ``x.flip()``
and a 0-d ``x.repeat()`` with no dims returned x where torch raises
TypeError; ``len()`` of a 0-d SharedTensor did not give torch's words; the
methods did not take torch's keyword names of their operand
(``x.add(other=y)``, ``x.mm(mat2=w)``, ``x.pow(exponent=2)``, ...; the
functions ``torch.add(x, other=y)`` did). Each test fails on the code
before its fix; tolerances follow conftest's model and are derived next to
each assertion.
"""

import math

import pytest
import torch

import cryptgpu
from conftest import ENC, TRUNC, assert_close, prod_tol, rand, usable

D = torch.float64


def opened(x):
    if isinstance(x, (tuple, list)):
        return [opened(v) for v in x]
    return x.get_plain_text(dtype=D)


# ------------------------------------------------------------ 1. empty dims


def _var_tol(n: int, correction: int) -> float:
    # inputs in (-1, 1) within ENC; the mean: an exact sum, one division
    # (ENC + TRUNC); each deviation |d| < 2 within 2 TRUNC, its square
    # (exact truncation, as var's) within 2 * 2 * 2 TRUNC + TRUNC = 9 TRUNC;
    # n of them summed, then one division by n - correction (TRUNC)
    return n * 9 * TRUNC / (n - correction) + TRUNC


@pytest.mark.parametrize("dim", [(), []])
@pytest.mark.parametrize("keepdim", [False, True])
def test_var_and_std_over_an_empty_dim_list_reduce_every_dim(session, rng, dim, keepdim):
    """torch reads dim=() and dim=[] as every dim (sum and mean did too);
    var divided the sum of squares by 1 - correction (or refused)."""
    t = rand(3, 4, gen=rng)
    x = cryptgpu.cryptensor(t)
    for c in (0, 1):
        vt = _var_tol(12, c)
        want = t.var(dim=dim, correction=c, keepdim=keepdim)
        assert_close(opened(x.var(dim=dim, correction=c, keepdim=keepdim)), want, vt)
        assert_close(opened(torch.var(x, dim, correction=c, keepdim=keepdim)), want, vt)
        # std: the variance's error through sqrt (1 / (2 sqrt v)) plus the
        # square root's own 1e-4 relative
        st = t.std(dim=dim, correction=c, keepdim=keepdim)
        s_tol = vt / (2 * st.min().item()) + 1e-4 * st.max().item()
        assert_close(opened(x.std(dim=dim, correction=c, keepdim=keepdim)), st, s_tol)
        # the mean of var_mean / std_mean: an exact sum, one division, the
        # inputs' ENC (ENC + TRUNC)
        for fn, tol in ((torch.var_mean, vt), (torch.std_mean, s_tol)):
            v, m = opened(fn(x, dim, correction=c, keepdim=keepdim))
            wv, wm = fn(t, dim, correction=c, keepdim=keepdim)
            assert_close(v, wv, tol)
            assert_close(m, wm, ENC + TRUNC)
    # torch's positional form var(dim, unbiased, keepdim)
    assert_close(opened(x.var(dim, False, keepdim)), t.var(dim, False, keepdim), _var_tol(12, 0))


def test_linalg_norm_over_an_empty_dim_list_is_torchs_error(session, rng):
    """torch.linalg.norm takes one or two dims; dim=() gave the 2-norm of
    every element where torch raises RuntimeError."""
    x = cryptgpu.cryptensor(rand(3, 4, gen=rng))
    for dim in ((), [], (0, 1, 0)):
        with pytest.raises(RuntimeError, match="length 1 or 2"):
            torch.linalg.norm(x, dim=dim)
        assert usable()


# ------------------------------------------------------------ 2. no-argument calls


@pytest.mark.parametrize("shape", [(2, 3), ()])
@pytest.mark.parametrize("name", ["flip", "repeat"])
def test_flip_and_repeat_without_their_dims_are_torchs_type_error(session, shape, name):
    """x.flip() returned x (any rank) and a 0-d x.repeat() returned x;
    torch raises TypeError for both. flip([]) and a 0-d repeat([]) are
    still x, as torch's."""
    t = torch.arange(float(math.prod(shape)), dtype=D).reshape(shape)
    x = cryptgpu.cryptensor(t)
    with pytest.raises(TypeError):
        getattr(t, name)()
    with pytest.raises(TypeError, match=f"{name}\\(\\) missing"):
        getattr(x, name)()
    assert usable()
    assert_close(opened(x.flip([])), t.flip([]), ENC)  # a copy: the input's encoding
    if not shape:
        assert_close(opened(x.repeat([])), t.repeat([]), ENC)


# ------------------------------------------------------------ 3. len() of a 0-d tensor


def test_len_of_a_0d_tensor_gives_torchs_words(session):
    """torch: TypeError "len() of a 0-d tensor"; ours began with what
    torch.tensor(x) asked for. Still a TypeError (and the secret-value
    error that torch.tensor(x) meets here)."""
    x = cryptgpu.cryptensor(torch.tensor(1.5, dtype=D))
    with pytest.raises(TypeError, match=r"^len\(\) of a 0-d tensor"):
        len(x)
    with pytest.raises(TypeError, match="whatever its shape"):
        torch.tensor([x, x])
    assert usable()


# ------------------------------------------------------------ 4. torch's keyword names


# dyadic values: every input encodes exactly at f = 16
A = [[1.0, 2.0], [3.0, -4.0]]
B = [[0.5, 2.0], [-1.5, 0.25]]
V = [0.75, -2.0]

# (name, the call on a tensor with torch's keyword, tolerance). Sums and
# differences of exact inputs are exact; comparisons of them exact 0/1 (the
# difference is exact, 0 included); one product of exact values is one
# truncation (TRUNC); a product of k terms |a| <= 4, |b| <= 2 is
# prod_tol(k, 4, 2); a quotient as tests/test_division_and_ranges.py's
# _div_tol (a public divisor's reciprocal encoded to 2^-17 relative, a
# shared one range-reduced: 1 / m's unit of 2^-16, 2^-15 of q, plus a few
# truncations), at its largest over the elements (|q| <= 16, |b| >= 1/4).
_Q = max(abs(a / b) for ra, rb in zip(A, B) for a, b in zip(ra, rb))
_DIV = 4 * TRUNC + (1 + _Q) / 0.25 * ENC + _Q * 2.0**-15
KEYWORD_CASES = [
    ("add", lambda x, y, v: x.add(other=y), 0),
    ("add alpha", lambda x, y, v: x.add(other=y, alpha=2), 0),
    ("sub", lambda x, y, v: x.sub(other=y), 0),
    ("mul", lambda x, y, v: x.mul(other=y), TRUNC),
    ("div", lambda x, y, v: x.div(other=y), _DIV),
    ("div None", lambda x, y, v: x.div(y, rounding_mode=None), _DIV),
    ("true_divide", lambda x, y, v: x.true_divide(other=y), _DIV),
    ("matmul", lambda x, y, v: x.matmul(other=y), prod_tol(2, 4, 2)),
    ("lt", lambda x, y, v: x.lt(other=y), 0),
    ("le", lambda x, y, v: x.le(other=y), 0),
    ("gt", lambda x, y, v: x.gt(other=y), 0),
    ("ge", lambda x, y, v: x.ge(other=y), 0),
    ("eq", lambda x, y, v: x.eq(other=y), 0),
    ("ne", lambda x, y, v: x.ne(other=y), 0),
    ("where", lambda x, y, v: x.where(torch.tensor(A) > 0, other=y), 0),
    ("pow", lambda x, y, v: x.pow(exponent=2), TRUNC),
    ("mm", lambda x, y, v: x.mm(mat2=y), prod_tol(2, 4, 2)),
    ("bmm", lambda x, y, v: x[None].bmm(mat2=y[None]), prod_tol(2, 4, 2)),
    ("mv", lambda x, y, v: x.mv(vec=v), prod_tol(2, 4, 2)),
    ("dot", lambda x, y, v: x[1].dot(tensor=v), prod_tol(2, 4, 2)),
    ("outer", lambda x, y, v: x[1].outer(vec2=v), TRUNC),
    ("ger", lambda x, y, v: x[1].ger(vec2=v), TRUNC),
    # the larger of two exact values: at most one truncation
    ("max", lambda x, y, v: x.max(other=y), TRUNC),
    ("min", lambda x, y, v: x.min(other=y), TRUNC),
    ("swapaxes", lambda x, y, v: x.swapaxes(axis0=0, axis1=1) - x.swapdims(dim0=0, dim1=1), 0),
]


@pytest.mark.parametrize("shared", [False, True], ids=["public", "shared"])
@pytest.mark.parametrize("name,f,tol", KEYWORD_CASES, ids=[c[0] for c in KEYWORD_CASES])
def test_methods_take_torchs_keyword_names(session, name, f, tol, shared):
    """x.add(other=y) and the like were TypeErrors ("unexpected keyword
    argument 'other'"); the functions torch.add(x, other=y) took them."""
    a, b, v = (torch.tensor(u, dtype=D) for u in (A, B, V))
    x = cryptgpu.cryptensor(a)
    y, w = (cryptgpu.cryptensor(u) for u in (b, v)) if shared else (b, v)
    want = f(a, b, v)
    assert_close(opened(f(x, y, w)), want.to(D), tol)


@pytest.mark.parametrize("name", ["add_", "sub_", "mul_", "div_", "copy_"])
def test_in_place_methods_take_torchs_keyword_names(session, name):
    """x.add_(other=y), ..., x.copy_(other=y) (torch 2.15's name; ``src``,
    the documented one, still works). Tolerances as above: exact sums, one
    truncation for a product, a reciprocal's product for a division."""
    a, b = torch.tensor(A, dtype=D), torch.tensor(B, dtype=D)
    x = cryptgpu.cryptensor(a)
    want = getattr(a.clone(), name)(other=b)
    tol = {"mul_": TRUNC, "div_": _DIV}.get(name, 0)
    assert getattr(x, name)(other=b) is x
    assert_close(opened(x), want, tol)
    x = cryptgpu.cryptensor(a)
    x.pow_(exponent=2)
    assert_close(opened(x), a**2, TRUNC)  # one product of exact values
    x.copy_(src=b, non_blocking=False)
    assert_close(opened(x), b, 0)
    x.requires_grad_(requires_grad=True)
    assert x.requires_grad


def test_unexpected_keywords_are_still_type_errors(session):
    """Taking torch's names must not take any name: each of these is a
    TypeError in torch and ours."""
    a, b = torch.tensor(A, dtype=D), torch.tensor(B, dtype=D)
    x = cryptgpu.cryptensor(a)
    calls = [
        lambda t: t.add(others=b),
        lambda t: t.add(b, other=b),
        lambda t: t.mm(other=b),
        lambda t: t[0].dot(other=b[0]),
        lambda t: t.max(dim=0, other=b),
        lambda t: t.pow(p=2),
        lambda t: t.copy_(),
        lambda t: t.copy_(b, other=b),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call(a.clone())
        with pytest.raises(TypeError):
            call(x)
        assert usable()
