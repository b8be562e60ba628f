"""Gradient rules: for each differentiable SharedTensor operation, the
function that records it on the tape (:mod:`cryptgpu.autograd`) with the
map from the output's gradient to its inputs' gradients.

The operations (tensor_*.py) call these; the rules use only the methods of
the tensors they are given, so this module sits below the tensor modules.
"""

from __future__ import annotations

import numpy as np

from . import autograd as ag


def cat(tensors, dim: int = 0):
    """:func:`cryptgpu.cat`, reached through the tensors themselves (this
    module cannot import it: the tensor modules import this one)."""
    return tensors[0]._cat(tensors, dim)


def record_unbroadcast(out, x, shape):
    """``out`` is ``x`` broadcast (expand, or + a plaintext): the gradient
    is summed over the broadcast dims back to ``shape``."""
    return ag.record(out, (x,), lambda g: (ag.unbroadcast(g, shape),))


def record_identity(out, x):
    """``out`` has ``x``'s value (clone): the gradient passes unchanged."""
    return ag.record(out, (x,), lambda g: (g,))


def record_add(out, x, y):
    """x + y (shared, broadcast): each input gets the gradient, unbroadcast."""
    xs, ys = x.shape, y.shape
    return ag.record(out, (x, y), lambda g: (ag.unbroadcast(g, xs), ag.unbroadcast(g, ys)))


def record_sub(out, x, y):
    """x - y (shared, broadcast): g for x, -g for y, unbroadcast."""
    xs, ys = x.shape, y.shape
    return ag.record(out, (x, y), lambda g: (ag.unbroadcast(g, xs), ag.unbroadcast(-g, ys)))


def record_neg(out, x):
    """-x: the gradient negated."""
    return ag.record(out, (x,), lambda g: (-g,))


def record_mul(out, a, b):
    """a * b (both shared): g b for a and g a for b (one product each, only
    for the inputs that require grad)."""
    return ag.record(
        out,
        (a, b),
        lambda g: (
            ag.unbroadcast(g * b, a.shape) if a.requires_grad else None,
            ag.unbroadcast(g * a, b.shape) if b.requires_grad else None,
        ),
    )


def record_mul_public(out, x, factor):
    """x * a plaintext ``factor`` (already broadcast): g times the factor."""
    xs = x.shape
    return ag.record(out, (x,), lambda g: (ag.unbroadcast(g * factor, xs),))


def record_div_int(out, x, d: int):
    """x / a public whole number d (either sign, x broadcast to out's shape):
    the gradient summed back to x's shape, then divided by d."""
    xs = x.shape
    return ag.record(out, (x,), lambda g: (ag.unbroadcast(g, xs).div(d),))


def record_matmul(out, xl, yr):
    """xl @ yr (both shared, batch dims equal): g yr^T and xl^T g."""
    return ag.record(
        out,
        (xl, yr),
        lambda g: (
            g._matmul_t(yr) if xl.requires_grad else None,
            xl.transpose(-1, -2).matmul(g) if yr.requires_grad else None,
        ),
    )


def record_matmul_t(out, x, y):
    """x @ y^T (both shared, batch dims equal): g y and g^T x."""
    return ag.record(
        out,
        (x, y),
        lambda g: (
            g.matmul(y) if x.requires_grad else None,
            g.transpose(-1, -2).matmul(x) if y.requires_grad else None,
        ),
    )


def record_matmul_public_left(out, xr, pl):
    """pl @ xr with a plaintext ``pl``: pl^T g."""
    plt = np.ascontiguousarray(np.swapaxes(pl, -1, -2))
    return ag.record(out, (xr,), lambda g: (g.rmatmul(plt),))


def record_matmul_public_right(out, xl, pr):
    """xl @ pr with a plaintext ``pr``: g pr^T."""
    prt = np.ascontiguousarray(np.swapaxes(pr, -1, -2))
    return ag.record(out, (xl,), lambda g: (g.matmul(prt),))


def _record_conv(out, x, ws, wp, stride, padding, dilation, groups):
    """Conv backward: one engine call (protocol/conv.rs) computes the input
    gradient col2im(W^T G) and the weight gradient G cols(x)^T, all groups
    batched into one truncated product each."""
    wshape = list(ws.shape if ws is not None else wp.shape)
    win = ((wshape[2], wshape[3]), stride, padding, dilation)
    wbuf = None if ws is not None else np.ascontiguousarray(wp, dtype=np.float64).tobytes()

    def back(g):
        need_w = ws is not None and ws.requires_grad
        gx, gw = x._s().conv2d_backward(
            x._t,
            ws._t if ws is not None else None,
            wbuf,
            wshape,
            g._t,
            win,
            groups,
            x.requires_grad,
            need_w,
        )
        gx = x._wrap(gx) if gx is not None else None
        gw = x._wrap(gw) if gw is not None else None
        return (gx, gw) if ws is not None else (gx,)

    ag.record(out, (x, ws) if ws is not None else (x,), back)


def record_conv_transpose(out, x, ws, weight, wshape, win, groups):
    """Transposed convolution y = A_W^T x (A_W: the conv2d of weight W):
    its input gradient is the conv2d of g, and its weight gradient the
    conv2d weight gradient with g as the input and x as the output's
    gradient (one conv2d_backward call)."""
    (_, stride, padding, dilation) = win

    def back(g):
        gx = gw = None
        if x.requires_grad:
            gx = g.conv2d(weight, None, stride, padding, dilation, groups)
        if ws is not None and ws.requires_grad:
            _, w_t = x._s().conv2d_backward(
                g._t, ws._t, None, wshape, x._t, win, groups, False, True
            )
            gw = x._wrap(w_t)
        return (gx, gw) if ws is not None else (gx,)

    ag.record(out, (x, ws) if ws is not None else (x,), back)


