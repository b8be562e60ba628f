"""A converted transformers model's outputs: :class:`ModelOutput`, the dict
that also reads its fields as attributes and by position, as transformers'
own; and the output node's mark of the output class's declared fields."""

from __future__ import annotations

import dataclasses

import torch

_FIELDS = "cryptgpu_output_fields"  # node.meta key: the output class's fields


def mark_fields(gm: torch.fx.GraphModule, outputs: list) -> None:
    """Marks ``gm``'s output node, where it returns the last transformers
    output the tracer recorded (``outputs``: their classes), with that
    class's declared fields (:class:`ModelOutput`)."""
    node = next((n for n in gm.graph.nodes if n.op == "output"), None)
    value = node.args[0] if node is not None and node.args else None
    if not outputs or not isinstance(value, dict) or not dataclasses.is_dataclass(outputs[-1]):
        return
    fields = tuple(f.name for f in dataclasses.fields(outputs[-1]))
    if set(value) <= set(fields):
        node.meta[_FIELDS] = fields


def model_output(values: dict, node: torch.fx.Node) -> ModelOutput:
    """A converted graph's output dict, from its output ``node``."""
    return ModelOutput(values, node.meta.get(_FIELDS, ()))


class ModelOutput(dict):
    """A converted transformers model's output: a dict of its fields that
    also reads them as attributes (``out.logits``) and by position
    (``out[0]``), as transformers' own ModelOutput does; and, as that one,
    holds only the fields the model set, and reads a field of its output
    class that the model left unset (``out.loss`` without labels,
    ``out.hidden_states`` not asked for) as None (until 2026-12-06 an
    AttributeError): ``out["loss"]`` is then a KeyError, ``out.get("loss")``
    None, and ``to_tuple()`` and ``out[0]`` skip it."""

    def __init__(self, values=(), fields=()):
        super().__init__(values)
        self.__dict__["_fields"] = tuple(fields)  # the output class's declared fields

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            if name in self.__dict__.get("_fields", ()):
                return None
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):  # out[0], out[:2]: by position, as transformers'
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        """The fields in order, as a tuple."""
        return tuple(self.values())
