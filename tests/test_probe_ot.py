"""Probe OT: nn layer and torch.nn.functional argument variants.

- ``nn.AdaptiveMaxPool2d(return_indices=True)`` was converted as if
  return_indices were False: ``values, indices = self.pool(x)`` split the
  batch silently (no dummy input) or the check blamed "a branch on a traced
  value"; now refused at from_pytorch, as MaxPool2d's and the 1-d ones';
- torch's keyword names (``input=``, ``other=``, ``weight=``...) in a
  converted forward passed the check and then raised TypeErrors naming
  internal helpers; ``torch.where(condition=, input=, other=)`` failed in
  eager mode too (one normalisation now: cryptgpu/_keywords.py);
- ``F.pixel_shuffle(x, upscale_factor=2)`` / ``F.pixel_unshuffle(x,
  downscale_factor=2)`` by keyword were refused, eager and converted;
- a float32 model multiplying by a float32 constant made in its forward
  failed the conversion check with torch's "float != double";
- ``cryptgpu.nn.Identity(54, unused_argument1=0.1)`` raised TypeError.
"""

import threading

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, TRUNC, prod_tol, usable

G = torch.Generator().manual_seed(0)
X = torch.rand(2, 4, 6, generator=G, dtype=torch.float64) * 2 - 1  # |x| <= 1
W = torch.rand(3, 6, generator=G, dtype=torch.float64) * 2 - 1  # |w| <= 1
WC = torch.rand(3, 4, 2, generator=G, dtype=torch.float64) * 2 - 1
APPROX = 1e-3  # sigmoid/tanh/GELU/softmax: the approximations' bound (test_functions.py)


class _Fn(nn.Module):
    """A forward that is one function call (on a weight of its own)."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.w = nn.Parameter(W.clone())
        self.wc = nn.Parameter(WC.clone())

    def forward(self, x):
        return self.f(self, x)


# (name, call, tolerance): each tolerance from the 16 fractional bits
KEYWORD_CALLS = [
    # 6 products of encoded values, one truncation
    ("F.linear", lambda m, h: F.linear(input=h, weight=m.w), prod_tol(6, 1, 1)),
    ("F.conv1d", lambda m, h: F.conv1d(input=h, weight=m.wc), prod_tol(8, 1, 1)),
    ("torch.matmul", lambda m, h: torch.matmul(input=h, other=m.w.t()), prod_tol(6, 1, 1)),
    ("torch.mul", lambda m, h: torch.mul(input=h, other=h), prod_tol(1, 1, 1)),
    ("torch.mul other=", lambda m, h: torch.mul(h, other=h), prod_tol(1, 1, 1)),
    ("torch.pow", lambda m, h: torch.pow(input=h, exponent=2), prod_tol(1, 1, 1)),
    # a mean by a public divisor: the encoding, one truncation
    ("F.avg_pool1d", lambda m, h: F.avg_pool1d(input=h, kernel_size=2), ENC + TRUNC),
    ("F.avg_pool2d", lambda m, h: F.avg_pool2d(input=h, kernel_size=2), ENC + TRUNC),
    (
        "F.adaptive_avg_pool1d",
        lambda m, h: F.adaptive_avg_pool1d(input=h, output_size=3),
        ENC + TRUNC,
    ),
    ("torch.mean", lambda m, h: torch.mean(input=h, dim=1), ENC + TRUNC),
    # exact on the encodings: the encoding error (4 of them in a sum)
    ("torch.relu", lambda m, h: torch.relu(input=h), ENC),
    ("torch.flatten", lambda m, h: torch.flatten(input=h, start_dim=1), ENC),
    ("torch.sum", lambda m, h: torch.sum(input=h, dim=1), 4 * ENC),
    ("torch.clamp", lambda m, h: torch.clamp(input=h, min=-0.5, max=0.5), ENC),
    ("F.gelu", lambda m, h: F.gelu(input=h), APPROX),
    ("torch.sigmoid", lambda m, h: torch.sigmoid(input=h), APPROX),
    ("torch.tanh", lambda m, h: torch.tanh(input=h), APPROX),
    ("torch.softmax", lambda m, h: torch.softmax(input=h, dim=-1), APPROX),
]


@pytest.mark.parametrize("name,f,tol", KEYWORD_CALLS, ids=[c[0] for c in KEYWORD_CALLS])
def test_torch_keyword_names_in_a_converted_forward(session, name, f, tol):
    """Probe OT 2: the check passed, then the private forward raised
    "_linear() got an unexpected keyword argument 'input'" and the like."""
    m = _Fn(f).double().eval()
    want = m(X).detach()
    pm = cryptgpu.nn.from_pytorch(m, X).encrypt(src=0)
    got = pm(cryptgpu.cryptensor(X)).get_plain_text(dtype=torch.float64)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= tol  # tol: per case above


def test_torch_where_by_keyword_on_shared_tensors(session):
    """Probe OT 2: torch.where(condition=, input=, other=) in eager mode
    ("_where() got multiple values for argument 'condition'")."""
    c = X > 0
    s, t = cryptgpu.cryptensor(X), cryptgpu.cryptensor(-X)
    got = torch.where(condition=c, input=s, other=t).get_plain_text(dtype=torch.float64)
    assert (got - torch.where(c, X, -X)).abs().max().item() <= ENC  # a selection: exact


@pytest.mark.parametrize(
    "fn,key,shape",
    [
        (F.pixel_shuffle, "upscale_factor", (1, 8, 3, 3)),
        (F.pixel_unshuffle, "downscale_factor", (1, 2, 6, 6)),
    ],
)
def test_pixel_shuffle_factor_by_keyword(session, fn, key, shape):
    """Probe OT 3: "<lambda>() got an unexpected keyword argument
    'upscale_factor'", eager and converted."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = fn(x, **{key: 2})
    got = fn(cryptgpu.cryptensor(x), **{key: 2}).get_plain_text(dtype=torch.float64)
    assert (got - want).abs().max().item() <= ENC  # a movement: the encoding alone

    class Net(nn.Module):
        def forward(self, h):
            return fn(h, **{key: 2})

    pm = cryptgpu.nn.from_pytorch(Net(), x).encrypt(src=0)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=torch.float64)
    assert (got - want).abs().max().item() <= ENC  # a movement: the encoding alone


