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
