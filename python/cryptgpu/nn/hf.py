"""Hugging Face models in ``from_pytorch``: a ``transformers`` model (such as
``BertForSequenceClassification`` built from a ``BertConfig``) is traced with
the tracer of ``transformers.utils.fx``, which knows how to step over the
control flow of its ``forward``; the graph it gives is converted like any
other. transformers is imported only when the model is one of its classes.

The traced graph takes ``input_ids`` (a SharedTensor of one-hot rows
[B, S, vocab], as the data owner shares token ids, or public ids [B, S]),
``attention_mask`` and ``token_type_ids`` (public [B, S] integers; all ones
and all zeros when not given, as transformers does), by position or by name,
and returns a :class:`ModelOutput` (``out.logits`` or ``out["logits"]``).
"""

from __future__ import annotations

import inspect
import logging
import sys

import torch

# the inputs we trace, in this order, where the model's forward has them
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def is_hf_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a transformers ``PreTrainedModel`` (without
    importing transformers when the caller has not)."""
    tf = sys.modules.get("transformers")
    return tf is not None and isinstance(model, tf.PreTrainedModel)


def _leading(first) -> tuple[int, int]:
    shape = tuple(first.shape)
    if len(shape) < 2:
        raise ValueError(
            f"input_ids must be [batch, seq] ids or [batch, seq, vocab] one-hot rows, "
            f"got shape {list(shape)}"
        )
    return shape[0], shape[1]


def _ones_mask(first) -> torch.Tensor:
    return torch.ones(_leading(first), dtype=torch.long)


def _zero_types(first) -> torch.Tensor:
    return torch.zeros(_leading(first), dtype=torch.long)


_DEFAULTS = {"attention_mask": _ones_mask, "token_type_ids": _zero_types}


def trace(model: torch.nn.Module) -> tuple[torch.fx.GraphModule, dict]:
    """(the traced GraphModule, defaults for the inputs a caller may leave
    out: name -> function of the first input)."""
    try:
        from transformers.utils.fx import symbolic_trace
    except ImportError:
        version = getattr(sys.modules.get("transformers"), "__version__", "?")
        raise NotImplementedError(
            f"converting a transformers model needs the torch.fx tracer of transformers 4.x "
            f"(transformers.utils.fx), which transformers {version} does not have: "
            "install transformers<5"
        ) from None
    params = inspect.signature(model.forward).parameters
    names = [n for n in _INPUTS if n in params]
    if "input_ids" not in names:
        raise NotImplementedError(
            f"{type(model).__name__}: only text models (a forward taking input_ids) "
            "convert from transformers"
        )
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "use_cache", False):
        cfg.use_cache = False  # no key/value cache in a traced graph
    # transformers' tracer calls torch.fx.is_fx_tracing, which logs a
    # deprecation warning each time: not the user's concern
    log = logging.getLogger("torch.fx._symbolic_trace")
    level = log.level
    log.setLevel(logging.ERROR)
    # transformers' tracer patches torch functions (torch.tensor, arange,
    # ...) while it traces and leaves them patched when tracing fails (a
    # GPT-2 did): the next trace then records the wrappers. Whatever it
    # changed in torch's namespace is put back.
    saved = {ns: dict(vars(ns)) for ns in (torch, torch.Tensor)}
    try:
        gm = symbolic_trace(model, input_names=names)
    finally:
        log.setLevel(level)
        _restore(saved)
    return gm, {n: _DEFAULTS[n] for n in names if n in _DEFAULTS}


def _restore(saved: dict) -> None:
    for ns, before in saved.items():
        for name, value in before.items():
            if vars(ns).get(name) is not value:
                try:
                    setattr(ns, name, value)
                except (AttributeError, TypeError):  # read-only slots stay as they are
                    pass


class ModelOutput(dict):
    """A converted transformers model's output: a dict of its fields that
    also reads them as attributes (``out.logits``) and by position
    (``out[0]``), as transformers' own ModelOutput does."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        """The fields in order, as a tuple."""
        return tuple(self.values())
