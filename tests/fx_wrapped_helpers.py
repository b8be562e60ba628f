"""torch.fx.wrap'ped functions for test_probe_nb.py: torch-only stand-ins
for torchvision's (CI does not install torchvision), with their bodies.
torch.fx.wrap must be called at a module's top level, hence this module."""

import torch


def stochastic_depth(input, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth's body (torchvision 0.29)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


torch.fx.wrap("stochastic_depth")


def relative_bias(table, index, window: list):
    """torchvision Swin's _get_relative_position_bias: a parameter table
    read at a buffer of indices, viewed and permuted."""
    n = window[0] * window[1]
    bias = table[index].view(n, n, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


torch.fx.wrap("relative_bias")


def shifted_window_attention(x, window: int):
    """Branches on a traced size, as torchvision's shifted_window_attention
    (``if window_size[0] >= pad_H``): its body does not trace."""
    if window >= x.shape[-1]:
        return x
    return x * 2


# named as torchvision's, for the refusal naming its Swin (wrapped.refusal)
shifted_window_attention.__module__ = "torchvision.models.swin_transformer"
torch.fx.wrap("shifted_window_attention")


def pair(x):
    """Returns a tuple, not one tensor: kept as fx's leaf node."""
    return x, x * 2


torch.fx.wrap("pair")
