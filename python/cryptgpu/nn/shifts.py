"""A bias a normalisation cancels, in a converted graph: a Linear or a
convolution (transposed too) whose output goes only into a BatchNorm that normalises with
batch statistics (training, or no running statistics) adds a per-channel
shift the BatchNorm removes, so the bias's gradient is 0 in exact
arithmetic (torch's ~1e-17); the layer then gives it exactly 0
(layers.shift_bias), rather than fixed-point noise that adaptive
optimisers scale to full steps. The same for a Conv1d into an
InstanceNorm1d, a Conv2d into an InstanceNorm2d (the same for the
transposed ones; always instance
statistics here) and a convolution into a GroupNorm with one channel per
group; not a GroupNorm whose groups hold several channels (a per-channel
shift moves a group's channels apart), nor a Linear into an InstanceNorm
(its [N, F] output is an unbatched [C, L] input, the bias along L)."""

from __future__ import annotations

import contextlib
import operator

import torch
import torch.nn.functional as F

from ..autograd import torch_grad
from . import check
from .layers import BatchNorm, Conv2d, Linear
from .layers1d import Conv1d
from .layers_extra import (
    ConvTranspose2d,
    GroupNorm,
    InstanceNorm,
    InstanceNorm1d,
    InstanceNorm2d,
)

_CONVS = (Conv1d, Conv2d, ConvTranspose2d)  # ConvTranspose1d is a ConvTranspose2d


def pairs(graph: torch.fx.Graph, converted: dict) -> dict:
    """call node -> the BatchNorm (or GroupNorm, InstanceNorm) target that
    call's output goes (only) into: by call, since a layer called twice
    (weights shared) adds its bias elsewhere too. Whether the norm cancels
    the bias is decided at each call (:func:`cancels`)."""
    out = {}
    for node in graph.nodes:
        norm = converted.get(node.target)
        if node.op != "call_module" or not isinstance(norm, (BatchNorm, GroupNorm)):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        if isinstance(converted.get(src.target), (Linear, *_CONVS)):
            out[src.name] = node.target
    return out


def cancels(layer, norm) -> bool:
    """Whether ``norm`` removes every per-channel shift of ``layer``'s
    (batched) output: a BatchNorm using batch statistics; an
    InstanceNorm1d after a Conv1d, an InstanceNorm2d after a Conv2d (the
    other pairings read the output as unbatched, the channels as
    positions); a GroupNorm with one channel per group after a
    convolution."""
    if isinstance(norm, BatchNorm):
        return norm.training or norm._buffers.get("running_mean") is None
    if not isinstance(norm, GroupNorm) or not isinstance(layer, _CONVS):
        return False
    dims = layer._dims if isinstance(layer, ConvTranspose2d) else 1 + isinstance(layer, Conv2d)
    if isinstance(norm, (InstanceNorm1d, InstanceNorm2d)):
        return dims == (1 if isinstance(norm, InstanceNorm1d) else 2)
    # the base InstanceNorm: one group per channel of its input
    return isinstance(norm, InstanceNorm) or norm.groups == _out_channels(layer)


def _out_channels(layer) -> int:
    """A convolution's output channels (a transposed one's weight is
    [in, out / groups, ...])."""
    w = layer._params["weight"]
    if isinstance(layer, ConvTranspose2d):
        return w.shape[1] * layer.conf[3]
    return w.shape[0]


@contextlib.contextmanager
def cancelled(layer, bn):
    """Around a call of ``layer``: its bias's gradient is exactly 0 while
    ``bn`` (the layer it runs into, looked up at the call: it may have been
    replaced) cancels it (:func:`cancels`)."""
    if torch.is_tensor(bn):  # a mask from keys(): always
        keep = bn
    else:
        keep = True if cancels(layer, bn) else None
    if keep is None or not isinstance(layer, (Linear, *_CONVS)):
        yield
        return
    layer.__dict__["_shift_cancelled"] = keep
    try:
        yield
    finally:
        layer.__dict__.pop("_shift_cancelled", None)


# shape-only steps between a projection and the attention product
_SHAPE_METHODS = {
    "view",
    "reshape",
    "transpose",
    "permute",
    "contiguous",
    "flatten",
    "unflatten",
    "split",
    "chunk",
    "unsqueeze",
    "squeeze",
    "unbind",
    "view_as",
    "reshape_as",
}
_SHAPE_FUNCTIONS = {
    torch.transpose,
    torch.reshape,
    torch.permute,
    torch.split,
    torch.chunk,
    torch.flatten,
    torch.unflatten,
    torch.unsqueeze,
    torch.squeeze,
    torch.unbind,
    operator.getitem,
    getattr,
}
_PRODUCTS = {operator.matmul, torch.matmul, torch.bmm}


