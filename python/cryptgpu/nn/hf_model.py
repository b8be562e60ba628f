"""What a converted transformers model answers as a ``PreTrainedModel``
(since 2026-12-06; until then each was an AttributeError): ``config`` (a
copy of the model's), ``base_model``, ``get_input_embeddings()``,
``get_output_embeddings()``, ``num_parameters()``, ``device``, ``dtype``
and ``gradient_checkpointing_enable()``; and the output flags of
``pm.config`` read at each call, as transformers reads them: those the
traced graph can follow are followed, the others refused."""

from __future__ import annotations

import contextlib
import copy

import torch

from ..tensor import SharedTensor
from . import hf_labels
from .hf_outputs import ModelOutput
from .layers_extra import Embedding

# the output node's meta key: why the model traced without its labels
# (hf.trace sets it, where the loss did not trace)
NO_LABELS = "cryptgpu_no_labels"

# the config's output flags, as the graph was traced with them
_FLAGS = ("output_hidden_states", "output_attentions", "return_dict", "torchscript")


@contextlib.contextmanager
def dict_outputs(model: torch.nn.Module):
    """While tracing, ``model.config.return_dict`` True: the graph returns
    the output's fields by name, and a converted model whose config says
    False returns them as a tuple, in order (:func:`_asked`), as
    transformers' ``return_dict=False`` gives (until 2026-12-06 a Llama
    with return_dict=False did not trace: transformers' tracer fails on
    it)."""
    cfg = getattr(model, "config", None)
    own = getattr(cfg, "return_dict", True)
    if own is False:
        cfg.return_dict = True
    try:
        yield
    finally:
        if own is False:
            cfg.return_dict = own


def attach(graph, model: torch.nn.Module) -> None:
    """Gives the converted ``graph`` of the transformers ``model`` a copy of
    its config, and what the accessors of :class:`Pretrained` read from
    the model at conversion."""
    cfg = model.config
    graph.config = copy.deepcopy(cfg)
    names = {id(m): n for n, m in model.named_modules()}
    found = {}
    for which in ("input", "output"):
        try:
            m = getattr(model, f"get_{which}_embeddings")()
        except (NotImplementedError, AttributeError) as e:  # as transformers raises it
            found[which] = e
            continue
        found[which] = names.get(id(m)) if m is not None else None
    graph._pretrained = {
        "class": type(model).__name__,
        "prefix": getattr(model, "base_model_prefix", ""),
        "embeddings": found,
        "checkpointing": getattr(model, "supports_gradient_checkpointing", False),
        "flags": {k: getattr(cfg, k, None) for k in _FLAGS},
    }
    node = next(n for n in graph._graph.nodes if n.op == "output")
    if node.args and isinstance(node.args[0], dict):  # traced with return_dict (dict_outputs)
        graph._pretrained["flags"]["return_dict"] = True
    graph._checkpointing = False


