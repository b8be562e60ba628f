"""Probe OA (2026-12-07, tensor semantics against float64 torch):

* ``t += s`` (``-=``, ``*=``, ``/=``, ``**=``) with ``t`` a torch tensor and
  ``s`` a SharedTensor rebound ``t`` to a new SharedTensor (torch's
  ``__iadd__`` took the refusal, a TypeError, for NotImplemented, and
  Python fell back to ``t + s``): an output buffer's row or a caller's
  tensor stayed unchanged, silently, and torch's in-place shape check was
  skipped. Now the SecretValueError of ``t.add_(s)``.
* Division by a public zero raised a bare ZeroDivisionError, neither a
  ValueError nor a RuntimeError: now DivisionByZeroError, both, and still
  a ZeroDivisionError.
* ``torch.cat([torch.tensor([]), s])`` (the accumulator habit) was a
  ShapeError where torch skips the legacy empty tensor;
  ``torch.concatenate`` was not supported.
* fliplr, flipud, mH, H, diag_embed, broadcast_tensors, t_, transpose_,
  nansum, sign_/triu_/tril_, fill_diagonal_, float_power and
  ``cryptensor(range(4))`` were missing; the method forms torch has and
  SharedTensor refuses were bare AttributeErrors.
* ``copy.deepcopy([base, view])`` gave two unrelated tensors.

Tolerances: f = 16 fractional bits, ULP = 2^-16, ENC = ULP / 2 (conftest).
"""

import copy

import pytest
import torch

import cryptgpu
from conftest import ENC, prod_tol, usable

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


def enc(t):
    return cryptgpu.cryptensor(t)


def err(got, want) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    return (got.to(D) - want.to(D)).abs().max().item() if want.numel() else 0.0


# ------------------------------------------------------------ t += s


def _isub(a, s):
    a -= s


def _imul(a, s):
    a *= s


def _idiv(a, s):
    a /= s


def _ipow(a, s):
    a **= s


def test_augmented_assignment_on_a_torch_tensor_is_refused(session):
    t = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=D)
    x = enc(t)
    out = torch.zeros(2, 3, dtype=D)
    row = out[0]
    with pytest.raises(cryptgpu.SecretValueError, match=r"t = t \+ s"):
        row += x[0]  # torch writes into out; this rebound row, silently
    assert torch.equal(out, torch.zeros(2, 3, dtype=D))  # nothing written, and said so
    for op, symbol in [(_isub, "-="), (_imul, r"\*="), (_idiv, "/="), (_ipow, r"\*\*=")]:
        acc = torch.full((3,), 2.0, dtype=D)
        with pytest.raises(cryptgpu.SecretValueError, match=symbol):
            op(acc, x[1])  # torch changes the caller's acc; this left it, silently
        assert torch.equal(acc, torch.full((3,), 2.0, dtype=D))
    with pytest.raises(RuntimeError):  # torch's in-place shape check was skipped too
        t0 = torch.tensor(1.0)
        t0 *= enc(torch.ones(2, 2))
    with pytest.raises(TypeError):  # SecretValueError: a TypeError as well
        row.add_(x[0])  # (the method form was refused already)
    # a Python number is no torch tensor: total += loss still sums
    total = 0
    for i in range(2):
        total += x[i].sum()
    # 6 encoded inputs, each within ENC; the sums are exact on them
    assert abs(opened(total).item() - t.sum().item()) <= 6 * ENC
    # the spelling the message gives: a new SharedTensor
    acc = torch.ones(3, dtype=D)
    acc = acc + x[1]
    assert err(opened(acc), 1 + t[1]) <= ENC  # one encoded input per element
    # @=: torch's own t @= u rebinds (torch.Tensor has no __imatmul__): so does ours
    m = torch.eye(3, dtype=D) * 2
    m @= x.t()
    # a public 2 times an encoded input: a product with a public factor, one truncation
    assert err(opened(m), 2 * t.t()) <= prod_tol(3, 2.0, 6.0)
    assert usable()


