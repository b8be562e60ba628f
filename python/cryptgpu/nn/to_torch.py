"""``to_pytorch``: a converted model's weights (opened if encrypted) written
back into the PyTorch model it came from, layer by layer, attention,
encoder and decoder layers included."""

from __future__ import annotations

import torch

from ..autograd import torch_grad
from ..tensor import SharedTensor
from . import attention, folding, tracing, transformer
from .layers import BatchNorm
from .module import Module


def _opened(v) -> torch.Tensor:
    if isinstance(v, SharedTensor):
        v = v.get_plain_text(dtype=torch.float64)
    return torch.as_tensor(v)


class _Plan(list):
    """(torch tensor, our value) pairs to copy, and the names of our values
    the PyTorch model has no tensor for."""

    def __init__(self):
        super().__init__()
        self.unexpected: list = []


def _copy_into(p, v, name: str, plan: _Plan) -> None:
    """Plan ``v`` (opened) into torch's tensor ``p``; shapes must match, as
    in torch's load_state_dict (copy_ would broadcast a [1, 8] head into a
    [4, 8] one without a word), checked before anything is written. A value
    with no tensor to go into is noted (it was skipped, silently, until
    2026-12-05)."""
    if v is not None and not isinstance(p, torch.Tensor):
        plan.unexpected.append(name)
    if isinstance(p, torch.Tensor) and v is not None:
        if tuple(v.shape) != tuple(p.shape):
            raise RuntimeError(
                f"to_pytorch: size mismatch for {name}: copying a param with shape "
                f"{list(v.shape)}, the shape in the PyTorch model is {list(p.shape)}"
            )
        plan.append((p, v))


# the parts of an encoder or decoder layer that hold parameters
_LAYER_PARTS = ("self_attn", "multihead_attn", "linear1", "linear2", "norm1", "norm2", "norm3")


def _copy_back(m: Module, tm: torch.nn.Module, where: str, plan: _Plan) -> None:
    """Copy our layer ``m``'s parameters (and BatchNorm's statistics) into
    the PyTorch layer ``tm`` it was converted from, recursing through the
    attention, encoder and decoder layers (the attention's parameters by
    torch's names)."""
    if isinstance(m, attention.MultiheadAttention):
        for k in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if k in m._params:
                _copy_into(getattr(tm, k), m._params[k], where + k, plan)
        _copy_into(tm.in_proj_bias, m._params.get("in_proj_bias"), where + "in_proj_bias", plan)
        _copy_back(m._modules["out_proj"], tm.out_proj, where + "out_proj.", plan)
        return
    if isinstance(m, (transformer.TransformerEncoder, transformer.TransformerDecoder)):
        for i, layer in enumerate(tm.layers):
            _copy_back(m._modules["layers"][i], layer, f"{where}layers.{i}.", plan)
        if tm.norm is not None:
            _copy_back(m._modules["norm"], tm.norm, where + "norm.", plan)
        return
    if isinstance(m, transformer.Transformer):
        _copy_back(m._modules["encoder"], tm.encoder, where + "encoder.", plan)
        _copy_back(m._modules["decoder"], tm.decoder, where + "decoder.", plan)
        return
    if isinstance(m, (transformer.TransformerEncoderLayer, transformer.TransformerDecoderLayer)):
        for k in m._modules:
            if k in _LAYER_PARTS:
                _copy_back(m._modules[k], getattr(tm, k), f"{where}{k}.", plan)
        return
    # Every other layer keeps torch's parameter names (Linear, Conv1d/2d,
    # the norms, PReLU, Embedding, the recurrent layers): copied by name.
    values = dict(m._params)
    if isinstance(m, BatchNorm):
        values.update(m._buffers)
        if getattr(tm, "num_batches_tracked", None) is not None:
            plan.append((tm.num_batches_tracked, torch.tensor(m.num_batches_tracked)))
    for k, v in values.items():
        _refuse_computed(tm, k, where)
        _copy_into(getattr(tm, k, None), v, where + k, plan)


def _refuse_computed(tm: torch.nn.Module, k: str, where: str) -> None:
    """A weight torch computes from others (a parametrization: weight_norm,
    spectral_norm, orthogonal; pruning's weight_orig * weight_mask; the old
    weight_norm's g and v) cannot be written back: the copy landed in a
    temporary, silently (until 2026-12-05)."""
    if k in tm._parameters or k in tm._buffers:
        return
    parametrized = k in getattr(tm, "parametrizations", {})
    if parametrized or hasattr(tm, k + "_orig") or hasattr(tm, k + "_g"):
        raise NotImplementedError(
            f"to_pytorch: {where}{k} is computed by torch from other tensors (a "
            "parametrization, pruning or weight_norm), so the converted model's trained "
            "weight cannot be written back into it: remove it before converting "
            "(torch.nn.utils.parametrize.remove_parametrizations, prune.remove, "
            "remove_weight_norm) to train privately and copy back"
        )


