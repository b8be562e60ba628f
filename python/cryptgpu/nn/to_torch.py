"""``to_pytorch``: a converted model's weights (opened if encrypted) written
back into the PyTorch model it came from, layer by layer, attention,
encoder and decoder layers included."""

from __future__ import annotations

import torch

from ..tensor import SharedTensor
from . import transformer
from .layers import BatchNorm
from .module import Module


def _opened(v) -> torch.Tensor:
    if isinstance(v, SharedTensor):
        v = v.get_plain_text(dtype=torch.float64)
    return torch.as_tensor(v)


def _copy_into(p, v) -> None:
    if isinstance(p, torch.Tensor) and v is not None:
        with torch.no_grad():
            p.copy_(_opened(v).to(p.dtype))


# the parts of an encoder or decoder layer that hold parameters
_LAYER_PARTS = ("self_attn", "multihead_attn", "linear1", "linear2", "norm1", "norm2", "norm3")


def _copy_back(m: Module, tm: torch.nn.Module) -> None:
    """Copy our layer ``m``'s parameters (and BatchNorm's statistics) into
    the PyTorch layer ``tm`` it was converted from, recursing through the
    attention, encoder and decoder layers (the attention's parameters by
    torch's names)."""
    if isinstance(m, transformer.MultiheadAttention):
        for k in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if k in m._params:
                _copy_into(getattr(tm, k), m._params[k])
        _copy_into(tm.in_proj_bias, m._params.get("in_proj_bias"))
        _copy_back(m._modules["out_proj"], tm.out_proj)
        return
    if isinstance(m, (transformer.TransformerEncoder, transformer.TransformerDecoder)):
        for i, layer in enumerate(tm.layers):
            _copy_back(m._modules["layers"][i], layer)
        if tm.norm is not None:
            _copy_back(m._modules["norm"], tm.norm)
        return
    if isinstance(m, transformer.Transformer):
        _copy_back(m._modules["encoder"], tm.encoder)
        _copy_back(m._modules["decoder"], tm.decoder)
        return
    if isinstance(m, (transformer.TransformerEncoderLayer, transformer.TransformerDecoderLayer)):
        for k in m._modules:
            if k in _LAYER_PARTS:
                _copy_back(m._modules[k], getattr(tm, k))
        return
    # Every other layer keeps torch's parameter names (Linear, Conv1d/2d,
    # the norms, PReLU, Embedding, the recurrent layers): copied by name.
    values = dict(m._params)
    if isinstance(m, BatchNorm):
        values.update(m._buffers)
        if getattr(tm, "num_batches_tracked", None) is not None:
            tm.num_batches_tracked.fill_(m.num_batches_tracked)
    for k, v in values.items():
        _copy_into(getattr(tm, k, None), v)


def graph_to_pytorch(self, model: torch.nn.Module) -> torch.nn.Module:
    """Copy this module's weights (opened if encrypted) into the PyTorch
    model it was converted from, by layer name, attention and encoder
    layers and the model's own parameters included."""
    torch_mods = dict(model.named_modules())
    for target, m in self._layers():
        # a bare layer was converted wrapped: its target is the model itself
        tm = model if target == self._root_target else torch_mods.get(target)
        if tm is not None:
            _copy_back(m, tm)
    for target, (node, name) in self._attr_at.items():
        owner, _, leaf = target.rpartition(".")
        _copy_into(getattr(torch_mods.get(owner), leaf, None), node._params[name])
    return model
