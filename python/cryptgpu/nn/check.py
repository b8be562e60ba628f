"""The conversion's check: the converted model against the torch model on
the dummy input (in float64, or in float32 for a model that casts to it),
and the error message that names the likely cause when they disagree.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math

import torch

from ..autograd import torch_grad


def failure(model, xs, want, got, folded: int) -> str:
    """The conversion check's error message, with the likely cause."""
    msg = "conversion check failed: the converted model disagrees with the original"
    both = isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)
    if both and got.shape != want.shape:
        msg += f" (output of shape {list(got.shape)} where the model's is {list(want.shape)})"
        branchy = isinstance_branch(model)
        if branchy:
            return msg + (
                f": {branchy}.forward calls isinstance, and a test such as isinstance(h, "
                "tuple) on a traced value is False while torch.fx traces (the value is a "
                "Proxy), which may have taken the other branch; write the forward without it"
            )
    elif form(got) != form(want):
        # compared by structure, not class: a converted transformers model
        # returns our ModelOutput of the fields of the model's own output
        # class (until 2026-12-06 that difference named an isinstance branch
        # for every numerical disagreement of a transformers model)
        return msg + (
            f": the converted model returns {describe(got)} where the model returns "
            f"{describe(want)} (torch.fx traced a branch on a traced value, such as "
            "isinstance(h, tuple), the way it goes for a placeholder; write the forward "
            "without that branch)"
        )
    else:
        where, diff = largest(got, want)
        msg += f" (largest difference {diff:.3g}{where})"
    if has_nan(want):
        return msg + (
            ": the PyTorch model's own output has NaN for this input (a NaN weight, or "
            "an attention row with every position masked)"
        )
    hooked = [
        name or type(model).__name__
        for name, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    ]
    if hooked:
        return msg + (
            f": torch forward hooks on {', '.join(hooked)} are not converted (the converted "
            "model runs the layers without them); put what they do in the forward, or "
            "register hooks on the converted model"
        )
    again = reference(model, xs)[0]
    if not all_close(again, want):
        return msg + (
            ": the PyTorch model itself gives different outputs for the same input in "
            "eval mode (a random operation in its forward, such as F.dropout(x, p) with "
            "its default training=True, or torch.rand, or a buffer the forward changes, "
            "such as a call counter); a converted model must be deterministic (use "
            "nn.Dropout, or F.dropout(x, p, self.training))"
        )
    if folded:
        return msg + (
            f": {folded} BatchNorm layer(s) were folded into the preceding convolutions; "
            "try fold_batchnorm=False"
        )
    return msg


def isinstance_branch(model) -> str | None:
    """The name of the first class of ``model``'s modules, torch's own
    aside, whose forward's source calls isinstance, or None."""
    for cls in dict.fromkeys(type(m) for m in model.modules()):
        if cls.__module__.startswith("torch."):
            continue
        try:
            if "isinstance(" in inspect.getsource(cls.forward):
                return cls.__name__
        except (OSError, TypeError):  # no source: a compiled or interactive class
            continue
    return None


def form(x):
    """The structure of an output: tensors by shape, in (nested) tuples,
    lists and dicts (by their keys, in order: a transformers ModelOutput
    and ours alike), other values by type."""
    if isinstance(x, torch.Tensor):
        return ("tensor", tuple(x.shape))
    if isinstance(x, dict):
        return ("dict", tuple((k, form(v)) for k, v in x.items()))
    if isinstance(x, (tuple, list)) and not isinstance(x, torch.Size):
        return ("sequence", tuple(form(v) for v in x))
    return type(x).__name__


def describe(x) -> str:
    """An output's kind for the check's message: "a tuple", "a Tensor",
    "fields ['logits']"."""
    if isinstance(x, dict):
        return f"a {type(x).__name__} of fields {list(x)}"
    if isinstance(x, torch.Tensor):
        return f"a Tensor of shape {list(x.shape)}"
    return f"a {type(x).__name__}"


def largest(got, want, where: str = "") -> tuple[str, float]:
    """(" in <field>" or "", the largest difference) of two outputs of one
    :func:`form`."""
    if isinstance(want, torch.Tensor):
        diff = (got.double() - want.double()).abs().max().detach() if want.numel() else 0
        return where and f" in {where}", float(diff)
    if isinstance(want, dict):
        pairs = [(f"{where}[{k!r}]", got[k], v) for k, v in want.items()]
    elif isinstance(want, (tuple, list)):
        pairs = [(f"{where}[{i}]", g, w) for i, (g, w) in enumerate(zip(got, want))]
    else:
        return "", 0.0
    found = [largest(g, w, name) for name, g, w in pairs]
    return max(found, key=lambda t: t[1], default=("", 0.0))