class Pretrained:
    """The ``PreTrainedModel`` side of a converted transformers model (a
    mixin of conversion's Graph)."""

    def forward(self, *inputs, **named):
        """The graph's forward, with the output flags of ``self.config``
        (:func:`_asked`) and a clear refusal of ``labels=`` where the loss
        did not trace."""
        node = next(n for n in self._graph.nodes if n.op == "output")
        why = node.meta.get(NO_LABELS)
        if why is not None and named.get("labels") is not None:
            raise NotImplementedError(
                f"labels=: this converted {self._pretrained['class']} takes no labels, as "
                f"transformers' fx tracer could not trace its loss ({why}); compute the loss "
                "from out.logits (a cryptgpu.nn loss)"
            )
        drop, as_tuple = _asked(self, node, named.get("labels") is not None)
        out = super().forward(*inputs, **named)
        if isinstance(out, ModelOutput):
            fields = out.__dict__.get("_fields", ())
            out = ModelOutput({k: v for k, v in out.items() if k not in drop}, fields)
            return out.to_tuple() if as_tuple else out
        return out

    @property
    def base_model_prefix(self) -> str:
        """The model class's ``base_model_prefix`` ("bert", "model")."""
        return self._pretrained["prefix"]

    @property
    def base_model(self):
        """The converted base model (the submodule named by the model's
        ``base_model_prefix``; the model itself where it has none), as
        transformers': ``pm.base_model.requires_grad_(False)`` freezes it."""
        prefix = self._pretrained["prefix"]
        return getattr(self, prefix, self) if prefix else self

    def get_input_embeddings(self):
        """The converted layer that the model's ``get_input_embeddings()``
        returned (its Embedding), at its place now."""
        return _embeddings(self, "input")

    def get_output_embeddings(self):
        """The converted layer that the model's ``get_output_embeddings()``
        returned (an LM head's Linear), or None where it returned None
        (a classifier)."""
        return _embeddings(self, "output")

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False):
        """The number of parameter entries, as transformers counts them
        (each tied tensor once; ``only_trainable``: those not frozen, with
        ``requires_grad_(False)`` or frozen in the torch model, whatever the
        mode: torch's requires_grad does not follow train/eval, ours does;
        ``exclude_embeddings``: without the Embedding layers' weights)."""
        skip = set()
        if exclude_embeddings:
            skip = {f"{n}.weight" for n, m in self.named_modules() if isinstance(m, Embedding)}
        return sum(
            p.numel()
            for n, p in self.named_parameters()
            if n not in skip and not (only_trainable and getattr(p, "_frozen", False))
        )

    @property
    def device(self) -> torch.device:
        """Where the parameters are: the session's device once encrypted (a
        SharedTensor's ``device``), else the plaintext copies' (the CPU)."""
        p = next(iter(self.parameters()), None)
        return torch.device("cpu") if p is None else p.device

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype, as transformers reads it (the first
        floating one's): once encrypted a SharedTensor's ``dtype``, the
        default float dtype (shares hold fixed-point reals, README); before,
        float64 (the conversion's plaintext copies)."""
        for p in self.parameters():
            if isinstance(p, SharedTensor) or p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    @property
    def supports_gradient_checkpointing(self) -> bool:
        """The model class's own answer."""
        return self._pretrained["checkpointing"]

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether :meth:`gradient_checkpointing_enable` was called (last)."""
        return self.__dict__.get("_checkpointing", False)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        """Accepted and recorded (``is_gradient_checkpointing``), and changes
        nothing: checkpointing trades memory for recomputation and gives the
        same outputs and gradients in torch, and the converted graph keeps
        the activations its backward needs (it has no recomputation). A
        model class without checkpointing: transformers' ValueError."""
        if not self.supports_gradient_checkpointing:
            raise ValueError(
                f"{self._pretrained['class']} does not support gradient checkpointing."
            )
        self._checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        """Recorded; changes nothing (:meth:`gradient_checkpointing_enable`)."""
        self._checkpointing = False


def _embeddings(graph, which: str):
    found = graph._pretrained["embeddings"][which]
    if isinstance(found, Exception):
        raise type(found)(*found.args)
    return None if found is None else graph.get_submodule(found)


def _asked(graph, node, labelled: bool) -> tuple[set, bool]:
    """(the output fields to drop, whether to return a tuple) for the flags
    ``graph.config`` has now: a flag turned off since converting is
    followed where the graph returns a dict (its field dropped; the tuple
    of its fields, in order, as transformers' ``return_dict=False``
    gives); one turned on asks for what was not traced, and a changed
    ``problem_type`` for another loss: NotImplementedError naming it, to
    set on the model's config before converting (until 2026-12-06 they
    were ignored, silently)."""
    cfg, traced = graph.config, graph._pretrained["flags"]
    value = node.args[0] if node.args else None
    fields = node.meta.get("cryptgpu_output_fields", ())
    drop, as_tuple = set(), False

    def refuse(flag, now, was, why):
        raise NotImplementedError(
            f"config.{flag} = {now!r} on the converted {graph._pretrained['class']} (it was "
            f"{was!r} when converted): {why}; set it on the model's config before "
            "converting (from_pytorch traces what the config asks for)"
        )

    for flag in ("output_hidden_states", "output_attentions"):
        now, field = getattr(cfg, flag, None), flag[len("output_") :]
        if bool(now) == bool(traced[flag]):
            continue
        if now and (not fields or field in fields):  # (not a field: none in torch either)
            refuse(flag, now, traced[flag], f"the graph was traced without the {field}")
        if not now and not isinstance(value, dict):
            refuse(flag, now, traced[flag], "the graph returns a tuple, traced with them")
        drop.add(field)
    for flag in ("return_dict", "torchscript"):
        now = getattr(cfg, flag, None)
        if bool(now) == bool(traced[flag]):
            continue
        if flag == "return_dict" and not now and isinstance(value, dict):
            as_tuple = True
        else:
            refuse(flag, now, traced[flag], "the graph returns the form it was traced with")
    holders = (n for n in graph._graph.nodes if n.op == "placeholder")
    labels = next((n for n in holders if n.target == "labels"), None)
    problem = labels.meta.get(hf_labels.LABELS) if labels is not None else None
    if labelled and problem is not None and problem[0] is not None:
        if cfg.problem_type not in problem[:2]:  # the traced one, or the own unset one
            was, why = problem[1], f"the loss was traced for {problem[0]!r}"
            refuse("problem_type", cfg.problem_type, was, why)
    return drop, as_tuple
