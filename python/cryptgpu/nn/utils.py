"""``cryptgpu.nn.utils``: gradient clipping for shared parameters.

torch's ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_`` group
the gradients with a C++ routine that takes torch tensors only, so they
cannot reach a SharedTensor's gradient; these take the same arguments and
do the same on shared gradients, privately (the norm stays shared). On
plaintext parameters they call torch's. ``torch.nn.utils.clip_grad_norm_``
and ``clip_grad_value_`` themselves (the PyTorch habit) are wrapped when
cryptgpu is imported, so that given shared parameters they call these;
given torch tensors they are torch's, unchanged. ``AveragedModel`` of
torch.optim.swa_utils refuses a private model (it would average nothing);
its ``update_bn`` given a cryptgpu model calls :func:`update_bn` (torch's
found no BatchNorm in it and did nothing).
"""

from __future__ import annotations

import functools
import math

import torch

from .. import _session
from .. import autograd as ag
from ..functions import ratio_inv_sqrt
from ..tensor import SharedTensor, cat

# The sum of squared gradients is found in [2^-16, 2^30) (below 2^-16 it is
# 0 in fixed point at 16 fractional bits; a square above 2^31 has wrapped).
_LO_EXP, _HI_EXP = -16, 30
# extra fractional bits of the clipping factor (a gradient times it stays
# below 2^31 for gradients below 2^17)
_COEF_BITS = 14


def _params_with_grads(parameters) -> tuple[list, list]:
    if isinstance(parameters, (torch.Tensor, SharedTensor)):
        parameters = [parameters]
    params = list(parameters)
    return params, [p for p in params if getattr(p, "grad", None) is not None]


def _shared_only(grads, what: str) -> bool:
    """True when every gradient is shared, False when none is."""
    shared = [isinstance(g, SharedTensor) for g in grads]
    if any(shared) and not all(shared):
        raise TypeError(f"{what}: the parameters mix shared and plaintext gradients")
    return bool(shared) and all(shared)


def clip_grad_norm_(
    parameters,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach=None,
):
    """Scale the gradients so that their total ``norm_type`` norm is at most
    ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``: each gradient is
    multiplied by min(1, max_norm / (norm + 1e-6)); returns the total norm
    (a SharedTensor for shared gradients).

    Shared gradients: ``norm_type`` 2 (the default) or ``inf``. The norm is
    found by a range-reduced inverse square root of the sum of squares (the
    one Adam uses: 1e-4 relative for a sum of squares from 2^-16 to 2^30;
    a gradient norm above 2^15 has overflowed the fixed-point range), the
    clipping factor as one comparison of the sum with max_norm^2. Nothing
    in fixed point is NaN or infinite, so ``error_if_nonfinite`` has nothing
    to check; ``foreach`` is accepted and ignored."""
    params, with_grads = _params_with_grads(parameters)
    grads = [p.grad for p in with_grads]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not _shared_only(grads, "clip_grad_norm_"):
        return _TORCH["clip_grad_norm_"](params, max_norm, norm_type, error_if_nonfinite, foreach)
    if norm_type not in (2.0, math.inf):
        raise NotImplementedError(
            f"clip_grad_norm_ of shared gradients: norm_type {norm_type} (2 and inf are supported)"
        )
    if not max_norm > 0:  # torch scales everything to 0 for max_norm = 0
        max_norm = 0.0
    with ag.no_grad(), _session.training_work():
        flat = cat([g.reshape(-1) for g in grads])
        if norm_type == 2.0:
            sq = flat.dot(flat).reshape(1)  # one truncation for the whole sum
        else:
            top = flat.abs().amax().reshape(1)
            sq = top * top
        # One range-reduced call for [max_norm * 2^k / norm, sq / norm]: the
        # clipping factor carries k more fractional bits than 2^-16 (a factor
        # of 0.005 would otherwise be 0.3% coarse), and the norm keeps 1e-4
        # relative at any scale (sq * (1 / norm) would not for large norms).
        scaled = min(max_norm, 2.0**15) * 2.0**_COEF_BITS
        both = ratio_inv_sqrt(cat([sq * 0 + scaled, sq]), cat([sq, sq]), _LO_EXP, _HI_EXP)
        coef = both[0:1]
        norm = both[1:2] if norm_type == 2.0 else top
        one = 2.0**_COEF_BITS
        if max_norm < 2.0**15:
            over = sq > max_norm * max_norm  # shared 0/1: the norm exceeds max_norm
            coef = (over * (coef - one) + one).reshape(())
        else:  # a norm past 2^15 has overflowed: nothing to clip (max_norm = inf
            # to read the norm: until 2026-12-07 max_norm^2 failed to encode)
            coef = sq.reshape(()) * 0 + one
        for p in with_grads:
            p.grad = (p.grad * coef).div(int(one))
    return norm.reshape(())


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient to [-clip_value, clip_value] in place, as
    ``torch.nn.utils.clip_grad_value_`` (two comparisons per element for
    shared gradients)."""
    params, with_grads = _params_with_grads(parameters)
    grads = [p.grad for p in with_grads]
    clip_value = float(clip_value)
    if not _shared_only(grads, "clip_grad_value_"):
        _TORCH["clip_grad_value_"](params, clip_value, foreach)
        return
    with ag.no_grad(), _session.training_work():
        for p in with_grads:
            p.grad = p.grad.clamp(-clip_value, clip_value)


# torch's own functions, kept before wrapping them (unwrapped again on a reload)
_TORCH = {
    name: getattr(getattr(torch.nn.utils, name), "_cryptgpu_wraps", getattr(torch.nn.utils, name))
    for name in ("clip_grad_norm_", "clip_grad_value_")
}


def _wrap_torch() -> None:
    """``torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`` on a
    private model failed deep in a C++ grouping routine with an
    "incompatible function arguments" TypeError (a user probe): torch's two
    clipping functions are replaced, in torch.nn.utils and
    torch.nn.utils.clip_grad, by ones that send shared parameters here and
    anything else to torch's. A name imported from torch before cryptgpu
    (``from torch.nn.utils import clip_grad_norm_``) keeps torch's."""
    ours = {"clip_grad_norm_": clip_grad_norm_, "clip_grad_value_": clip_grad_value_}
    for name, theirs in _TORCH.items():

        def wrapper(parameters, *args, _theirs=theirs, _ours=ours[name], **kwargs):
            if isinstance(parameters, (torch.Tensor, SharedTensor)):
                parameters = [parameters]
            params = list(parameters)  # a generator is read once
            if any(isinstance(p, SharedTensor) for p in params):
                return _ours(params, *args, **kwargs)
            return _theirs(params, *args, **kwargs)

        functools.update_wrapper(wrapper, theirs)
        wrapper._cryptgpu_wraps = theirs
        for module in (torch.nn.utils, torch.nn.utils.clip_grad):
            if hasattr(module, name):
                setattr(module, name, wrapper)


