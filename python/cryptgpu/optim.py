"""Optimisers for private training: SGD, and Adam, AdamW, RMSprop and
Adagrad on a scaled second moment (see :class:`Adam`)."""

from __future__ import annotations

import math

import numpy as np

from . import _session
from .optim_base import Optimizer, _Optimizer, check_threshold, threshold_grads  # noqa: F401
from .optim_checks import (
    check_flags,
    check_grad_scale,
    check_shapes,
    saved_state,
)
from .optim_flat import flat_steps
from .optim_moments import _room, _scaled_k, guard_moments, scaled_ratio
from .tensor import SharedTensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


def check_precision(name: str) -> None:
    """The scaled-moment optimisers need precision_bits from 14 to 20: the
    floor and scaled second moment are laid out for these (an Adam step was
    0.44 off at f = 12, garbage at f = 24)."""
    f = _session.current().precision_bits
    if not 14 <= f <= 20:
        raise ValueError(
            f"{name} works with precision_bits from 14 to 20 (this session has {f}); "
            "use SGD or another precision"
        )


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov, weight
    decay and ``maximize``, as ``torch.optim.SGD`` (per parameter group):
    g = grad + wd p; v = mu v + (1 - dampening) g (v = g at the first
    step); then g = g + mu v with Nesterov, else g = v; p <- p - lr g. Each
    update multiplies by public constants (one truncation each).

    ``grad_threshold`` (CrypTen's): each step first takes the gradient
    elements of magnitude at least the threshold as 0 (``p.grad`` itself is
    left as it is), before weight decay, as CrypTen's SGD; one batched
    comparison of every gradient per step. None (the default) skips it."""

    _LEGACY = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        grad_threshold: float | None = None,
        *,
        maximize: bool = False,
        foreach=None,
        differentiable: bool = False,
        fused=None,
    ):
        check_flags("SGD", foreach, fused, differentiable=differentiable)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=bool(nesterov),
            maximize=bool(maximize),
        )
        self._buf: dict[int, SharedTensor] = {}
        self.grad_threshold = check_threshold(grad_threshold)
        super().__init__(params, defaults, "SGD")

    def _check(self, group: dict) -> None:
        super()._check(group)
        mu, damp = group["momentum"], group["dampening"]
        if not mu >= 0:
            raise ValueError(f"Invalid momentum value: {mu}")
        if not 0 <= damp <= 1:
            raise ValueError(f"Invalid dampening value: {damp}")
        if group["nesterov"] and (mu <= 0 or damp != 0):
            # torch's rule
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def state_dict(self) -> dict:
        """Hyperparameters (per group) and momentum buffers (by parameter
        index); save it with :func:`cryptgpu.save`."""
        return {
            **self._settings(),
            "momentum_buffers": [self._buf.get(id(p)) for p in self.params],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (for the same parameters, in
        the same order)."""
        (bufs,) = saved_state(self, state, "momentum_buffers")
        params = self.params
        if len(bufs) != len(params):
            raise ValueError(
                f"the saved optimiser state has {len(bufs)} momentum buffers for "
                f"{len(params)} parameters"
            )
        check_shapes(params, "momentum buffer", bufs)
        self._load_settings(state)
        self._buf = {id(p): b for p, b in zip(params, bufs) if b is not None}

    def _update(self, group: dict) -> None:
        mu, damp, lr = group["momentum"], group["dampening"], group["lr"]
        t = getattr(self, "grad_threshold", None)  # (a copy of an earlier version has none)
        kept = None if t is None else threshold_grads(group["params"], t)
        # a parameter without a buffer before this step starts one from its
        # gradient at each of its places in the group (one listed twice, as
        # torch's, whose buffers are read once per step)
        fresh = {id(p) for p in group["params"] if id(p) not in self._buf}

        def key(p):  # a batch of parameters that start their buffers, or go on
            return id(p) in fresh or id(p) not in self._buf

        for flat, g in flat_steps(group, key=key if mu else None, grads=kept, cut=False):
            if mu:
                prev = None if key(flat.params[0]) else flat.gather(self._buf)
                if prev is None:  # a copy: g may be p.grad, which the user may zero_()
                    v = g.clone()
                elif damp:
                    v = prev * mu + g * (1 - damp)
                else:
                    v = prev * mu + g
                flat.store(self._buf, v)
                g = g + v * mu if group["nesterov"] else v
            new = flat.values() - g * lr
            flat.assign(new)  # in place: modules keep the object; a view writes back


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch.optim.Adam's rules and defaults (bias
    correction, L2 ``weight_decay`` added to the gradient, or decoupled as
    AdamW; ``amsgrad``; ``maximize``; per parameter group), on shares.

    Fixed point cannot hold Adam's second moment directly: a gradient of
    1e-3 squares to 1e-6, below the 2^-16 resolution. The update
    m / sqrt(v) is invariant to scaling the gradient, so each step works on
    g * ``grad_scale`` (a public power of two, default 2^8; 2^(24 - f)
    above f = 16 bits, less for beta2 above 0.999: ``check_grad_scale``), keeps the second
    moment without its (1 - beta2) factor (w = beta2 w + g^2, which has no
    small factor), and computes m / sqrt(w) with
    :func:`cryptgpu.functions.ratio_inv_sqrt`, a range-reduced inverse square
    root accurate over 2^-14 .. 2^30. What that bounds, with the default
    scale: per-element gradients between about 1e-4 and 4 in magnitude are
    handled like torch's (within 5% of the step at 1e-4, 0.5% from 3e-4);
    smaller ones get a smaller step than torch's (the denominator has a
    floor of 2^-14 in scaled units, 4 units of the encoding, which plays
    the part of eps: with 2^-10 a gradient of 1.7e-4 got 0.81 of torch's
    step), and larger ones are kept in range by :func:`guard_moments` (a
    per-element scale that leaves the steps unchanged; scaled gradients
    beyond about 2^15, |g| about 120 at the default scale, clipped).
    ``eps`` is torch's m / (sqrt(v) + eps) when it
    matters (eps * grad_scale / sqrt(c2) above 2^-7, the floor's square
    root: three range-reduced inverse square roots per step instead of
    one); a smaller eps, the default 1e-8 always, is absorbed in the floor.
    Each step costs, per parameter element, one batched comparison of 21
    thresholds and about 60 products (``amsgrad`` adds one comparison,
    decoupled weight decay one product, a large eps two more of each),
    and the guard a comparison of 7 thresholds and four products.
    """

    _LEGACY = ("lr", "betas", "eps", "weight_decay", "grad_scale")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        grad_scale: int | None = None,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        foreach=None,
        capturable: bool = False,
        differentiable: bool = False,
        fused=None,
    ):
        flags = dict(differentiable=differentiable, capturable=capturable)
        check_flags(type(self).__name__, foreach, fused, **flags)
        grad_scale = check_grad_scale(grad_scale, betas)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=bool(amsgrad),
            maximize=bool(maximize),
            decoupled_weight_decay=bool(decoupled_weight_decay),
            grad_scale=grad_scale,
        )
        self.t = 0  # step() calls; each parameter's own count is in _steps
        self._steps: dict[int, int] = {}
        self._m: dict[int, SharedTensor] = {}
        self._w: dict[int, SharedTensor] = {}
        self._wmax: dict[int, SharedTensor] = {}
        self._k: dict[int, SharedTensor] = {}  # each element's moment scale (guard_moments)
        self._units: dict[int, tuple] = {}  # (beta2, grad_scale) of each one's moments
        super().__init__(params, defaults, "Adam")

    def _check(self, group: dict) -> None:
        super()._check(group)
        eps, betas = group["eps"], group["betas"]
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        group["betas"] = tuple(betas)

    def step(self, closure=None):
        """One Adam update of every parameter that has a gradient."""
        check_precision("Adam")
        self.t += 1
        return super().step(closure)

    def _update(self, group: dict) -> None:
        (b1, b2), s = group["betas"], group["grad_scale"]
        lr, eps, f = group["lr"], group["eps"], _session.current().precision_bits
        decay = group["weight_decay"] if group["decoupled_weight_decay"] else 0.0

        def prepare(p):
            # Each parameter counts its own steps, as torch's state["step"]:
            # one added to the optimiser later (add_param_group) or without
            # a gradient for a while was bias-corrected with the optimiser's
            # count (its first step 0.51x torch's 20 steps in).
            self._steps[id(p)] = self._steps.get(id(p), 0) + 1
            self._rescale(p, (b2, s))

        def key(p):  # parameters alike in step count and state share a batch
            tables = (self._m, self._w, self._wmax, self._k)
            return (self._steps[id(p)], *(id(p) in tab for tab in tables))

        for flat, g in flat_steps(group, prepare, key):
            t = self._steps[id(flat.params[0])]
            # bias corrections, of the betas as the products below encode
            # them (0.999 as 65470 / 2^16: with torch's 0.999 here, steps ran
            # 0.35% long from 6,000 steps on, 2.3% at beta2 = 0.9999)
            q1, q2 = (round(b * 2**f) / 2**f for b in (b1, b2))
            c1 = 1.0 / (1.0 - q1**t)
            c2 = (1.0 - q2) / (1.0 - q2**t)  # v_hat = c2 * w / s^2
            # torch: m_hat / (sqrt(v_hat) + eps) = (c1 / sqrt(c2)) m / (sqrt(w) + e)
            # in scaled units, e = s eps / sqrt(c2). While e is below the
            # floor's square root (2^-7; the default eps always), m / sqrt(w +
            # floor) is that to within the floor's own effect; a larger eps
            # takes torch's form: sqrt(w) and two divisions by sqrt(sqrt(w) +
            # e), three range-reduced inverse square roots instead of one.
            e = s * eps / np.sqrt(c2)
            g = g * np.int64(s)  # exact: an integer factor
            m, w, wm, k = (flat.gather(tab) for tab in (self._m, self._w, self._wmax, self._k))
            g, k, w, (m,), (wm,) = guard_moments(g, k, w, (m,), (wm,))
            m = g * (1 - b1) if m is None else m * b1 + g * (1 - b1)
            w = g * g if w is None else w * b2 + g * g
            for table, v in ((self._k, k), (self._m, m), (self._w, w)):
                flat.store(table, v)
            if group["amsgrad"]:
                w = w if wm is None else wm.maximum(w)
                flat.store(self._wmax, w)
            # m_hat / sqrt(v_hat) = (c1 / sqrt(c2)) m / sqrt(w)
            r = scaled_ratio(m, w, e, k)
            p = flat.values()
            base = p - p * (lr * decay) if decay else p  # AdamW: p (1 - lr wd)
            flat.assign(base - r * (lr * c1 / np.sqrt(c2)))

    def _rescale(self, p, units: tuple) -> None:
        """The moments of ``p`` kept without (1 - beta2) and in grad_scale
        units, brought to the current ones when the user changed beta2 or
        grad_scale between steps (torch's second moment carries on; ours
        was re-read under the new factor: a step 0.53x torch's after beta2
        0.999 -> 0.99)."""
        prev = self._units.get(id(p))
        self._units[id(p)] = units
        if prev is None or prev == units:
            return
        fm = units[1] / prev[1]
        fw = (1 - prev[0]) / (1 - units[0]) * fm * fm
        down = _room(fw)
        if down < 1 and id(p) in self._w:
            self._k[id(p)] = _scaled_k(self._k.get(id(p)), self._w[id(p)], down)
            fm, fw = fm * down, fw * down * down
        for table, f in ((self._m, fm), (self._w, fw), (self._wmax, fw)):
            if id(p) in table:
                table[id(p)] = table[id(p)] * f

    def state_dict(self) -> dict:
        """Hyperparameters (per group), step counts and moments (by parameter)."""
        params = self.params
        return {
            **self._settings(),
            "step": self.t,
            "units": [self._units.get(id(p)) for p in params],
            "steps": [self._steps.get(id(p), 0) for p in params],
            "exp_avg": [self._m.get(id(p)) for p in params],
            "exp_avg_sq_unscaled": [self._w.get(id(p)) for p in params],
            "max_exp_avg_sq_unscaled": [self._wmax.get(id(p)) for p in params],
            "moment_scale": [self._k.get(id(p)) for p in params],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved, for the same parameters in order."""
        params = self.params
        ms, ws = saved_state(self, state, "exp_avg", "exp_avg_sq_unscaled")
        mx = state.get("max_exp_avg_sq_unscaled", [None] * len(params))
        ks = state.get("moment_scale") or [None] * len(params)  # (older: all 1)
        if not len(ms) == len(ws) == len(mx) == len(ks) == len(params):
            raise ValueError(
                f"the saved optimiser state has {len(ms)} moments for {len(params)} parameters"
            )
        for what, saved in (
            ("exp_avg", ms),
            ("exp_avg_sq", ws),
            ("max_exp_avg_sq", mx),
            ("moment_scale", ks),
        ):
            check_shapes(params, what, saved)
        self._load_settings(state)
        self.t = state["step"]
        # per-parameter counts (older checkpoints: the optimiser's count for
        # every parameter that has moments)
        steps = state.get("steps") or [self.t if m is not None else 0 for m in ms]
        self._steps = {id(p): int(k) for p, k in zip(params, steps) if k}
        self._m = {id(p): m for p, m in zip(params, ms) if m is not None}
        self._w = {id(p): w for p, w in zip(params, ws) if w is not None}
        self._wmax = {id(p): w for p, w in zip(params, mx) if w is not None}
        self._k = {id(p): k for p, k in zip(params, ks) if k is not None}
        units = state.get("units") or [None] * len(params)
        self._units = {id(p): tuple(u) for p, u in zip(params, units) if u is not None}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as
    ``torch.optim.AdamW``: p <- p (1 - lr wd) before the Adam step, default
    weight_decay 1e-2."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        grad_scale: int | None = None,
        **kwargs,
    ):
        kwargs["decoupled_weight_decay"] = True
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, grad_scale, **kwargs)