def float32(x):
    return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def tree(fn, x):
    """``fn`` on a tensor, or on each tensor of a nested tuple or list (an
    LSTM's (x, (h0, c0))) or dict (a forward taking a batch of named
    features, ``feats["num"]``); None stays None."""
    if isinstance(x, (tuple, list)) and not isinstance(x, torch.Size):
        return type(x)(tree(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: tree(fn, v) for k, v in x.items()}
    return None if x is None else fn(x)


def dummy(x) -> torch.Tensor:
    """A dummy input for the conversion check: token ids (for an Embedding)
    and boolean masks keep their dtype, an additive mask of 0 and -inf is
    kept, Python numbers and strings stay as they are, anything else
    becomes float64; CrypTen code passes
    torch.empty(...), whose values are undefined: only its shape matters,
    so it is checked on uniform values of that shape (a meta tensor's
    too; a sparse one is taken dense)."""
    if isinstance(x, (str, bool, int, float)):
        # a Python argument (flags.py: a flag, or one the forward computes
        # with): as given, as a call gives it (until 2026-12-07 a tensor:
        # torch's sum(keepdim=) and F.dropout(training=) refused it)
        return x
    x = torch.as_tensor(x).detach()  # one that requires grad cannot be deep-copied
    if x.layout != torch.strided:  # a sparse dummy: its dense value, as cryptensor's
        x = x.to_dense()
    if x.is_meta:  # a shape without values: uniform ones (as for a non-finite dummy)
        if x.is_floating_point():
            g = torch.Generator().manual_seed(0)
            return torch.rand(x.shape, generator=g, dtype=torch.float64)
        x = torch.zeros(x.shape, dtype=x.dtype)  # token ids 0, a mask of False
    if x.dtype == torch.bool:  # a mask (src_key_padding_mask): as given
        return x
    x = x if x.dtype in (torch.int32, torch.int64) else x.double()
    if x.is_floating_point() and ((x == 0) | (x == -math.inf)).all():
        return x  # an additive attention mask of 0 and -inf: as given
    if x.is_floating_point() and not torch.isfinite(x).all():
        g = torch.Generator().manual_seed(0)
        x = torch.rand(x.shape, generator=g, dtype=torch.float64)
    return x


# the check's tolerances: a float64 reference's, and a float32 one's
DOUBLE_TOL, SINGLE_TOL = 1e-6, 1e-4


class _Narrowing(torch.overrides.TorchFunctionMode):
    """Whether a torch function turned a float64 tensor into a narrower
    float (transformers' RMSNorm ``hidden_states.to(torch.float32)``, its
    eager attention's ``softmax(..., dtype=torch.float32)``, a rotary
    embedding's ``inv_freq.float()``): a float64 run of such a model is as
    precise as float32 there, not as float64."""

    narrowed = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.narrowed and _has(out, _NARROW) and _has((args, kwargs), (torch.float64,)):
            self.narrowed = True
        return out


_NARROW = (torch.float32, torch.float16, torch.bfloat16)


def _has(x, dtypes) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype in dtypes
    if isinstance(x, (tuple, list)):
        return any(_has(v, dtypes) for v in x)
    if isinstance(x, dict):
        return any(_has(v, dtypes) for v in x.values())
    return False


def reference(model, xs):
    """(the torch model's output on ``xs``, the inputs used, the check's
    tolerance): in float64 (1e-6); for a model that computes some steps in
    float32 itself, whatever its weights' dtype (transformers' Llama
    family: :class:`_Narrowing`), with float32's tolerance, 1e-4 (until
    2026-12-06 1e-6: a correctly converted Llama at initializer_range 0.2
    failed its check, 1.4e-6 off); or, for a model that casts to float32
    (``x.float()`` in its forward, which a float64 run cannot mix with its
    float64 weights), in float32 on float32 inputs (1e-4)."""
    try:
        out, narrowed = run_double(model, *xs)
        return out, xs, SINGLE_TOL if narrowed else DOUBLE_TOL
    except RuntimeError as e:
        if "type" not in str(e):  # "same dtype", "Input type (float) and bias type"
            raise
    xs = tuple(tree(float32, x) for x in xs)
    with torch_grad(True):  # (interrupt-safe: autograd.torch_grad)
        return copy_model(model).float()(*copy.deepcopy(xs)), xs, SINGLE_TOL


def all_close(got, want, tol: float = 1e-6) -> bool:
    """Equal up to ``tol``, tensors or (nested) tuples of them (an attention
    layer returns its output and its weights, or None)."""
    if isinstance(want, (tuple, list)):
        return (
            isinstance(got, (tuple, list))
            and len(got) == len(want)
            and all(all_close(g, w, tol) for g, w in zip(got, want))
        )
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and list(got) == list(want)
            and all(all_close(got[k], want[k], tol) for k in want)
        )
    if want is None or got is None:
        return want is None and got is None
    if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor):
        return type(got) is type(want) and got == want  # numbers, strings
    # shapes first: allclose broadcasts, so a [4] row passed for a [2, 4] output
    return got.shape == want.shape and torch.allclose(got.to(want.dtype), want, atol=tol, rtol=tol)


