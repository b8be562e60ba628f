"""Transposed convolutions whose output_padding reaches the stride (torch
allows output_padding < max(stride, dilation), so with a dilation larger
than the stride): F.conv_transpose1d/2d on shared inputs and weights, the
layers converted from torch, forward and the input, weight and bias
gradients against float64 torch, on a grid of (stride, dilation,
padding, output_padding, groups, kernel) with unequal H and W settings.

Tolerances (f = 16): an output element sums at most K = C_in kh kw
products of encoded values, truncated once: prod_tol(K, xmax, wmax), plus
the bias's encoding. The input gradient is a conv2d of the output's
gradient (K = C_out/groups kh kw); the weight gradient sums N H W
products of x by g; the bias gradient sums N H_out W_out encoded values
of g, no truncation (one ENC each).
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, assert_close, prod_tol, usable


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


CASES = [
    # (C_in, C_out, kernel, stride, padding, output_padding, groups, dilation, (H, W))
    (2, 3, 3, 1, 0, 1, 1, 2, (5, 5)),  # the three shapes that raised ShapeError
    (2, 3, 3, 2, 0, 2, 1, 3, (5, 5)),
    (2, 3, 3, 1, 0, 2, 1, 3, (5, 5)),
    # padding >= stride: the extra rows hold products (reached through the padding)
    (2, 2, 3, 1, 1, 1, 1, 2, (4, 5)),
    (2, 2, 2, 1, 3, 1, 1, 3, (4, 3)),  # a large padding, a small output_padding
    (2, 2, 2, 1, 3, 3, 1, 4, (4, 4)),  # padding = output_padding: a crop at both ends
    # H and W set apart (one dim the usual output_padding < stride), groups
    (4, 2, (2, 3), (1, 2), (2, 0), (2, 1), 2, (3, 2), (4, 3)),
    (2, 3, (3, 2), (2, 1), (1, 3), (2, 2), 1, (3, 3), (3, 6)),
    (4, 6, 3, 1, 2, 1, 2, 2, (5, 4)),
    (3, 3, (1, 3), (3, 1), (0, 1), (0, 2), 3, (1, 3), (2, 4)),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shared_weight", [True, False])
def test_output_padding_up_to_the_dilation(session, case, shared_weight):
    cin, cout, k, s, p, op, g, d, (h, wd) = case
    kh, kw = (k, k) if isinstance(k, int) else k
    gen = torch.Generator().manual_seed(CASES.index(case))
    x = torch.rand(2, cin, h, wd, generator=gen, dtype=torch.float64) * 2 - 1
    w = torch.rand(cin, cout // g, kh, kw, generator=gen, dtype=torch.float64) - 0.5
    b = torch.rand(cout, generator=gen, dtype=torch.float64) - 0.5
    xt, wt, bt = (t.clone().requires_grad_() for t in (x, w, b))
    want = F.conv_transpose2d(xt, wt, bt, s, p, op, g, d)
    xs = cryptgpu.cryptensor(x, requires_grad=True)
    ws = cryptgpu.cryptensor(w, requires_grad=True) if shared_weight else w
    bs = cryptgpu.cryptensor(b, requires_grad=True) if shared_weight else b
    got = F.conv_transpose2d(xs, ws, bs, s, p, op, g, d)
    # |x| < 1, |w| < 0.5; plus the bias's encoding
    assert_close(pt(got), want.detach(), prod_tol(cin * kh * kw, 1, 0.5) + ENC)
    gy = torch.rand(want.shape, generator=gen, dtype=torch.float64) - 0.5
    want.backward(gy)
    got.backward(cryptgpu.cryptensor(gy))
    # the input gradient: a conv2d of gy (|gy| < 0.5) with the weight
    assert_close(pt(xs.grad), xt.grad, prod_tol((cout // g) * kh * kw, 0.5, 0.5))
    if shared_weight:
        # the weight gradient: sums of N H W products of x by gy
        assert_close(pt(ws.grad), wt.grad, prod_tol(2 * h * wd, 1, 0.5))
        # the bias gradient: sums of N H_out W_out encoded gy, no truncation
        assert_close(pt(bs.grad), bt.grad, want[0, 0].numel() * 2 * ENC)


def test_a_public_input_and_a_private_weight(session):
    """The weight owner's layer: a plaintext input, a shared weight."""
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(1, 2, 4, 6, generator=gen, dtype=torch.float64) - 0.5
    w = torch.rand(2, 3, 3, 2, generator=gen, dtype=torch.float64) - 0.5
    conf = ((1, 2), (1, 0), (1, 2), 1, (2, 3))  # stride, padding, output_padding, groups, dil
    want = F.conv_transpose2d(x, w, None, *conf)
    got = F.conv_transpose2d(x, cryptgpu.cryptensor(w), None, *conf)
    # K = 2 * 3 * 2 products of |x| < 0.5 by |w| < 0.5
    assert_close(pt(got), want, prod_tol(12, 0.5, 0.5))