def record_avg_pool2d(out, x, k, st, pad):
    """Average pooling: each window's gradient divided by its size and spread
    back over the window, one engine call (protocol/arith.rs)."""
    xs = list(x.shape)

    def back(g):
        return (x._wrap(x._s().avg_pool2d_backward(g._t, xs, k, st, pad)),)

    return ag.record(out, (x,), back)


def record_max_pool2d(out, x, mask, window):
    """Max pooling: the gradient goes to each window's maximum, by the kept
    one-hot ``mask`` of the windows, scattered back onto the input."""
    xs = list(x.shape)

    def back(g):
        w = mask * g.unsqueeze(-1)
        return (x._wrap(x._s().pool_scatter(w._t, xs, window)),)

    return ag.record(out, (x,), back)


def record_max(out, x, onehot, squeezed_dim):
    """max/min/amax over a dim (or all elements): the gradient goes to the
    element the one-hot ``onehot`` (x's shape) selected; ``squeezed_dim``:
    the reduced dim when the output dropped it, to broadcast g back."""

    def back(g):
        if squeezed_dim is not None and x.dim() > 0:
            g = g.unsqueeze(squeezed_dim % x.dim())
        return (onehot * g,)

    return ag.record(out, (x,), back)


def record_relu(out, x, mask):
    """ReLU: the gradient times the derivative mask 1 - msb(x) kept from the
    forward pass."""
    return ag.record(out, (x,), lambda g: (g * mask,))


def record_sum(out, x, dims):
    """Sum over ``dims``: the gradient broadcast back over the summed dims."""
    xs = list(x.shape)
    kept = [1 if i in dims else n for i, n in enumerate(xs)]
    return ag.record(out, (x,), lambda g: (g.reshape(kept).expand(xs),))


def record_mean(out, x, dims, n: int):
    """Mean over ``dims`` of ``n`` elements: the gradient broadcast back,
    then divided by n with each element rounded independently (dividing
    first would round once for all the elements it is broadcast to)."""
    xs = list(x.shape)
    kept = [1 if i in dims else k for i, k in enumerate(xs)]
    return ag.record(out, (x,), lambda g: (g.reshape(kept).expand(xs)._div_fresh(n),))


def record_reshape(out, x):
    """A reshape: the gradient reshaped back to ``x``'s shape."""
    xs = list(x.shape)
    return ag.record(out, (x,), lambda g: (g.reshape(xs),))


def record_permute(out, x, dims):
    """A permutation of dims: the gradient permuted by the inverse."""
    inv = [dims.index(i) for i in range(len(dims))]
    return ag.record(out, (x,), lambda g: (g.permute(inv),))


def record_view(out, x, shape_in, offset, strides):
    """A strided view (indexing): the adjoint of the view, the gradient placed
    at the viewed positions of a zero tensor of ``shape_in``."""
    # Ints, slices of any positive step and None never make a view overlap
    # itself, so scattering (not accumulating) is the exact adjoint.
    return ag.record(
        out,
        (x,),
        lambda g: (g._wrap(g._s().scatter(g._t, shape_in, offset, strides)),),
    )


def record_take(out, x, positions):
    """Indexing by public positions (integer arrays, masks): the gradient
    added back at the positions taken (a position taken twice gets both)."""
    shape_in = list(x.shape)
    return ag.record(
        out,
        (x,),
        lambda g: (g._wrap(g._s().put_add(g._t, positions, shape_in)),),
    )


def record_pad(out, x, pos):
    """Constant padding by ``pos`` (before, after) per dim: the gradient of
    the inner region."""
    inner = tuple(slice(a, a + n) for (a, _), n in zip(pos, x.shape))
    return ag.record(out, (x,), lambda g: (g[inner],))


def record_cat(out, ts, d: int):
    """Concatenation along ``d``: each input gets its slice of the gradient."""
    sizes = [t.shape[d] for t in ts]

    def back(g):
        res, off = [], 0
        for n in sizes:
            idx = (slice(None),) * d + (slice(off, off + n),)
            res.append(g[idx])
            off += n
        return tuple(res)

    return ag.record(out, ts, back)


def mean_square(d):
    """mean(d * d) (MSELoss's mean) recorded as one operation. Its gradient
    2 d g / n is one product of d and g as ring integers (scale 2^2f, no
    truncation) divided exactly by 2^(f-1) n: within 2 units of 2^-f.
    d * d's and mean's own backwards rounded g / n first, to log2(2^f / n)
    significant bits, a relative error of about n 2^-17 in every element of
    the gradient (0.76% at n = 1000, a user probe), with two products more."""
    recorded = ag.needs_grad(d)
    with ag.inside(recorded):
        out = (d * d).mean()
    if recorded and d.numel():
        shape, n = list(d.shape), d.numel()

        def back(g):
            ge = g.reshape([1] * len(shape)).expand(shape)
            s = ge._s(d)
            p = ge._wrap(s.mul_int(ge._t, d._t))
            return (p._wrap(p._s().div_public_int(p._t, n << (s.precision_bits - 1))),)

        ag.record(out, (d,), back)
    return out