def _shape_step(node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    return node.op == "call_function" and node.target in _SHAPE_FUNCTIONS


_SIZE_ATTRS = ("shape", "dtype", "device")


def _size_read(node) -> bool:
    """k.size(-1), k.shape, k.dim(): reads no values."""
    if node.op == "call_method":
        return node.target in ("size", "dim")
    attr = node.args[1] if len(node.args) > 1 else None
    return node.op == "call_function" and node.target is getattr and attr in _SIZE_ATTRS


def _ends_in_attention(node) -> tuple[bool, bool]:
    """(every use of ``node``, through shape-only steps, is an operand of a
    product or of scaled_dot_product_attention; one of them is a product's
    right operand or the attention's key)."""
    keyed = False
    for user in node.users:
        if _size_read(user):
            continue
        if _shape_step(user) and user.args and user.args[0] is node:
            ok, k = _ends_in_attention(user)
            if not ok:
                return False, False
            keyed |= k
        elif user.op == "call_function" and user.target in _PRODUCTS:
            keyed |= len(user.args) > 1 and user.args[1] is node
        elif user.op == "call_method" and user.target in ("matmul", "bmm"):
            keyed |= len(user.args) > 1 and user.args[1] is node
        elif user.op == "call_function" and user.target is F.scaled_dot_product_attention:
            keyed |= (len(user.args) > 1 and user.args[1] is node) or user.kwargs.get("key") is node
        else:
            return False, False
    return bool(node.users), keyed


def keys(graph: torch.fx.Graph, converted: dict, model: torch.nn.Module, xs) -> dict:
    """call node -> a 0/1 mask over a Linear's outputs, 0 where its bias
    feeds an attention's keys: the key bias adds the same q_i . b_k to
    every score of row i, which the softmax over the row removes, so its
    gradient is 0 (torch's ~1e-17). Found in two steps: the graph names the
    candidates (a Linear whose outputs, through reshapes and splits, all
    end in attention products: a key, query and value projection, or a
    packed one split three ways), and torch's own gradients on random
    inputs of the dummy's shape, in eval and in training mode, twice each,
    say which of their bias entries are structurally 0 (the key third of a
    packed projection, not the query's and value's): an entry whose
    gradient is ~0 while its weight row's is not (with one key position
    the query's gradients vanish too, weight rows included: nothing is
    marked then). The check runs on torch's forked RNG (the caller's
    random stream is untouched). Nothing is marked when it cannot run."""
    found = [
        node
        for node in graph.nodes
        if node.op == "call_module"
        and isinstance(converted.get(node.target), Linear)
        and converted[node.target]._params.get("bias") is not None
        and _ends_in_attention(node) == (True, True)
    ]
    if not found:
        return {}
    try:
        zero, m = None, check.copy_model(model).double()
        with torch.random.fork_rng(devices=[]):
            for training in (False, False, True, True):
                tiny = _tiny_bias_grads(m.train(training), xs, [n.target for n in found])
                zero = tiny if zero is None else [a & b for a, b in zip(zero, tiny)]
    except Exception:  # noqa: BLE001 - an optional refinement: never fail a conversion
        return {}
    return {n.name: (~z).to(torch.float64) for n, z in zip(found, zero) if bool(z.any())}


def _tiny_bias_grads(m, xs, targets) -> list:
    """Per target Linear of ``m`` (a float64 copy of the torch model), which
    bias entries get a gradient below 1e-10 of its weight's largest while
    their weight row's largest is above 1e-6 of it, for a random output
    cotangent on random inputs (floats normal; ids uniform below the first
    Embedding's size; masks as given)."""
    vocab = next((e.num_embeddings for e in m.modules() if isinstance(e, torch.nn.Embedding)), 0)

    def rand(x):
        if not isinstance(x, torch.Tensor):  # a Python argument (a flag): as given
            return x
        if x.is_floating_point():
            return torch.randn(x.shape, dtype=torch.float64)
        if x.dtype != torch.bool and vocab:
            return torch.randint(0, vocab, x.shape, dtype=x.dtype)
        if x.dtype != torch.bool:
            raise ValueError("integer inputs without an Embedding")
        return x

    layers = [m.get_submodule(t) for t in targets]
    with torch_grad(True):  # (interrupt-safe: autograd.torch_grad)
        out = m(*(check.tree(rand, x) for x in xs))
        flat = [t for t in _tensors(out) if t.is_floating_point() and t.requires_grad]
        total = sum((t * torch.randn_like(t)).sum() for t in flat)
        grads = torch.autograd.grad(
            total, [p for lin in layers for p in (lin.weight, lin.bias)], allow_unused=True
        )
    res = []
    for gw, gb in zip(grads[0::2], grads[1::2]):
        scale = 0.0 if gw is None else float(gw.abs().max())
        if gb is None or scale == 0.0:
            raise ValueError("no gradient to compare with")
        alive = gw.reshape(gw.shape[0], -1).abs().amax(1) > 1e-6 * scale
        res.append((gb.abs() <= 1e-10 * scale) & alive)
    return res


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []
