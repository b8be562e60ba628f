"""Refusals of transformers models that do not convert, in words that say
why (until 2026-12-06 torch.fx's or the conversion's own: "unsupported
function setitem at node 'setitem'", TorchScript's text, a range() hint
for a loop that is not one)."""

from __future__ import annotations

import operator

import torch

from .functional import FUNCTIONS


def untraced(model: torch.nn.Module, error: Exception, plain_fails) -> Exception | None:
    """The refusal of ``model`` where transformers' tracer failed on it with
    ``error`` (not its "not supported yet" list: another exception), if
    ``plain_fails()`` says transformers' own ``symbolic_trace``, without
    this package's changes to its tracer, fails on it too: a
    NotImplementedError saying so (its cause: ``error``); a mixture of
    experts says why. None where the plain tracer traces it (the failure
    is then this package's: ``error`` as it is)."""
    if not plain_fails():
        return None
    name, cfg = type(model).__name__, getattr(model, "config", None)
    first = (str(error).strip().splitlines() or [""])[0][:200]
    moe = any(getattr(cfg, k, None) for k in ("num_local_experts", "num_experts"))
    moe = moe or any("moe" in type(m).__name__.lower() for m in model.modules())
    why = (
        ": its mixture-of-experts layers send each token to the experts that its router "
        "picks from the data (a loop over the experts chosen), which one traced graph "
        "cannot follow"
        if moe
        else ""
    )
    return NotImplementedError(
        f"{name}: this architecture does not trace under transformers' fx tracer "
        f"(transformers.utils.fx.symbolic_trace fails on it too{why}; "
        f"{type(error).__name__}: {first})"
    )


def check(model: torch.nn.Module, graph: torch.fx.Graph, private: set) -> None:
    """Refuses, in words naming the reason, a traced transformers model
    whose graph computes on private values what the conversion would
    refuse as an unsupported function: an encoder-decoder that makes its
    decoder's inputs from input_ids (BART's ``shift_tokens_right``, an
    in-place write), a head that pools at end-of-sequence tokens found in
    the ids (``torch.unique_consecutive`` of their counts: T5's and BART's
    sequence classifiers)."""
    name, cfg = type(model).__name__, getattr(model, "config", None)
    for node in graph.nodes:
        if node.op != "call_function" or node not in private or node.target in FUNCTIONS:
            continue
        if node.target is operator.setitem and getattr(cfg, "is_encoder_decoder", False):
            raise NotImplementedError(
                f"{name}: encoder-decoder models that make their decoder's inputs from "
                "input_ids in their forward (BART's shift_tokens_right: an in-place write "
                f"into a tensor of the ids, setitem at node {node.name!r}) are not supported "
                "(T5ForConditionalGeneration converts, with labels=)"
            )
        if node.target is torch.unique_consecutive:
            raise NotImplementedError(
                f"{name}: its head pools each sequence at its end-of-sequence tokens, found by "
                "comparing input_ids with config.eos_token_id (torch.unique_consecutive at "
                f"node {node.name!r} checks that every sequence has as many): positions "
                "selected by the ids' values, which a converted graph cannot select (its ids "
                "are private one-hot rows); not supported"
            )