def _refuse_averaging() -> None:
    """``torch.optim.swa_utils.AveragedModel(private_model)`` kept the
    model as a plain attribute (it is not a torch.nn.Module), so its
    parameters() were empty and update_parameters averaged nothing,
    silently (a user probe): refused at construction instead."""
    from torch.optim import swa_utils

    from .module import Module

    init = swa_utils.AveragedModel.__init__
    if getattr(init, "_cryptgpu_wraps", None) is not None:
        return

    @functools.wraps(init)
    def checked(self, model, *args, **kwargs):
        if isinstance(model, Module):
            raise TypeError(
                "torch.optim.swa_utils.AveragedModel cannot hold a cryptgpu model (not a "
                "torch.nn.Module: it would average nothing); keep an average yourself, e.g. "
                "ema = copy.deepcopy(model) and, after each step, under no_grad, "
                "e.lerp_(p, 1 - decay) for e, p in zip(ema.parameters(), model.parameters())"
            )
        init(self, model, *args, **kwargs)

    checked._cryptgpu_wraps = init
    swa_utils.AveragedModel.__init__ = checked


def update_bn(loader, model, device=None) -> None:
    """Recompute the running statistics of every BatchNorm layer of a
    cryptgpu ``model`` (private or decrypted) in one pass over ``loader``,
    as ``torch.optim.swa_utils.update_bn``: each layer's running mean is
    reset to 0, its variance to 1 and ``num_batches_tracked`` to 0, its
    momentum set to None (the cumulative average over the batches), and
    the model is run in training mode without recording on each batch of
    ``loader`` (a tensor or SharedTensor, or a list or tuple whose first
    element is one; ``device``: moved there first); the momenta and the
    training flag are then restored (also when a batch raises, where
    torch's leaves them changed). Without BatchNorm layers it does nothing;
    a model whose BatchNorm layers were folded at conversion is a
    RuntimeError (as its ``train()``), with every statistic unchanged."""
    from .layers import BatchNorm

    was_training = model.training
    # first: a model with BatchNorm folded at conversion refuses train()
    # (RuntimeError naming fold_batchnorm=False), before any statistic is
    # reset (a review: they were reset, then train() raised)
    model.train()
    momenta = {m: m.momentum for m in model.modules() if isinstance(m, BatchNorm)}
    for m in momenta:
        _reset_running_stats(m)
    try:
        for m in momenta:
            m.momentum = None
        with torch.no_grad(), ag.no_grad():
            for batch in loader:
                if isinstance(batch, (list, tuple)):
                    batch = batch[0]
                if device is not None:
                    batch = batch.to(device)
                model(batch)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.train(was_training)


def _reset_running_stats(bn) -> None:
    """torch's ``reset_running_stats``: running mean 0, variance 1 and
    ``num_batches_tracked`` 0 (nothing without running statistics). The
    buffers are replaced, not written in place, as a training forward
    replaces them (a plaintext one may be the torch model's own tensor)."""
    rm, rv = bn._buffers["running_mean"], bn._buffers["running_var"]
    if rm is None:
        return
    bn._buffers["running_mean"] = rm.clone().fill_(0.0)
    bn._buffers["running_var"] = rv.clone().fill_(1.0)
    bn.num_batches_tracked = 0
    bn._affine, bn._inv = None, None  # computed from the statistics replaced


def _wrap_update_bn() -> None:
    """``torch.optim.swa_utils.update_bn(loader, private_model)`` found no
    torch ``_BatchNorm`` among a cryptgpu model's modules and returned
    without a change, silently (a user probe; also for a decrypted model):
    given a cryptgpu model it calls :func:`update_bn`, given anything else
    torch's. A name imported from torch before cryptgpu keeps torch's."""
    from torch.optim import swa_utils

    from .module import Module

    theirs = getattr(swa_utils.update_bn, "_cryptgpu_wraps", swa_utils.update_bn)

    @functools.wraps(theirs)
    def wrapper(loader, model, device=None):
        if isinstance(model, Module):
            return update_bn(loader, model, device)
        return theirs(loader, model, device)

    wrapper._cryptgpu_wraps = theirs
    swa_utils.update_bn = wrapper


_wrap_torch()
_refuse_averaging()
_wrap_update_bn()
