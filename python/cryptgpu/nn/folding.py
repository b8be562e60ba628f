"""BatchNorm folded into the convolution before it at conversion (eval
mode, or ``fold_batchnorm=True``): the fold itself, and the refusals of
moving weights between a folded model and one that still has those
BatchNorm layers (``to_pytorch`` into the torch model, ``load_state_dict``
of the torch model's state), which were silently wrong until 2026-12-06."""

from __future__ import annotations

import torch

from ..autograd import torch_grad

_BATCHNORMS = torch.nn.modules.batchnorm._BatchNorm
# what folds into a Conv2d before it: SyncBatchNorm is BatchNorm on one
# process (any rank; after a Conv2d a 4-D input, as BatchNorm2d's)
FOLDABLE = (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm)


def bn_affine(bn: torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm's eval-mode ``x * scale + shift``, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise NotImplementedError("BatchNorm without running statistics cannot be converted")
    var = bn.running_var.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.detach().double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def candidates(gm: torch.fx.GraphModule, mods: dict) -> list:
    """(BatchNorm node, conv node) for every BatchNorm that
    :func:`fold_batchnorm` folds, in graph order, without changing
    anything: called once, with running statistics, its only input a Conv2d
    (or a conv that an earlier BatchNorm was folded into) used nowhere else
    and called once."""
    calls: dict = {}  # how many graph nodes call each module (a reused conv)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    alias: dict = {}  # a folded BatchNorm's node -> the conv node in its place
    users: dict = {}  # a conv node's users once the BatchNorm after it is folded
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), FOLDABLE):
            continue
        src = node.args[0] if node.args else None
        src = alias.get(src, src)
        if not (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(mods.get(src.target), torch.nn.Conv2d)
            and users.get(src, len(src.users)) == 1
            and calls[src.target] == 1  # folding changes every call of the conv
            and calls[node.target] == 1  # the BatchNorm is gone from the model
        ):
            continue
        if mods[node.target].running_mean is None:  # batch statistics at eval too
            continue
        out.append((node, src))
        alias[node], users[src] = src, len(node.users)
    return out


def fold_batchnorm(gm: torch.fx.GraphModule, mods: dict, pairs: list) -> dict:
    """Fold every BatchNorm of ``pairs`` (:func:`candidates`) into its
    conv's weight and bias (one multiplication fewer per BN), with its
    running statistics: right for inference only. The fused conv always
    has a bias (the BatchNorm's shift), also where the torch conv had none.
    Returns {BatchNorm's dotted path: the conv's}, in graph order."""
    folded: dict = {}
    for node, src in pairs:
        conv, bn = mods[src.target], mods[node.target]
        scale, shift = bn_affine(bn)
        w = conv.weight.detach().double() * scale.reshape(-1, 1, 1, 1)
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
        fused = torch.nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            True,
            conv.padding_mode,
        ).double()
        with torch_grad(False):  # (interrupt-safe: autograd.torch_grad)
            fused.weight.copy_(w)
            fused.bias.copy_(b * scale + shift)
        mods[src.target] = fused
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded[node.target] = src.target
    return folded


def _pairs(folded: dict, bns, where: str = "") -> str:
    return ", ".join(f"{where + bn!r} (into {where + folded[bn]!r})" for bn in bns)


def refuse_into_torch(folded: dict, torch_mods: dict, where: str) -> None:
    """``to_pytorch`` of a folded model into a torch model that has a
    BatchNorm where one was folded: the folded conv weights written there
    were normalised again by that BatchNorm (torch's output 0.06 off, a user
    probe). NotImplementedError naming them, before anything is written."""
    bns = [bn for bn in folded if isinstance(torch_mods.get(bn), _BATCHNORMS)]
    if bns:
        raise NotImplementedError(
            f"to_pytorch: the BatchNorm layer(s) {_pairs(folded, bns, where)} "
            "were folded into the convolution before them at conversion (the PyTorch model "
            "was in eval mode, or fold_batchnorm=True): the converted convolutions hold "
            "the BatchNorm's scale and shift, which the PyTorch model's BatchNorm would "
            "apply again. To move weights back into a model with BatchNorm layers, convert "
            "it with fold_batchnorm=False (or in train mode)"
        )


def refuse_keys(folded: dict, prefix: str, state) -> None:
    """``load_state_dict`` of a folded model given entries of a folded
    BatchNorm (a torch model's state dict): the unfolded conv weights went
    into the folded conv (private outputs 0.109 off with strict=False, a
    user probe; strict=True called them unexpected keys without saying
    why). RuntimeError, as torch's load errors, strict or not."""
    bns = [bn for bn in folded if any(k.startswith(f"{prefix}{bn}.") for k in state)]
    if bns:
        keys = [k for k in state if any(k.startswith(f"{prefix}{bn}.") for bn in bns)]
        raise RuntimeError(
            f"Error(s) in loading state_dict: {keys} belong to the BatchNorm layer(s) "
            f"{_pairs(folded, bns, prefix)}, which were folded into the convolution before them "
            "at conversion (the PyTorch model was in eval mode, or fold_batchnorm=True): "
            "the converted convolution holds the BatchNorm's effect, and a state dict of "
            "the model with its BatchNorm layers cannot load into it. Convert the model "
            "with fold_batchnorm=False (or in train mode) to load such a state, or load it "
            "into the PyTorch model and convert that again"
        )