def test_augmented_assignment_where_torch_code_runs_it_is_unchanged(session):
    """The check reads the frame that runs the operator: ``t + s`` spelt
    out, ``t.add(s)``, and a shared ``x += t`` are as before."""
    t = torch.tensor([0.5, -1.25], dtype=D)
    x = enc(t)
    y = enc(t)
    y += torch.ones(2, dtype=D)
    got = [torch.ones(2, dtype=D) + x, torch.ones(2, dtype=D).add(x), y]
    for g in got:
        assert err(opened(g), 1 + t) <= ENC  # on the grid: exact sums of encoded inputs
    assert usable()


# ------------------------------------------------------------ x / 0


def test_division_by_a_public_zero_is_a_value_error(session):
    x = enc(torch.tensor([1.0, -2.0, 3.0], dtype=D))
    refused = [
        lambda: x / 0,
        lambda: x / torch.tensor([1.0, 0.0, 2.0]),
        lambda: x.clone().div_(0.0),
        lambda: x / torch.tensor([True, False, True]),
        lambda: torch.div(x, torch.zeros(3)),
        lambda: x // 0,
        lambda: x % 0.0,
        lambda: torch.remainder(x, 0),
    ]
    for op in refused:
        with pytest.raises(ValueError):  # README: public values fixed point cannot hold
            op()
        with pytest.raises(RuntimeError):  # the engine's errors are CryptGPUErrors
            op()
        with pytest.raises(ZeroDivisionError):  # the type it was, still caught
            op()
        with pytest.raises(cryptgpu.DivisionByZeroError, match="by zero"):
            op()
    assert issubclass(cryptgpu.DivisionByZeroError, cryptgpu.InvalidArgumentError)
    assert "DivisionByZeroError" in cryptgpu.__all__
    # a divisor with no zero still divides: x times public reciprocals
    y = torch.tensor([1.0, 4.0, 2.0], dtype=D)
    # |x| <= 3 encoded (ENC), reciprocals <= 1 encoded (ENC), one truncation
    assert err(opened(x / y), torch.tensor([1.0, -2.0, 3.0], dtype=D) / y) <= prod_tol(1, 3, 1)
    assert usable()


# ------------------------------------------------------------ torch.cat


def test_cat_skips_torchs_legacy_empty_tensor(session):
    torch.manual_seed(0)
    batches = [torch.randn(2, 3, dtype=D), torch.randn(2, 3, dtype=D)]
    want, got = torch.tensor([], dtype=D), torch.tensor([])
    for b in batches:
        want = torch.cat([want, b * 2])
        got = torch.cat([got, enc(b) * 2])
    # each element an encoded input times a public 2: exact, 2 ENC
    assert err(opened(got), want) <= 2 * ENC
    e = torch.tensor([])
    a, b = enc(batches[0]), enc(batches[1])
    for g, w in [
        (torch.cat([e, a, e, b], dim=1), torch.cat([e, batches[0], e, batches[1]], dim=1)),
        (torch.cat([a, e], dim=-1), torch.cat([batches[0], e], dim=-1)),
        (cryptgpu.cat([e, a]), batches[0]),
        (torch.concatenate([a, b], axis=1), torch.concatenate(batches, axis=1)),
        (torch.concatenate([a, b], 0), torch.cat(batches, 0)),
        (torch.concat([e, b]), batches[1]),
    ]:
        assert err(opened(g), w) <= ENC  # data movement of encoded inputs
    assert tuple(torch.cat([enc(e), e], dim=1).shape) == (0,)  # torch's (0,) for any dim
    with pytest.raises(RuntimeError):  # a (3,) tensor is no legacy empty one: torch's error
        torch.cat([torch.zeros(3), a])
    with pytest.raises(IndexError):  # dim checked against the kept tensors, as torch's
        torch.cat([e, a], dim=2)
    w = enc(batches[0]).requires_grad_()
    torch.cat([e, w * 3]).sum().backward()
    assert err(opened(w.grad), torch.full((2, 3), 3.0, dtype=D)) == 0  # an integer factor
    assert usable()


# ------------------------------------------------------------ missing ops


