"""Probe OI (2026-12-07: unusual but legal tensors and dtypes):

* ``y.fill_(p)`` with a plaintext 0-d torch tensor that requires grad took
  it as a number (torch's UserWarning only) and dropped its gradient: a
  backward now raises the RuntimeError ``s * p`` raises, naming fill_;
  F.pad(value=p), F.threshold, leaky_relu, elu, celu, rrelu and hardtanh
  with such a tensor raise torch's TypeError (float() dropped it silently);
* ``y.copy_(p)`` / ``y.data = p`` with p requiring grad gave numpy's
  "Can't call numpy()": copy_ is noted as ``s * p`` is; ``.data = p``
  takes p.detach(), as torch does.

Tolerances (f = 16) come from conftest's model: an input's encoding is
within ENC = 2^-17.
"""

import warnings

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, prod_tol, usable

D = torch.float64
X = [1.5, -2.0, 3.0]


def rg_shared():
    """A recorded result that requires grad (as ``h = fc(x)``)."""
    return cryptgpu.cryptensor(torch.tensor(X), requires_grad=True) * 1.0


def test_fill_with_a_plain_tensor_requiring_grad_raises_at_backward(session):
    p = torch.tensor(0.5, requires_grad=True)
    y = rg_shared()
    y.fill_(p)
    with pytest.raises(RuntimeError, match="fill_: a plaintext torch tensor that requires grad"):
        y.sum().backward()
    assert p.grad is None
    assert usable()
    w = cryptgpu.cryptensor(torch.zeros(3))  # does not require grad: nothing recorded
    w.fill_(p)
    # the value is p's: one encoded input, within ENC
    assert torch.allclose(w.get_plain_text(dtype=D), torch.full((3,), 0.5, dtype=D), atol=ENC)
    with pytest.raises(RuntimeError, match="fill_: a plaintext torch tensor that requires grad"):
        w.sum().backward()
    assert usable()


def test_fill_with_a_detached_tensor_still_works(session):
    y = rg_shared()
    y.fill_(torch.tensor(0.25))
    y.sum().backward()  # torch: x's gradient is 0 (every element was overwritten)
    assert torch.allclose(y.get_plain_text(dtype=D), torch.full((3,), 0.25, dtype=D), atol=ENC)


P0 = torch.tensor(0.5, requires_grad=True)
NUMBER_ARGS = {
    "pad": lambda s: F.pad(s, (1, 1), value=P0),
    "pad_method": lambda s: s.pad((1, 1), P0),
    "threshold_value": lambda s: F.threshold(s, 0.0, P0),
    "threshold": lambda s: F.threshold(s, P0, 0.0),
    "leaky_relu": lambda s: F.leaky_relu(s, P0),
    "elu": lambda s: F.elu(s, P0),
    "celu": lambda s: F.celu(s, P0),
    "rrelu": lambda s: F.rrelu(s, P0, 0.5),
    "hardtanh_min": lambda s: F.hardtanh(s, P0, 1.0),
    "hardtanh_max": lambda s: F.hardtanh(s, -1.0, P0),
    "nn.LeakyReLU": lambda s: cryptgpu.nn.LeakyReLU(P0)(s),  # torch's raises in forward
    "nn.Threshold": lambda s: cryptgpu.nn.Threshold(0.0, P0)(s),
    "nn.ConstantPad1d": lambda s: cryptgpu.nn.ConstantPad1d(1, P0)(s.unsqueeze(0)),
}


@pytest.mark.parametrize("name", sorted(NUMBER_ARGS))
def test_number_argument_requiring_grad_is_torchs_type_error(session, name):
    # torch: "<op>(): argument '<arg>' must be Number/float, not Tensor";
    # before, float() took the value and dropped the gradient silently
    for s in (rg_shared(), cryptgpu.cryptensor(torch.tensor(X))):
        with pytest.raises(TypeError, match="requires grad"):
            NUMBER_ARGS[name](s).sum().backward()
        assert usable()
    # a detached value is still a number, as in torch
    t = torch.tensor(X, dtype=D)
    got = F.threshold(cryptgpu.cryptensor(t), 0.0, P0.detach()).get_plain_text(dtype=D)
    # exact comparison result (0/1) times encoded inputs: within ENC
    assert torch.allclose(got, F.threshold(t, 0.0, 0.5), atol=ENC)


@pytest.mark.parametrize("name", ["clamp_flat", "polynomial"])
def test_other_plain_numbers_requiring_grad_raise_at_backward(session, name):
    # float() took them (clamp with min >= max, CrypTen's polynomial
    # coefficients) and dropped the gradient; torch records it
    f = {
        "clamp_flat": lambda s: s.clamp(P0, P0),
        "polynomial": lambda s: s.polynomial([P0, P0]),
    }[name]
    y = f(rg_shared())
    with pytest.raises(RuntimeError, match="a plaintext torch tensor that requires grad"):
        y.sum().backward()
    assert usable()


def test_copy_from_a_plain_tensor_requiring_grad(session):
    p = torch.tensor([0.5, 1.0, -1.0], requires_grad=True)
    y = rg_shared()
    y.copy_(p)  # was numpy's "Can't call numpy() on Tensor that requires grad"
    # the value is p's: one encoded input, within ENC
    assert torch.allclose(y.get_plain_text(dtype=D), p.detach().to(D), atol=ENC)
    with pytest.raises(RuntimeError, match="copy_: a plaintext torch tensor that requires grad"):
        y.sum().backward()
    assert usable()
    w = cryptgpu.cryptensor(torch.zeros(3))
    w.copy_(p)
    assert torch.allclose(w.get_plain_text(dtype=D), p.detach().to(D), atol=ENC)
    with pytest.raises(RuntimeError, match="copy_: a plaintext torch tensor that requires grad"):
        w.sum().backward()
    assert usable()


