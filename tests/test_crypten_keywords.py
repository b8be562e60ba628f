"""Older CrypTen's keywords of the approximations (a user probe: each was a
TypeError): ``reciprocal(all_pos=True)`` skips the sign (the input is
promised positive), the iteration counts and ``method`` are accepted and
change nothing (our approximations take their own steps); CrypTen's
configuration entry points (``set_default_backend``,
``crypten.mpc.ConfigManager``) raise AttributeError saying what to do, as
``crypten.cfg`` does.

Tolerances as tests/test_functions.py's: the private result within K *
(|f'(x)| + 1 + |f(x)|) ulp (f = 16) of the float64 run of the same
approximation, which is within its method's own error of torch's.
"""

import math

import pytest
import torch

import cryptgpu as crypten
from conftest import ULP, usable
from cryptgpu import functions as fx

D = torch.float64
A = torch.tensor([1e-3, 0.5, 1.5, 2.0, 3.0, 300.0, 1e5], dtype=D)


def close(got, fn, deriv, k) -> bool:
    """got (private) within K (|f'(x)| + 1 + |f(x)|) ulp of fn's float64 run."""
    f64 = fn(A)
    return bool(((got - f64).abs() <= k * (deriv(A).abs() + 1 + f64.abs()) * ULP).all())


def test_reciprocal_with_crypten_keywords(session):
    x = crypten.cryptensor(A)
    # K = 32 for the self-correcting Newton steps; 1e-9 relative from 1/x
    # (tests/test_functions.py's "reciprocal" row)
    calls = [
        dict(all_pos=True),
        dict(nr_iters=7),
        dict(method="NR"),
        dict(method="log", log_iters=1, exp_iters=9),
        dict(method="NR", nr_iters=10, log_iters=1, all_pos=False),
    ]
    # the plaintext reference itself is 1/x (1e-9 relative)
    assert ((fx.reciprocal(A) - 1 / A).abs() <= 1e-9 / A).all()
    for kw in calls:
        got = x.reciprocal(**kw).get_plain_text(dtype=D)
        assert close(got, fx.reciprocal, lambda a: a**-2, 32), kw
    got = x.reciprocal(True, all_pos=True).get_plain_text(dtype=D)  # input_in_01 still first
    assert close(got, fx.reciprocal, lambda a: a**-2, 32)


def test_reciprocal_all_pos_skips_the_sign(session):
    """all_pos=True: no comparison for the sign, 12 rounds fewer than the
    48 of the reciprocal (README's cost table), a quarter."""
    x = crypten.cryptensor(A)
    crypten.reset_stats()
    x.reciprocal()
    full = crypten.stats()["total"]["rounds"]
    crypten.reset_stats()
    x.reciprocal(all_pos=True)
    assert full == 48 and crypten.stats()["total"]["rounds"] == 36


def test_exp_and_log_with_crypten_iteration_counts(session):
    x = crypten.cryptensor(A[:5])
    got = x.exp(iterations=8).get_plain_text(dtype=D)
    # K = 32, within 5e-6 relative of e^x (tests/test_functions.py's "exp" row)
    f64 = fx.exp(A[:5])
    assert ((got - f64).abs() <= 32 * (2 * f64.abs() + 1) * ULP).all()
    assert ((f64 - A[:5].exp()).abs() <= 5e-6 * A[:5].exp()).all()
    y = crypten.cryptensor(A)
    for kw in (dict(iterations=2), dict(iterations=2, exp_iterations=8, order=8)):
        got = y.log(**kw).get_plain_text(dtype=D)
        # K = 16 for the selection's products and the Horner truncations;
        # within 1e-7 of ln x (tests/test_functions.py's "log" row)
        assert close(got, fx.log, lambda a: 1 / a, 16), kw
        assert ((fx.log(A) - A.log()).abs() <= 1e-7).all()


def test_bad_crypten_keywords_raise_torch_kinds(session):
    x = crypten.cryptensor(A)
    with pytest.raises(ValueError, match="'NR' and 'log'"):
        x.reciprocal(method="newton")
    with pytest.raises(TypeError, match="nr_iters must be an int"):
        x.reciprocal(nr_iters=7.5)
    with pytest.raises(TypeError, match="all_pos must be a bool"):
        x.reciprocal(all_pos="yes")
    with pytest.raises(TypeError, match="iterations must be an int"):
        x.exp(iterations="8")
    with pytest.raises(TypeError, match="order must be an int"):
        x.log(order=8.0)
    with pytest.raises(TypeError):  # a keyword no CrypTen had
        x.exp(terms=3)
    assert usable()
    assert math.isfinite(x.reciprocal(nr_iters=3).get_plain_text()[0].item())


def test_crypten_configuration_names_say_what_to_do():
    with pytest.raises(AttributeError, match="leave the call out"):
        crypten.set_default_backend("mpc")
    with pytest.raises(AttributeError, match="leave the call out"):
        crypten.get_default_backend()
    with pytest.raises(AttributeError, match=r"x\.reciprocal\(all_pos=True\)"):
        crypten.mpc.ConfigManager("functions.reciprocal_all_pos", True)
    with pytest.raises(AttributeError, match=r"x\.reciprocal\(all_pos=True\)"):
        crypten.cfg.functions.reciprocal_all_pos = True
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        crypten.mpc.nothing  # noqa: B018