@pytest.mark.parametrize("spec", [(1, 0, 1, 2), (2, 1, 2, 3), (1, 2, 2, 3), (2, 3, 2, 4)])
def test_conv_transpose1d_shared_and_converted(session, spec):
    """F.conv_transpose1d on shared tensors, and nn.ConvTranspose1d/2d
    converted from torch trained one step (all three gradients)."""
    s, p, op, d = spec
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 2, 6, generator=gen, dtype=torch.float64) - 0.5
    w = torch.rand(2, 3, 3, generator=gen, dtype=torch.float64) - 0.5
    want = F.conv_transpose1d(x, w, None, s, p, op, 1, d)
    got = F.conv_transpose1d(cryptgpu.cryptensor(x), cryptgpu.cryptensor(w), None, s, p, op, 1, d)
    # K = 2 * 3 products of |x| < 0.5 by |w| < 0.5
    assert_close(pt(got), want, prod_tol(6, 0.5, 0.5))
    for dims, shape in ((1, (2, 2, 7)), (2, (2, 2, 5, 4))):
        torch.manual_seed(dims)
        layer = getattr(torch.nn, f"ConvTranspose{dims}d")
        model = layer(2, 3, 3, stride=s, padding=p, output_padding=op, dilation=d).double()
        xi = torch.randn(shape, dtype=torch.float64)
        private = cryptgpu.nn.from_pytorch(model, xi).encrypt().train()
        out = private(cryptgpu.cryptensor(xi))
        ref = model(xi)
        # K = 2 * 3^dims products of |x| < 4 by |w| < 1/sqrt(3 * 3^dims) < 1, plus the bias
        k = 2 * 3**dims
        assert_close(pt(out), ref.detach(), prod_tol(k, 4, 1) + ENC)
        (out * out).sum().backward()
        (ref * ref).sum().backward()
        # d(sum y^2)/dy = 2y, |y| < 2 here: the weight gradient sums N * numel(x[0, 0])
        # products of |x| < 4 by it, carrying each 2y's error (2 prod_tol(k, 4, 1) + ENC)
        gmax, yerr = 4, 2 * (prod_tol(k, 4, 1) + ENC)
        n = xi[:, 0].numel()
        for (name, got_p), ref_p in zip(private.named_parameters(), model.parameters()):
            if name.endswith("bias"):  # sums of the output's 2y, each within yerr
                tol = ref[:, 0].numel() * (yerr + ENC)
            else:
                tol = prod_tol(n, 4, gmax) + n * 4 * yerr
            assert_close(pt(got_p.grad), ref_p.grad, tol), name


def test_same_rounds_and_bytes_as_any_conv_transpose(session):
    """The wider output_padding's rows are a local crop and pad: one round
    pair and C_out kh kw x N H W words per party, as with output_padding 0
    (the design table's truncated product over the column matrix)."""
    x = cryptgpu.cryptensor(torch.randn(1, 4, 6, 5))
    w = cryptgpu.cryptensor(torch.randn(4, 3, 3, 3))
    before = cryptgpu.stats()["total"]
    F.conv_transpose2d(x, w, stride=1, padding=2, output_padding=(1, 2), dilation=3)
    after = cryptgpu.stats()["total"]
    assert after["rounds"] - before["rounds"] == 2
    assert after["bytes_per_party"] - before["bytes_per_party"] == 8 * (3 * 3 * 3) * (1 * 6 * 5)


def test_a_shape_error_names_conv_transpose2d(session):
    """A kernel of height 0 (torch: RuntimeError "kernel size should be
    greater than zero"): the engine's refusal is reported as the user's
    conv_transpose2d, not as the conv2d backward that computes it."""
    x = cryptgpu.cryptensor(torch.randn(1, 2, 5, 5))
    with pytest.raises(RuntimeError):
        F.conv_transpose2d(torch.randn(1, 2, 5, 5), torch.randn(2, 3, 0, 3))
    with pytest.raises(RuntimeError, match="conv_transpose2d"):
        F.conv_transpose2d(x, torch.randn(2, 3, 0, 3))
    assert usable()