def test_data_movement_ops_match_torch(session):
    torch.manual_seed(1)
    t = torch.randn(3, 4, dtype=D)
    v = torch.randn(2, 3, dtype=D)
    x, xv = enc(t), enc(v)
    pairs = [
        (x.fliplr(), t.fliplr()),
        (torch.fliplr(x), torch.fliplr(t)),
        (x.flipud(), t.flipud()),
        (torch.flipud(xv[0]), torch.flipud(v[0])),
        (x.mH, t.mH),
        (enc(t.reshape(2, 2, 3)).mH, t.reshape(2, 2, 3).mH),
        (x.H, t.H),
        (xv.diag_embed(), v.diag_embed()),
        (xv.diag_embed(1), v.diag_embed(1)),
        (xv.diag_embed(-2, 0, 2), v.diag_embed(-2, 0, 2)),
        (torch.diag_embed(xv, 0, 1, 0), torch.diag_embed(v, 0, 1, 0)),
        (x.clone().t_(), t.clone().t_()),
        (x.clone().transpose_(0, 1), t.clone().transpose_(0, 1)),
        (enc(t.reshape(2, 3, 2)).swapaxes_(0, 2), t.reshape(2, 3, 2).clone().swapaxes_(0, 2)),
        (xv[0].clone().t_(), v[0].clone().t_()),  # 1-D: itself, as torch's
        (x.clone().sign_(), t.clone().sign_()),
        (x.clone().triu_(1), t.clone().triu_(1)),
        (x.clone().tril_(-1), t.clone().tril_(-1)),
        (x.clone().fill_diagonal_(0.5), t.clone().fill_diagonal_(0.5)),
        (
            enc(torch.zeros(7, 3)).fill_diagonal_(2.0, wrap=True),
            torch.zeros(7, 3).fill_diagonal_(2.0, wrap=True),
        ),
        (cryptgpu.cryptensor(range(4)), torch.tensor(range(4))),
    ]
    for got, want in pairs:
        assert err(opened(got), want) <= ENC  # each element one encoded input, moved
    sums = [
        (x.nansum(), t.nansum()),
        (x.nansum(1, keepdim=True), t.nansum(1, keepdim=True)),
        (torch.nansum(x, dim=0), torch.nansum(t, dim=0)),
    ]
    for got, want in sums:
        assert err(opened(got), want) <= 12 * ENC  # a sum of up to 12 encoded inputs
    xmax = t.abs().max().item()
    # one product of two encoded inputs, one truncation
    assert err(opened(x.float_power(2)), t.float_power(2)) <= prod_tol(1, xmax, xmax)
    both = torch.broadcast_tensors(x, v[0, :1].expand(4), xv[0, 0])
    want = torch.broadcast_tensors(t, v[0, :1].expand(4), v[0, 0])
    assert isinstance(both, tuple) and len(both) == 3
    assert isinstance(both[1], torch.Tensor)  # the plaintext one stays plaintext
    for got, w in zip(both, want):
        g = opened(got) if isinstance(got, cryptgpu.SharedTensor) else got
        assert err(g, w) <= ENC  # expanded encoded inputs
    assert usable()


def test_refusals_are_torchs_errors_and_not_bare_attribute_errors(session):
    x = enc(torch.randn(2, 3))
    bad = [
        (lambda: x[0].fliplr(), RuntimeError),  # torch: Input must be >= 2-d.
        (lambda: x[0, 0].flipud(), RuntimeError),
        (lambda: x[0].mH, RuntimeError),
        (lambda: enc(torch.ones(2, 2, 2)).H, RuntimeError),
        (lambda: enc(torch.ones(2, 2, 2)).t_(), RuntimeError),
        (lambda: x.clone().transpose_(0, 5), IndexError),
        (lambda: x.diag_embed(0, 1, 1), RuntimeError),
        (lambda: x[0, 0].diag_embed(), IndexError),
        (lambda: torch.broadcast_tensors(x, torch.ones(4)), RuntimeError),
        (lambda: enc(torch.ones(2, 3, 4)).fill_diagonal_(1.0), RuntimeError),
        (lambda: enc(torch.ones(2, 3, requires_grad=True)).t_(), RuntimeError),  # a leaf
        (lambda: x.clone().masked_scatter_(torch.ones(2, 3) > 0, x), NotImplementedError),
        (lambda: x.clone().put_(torch.tensor([0]), x[0, :1]), NotImplementedError),
        (lambda: (x > 0).any(), NotImplementedError),
        (lambda: (x > 0).all(dim=0), NotImplementedError),
        (lambda: torch.any(x > 0), NotImplementedError),
    ]
    for op, kind in bad:
        with pytest.raises(kind):
            op()
    with pytest.raises(AttributeError):  # a torch method refused: hasattr still answers
        _ = x.put_
    assert not hasattr(x, "masked_scatter_") and getattr(x, "put_", None) is None
    with pytest.raises(AttributeError) as e:
        _ = x.no_such_name
    assert not isinstance(e.value, NotImplementedError)  # no torch name: Python's error
    with pytest.raises(NotImplementedError, match="secret"):
        (x > 0).any()
    assert usable()


