"""Probe OP (2026-12-07, numbers at the edges of the stated ranges).

- BatchNorm's batch statistics (``track_running_stats=False`` in eval,
  ``F.batch_norm(training=True)`` with no grad, a ``train()`` forward under
  ``torch.no_grad()``) truncate exactly under "auto", as LayerNorm's (until
  2026-12-07 probabilistically: whole channels 4.3e9 off at input stds of
  200 and more).
- ``torch.cov`` sums exact products past 2^31, as ``var`` does (until
  2026-12-07 one matrix product whose sum wrapped once n cov > 2^31:
  35584 for 2.2e6).
- ``torch.corrcoef`` divides by sqrt(c_ii) and sqrt(c_jj) range-reduced
  (until 2026-12-07 c times a fixed-point 1 / (s_i s_j): 1.4e-3 off at
  variance 100, the diagonal 0.0 at 9e4).
- ``var`` under "auto" divides exactly too (until 2026-12-07 the division
  of the sum was probabilistic: about 1 row in 100 to 400 came out -7e10).
- ``torch.where`` / ``masked_fill`` with a public value outside the
  encoding's range name the user's value (they said -3e9 for 3e9).
- Pinned, unchanged (the docstrings now state them): ``norm`` right up to
  norms near 2^31; ``logsumexp`` / ``log_softmax`` on rows of 16384 within
  4e-4 + n e^-16 + 2 sqrt(n) 2^-16.

References are float64 torch at the encoded input (x rounded to the 2^-16
grid), so input encoding is not counted. Tolerances (f = 16, conftest):
each truncation is within ULP = 2^-16.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ULP, usable


def _encoded(x):
    return torch.round(x * 2**16) / 2**16


def _plain(s):
    return s.get_plain_text(dtype=torch.float64)


# BatchNorm's output xhat w + b with w = 1, b = 0: xhat = (x - mean) r / 256
# with r = 256 / std from ratio_inv_sqrt (1e-4 relative plus a few units of
# r, i.e. 2^-8 units of 1 / std at most 1e-4 relative for std >= 1), one
# exact truncation of xhat (1 ULP) and one of the affine (1 ULP): |xhat| <=
# 6 here (randn), so 1e-4 * 6 + 4 ULP (the variance's own rounding is
# below 2^-24 relative). A wrapped squared deviation is off by about 2^32 /
# var in its whole channel: 1e-2 or more at these stds.
BN_TOL = 6e-4 + 4 * ULP


def test_batchnorm_batch_statistics_in_eval_are_exact(session):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.BatchNorm2d(8, track_running_stats=False)).double().eval()
    pm = cryptgpu.nn.from_pytorch(m, torch.zeros(4, 8, 32, 32, dtype=torch.float64))
    pm = pm.encrypt(src=0)
    for sd in (200.0, 1500.0):
        x = _encoded(torch.randn(4, 8, 32, 32, dtype=torch.float64) * sd)
        err = (_plain(pm(cryptgpu.cryptensor(x))) - m(x)).abs().max().item()
        assert err <= BN_TOL, (sd, err)


def test_functional_batch_norm_training_without_grad_is_exact(session):
    torch.manual_seed(1)
    x = _encoded(torch.randn(4000, 8, dtype=torch.float64) * 700)  # variance 4.9e5
    got = _plain(F.batch_norm(cryptgpu.cryptensor(x), None, None, training=True))
    err = (got - F.batch_norm(x, None, None, training=True)).abs().max().item()
    assert err <= BN_TOL, err  # see BN_TOL


def test_batchnorm_train_forward_under_no_grad_is_exact(session):
    torch.manual_seed(2)
    m = torch.nn.Sequential(torch.nn.BatchNorm1d(8)).double()
    pm = cryptgpu.nn.from_pytorch(m, torch.zeros(4000, 8, dtype=torch.float64)).encrypt(src=0)
    pm.train()
    m.train()
    x = _encoded(torch.randn(4000, 8, dtype=torch.float64) * 1500)
    with torch.no_grad():
        got = _plain(pm(cryptgpu.cryptensor(x)))
        ref = m(x)
    assert (got - ref).abs().max().item() <= BN_TOL  # see BN_TOL
    # the running variance, rv + (s n / (n - 1) - rv) 0.1 with s the batch
    # variance (2.25e6): the public factors n / (n - 1) and the
    # statistics' 1 / scale are encoded within 2^-17 relative each, so s n
    # / (n - 1) within 2^-16 relative, times 0.1; 3 truncations (3 ULP)
    bn = next(mod for mod in pm.modules() if isinstance(mod, cryptgpu.nn.BatchNorm1d))
    err = (_plain(bn.running_var) - m[0].running_var).abs().max().item()
    batch_var = x.var(dim=0).max().item()
    assert err <= 2.0**-16 * batch_var * 0.1 + 3 * ULP


@pytest.mark.parametrize("mode", ["exact", "auto"])
def test_cov_sums_past_2_31_as_var(mode):
    cryptgpu.init(seed=1234, truncation=mode)
    try:
        torch.manual_seed(2)
        x = _encoded(torch.randn(8, 4000, dtype=torch.float64) * 1500)  # sums 8.7e9
        s = cryptgpu.cryptensor(x)
        got, ref = _plain(torch.cov(s)), torch.cov(x)
        # each deviation divided by p = ceil(sqrt(n)) within 1 ULP (exact):
        # the product's sum off by at most sum_k (|dev_ik| + |dev_jk|) ULP /
        # p, times p^2 / (n - 1) (exactly: a whole product, an exact
        # division): n p (max|dev_i| + max|dev_j|) ULP / (n - 1); plus the
        # product's truncation and the division's (2 ULP, the first times p^2
        # / (n - 1) ~ 1) and the mean's rounding (1 ULP, negligible effect)
        n = x.shape[1]
        p = math.isqrt(n - 1) + 1
        dev = (x - x.mean(1, keepdim=True)).abs().amax(1)
        bound = n * p * (dev.reshape(-1, 1) + dev.reshape(1, -1)) * ULP / (n - 1) + 4 * ULP
        assert ((got - ref).abs() <= bound).all()
        # relative: 4000 * 64 * 2 * 6000 / 3999 units of 2^-16 = 12 on 2.2e6
        assert ((got - ref).abs() / ref.diagonal().max()).max().item() < 1e-5
    finally:
        cryptgpu.uninit()


def _corr_tol(a):
    # 2e-4 (two range-reduced factors, 1e-4 relative each, |corr| <= 1)
    # plus the covariance's rounding (2 ULP) over s_i s_j
    v = a.var(dim=1)
    return 2e-4 + 2 * ULP / (v.reshape(-1, 1) * v.reshape(1, -1)).sqrt()


@pytest.mark.parametrize("mode", ["exact", "auto"])
def test_corrcoef_keeps_its_precision_as_variance_grows(mode):
    cryptgpu.init(seed=1234, truncation=mode)
    try:
        torch.manual_seed(0)
        for sc in (0.5, 1.0, 10.0, 100.0, 300.0, 2.0**13):  # variances 0.25 .. 2^26
            a = torch.randn(4, 64, dtype=torch.float64)
            a = _encoded((a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True) * sc)
            got = _plain(torch.corrcoef(cryptgpu.cryptensor(a)))
            err = (got - torch.corrcoef(a)).abs()
            assert bool((err <= _corr_tol(a)).all()), (sc, err.max().item())
    finally:
        cryptgpu.uninit()


def test_var_under_auto_divides_exactly(session):
    torch.manual_seed(1)
    # +-31000 (each squared deviation below 2^30): sums of squares of 7.7e12,
    # which the probabilistic division failed with probability 7.7e12 / 2^47
    # (5%) per row: until 2026-12-07 rows came out 3.5e10 off
    x = (torch.rand(200, 8000, dtype=torch.float64) < 0.5).double() * 62000 - 31000
    got = _plain(cryptgpu.cryptensor(x).var(dim=1))
    # exact squares (1 ULP each, n of them over n - 1) and the exact
    # division (1 ULP); the mean's rounding d enters as n d^2 / (n - 1):
    # 3 ULP, plus the reference's float64 rounding of 1e9 (1e-6)
    assert (got - x.var(dim=1)).abs().max().item() <= 3 * ULP + 1e-6


@pytest.mark.parametrize("value", [2.0**31, 3e9, -3e9])
def test_where_and_masked_fill_name_the_value_given(session, value):
    s = cryptgpu.cryptensor(torch.tensor([1.5, -2.0, 3.0]))
    mask = torch.tensor([True, False, True])
    for call in (lambda: torch.where(mask, s, value), lambda: s.masked_fill(mask, value)):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert f"value {value!r} is outside" in msg, msg
    assert usable()


def test_norm_is_right_up_to_norms_near_2_31(session):
    """Pinned (unchanged): the docstring's "the norm itself below 2^31"."""
    torch.manual_seed(0)
    x = _encoded((torch.rand(2, 1000, dtype=torch.float64) * 2 - 1) * 2.0**26.6)
    ref = x.norm(dim=1)  # about 1.8e9
    assert ref.max().item() < 2.0**31
    got = _plain(cryptgpu.cryptensor(x).norm(dim=1))
    assert ((got - ref).abs() / ref).max().item() <= 1e-4  # the stated 1e-4 relative


def test_logsumexp_and_log_softmax_bound_on_long_rows(session):
    """Pinned (unchanged): rows of n = 16384 within 4e-4 + n e^-16 +
    2 sqrt(n) 2^-16 (each term below e^-16 counts as e^-16; each term's
    unbiased rounding, about a unit): 6.1e-3."""
    n = 16384
    torch.manual_seed(0)
    x = torch.randn(8, n, dtype=torch.float64) * 20  # most terms clamped at e^-16
    x[4:] = torch.rand(4, n, dtype=torch.float64) * -11.5 - 0.5  # many terms below a unit
    x[4:, 0] = 0.0
    x = _encoded(x)
    s = cryptgpu.cryptensor(x)
    bound = 4e-4 + n * math.exp(-16) + 2 * math.sqrt(n) * ULP
    assert (_plain(s.logsumexp(-1)) - x.logsumexp(-1)).abs().max().item() <= bound
    assert (_plain(s.log_softmax(-1)) - x.log_softmax(-1)).abs().max().item() <= bound
