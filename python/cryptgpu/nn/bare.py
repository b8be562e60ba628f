"""A bare torch transformer or recurrent module converted on its own
(``from_pytorch(nn.TransformerEncoder(...))``): the conversion wraps it as
one call, and the converted model stands in its place, as torch's module
itself: its children, parameters and buffers are the converted module's
own (the same tables), so that ``named_modules()``, ``named_children()``,
``get_submodule("layers.0.self_attn")`` and ``model.layers[0]`` give
torch's names (until 2026-12-07 they showed the wrapper's extra level,
``m.layers.0``, while ``named_parameters()`` already gave torch's).
"""

from __future__ import annotations

import inspect
import keyword

import torch


def wrap(layer: torch.nn.Module) -> torch.nn.Module:
    """A bare torch layer (``from_pytorch(nn.Linear(...))``) in a module
    that fx traces to one call of it, under the child name "0": a
    torch.nn.Sequential for a layer of one input; for one whose forward
    needs several (nn.Bilinear's input1 and input2, nn.CosineSimilarity's
    and nn.PairwiseDistance's x1 and x2, a loss's input and target), a
    module whose forward takes those, by torch's names (until 2026-12-07
    such a layer was wrapped in the Sequential: its converted model took
    one input, and a tuple dummy input failed with "Sequential.forward()
    takes 2 positional arguments but 3 were given")."""
    names = _required(layer)
    if len(names) < 2:
        return torch.nn.Sequential(layer)
    args = ", ".join(names)
    scope: dict = {}
    # a forward of exactly these parameters: fx makes one placeholder of each
    exec(f"def forward(self, {args}):\n    return self._modules['0']({args})\n", scope)
    forward = scope["forward"]
    forward.__doc__ = f"The bare {type(layer).__name__} on its {len(names)} inputs."
    kind = type(type(layer).__name__, (_Several,), {"forward": forward})
    return kind(layer)


class _Several(torch.nn.Module):
    """The module :func:`wrap` makes for a layer of several inputs."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.add_module("0", layer)


def _required(layer: torch.nn.Module) -> list:
    """The names of the positional parameters without a default of the
    layer's forward (none where they cannot be read)."""
    try:
        params = inspect.signature(layer.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
    ok = all(n.isidentifier() and not keyword.iskeyword(n) and n != "self" for n in names)
    return names if ok else []


def adopt(graph, target: str | None) -> None:
    """Make ``graph`` (a converted Graph whose only child is the converted
    bare module at ``target``) hold that module's parameter, child and
    buffer tables as its own; the module itself is kept aside, run for
    ``target``'s call (:meth:`Graph._layer`). A graph with state of its own
    stays as it is, as does one of a bare torch layer (``target`` None)."""
    d = graph.__dict__
    root = None if target is None else d["_modules"].get(target)
    if root is None or len(d["_modules"]) != 1 or d["_params"] or d.get("_buffers"):
        return
    rd = root.__dict__
    object.__setattr__(graph, "_bare", root)
    object.__setattr__(graph, "_modules", rd["_modules"])
    object.__setattr__(graph, "_params", rd["_params"])
    if "_buffers" in rd:
        object.__setattr__(graph, "_buffers", rd["_buffers"])


class Adopting:
    """Graph's part for :func:`adopt`: the module kept aside follows the
    graph's mode, encryption and torch-name loading (its tables are the
    graph's, so the rest of Module's walks reach its state already)."""

    def train(self, mode: bool = True):
        """As Module's; a bare module's converted layer follows."""
        out = super().train(mode)
        root = self.__dict__.get("_bare")
        if root is not None:
            root.training = self.training
        return out

    def _encrypt_own(self, src: int) -> None:
        super()._encrypt_own(src)
        root = self.__dict__.get("_bare")
        if root is not None:
            root.encrypted = True

    def _decrypt_own(self) -> None:
        super()._decrypt_own()
        root = self.__dict__.get("_bare")
        if root is not None:
            root.encrypted = False

    def _from_torch_names(self, prefix: str, state: dict) -> None:
        root = self.__dict__.get("_bare")
        if root is not None and hasattr(root, "_from_torch_names"):
            root._from_torch_names(prefix, state)  # (MultiheadAttention's old names)