def _inside(name: str, done: set, root) -> bool:
    """Whether ``name`` lies inside a module already copied (an attention
    layer's out_proj, an LSTM's cells)."""
    parts = name.split(".")
    m = root
    for part in parts[:-1]:
        m = m._modules.get(part)
        if m is None:
            return False
        if id(m) in done:
            return True
    return False


def graph_to_pytorch(self, model: torch.nn.Module) -> torch.nn.Module:
    """Copy this module's weights (opened if encrypted) into the PyTorch
    model it was converted from, by layer name, attention and encoder
    layers, the model's own parameters and layers added or replaced since
    included; every shape is checked before anything is written."""
    plan = _Plan()
    # the model inside torch.compile's or DataParallel's wrapper, as
    # from_pytorch converts it (the wrapper's names have a prefix: nothing
    # was copied, silently)
    inner = model if isinstance(model, torch.jit.ScriptModule) else tracing.unwrapped(model)
    _plan_graph(self, inner, "", plan)
    if plan.unexpected:
        raise RuntimeError(_keys_error(inner, plan))
    _refuse_meta(inner, plan)
    with torch_grad(False):  # (interrupt-safe: autograd.torch_grad)
        for p, v in plan:
            p.copy_(_opened(v).to(p.dtype))
    return model


def _refuse_meta(model: torch.nn.Module, plan: _Plan) -> None:
    """A tensor on the meta device has no storage: copying into it is a
    no-op (torch's load_state_dict warns and suggests ``assign=True``, which
    to_pytorch has not), so the weights would be lost, silently (until the
    fix). Refused before anything is written, naming the tensors."""
    meta = {id(p) for p, _ in plan if p.is_meta}
    if meta:
        names = [k for k, t in model.state_dict(keep_vars=True).items() if id(t) in meta]
        raise RuntimeError(
            f"to_pytorch: {', '.join(names) or 'some tensors'} of the PyTorch model "
            "are on the meta device, where a copy writes nothing (torch's load_state_dict "
            "calls it a no-op); give them storage first, e.g. "
            "torch_model.to_empty(device='cpu'), then to_pytorch writes every value"
        )


def _plan_module(m: Module, tm: torch.nn.Module, where: str, plan: _Plan) -> None:
    """Plan a layer, or a converted model put in a layer's place (a new
    head converted with from_pytorch), into torch's ``tm``."""
    if hasattr(m, "_module_at"):  # a converted Graph
        _plan_graph(m, tm, where, plan)
    else:
        _copy_back(m, tm, where, plan)


def _plan_graph(self, model: torch.nn.Module, where: str, plan: _Plan) -> None:
    torch_mods = dict(model.named_modules())
    folding.refuse_into_torch(self._folded, torch_mods, where)  # a BatchNorm folded away
    done: set = set()
    for target, m in self._layers():
        # a bare layer was converted wrapped: its target is the model itself
        bare = target == self._root_target
        tm = model if bare else torch_mods.get(target)
        if tm is not None:
            _plan_module(m, tm, where + ("" if bare else f"{target}."), plan)
        else:
            plan.unexpected.extend(n for n, *_ in m._named_state(f"{where}{target}."))
        done.update(id(sub) for sub in m.modules())
    for target, (path, name) in self._attr_at.items():
        owner, _, leaf = target.rpartition(".")
        node = self._walk(path, target)
        value = _param_of(node, name)
        _copy_into(getattr(torch_mods.get(owner), leaf, None), value, where + target, plan)
    # layers added after conversion (append, add_module, a new attribute):
    # copied by name, as torch's load_state_dict would
    for name, m in self.named_modules():
        if not name or id(m) in done or _inside(name, done, self):
            continue
        if hasattr(m, "_module_at") or m._params:
            tm = torch_mods.get(name)
            if tm is None:
                raise RuntimeError(
                    f"to_pytorch: {where + name!r} ({type(m).__name__}), added after "
                    "conversion, has no module of that name in the PyTorch model"
                )
            _plan_module(m, tm, f"{where}{name}.", plan)
            done.update(id(sub) for sub in m.modules())


def _keys_error(model: torch.nn.Module, plan: _Plan) -> str:
    """torch's load_state_dict's message: our names the PyTorch model lacks
    (unexpected), and its tensors that would get nothing (missing)."""
    planned = {id(p) for p, _ in plan}
    missing = [k for k, t in model.state_dict(keep_vars=True).items() if id(t) not in planned]
    lines = [f"Error(s) in to_pytorch into {type(model).__name__}:"]
    lines.append("Unexpected key(s) in the converted model (no such tensor in the PyTorch model): ")
    lines[-1] += ", ".join(f'"{k}"' for k in plan.unexpected) + "."
    if missing:
        lines.append("Missing key(s) in the converted model (PyTorch tensors it would not write): ")
        lines[-1] += ", ".join(f'"{k}"' for k in missing) + "."
    return "\n\t".join(lines)


def _param_of(owner, name: str):
    """``owner``'s parameter ``name``: its own, or, for a converted bare
    layer standing in its place, the wrapped layer's (``fc.weight``)."""
    return owner._params[name] if name in owner._params else getattr(owner, name)
