"""Labels in a converted transformers model (since 2026-12-06; until then
``labels=`` was a TypeError): the model is traced with its labels, as
transformers' tracer makes them for its heads, so that the graph computes
transformers' own loss (``out.loss``) from public labels; a call without
labels skips the nodes that read them (``out.loss`` is then None, as in
transformers)."""

from __future__ import annotations

import contextlib
import operator

import torch
import torch.nn.functional as F

# the loss modules a forward makes at each call (``loss_fct =
# CrossEntropyLoss()``, BERT's heads) -> their functional form and settings
_LOSSES = {
    torch.nn.CrossEntropyLoss: (
        F.cross_entropy,
        ("weight", "ignore_index", "reduction", "label_smoothing"),
    ),
    torch.nn.MSELoss: (F.mse_loss, ("reduction",)),
    torch.nn.L1Loss: (F.l1_loss, ("reduction",)),
    torch.nn.BCEWithLogitsLoss: (
        F.binary_cross_entropy_with_logits,
        ("weight", "reduction", "pos_weight"),
    ),
}


def inline_losses(gm: torch.fx.GraphModule) -> None:
    """The loss modules that transformers' tracer made submodules of the
    model (those its forward makes at each call: BERT's ``loss_fct``) as
    calls of their functional form: not layers of the converted model."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or "." in node.target:
            continue
        m = getattr(gm, node.target)
        fn, settings = _LOSSES.get(type(m), (None, ()))
        if fn is None or not node.target.startswith(type(m).__name__.lower() + "_"):
            continue
        with gm.graph.inserting_before(node):
            kwargs = {**node.kwargs, **{k: getattr(m, k) for k in settings}}
            call = gm.graph.call_function(fn, node.args, kwargs)
        node.replace_all_uses_with(call)
        call.meta = dict(node.meta)
        gm.graph.erase_node(node)
        gm.delete_submodule(node.target)
    gm.recompile()


# node.meta key of the labels placeholder: (the problem type traced, the
# config's own before converting, its num_labels, the names of the nodes
# that read labels, the loss: skipped when a call gives none, whether other
# outputs read them, the model's float dtype)
LABELS = "cryptgpu_labels"


@contextlib.contextmanager
def problem(model: torch.nn.Module):
    """While tracing with labels: a classifier's ``config.problem_type``,
    where the user left it None, set as transformers would set it at a first
    call with integer class ids ("regression" for one label), since its
    tracer needs one and the forward would set it; afterwards as it was
    (the traced forward set it for good in the user's config)."""
    cfg = getattr(model, "config", None)
    heads = ("ForSequenceClassification", "ForImageClassification")
    if not any(c.__name__.endswith(heads) for c in type(model).__mro__):
        yield (None, None, None)  # a loss that does not depend on it
        return
    own, n = cfg.problem_type, cfg.num_labels
    if own is None:
        cfg.problem_type = "regression" if n == 1 else "single_label_classification"
    try:
        yield (cfg.problem_type, own, n)
    finally:
        cfg.problem_type = own


def mark(gm: torch.fx.GraphModule, problem, dtype: torch.dtype) -> None:
    """Marks ``gm``'s labels placeholder, if it has one, for :func:`unlabelled`
    and :func:`check`: the problem type, the nodes that read labels, and
    whether outputs other than the loss do (T5 makes its decoder's inputs
    from the labels)."""
    labels = next(
        (n for n in gm.graph.nodes if n.op == "placeholder" and n.target == "labels"), None
    )
    if labels is None:
        return
    reads, rest = {labels.name}, []
    for n in gm.graph.nodes:
        if n.op != "output" and any(a.name in reads for a in n.all_input_nodes):
            reads.add(n.name)
        elif n.op == "output" and n.args:
            out = n.args[0]  # the loss: "loss", or first in a tuple
            if isinstance(out, dict):
                rest = [v for k, v in out.items() if k != "loss"]
            elif isinstance(out, (tuple, list)):
                rest = list(out[1:])
    needed = any(getattr(v, "name", None) in reads for v in rest)
    labels.meta[LABELS] = (*problem, frozenset(reads), needed, dtype)


def unlabelled(graph: torch.fx.Graph, bound: dict) -> frozenset:
    """The names of the nodes that compute the loss from ``labels``, where a
    call gives none (they are skipped, and ``out.loss`` is None, as in
    transformers); else nothing. A model whose other outputs are made from
    the labels (T5's decoder inputs) needs them: ValueError, as
    transformers' without decoder_input_ids."""
    for node in graph.nodes:
        if node.op != "placeholder":
            break
        if node.target == "labels" and LABELS in node.meta and bound.get("labels") is None:
            if node.meta[LABELS][4]:
                raise ValueError(
                    "this converted model computes its outputs from labels (an "
                    "encoder-decoder's decoder inputs, shifted labels) and takes no "
                    "decoder_input_ids: pass labels=..."
                )
            return node.meta[LABELS][3]
    return frozenset()


def check(node: torch.fx.Node, v) -> None:
    """Refuses labels the traced loss would take for another problem than
    transformers would: float labels for a classifier whose
    ``problem_type`` was left unset (transformers then computes a
    multi-label loss; the graph was traced for class ids); then labels of
    a dtype torch's loss refuses, with torch's error."""
    if not torch.is_tensor(v):
        return
    traced, own, n = node.meta[LABELS][:3]
    if traced is not None and own is None and n != 1 and v.is_floating_point():
        raise NotImplementedError(
            f"labels of dtype {v.dtype}: transformers takes float labels as multi-label "
            "targets (BCEWithLogitsLoss) when config.problem_type is unset, and this model "
            "was converted for class ids (single_label_classification); set "
            "model.config.problem_type = 'multi_label_classification' before converting"
        )
    _as_torch_takes(node, v)


# the losses whose target torch checks by dtype -> the rank of their input
_CHECKED = {
    F.cross_entropy: 2,  # class ids: int64 (or uint8) only
    F.nll_loss: 2,
    F.binary_cross_entropy_with_logits: 1,  # a float target only
}
# the steps between the labels and a loss that keep their dtype
_SAME_DTYPE = {"view", "reshape", "contiguous", "squeeze", "unsqueeze", "flatten"}


def _as_torch_takes(node: torch.fx.Node, v: torch.Tensor) -> None:
    """Labels of a dtype that torch's loss refuses (int32 class ids: its
    cross-entropy takes int64 or uint8; integer multi-label targets: its
    BCEWithLogits takes floats) raise torch's own error, its loss run on
    stand-ins of the labels' dtype (until 2026-12-06 the converted model
    computed a loss from them)."""
    reads, dtype = node.meta[LABELS][3], node.meta[LABELS][5]
    if dtype not in (torch.float32, torch.float64):  # (CPU losses of half floats may not run)
        dtype = torch.float32
    for n in node.graph.nodes:
        if n.op != "call_function" or n.name not in reads or n.target not in _CHECKED:
            continue
        target = n.args[1] if len(n.args) > 1 else n.kwargs.get("target")
        if _reaches(target, node):
            x = torch.zeros((2, 3)[: _CHECKED[n.target]], dtype=dtype)
            n.target(x, torch.zeros(x.shape[:1] if x.dim() == 2 else x.shape, dtype=v.dtype))


def _reaches(a, labels: torch.fx.Node) -> bool:
    """Whether ``a`` is ``labels`` through steps that keep its dtype (views,
    indexing, padding, a move to the logits' device)."""
    while isinstance(a, torch.fx.Node) and a is not labels:
        rest = [*a.args[1:], *a.kwargs.values()]
        if a.op == "call_method" and a.target in _SAME_DTYPE:
            a = a.args[0]
        elif a.op == "call_method" and a.target == "to":
            if any(isinstance(r, torch.dtype) or _is_dtype_of(r) for r in rest):
                return False
            a = a.args[0]
        elif a.op == "call_function" and a.target in (operator.getitem, F.pad, torch.flatten):
            a = a.args[0]
        else:
            return False
    return a is labels


def _is_dtype_of(r) -> bool:
    """A traced ``t.dtype`` (``labels.to(logits.dtype)``)."""
    return isinstance(r, torch.fx.Node) and r.target is getattr and r.args[1:] == ("dtype",)


def kept(value, skipped: frozenset):
    """The graph's output ``value`` without the fields that ``skipped`` nodes
    compute (the loss, without labels)."""
    if skipped and isinstance(value, (tuple, list)):  # return_dict=False: (loss, ...)
        return type(value)(v for v in value if getattr(v, "name", None) not in skipped)
    if not skipped or not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if getattr(v, "name", None) not in skipped}


def by_keyword(graph: torch.fx.Graph, bound: dict, given: int, names: list) -> None:
    """Refuses ``labels`` given by position: the converted model's inputs
    are (input_ids or pixel_values, attention_mask, token_type_ids, labels)
    where the model has them, and transformers' positions differ (BERT's
    fourth is position_ids, DistilBERT's third head_mask): a tensor meant for
    one was silently taken as the labels."""
    if "labels" not in names or names.index("labels") >= given or bound["labels"] is None:
        return
    marked = any(n.target == "labels" and LABELS in n.meta for n in graph.nodes)
    if marked:  # a transformers model's (a forward of one's own takes it as written)
        raise TypeError(
            "labels are taken by keyword only (labels=...): the converted model's "
            "positional inputs are not transformers' (whose forward puts position_ids, "
            "head_mask or inputs_embeds before labels)"
        )