def test_data_assignment_takes_a_tensor_requiring_grad_detached(session):
    p = torch.tensor([0.5, 1.0, -1.0], requires_grad=True)
    y = rg_shared()
    y.data = p  # torch accepts it: no gradient is involved
    # the value is p's: one encoded input, within ENC
    assert torch.allclose(y.get_plain_text(dtype=D), p.detach().to(D), atol=ENC)
    assert p.grad is None


def linear_model():
    torch.manual_seed(0)
    return tnn.Sequential(tnn.Linear(3, 2)).eval()


def test_sparse_public_input_and_sparse_dummy(session):
    m = linear_model()
    xs = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0]]).to_sparse()
    # a sparse dummy was torch's "Could not run 'aten::eq.Scalar' ... SparseCPU"
    pm = cryptgpu.nn.from_pytorch(m, torch.zeros(1, 3).to_sparse()).encrypt()
    got = pm(xs).get_plain_text(dtype=D)  # was numpy's "can't convert Sparse layout"
    want = m.double()(xs.to_dense().double())
    # 3 products of public inputs (|x| <= 2) by encoded weights (|w| <= 1), one
    # truncation, plus the bias's encoding
    assert torch.allclose(got, want, atol=prod_tol(3, 2.0, 1.0) + ENC)


def test_meta_dummy_for_from_pytorch(session):
    torch.manual_seed(0)
    m = tnn.Sequential(tnn.Conv2d(3, 4, 3)).eval()
    # only its shape matters: was "Tensor.item() cannot be called on meta tensors"
    pm = cryptgpu.nn.from_pytorch(m, torch.empty(1, 3, 8, 8, device="meta")).encrypt()
    x = torch.rand(1, 3, 8, 8)
    got = pm(cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    # 27 products of encoded values (|x| <= 1, |w| <= 1) truncated once, bias encoded
    assert torch.allclose(got, m.double()(x.double()), atol=prod_tol(27, 1.0, 1.0) + ENC)


def test_meta_tensor_as_the_owner_is_refused_clearly(session):
    with pytest.raises(NotImplementedError, match="meta tensor of shape \\[2, 3\\]"):
        cryptgpu.cryptensor(torch.empty(2, 3, device="meta"))
    assert usable()


def test_meta_placeholder_from_the_other_parties():
    def job():  # party 1 owns the data; the others pass a shape-only placeholder
        d = torch.tensor([[1.5, -2.0, 3.0]]) if cryptgpu.rank() == 1 else None
        d = torch.empty(1, 3, device="meta") if d is None else d
        return cryptgpu.cryptensor(d, src=1).get_plain_text(dtype=D)

    for out in cryptgpu.spmd.run(job, timeout_s=30):  # was "Cannot copy out of meta tensor"
        # party 1's values, each encoded once: within ENC
        assert torch.allclose(out, torch.tensor([[1.5, -2.0, 3.0]], dtype=D), atol=ENC)


def test_nested_tensor_is_a_clear_type_error(session):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "prototype stage" warning
        nt = torch.nested.nested_tensor([torch.randn(2), torch.randn(3)])
    # was torch's "Internal error: NestedTensorImpl doesn't support sizes"
    with pytest.raises(TypeError, match="nested tensors cannot be secret-shared"):
        cryptgpu.cryptensor(nt)
    assert usable()


def test_complex_model_is_the_complex_type_error(session):
    mc = tnn.Sequential(tnn.Linear(3, 2, dtype=torch.complex64)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Casting complex values" warning no more
        # was "mat1 and mat2 must have the same dtype" after torch's warning
        with pytest.raises(TypeError, match="complex tensors cannot be secret-shared"):
            cryptgpu.nn.from_pytorch(mc, torch.zeros(1, 3, dtype=torch.complex64))
    assert usable()


@pytest.mark.parametrize("op", ["amin", "amax", "min"])
def test_empty_reduction_names_its_operation(session, op):
    x = cryptgpu.cryptensor(torch.zeros(0, 3))
    with pytest.raises(RuntimeError, match=f"^{op}\\(\\)"):  # torch's type; amin said "max()"
        getattr(x, op)()
    assert usable()


def test_torch_tensor_of_a_shared_tensor_says_what_was_asked(session):
    x = cryptgpu.cryptensor(torch.zeros(2, 3))
    for f in (torch.tensor, torch.as_tensor):
        # TypeError (SecretValueError); began "len() of a 0-d tensor" for a 2x3 tensor
        with pytest.raises(TypeError, match="^torch.tensor\\(x\\) or torch.as_tensor\\(x\\)"):
            f(x)
    with pytest.raises(TypeError, match="^len\\(\\) of a 0-d tensor"):  # a plain len(): torch's
        len(x[0, 0])
    assert usable()


def test_float16_overflow_gives_inf_without_numpy_warning(session):
    x = cryptgpu.cryptensor(torch.tensor([70000.0, 1.5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" was shown
        got = x.get_plain_text(dtype=torch.float16)
    assert torch.equal(got, torch.tensor([70000.0, 1.5]).to(torch.float16))  # inf, 1.5 exact


def test_is_complex_inference_nested_and_empty_like(session):
    x = cryptgpu.cryptensor(torch.tensor([[1.5, -2.0, 3.0]]))
    # were UnsupportedAttributeError / NotImplementedError
    assert (x.is_complex(), x.is_inference(), x.is_nested) == (False, False, False)
    e = torch.empty_like(x)  # torch's values are unspecified: zeros, as zeros_like
    assert e.shape == x.shape and torch.equal(e, torch.zeros(1, 3))