class _Moments(Optimizer):
    """State slots by parameter (``_SLOTS``), each parameter's step count,
    and their state_dict."""

    _SLOTS: tuple = ()

    def __init__(self, params, defaults: dict, name: str, options: dict):
        check_flags(name, **options)
        # RMSprop's alpha plays Adam's beta2 in the scaled second moment
        defaults["grad_scale"] = check_grad_scale(
            defaults["grad_scale"], (0, defaults.get("alpha"))
        )
        self._state = {slot: {} for slot in self._SLOTS}
        self._steps: dict[int, int] = {}
        self._units: dict[int, tuple] = {}
        super().__init__(params, defaults, name)

    def _rescale(self, p, units: tuple, factors) -> None:
        """The slots of ``p`` brought from the units of its last step to the
        current ones (``factors(prev, units)``: slot -> factor) when the
        user changed alpha or grad_scale between steps (as Adam's)."""
        prev = self._units.get(id(p))
        self._units[id(p)] = units
        if prev is None or prev == units:
            return
        fs = factors(prev, units)
        down = _room(fs[self._SECOND])
        w = self._state[self._SECOND].get(id(p))
        if down < 1 and w is not None:  # the first moments by down, the second by its square
            ks = self._state["moment_scale"]
            ks[id(p)] = _scaled_k(ks.get(id(p)), w, down)
            fs = {k: f * (down * down if k == self._SECOND else down) for k, f in fs.items()}
        for slot, f in fs.items():
            table = self._state[slot]
            if id(p) in table:
                table[id(p)] = table[id(p)] * f

    def _check(self, group: dict) -> None:
        super()._check(group)
        if not group["eps"] >= 0:
            raise ValueError(f"Invalid epsilon value: {group['eps']}")

    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        check_precision(self._name)
        return super().step(closure)

    def state_dict(self) -> dict:
        """Hyperparameters (per group), step counts and state slots (by parameter)."""
        params = self.params
        out = {**self._settings(), "steps": [self._steps.get(id(p), 0) for p in params]}
        out["units"] = [self._units.get(id(p)) for p in params]
        for slot, table in self._state.items():
            out[slot] = [table.get(id(p)) for p in params]
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved, for the same parameters in order."""
        params = self.params
        if isinstance(state, dict) and "moment_scale" not in state and "steps" in state:
            state = {**state, "moment_scale": [None] * len(params)}  # older: scale 1
        saved_state(self, state, "steps", *self._SLOTS)
        for slot in ("steps", *self._SLOTS):
            if len(state[slot]) != len(params):
                raise ValueError(
                    f"the saved optimiser state has {len(state[slot])} {slot} entries for "
                    f"{len(params)} parameters"
                )
        for slot in self._SLOTS:
            check_shapes(params, slot, state[slot])
        self._load_settings(state)
        self._steps = {id(p): int(k) for p, k in zip(params, state["steps"]) if k}
        units = state.get("units") or [None] * len(params)
        self._units = {id(p): tuple(u) for p, u in zip(params, units) if u is not None}
        for slot in self._SLOTS:
            self._state[slot] = {id(p): v for p, v in zip(params, state[slot]) if v is not None}


class RMSprop(_Moments):
    """RMSprop as ``torch.optim.RMSprop(params, lr=1e-2, alpha=0.99,
    eps=1e-8, weight_decay=0, momentum=0, centered=False, maximize=False)``:
    v = alpha v + (1 - alpha) g^2, p <- p - lr g / (sqrt(v) + eps) (with
    momentum through a buffer of those ratios; ``centered`` divides by the
    square root of v minus the squared running mean of g). Kept as w = v
    s^2 / (1 - alpha) (s = ``grad_scale``): w = alpha w + (s g)^2, so
    g / (sqrt(v) + eps) = (s g) / (sqrt(w) + e) / sqrt(1 - alpha) with
    e = s eps / sqrt(1 - alpha). The gradient range is Adam's: |g| from
    about 1e-4 to 4 at the default scale 2^8 unaided, larger ones through
    :func:`guard_moments`'s per-element scale (clipped beyond about 120)."""

    _LEGACY = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    _SLOTS = ("square_avg_scaled", "grad_avg_scaled", "momentum_buffer", "moment_scale")
    _SECOND = "square_avg_scaled"

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        grad_scale: int | None = None,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=bool(centered),
            maximize=bool(maximize),
            grad_scale=grad_scale,
        )
        options = dict(capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults, "RMSprop", options)

    def _check(self, group: dict) -> None:
        super()._check(group)
        if not 0.0 <= group["alpha"] < 1.0:
            raise ValueError(f"Invalid alpha value: {group['alpha']}")
        if not group["momentum"] >= 0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")

    def _update(self, group: dict) -> None:
        a, s, lr, mu = group["alpha"], group["grad_scale"], group["lr"], group["momentum"]
        root = math.sqrt(1.0 - a)
        tables = [self._state[k] for k in self._SLOTS]
        w_of, ga_of, buf_of, k_of = tables

        def prepare(p):
            self._steps[id(p)] = self._steps.get(id(p), 0) + 1
            self._rescale(p, (a, s), _rmsprop_factors)

        for flat, g in flat_steps(group, prepare, lambda p: tuple(id(p) in t for t in tables)):
            g = g * np.int64(s)  # exact: an integer factor
            w, m, b, k = (flat.gather(t) for t in tables)
            g, k, w, (m,), _ = guard_moments(g, k, w, (m,))
            w = g * g if w is None else w * a + g * g
            flat.store(k_of, k)
            flat.store(w_of, w)
            if group["centered"]:
                # v - mean^2 = (1 - a) / s^2 (w - (sqrt(1 - a) m)^2), m the
                # scaled running sum of g (m = a m + s g)
                m = g + 0.0 if m is None else m * a + g
                w = w - (m * root).square()
            flat.store(ga_of, m)
            r = scaled_ratio(g, w, s * group["eps"] / root, k)  # sqrt(1 - a) g / (sqrt(v) + eps)
            p = flat.values()
            if mu:
                step = r * (1.0 / root)
                b = step if b is None else b * mu + step
                flat.store(buf_of, b)
                new = p - b * lr
            else:
                new = p - r * (lr / root)
            flat.assign(new)


