"""Inputs found by a user probe feeding unusual tensors: uint8 masks,
``out=``, plaintext first operands of symmetric torch functions, numpy
functions on a SharedTensor, several ellipses, ``squeeze`` of several dims.
Every result is exact here (selections, comparisons, maxima of encoded
values, public integers), so it must equal torch's; every refusal is
torch's exception type, and the session stays usable.
"""

import warnings

import numpy as np
import pytest
import torch

import cryptgpu
from conftest import assert_close, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


A = torch.arange(12.0, dtype=torch.float64).reshape(3, 4)


def test_uint8_index_is_a_mask_as_in_torch(session):
    """torch takes a uint8 index as a mask (deprecated there, with a
    warning); it was read as the positions [1, 0, 1]."""
    m = torch.tensor([1, 0, 1], dtype=torch.uint8)
    x = cryptgpu.cryptensor(A)
    with warnings.catch_warnings():  # torch warns (once) that this is deprecated
        warnings.simplefilter("ignore")
        want = A[m]
    assert_close(pt(x[m]), want, 0.0)
    x[m] = -1.0
    b = A.clone()
    b[m.bool()] = -1.0  # torch's setitem refuses uint8 now; the mask is meant
    assert_close(pt(x), b, 0.0)


def test_out_is_refused_rather_than_ignored(session):
    """torch.add(x, 1, out=o) returned a new tensor and left o untouched."""
    x = cryptgpu.cryptensor(A)
    for fn in (torch.add, torch.sub, torch.mul, torch.div):
        with pytest.raises(NotImplementedError, match="out="):
            fn(x, 1, out=torch.zeros(3, 4))
    with pytest.raises(NotImplementedError, match="out="):
        torch.cat([x, x], out=torch.zeros(6, 4))
    assert_close(pt(x + 1), A + 1, 0.0)


def test_plaintext_first_operands(session):
    """torch.maximum(plain, x) and plain.lt(x) raised; they run as the
    shared operand's mirrored method."""
    p = torch.full((3, 4), 5.0, dtype=torch.float64)
    x = cryptgpu.cryptensor(A)
    assert_close(pt(torch.maximum(p, x)), torch.maximum(p, A), 0.0)
    assert_close(pt(torch.minimum(p, x)), torch.minimum(p, A), 0.0)
    assert_close(pt(torch.max(p, x)), torch.max(p, A), 0.0)
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        assert_close(pt(getattr(p, name)(x)), getattr(p, name)(A).double(), 0.0)
        assert_close(pt(getattr(torch, name)(p, x)), getattr(torch, name)(p, A).double(), 0.0)


def test_numpy_functions_refuse_and_operators_work(session):
    """np.exp(x) and np.asarray(x) built object arrays of 0-d shares."""
    x = cryptgpu.cryptensor(A)
    with pytest.raises(TypeError):
        np.exp(x)
    with pytest.raises(TypeError, match="secret"):
        np.asarray(x)
    assert_close(pt(np.ones(4) + x), A + 1, 0.0)
    assert_close(pt(x * np.full(4, 2.0)), A * 2, 0.0)


def test_indexing_and_squeeze_forms(session):
    """Several ellipses: torch (undocumented, issue 59787) lets each skip
    the dims the first covers; they were refused with IndexError."""
    B = A.reshape(3, 2, 2)
    y = cryptgpu.cryptensor(B)
    for idx in [(..., ...), (..., 0, ...), (0, ..., None, ...), (..., ..., -1, slice(None))]:
        assert_close(pt(y[idx]), B[idx], 0.0)  # a view of grid values: exact
    z, ref = cryptgpu.cryptensor(B), B.clone()
    z[..., 1, ...] = -1.0
    ref[..., 1, ...] = -1.0
    assert_close(pt(z), ref, 0.0)
    for idx in [(..., ..., 0), (..., ..., None)]:  # past the last dim, as torch
        with pytest.raises(IndexError):
            y[idx]
    assert usable()
    x = cryptgpu.cryptensor(A)
    y = x.reshape(1, 3, 1, 4)
    assert y.squeeze((0, 2)).shape == A.reshape(1, 3, 1, 4).squeeze((0, 2)).shape
    assert y.squeeze((0, 1)).shape == A.reshape(1, 3, 1, 4).squeeze((0, 1)).shape
    assert_close(pt(y.squeeze((0, 2))), A, 0.0)


def test_a_public_tensor_cast_like_a_shared_one(session):
    """t.to(x) / t.type_as(x) with x shared (the tutorial's h0 =
    torch.zeros(...).to(x)) is the public tensor in x.dtype (the default
    dtype; float64 until the fix, which plaintext float32 code refused),
    outside a converted model too."""
    x = cryptgpu.cryptensor(A)
    for t in (torch.zeros(3, 4).to(x), torch.zeros(3, 4, dtype=torch.float64).type_as(x)):
        assert t.dtype == x.dtype and not isinstance(t, cryptgpu.SharedTensor)
    assert_close(pt(x + torch.ones(3, 4).to(x)), A + 1, 0.0)