def has_nan(out) -> bool:
    if isinstance(out, (tuple, list)):
        return any(has_nan(o) for o in out)
    if isinstance(out, dict):
        return any(has_nan(o) for o in out.values())
    return isinstance(out, torch.Tensor) and bool(torch.isnan(out).any())


def run_double(model: torch.nn.Module, *xs: torch.Tensor) -> tuple:
    """(the torch model's output in float64 on ``xs``, whether a step of its
    forward computed in a narrower float: :class:`_Narrowing`, watching the
    forward only, not the copies), with gradients enabled: under no_grad
    torch's transformer layers take a fast path that computes otherwise
    (exact GELU for approximate="tanh"; zeros at padded positions with
    nested tensors), which the conversion check would then flag."""
    m, xs = copy_model(model).double(), copy.deepcopy(xs)  # an in-place first layer
    with torch_grad(True), _Narrowing() as seen, _Float64Constants():  # changes its input
        out = m(*xs)
    return out, seen.narrowed


# torch's factories of a float constant of the default dtype (float32)
_FACTORIES = frozenset(
    (torch.ones, torch.zeros, torch.full, torch.empty, torch.eye, torch.tensor, torch.as_tensor)
    + (torch.arange, torch.linspace, torch.logspace)
)


class _Float64Constants(torch.overrides.TorchFunctionMode):
    """For a float64 run of the check (the model's, and the converted
    graph's in plaintext): a float constant the forward makes without a
    dtype (``h @ torch.ones(6, 2)``, ``F.linear(h, torch.eye(6))``) is made
    in float64, beside the float64 weights, as it is float32 beside float32
    weights in the model's own runs (until 2026-12-07 torch's "float !=
    double" refused a valid float32 model at its check). A dtype given
    explicitly stays. A torch function mode: this thread's calls only (not
    torch's process-wide default dtype, which another party's thread reads)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (
            func in _FACTORIES
            and kwargs.get("dtype") is None
            and isinstance(out, torch.Tensor)
            and out.dtype == torch.get_default_dtype() != torch.float64
            and not any(isinstance(a, torch.Tensor) for a in args)  # as_tensor(t): t's dtype
        ):
            return func(*args, **{**kwargs, "dtype": torch.float64})
        return out


def run_converted(graph, xs: tuple):
    """The converted graph on the check's inputs: in float64 by default
    (:class:`_Float64Constants`) where the reference ran in float64 (float64
    inputs), as torch's default otherwise (the float32 reference's inputs)."""
    double = any(_has(x, (torch.float64,)) for x in xs)
    with _Float64Constants() if double else contextlib.nullcontext():
        return graph(*xs)


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model``, also of one holding computed tensors as
    plain attributes (pruning's ``weight``, the old weight_norm's, set by
    their forward pre-hooks): deepcopy refuses a tensor that is not a
    graph leaf, so those are copied detached (their hooks compute them
    again at the next forward). The copy runs in the model's modes, each
    module's own: a class whose deepcopy builds a new module comes back in
    train mode (torchvision's DualGraphModule, create_feature_extractor;
    until 2026-12-07 the check then compared a correct conversion with
    batch statistics and blamed BatchNorm folding)."""
    memo = {
        id(v): v.detach().clone()
        for m in model.modules()
        for v in vars(m).values()
        if isinstance(v, torch.Tensor) and not v.is_leaf
    }
    out = copy.deepcopy(model, memo)
    out.train(model.training)  # the class's own train(): DualGraphModule swaps its graph
    modes = {name: m.training for name, m in model.named_modules()}
    for name, m in out.named_modules():
        m.training = modes.get(name, model.training)
    for mine, theirs in zip(model.modules(), out.modules()):
        # torch's TransformerDecoderLayer.__setstate__ sets activation = F.relu
        # in a copy whose activation is a module (a child, not in __dict__):
        # the copy ran ReLU where the model runs nn.Tanh() (found 2026-12-08)
        for k in [k for k in vars(theirs) if k in theirs._modules and k not in vars(mine)]:
            del theirs.__dict__[k]
    return out