def _rmsprop_factors(prev, now) -> dict:
    """RMSprop's w = v s^2 / (1 - alpha) and m = mean(g) s / (1 - alpha)
    from the units (alpha, s) of ``prev`` to those of ``now``."""
    f = (1 - prev[0]) / (1 - now[0])
    r = now[1] / prev[1]
    return {"square_avg_scaled": f * r * r, "grad_avg_scaled": f * r}


class Adagrad(_Moments):
    """Adagrad as ``torch.optim.Adagrad(params, lr=1e-2, lr_decay=0,
    weight_decay=0, initial_accumulator_value=0, eps=1e-10,
    maximize=False)``: sum += g^2, p <- p - lr_t g / (sqrt(sum) + eps)
    with lr_t = lr / (1 + (t - 1) lr_decay). Kept as w = s^2 sum (s =
    ``grad_scale``). The sum only grows; :func:`guard_moments` divides it
    by 16 (and the element's scale and new gradients by 4, which leaves the
    steps unchanged) wherever it reaches 1/16 of the fixed-point range, so
    long runs stay in range (until 2026-12-07 the sum overflowed after
    about 16,000 steps of |g| = 1, 75 of |g| = 20). Every sum starts from the constructor's
    ``initial_accumulator_value``, as torch's (a group's own value is kept
    but not used; one added later starts from ``defaults``'s)."""

    _LEGACY = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    _SLOTS = ("sum_scaled", "moment_scale")
    _SECOND = "sum_scaled"

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        foreach=None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused=None,
        grad_scale: int | None = None,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=bool(maximize),
            grad_scale=grad_scale,
        )
        options = dict(foreach=foreach, fused=fused, differentiable=differentiable)
        super().__init__(params, defaults, "Adagrad", options)

    def _check(self, group: dict) -> None:
        super()._check(group)
        if not group["lr_decay"] >= 0:
            raise ValueError(f"Invalid lr_decay value: {group['lr_decay']}")
        if not (v := self.defaults["initial_accumulator_value"]) >= 0:  # torch's: only this
            raise ValueError(f"Invalid initial_accumulator_value value: {v}")

    def _update(self, group: dict) -> None:
        s, sums, ks = group["grad_scale"], self._state["sum_scaled"], self._state["moment_scale"]

        def prepare(p):
            self._steps[id(p)] = self._steps.get(id(p), 0) + 1
            self._rescale(p, (s,), lambda prev, now: {"sum_scaled": (now[0] / prev[0]) ** 2})

        def key(p):
            return self._steps[id(p)], id(p) in sums, id(p) in ks

        for flat, g in flat_steps(group, prepare, key):
            t = self._steps[id(flat.params[0])]
            lr_t = group["lr"] / (1 + (t - 1) * group["lr_decay"])
            g = g * np.int64(s)  # exact: an integer factor
            g, k, w, _, _ = guard_moments(g, flat.gather(ks), flat.gather(sums))
            flat.store(ks, k)
            # torch's: the constructor's value, never a group's own (until
            # 2026-12-06 a group's own value)
            start = self.defaults["initial_accumulator_value"] * s * s
            w = g * g + start if w is None else w + g * g
            flat.store(sums, w)
            new = flat.values() - scaled_ratio(g, w, s * group["eps"], k) * lr_t
            flat.assign(new)