def test_adaptive_max_pool2d_return_indices_is_refused(session):
    """Probe OT 1: converted as if return_indices were False, it returned
    the values alone and ``values, indices = self.pool(x)`` split the batch."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveMaxPool2d(3, return_indices=True)

        def forward(self, x):
            values, indices = self.pool(x)
            return values

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for dummy in (None, x):
        with pytest.raises(NotImplementedError, match="AdaptiveMaxPool2d with return_indices"):
            cryptgpu.nn.from_pytorch(Net().eval(), dummy)
        assert usable()
    with pytest.raises(NotImplementedError, match="return_indices"):
        cryptgpu.nn.AdaptiveMaxPool2d(3, return_indices=True)
    assert usable()
    # return_indices=False as before
    m = nn.AdaptiveMaxPool2d(3).eval()
    got = cryptgpu.nn.from_pytorch(m, x).encrypt(src=0)(cryptgpu.cryptensor(x))
    want = m(x.double())
    assert (got.get_plain_text(dtype=torch.float64) - want).abs().max().item() <= ENC  # exact max


class _Const(nn.Module):
    """A float32 model multiplying by a float32 constant of its forward."""

    def __init__(self, kind):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.kind = kind

    def forward(self, x):
        h = self.fc(x)
        if self.kind == "matmul":
            return h @ torch.ones(6, 2)
        if self.kind == "linear":
            return F.linear(h, torch.eye(6))
        return F.conv1d(h, torch.ones(1, 4, 3))  # "conv1d"


@pytest.mark.parametrize("kind", ["matmul", "linear", "conv1d"])
def test_a_float32_constant_made_in_the_forward_passes_the_check(session, kind):
    """Probe OT 4: the check raised torch's "float != double" (the float64
    run mixed the float32 constant with float64 weights)."""
    torch.manual_seed(0)
    m = _Const(kind).eval()
    x = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(3)) * 2 - 1
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt(src=0)
    assert torch.get_default_dtype() == torch.float32  # the check's float64 default undone
    x64, w, b = x.double(), m.fc.weight.double(), m.fc.bias.double()
    h = F.linear(x64, w, b)
    want = {
        "matmul": lambda: h @ torch.ones(6, 2, dtype=torch.float64),
        "linear": lambda: h,
        "conv1d": lambda: F.conv1d(h, torch.ones(1, 4, 3, dtype=torch.float64)),
    }[kind]()
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=torch.float64)
    bound = max(w.abs().max().item(), b.abs().max().item())
    # the Linear's error (6 products and the bias, one truncation), then a
    # sum of at most 12 of them by public 1s (one truncation more)
    tol = 12 * (prod_tol(6, 1, bound) + ENC) + TRUNC
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= tol


def test_the_check_still_catches_a_wrong_conversion_with_a_forward_constant(session):
    """Probe OT 4: the float64 default does not hide a disagreement (an
    isinstance branch torch.fx traced the other way)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            h = self.fc(x)
            if isinstance(h, torch.Tensor):  # False on torch.fx's Proxy
                return h @ torch.ones(6, 2)
            return h

    with pytest.raises(RuntimeError, match="conversion check failed"):
        cryptgpu.nn.from_pytorch(Net().eval(), torch.rand(2, 6))
    assert torch.get_default_dtype() == torch.float32
    assert usable()


def test_identity_takes_and_ignores_any_arguments(session):
    """Probe OT 5: torch's documentation example raised TypeError."""
    layer = cryptgpu.nn.Identity(54, unused_argument1=0.1, unused_argument2=False)
    s = cryptgpu.cryptensor(X)
    assert layer(s) is s
    assert cryptgpu.nn.Identity()(X) is X


def test_the_checks_float64_constants_stay_in_its_own_thread(session):
    """Probe OT 4: the check makes its forward's constants float64 in its
    own thread only (a party's thread beside it keeps torch's float32
    default: torch.set_default_dtype would have changed it for every thread)."""
    seen = []

    def other_thread():
        t = threading.Thread(target=lambda: seen.append(torch.ones(1).dtype))
        t.start()
        t.join()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            other_thread()  # in the trace and in both runs of the check
            return self.fc(x) @ torch.ones(6, 2)

    cryptgpu.nn.from_pytorch(Net().eval(), torch.rand(2, 6))
    assert seen and set(seen) == {torch.float32}
