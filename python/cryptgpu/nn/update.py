"""CrypTen's ``Module.update_parameters``: one plain SGD step, on shared
parameters (through :class:`cryptgpu.optim.SGD`, with CrypTen's optional
gradient threshold) or, for a model that is not encrypted, on its torch
parameters, as CrypTen's."""

from __future__ import annotations

from .. import autograd as ag
from ..optim import SGD
from ..tensor import SharedTensor


def sgd_step(params: list, learning_rate, grad_threshold=None) -> None:
    """CrypTen's ``update_parameters``: p <- p - lr * p.grad for each
    parameter with a gradient. Parameters that are all torch tensors (a
    model not encrypted, trained on torch tensors) step in plaintext under
    ``torch.no_grad()``, as CrypTen's; ``grad_threshold`` is then ignored,
    as there (it guards shared gradients). Shared parameters step with
    :class:`cryptgpu.optim.SGD`. With ``grad_threshold``, as CrypTen's, the
    shared gradient elements of magnitude at least the threshold are taken
    as 0 for this step (one batched comparison of all of them, one product;
    ``p.grad`` itself is left as it is). CrypTen's default is 100: there it
    guards against the rare huge errors of probabilistic truncation;
    training here truncates exactly, so the default None skips the check
    and its cost."""
    if params and not any(isinstance(p, SharedTensor) for p in params):
        with ag.torch_grad(False):  # (interrupt-safe, unlike torch.no_grad())
            for p in params:
                if p.grad is None:
                    continue
                if isinstance(p.grad, SharedTensor):
                    raise RuntimeError(
                        "cannot update the parameters of an unencrypted model with "
                        "encrypted gradients: encrypt the model first"
                    )
                p.sub_(p.grad * learning_rate)
        return
    # CrypTen's threshold, as SGD's grad_threshold (which checks it)
    SGD(params, lr=learning_rate, grad_threshold=grad_threshold).step()
