"""Transposed convolutions (U-Net decoders, autoencoders, GAN generators):
``F.conv_transpose2d``/``conv_transpose1d`` on SharedTensors, the
``nn.ConvTranspose2d``/``ConvTranspose1d`` layers built directly and
converted from torch, forward and gradients against float64 torch.

Tolerances (f = 16): an output element sums at most K = C_in kh kw
products of encoded values, truncated once: prod_tol(K, xmax, wmax). The
input gradient is a conv2d of the output's gradient (the same bound with
K = C_out/groups kh kw); the weight gradient sums N H W products of x by g.
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, assert_close, prod_tol


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


CASES = [
    # (C_in, C_out, kernel, stride, padding, output_padding, groups, dilation, H)
    (2, 3, 3, 2, 1, 1, 1, 1, 4),
    (4, 4, (2, 3), (2, 1), (0, 1), (1, 0), 2, 1, 5),
    (2, 2, 3, 1, 0, 0, 1, 2, 4),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shared_weight", [True, False])
def test_conv_transpose2d_forward_and_gradients(session, case, shared_weight):
    cin, cout, k, s, p, op, g, d, h = case
    kh, kw = (k, k) if isinstance(k, int) else k
    gen = torch.Generator().manual_seed(CASES.index(case))
    x = torch.rand(2, cin, h, h, generator=gen, dtype=torch.float64) * 2 - 1
    w = torch.rand(cin, cout // g, kh, kw, generator=gen, dtype=torch.float64) - 0.5
    b = torch.rand(cout, generator=gen, dtype=torch.float64) - 0.5
    want = F.conv_transpose2d(x, w, b, s, p, op, g, d)
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    ws = cryptgpu.cryptensor(w, requires_grad=True) if shared_weight else w
    got = F.conv_transpose2d(xs, ws, b, s, p, op, g, d)
    # |x| < 1, |w| < 0.5; plus the bias's encoding
    assert_close(pt(got), want, prod_tol(cin * kh * kw, 1, 0.5) + ENC)
    gy = torch.rand(want.shape, generator=gen, dtype=torch.float64) - 0.5
    xt, wt = x.clone().requires_grad_(), w.clone().requires_grad_()
    F.conv_transpose2d(xt, wt, b, s, p, op, g, d).backward(gy)
    got.backward(cryptgpu.cryptensor(gy))
    # the input gradient: a conv2d of gy (|gy| < 0.5) with the weight
    assert_close(pt(xs.grad), xt.grad, prod_tol((cout // g) * kh * kw, 0.5, 0.5))
    if shared_weight:
        # the weight gradient: sums of N H W products of x by gy
        assert_close(pt(ws.grad), wt.grad, prod_tol(2 * h * h, 1, 0.5))


def test_conv_transpose1d_and_a_plaintext_input(session):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 2, 5, generator=gen, dtype=torch.float64) - 0.5
    w = torch.rand(2, 3, 3, generator=gen, dtype=torch.float64) - 0.5
    want = F.conv_transpose1d(x, w, None, 2, 1, 1)
    got = F.conv_transpose1d(cryptgpu.cryptensor(x), w, None, 2, 1, 1)
    assert_close(pt(got), want, prod_tol(6, 0.5, 0.5))
    # a public input and a private weight: the weight's owner's layer
    got = F.conv_transpose1d(x, cryptgpu.cryptensor(w), None, 2, 1, 1)
    assert_close(pt(got), want, prod_tol(6, 0.5, 0.5))


class Decoder(torch.nn.Module):
    """A U-Net-style step: down by a strided conv, up by a transposed one
    and by nearest upsampling (torch's UpsamplingNearest2d subclass)."""

    def __init__(self):
        super().__init__()
        self.down = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
        self.skip = torch.nn.UpsamplingNearest2d(scale_factor=2)

    def forward(self, x):
        h = self.down(x)
        return self.up(torch.relu(h)) + self.skip(h)[:, :2]


def test_a_converted_decoder_infers_and_trains_as_torch(session):
    torch.manual_seed(0)
    model = Decoder().double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    private = cryptgpu.nn.from_pytorch(model, x).encrypt()
    with torch.no_grad():
        want = model(x)
    # two products deep: 9 terms (|x| < 4, |w| < 1/3), then 36 terms of
    # the hidden values (|h| < 3) by |w| < 1/6, carrying the first error
    first = prod_tol(9, 4, 1 / 3)
    assert_close(pt(private(cryptgpu.cryptensor(x))), want, prod_tol(36, 3, 1 / 6) + 6 * first)
    trained = cryptgpu.nn.from_pytorch(model, x, fold_batchnorm=False).encrypt().train()
    opt = cryptgpu.optim.SGD(trained.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (trained(cryptgpu.cryptensor(x)) ** 2).mean().backward()
    opt.step()
    (model(x) ** 2).mean().backward()
    ref_opt.step()
    trained.decrypt()
    # one SGD step of lr 0.1 times gradients within a few 1e-4 (the mean's
    # gradient, the products above): 1e-4 with margin
    for (name, got), ref in zip(trained.named_parameters(), model.parameters()):
        assert_close(got, ref.detach(), 1e-4), name


def test_the_layer_built_directly_and_bad_arguments(session):
    layer = cryptgpu.nn.ConvTranspose2d(3, 2, 2, stride=2)
    out = layer(cryptgpu.cryptensor(torch.randn(1, 3, 4, 4)))
    assert tuple(out.shape) == (1, 2, 8, 8)
    x = cryptgpu.cryptensor(torch.randn(1, 3, 4, 4))
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="output padding"):
        F.conv_transpose2d(x, w, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="weight"):
        F.conv_transpose2d(x, torch.randn(2, 2, 3, 3))
    # the session is usable afterwards
    assert_close(pt(cryptgpu.cryptensor(torch.ones(2)) * 2), torch.full((2,), 2.0), 2 * ENC)


@pytest.mark.parametrize("name", ["ConvTranspose2d", "ConvTranspose1d"])
def test_bias_false_built_directly_has_no_bias(session, name):
    """ConvTranspose2d(..., bias=False) built directly took bias=False for
    its own "no tensor given" keyword: torch's layer was made with a bias,
    which was kept, applied and trained (0.23 off a bias-free torch layer
    of the same weight; every DCGAN generator is written so)."""
    torch.manual_seed(3)
    ref = getattr(torch.nn, name)(3, 2, 2, stride=2, bias=False).double()
    ours = getattr(cryptgpu.nn, name)(3, 2, 2, stride=2, bias=False)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    ours.load_state_dict(ref.state_dict())  # strict: no bias on either side
    x = torch.randn((1, 3, 4, 4) if name.endswith("2d") else (1, 3, 4), dtype=torch.float64)
    # K = C_in k (3 * 4 or 3 * 2) products of |x| < 4 and |w| < 1
    assert_close(pt(ours.encrypt()(cryptgpu.cryptensor(x))), ref(x).detach(), prod_tol(12, 4, 1))
    assert getattr(cryptgpu.nn, name)(3, 2, 2, bias=True).bias is not None


def test_cost_is_the_conv2d_backward_products(session):
    """One round pair (the truncation's reshare), and per party the ring
    elements of the truncated W^T x columns before they are folded:
    C_out kh kw x N H W words (design table: a truncated product sends
    one word per element of the product; here the column matrix)."""
    x = cryptgpu.cryptensor(torch.randn(1, 4, 6, 6))
    w = cryptgpu.cryptensor(torch.randn(4, 3, 3, 3))
    before = cryptgpu.stats()["total"]
    F.conv_transpose2d(x, w, stride=2)
    after = cryptgpu.stats()["total"]
    assert after["rounds"] - before["rounds"] == 2
    assert after["bytes_per_party"] - before["bytes_per_party"] == 8 * (3 * 3 * 3) * (1 * 6 * 6)