def test_transpose_in_place_keeps_torchs_storage_semantics(session):
    def c1(x):
        v = x[0]
        x.t_()
        x[1, 0] = 7.0
        x[0, 1] = 5.0
        return [x, v]

    def c2(x):
        y = x[:, :2]
        y.t_()
        y[0, 1] = 9.0
        return [x, y]

    def c3(x):
        y = x.t()
        x.transpose_(0, 1)
        x.mul_(2)
        v = x[0]
        x[0, 0] = -1.0
        return [x, y, v]

    def c4(x):
        v = x.view(3, 2)
        x.swapaxes_(0, 1)
        x.t_()
        x.t_()
        x[2, 1] = 42.0
        return [x, v, x.reshape(-1)]

    for case in (c1, c2, c3, c4):
        want = case(torch.arange(6.0, dtype=D).reshape(2, 3))
        got = case(enc(torch.arange(6.0).reshape(2, 3)))
        for g, w in zip(got, want):
            assert err(opened(g), w) == 0  # whole numbers encode exactly; moves are exact
            assert g.stride() == w.stride()
    # a recorded result transposed in place: the gradient as torch's
    w0 = torch.randn(2, 3, dtype=D)
    wt = w0.clone().requires_grad_()
    h = wt * 2
    h.t_()
    (h * torch.arange(6.0, dtype=D).reshape(3, 2)).sum().backward()
    w = enc(w0).requires_grad_()
    hs = w * 2
    hs.t_()
    (hs * torch.arange(6.0).reshape(3, 2)).sum().backward()
    assert err(opened(w.grad), wt.grad) == 0  # whole-number factors: exact
    assert usable()


def test_deepcopy_keeps_a_view_on_its_base_copy(session):
    def case(make):
        base = make(torch.arange(6.0, dtype=D).reshape(2, 3))
        view, tv = base[:, 1], base.t()
        base2, view2, tv2 = copy.deepcopy([base, view, tv])
        base2.add_(10)
        view2[0] = 50.0
        tv2[2, 1] = -7.0
        base.add_(100)  # the originals do not reach the copies
        alone = copy.deepcopy(view)
        base.add_(1)
        return [base2, view2, tv2, alone, base, view]

    want = case(lambda t: t)
    got = case(enc)
    for g, w in zip(got, want):
        assert err(opened(g), w) == 0  # whole numbers: exact
    y = enc(torch.ones(2, requires_grad=True)) * 2
    with pytest.raises(RuntimeError):  # torch's: only leaves deep-copy
        copy.deepcopy([y, y[0]])
    assert usable()


def test_an_attribute_error_inside_a_property_is_not_hidden(session, monkeypatch):
    """Review (2026-12-07): SharedTensor.__getattr__ (torch's other names
    refused) turned an AttributeError raised inside a property into
    "grad_fn on a SharedTensor is not supported"; it is raised as it is."""
    x = cryptgpu.cryptensor(torch.ones(2))

    def broken(self):
        raise AttributeError("the property's own error")

    monkeypatch.setattr(type(x), "grad_fn", property(broken))
    with pytest.raises(AttributeError, match="the property's own error"):
        x.grad_fn  # noqa: B018
    monkeypatch.undo()
    assert usable()
