"""Probe OL (2026-12-07, README claims checked one by one): layers built
with NumPy integers (README: "NumPy integers ... also as layer sizes")
dropped those settings (``Linear(np.int64(4), 2).in_features`` raised
AttributeError), ``LayerNorm(np.int64(4))`` and ``RMSNorm`` raised
TypeError where torch builds them, and pooling layers built directly had
no ``kernel_size``/``stride``/``padding`` at all.
"""

import numpy as np
import pytest
import torch

import cryptgpu
from conftest import usable

I = np.int64  # noqa: E741


@pytest.mark.parametrize(
    "name, args, attrs",
    [
        ("Linear", (I(4), 2), ("in_features", "out_features")),
        ("Conv2d", (I(3), 4, I(3)), ("in_channels", "out_channels", "kernel_size")),
        ("Embedding", (I(5), 3), ("num_embeddings", "embedding_dim")),
        ("MaxPool2d", (I(2),), ("kernel_size", "stride", "padding", "dilation")),
        ("MaxPool2d", (3, 2, 1), ("kernel_size", "stride", "padding", "dilation")),
        ("AvgPool2d", (2,), ("kernel_size", "stride", "padding", "ceil_mode")),
        ("MaxPool1d", (I(2),), ("kernel_size", "stride", "padding")),
        ("AvgPool1d", (I(2), 1, 1), ("kernel_size", "stride", "padding")),
    ],
)
def test_layer_settings_given_as_numpy_ints_are_torchs(session, name, args, attrs):
    ours, theirs = getattr(cryptgpu.nn, name)(*args), getattr(torch.nn, name)(*args)
    for a in attrs:
        assert getattr(ours, a) == getattr(theirs, a), a
    assert usable()


@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm"])
def test_norms_take_a_numpy_int_shape(session, name):
    ours, theirs = getattr(cryptgpu.nn, name)(I(4)), getattr(torch.nn, name)(I(4))
    assert tuple(ours.normalized_shape) == tuple(theirs.normalized_shape) == (4,)
    x = torch.randn(3, 4, dtype=torch.float64)
    got = ours(cryptgpu.cryptensor(x)).get_plain_text().double()
    want = theirs.double()(x).detach()
    # a normalisation of 4 values (|x| < 4): its reciprocal square root and
    # products, a few 1e-4 at f = 16 (README's LayerNorm accuracy)
    assert torch.allclose(got, want, atol=2e-3)
    assert usable()
