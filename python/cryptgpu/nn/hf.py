"""Hugging Face models in ``from_pytorch``: a ``transformers`` model (such as
``BertForSequenceClassification`` built from a ``BertConfig``) is traced with
the tracer of ``transformers.utils.fx``, which knows how to step over the
control flow of its ``forward``; the graph it gives is converted like any
other. transformers is imported only when the model is one of its classes.

The traced graph takes ``input_ids`` (a SharedTensor of one-hot rows
[B, S, vocab], as the data owner shares token ids, or public ids [B, S]),
``attention_mask`` and ``token_type_ids`` (public [B, S] integers; all ones
and all zeros when not given, as transformers does), by position or by name,
and returns a :class:`~.hf_outputs.ModelOutput` (``out.logits`` or ``out["logits"]``).
"""

from __future__ import annotations

import contextlib
import copy
import dis
import inspect
import logging
import random
import sys
import types

import torch
import torch.nn.functional as F

from .._native import ShapeError
from ..autograd import torch_grad
from ..tensor import SharedTensor
from . import hf_labels, hf_refusals
from .hf_model import NO_LABELS, dict_outputs
from .hf_outputs import ModelOutput, mark_fields, model_output  # noqa: F401 (hf.model_output)
from .inplace import Augmenting, AugmentingTracer
from .model_state import fx_undone

# the inputs we trace, in this order, where the model's forward has them
# (pixel_values: the image models transformers' tracer takes, ViT, Swin,
# Dinov2, ConvNext, ResNet, SegFormer, CLIP's vision tower, and CLIPModel
# with both; until 2026-12-06 only text models converted)
_INPUTS = ("input_ids", "pixel_values", "attention_mask", "token_type_ids", "labels")
_FIRST = ("input_ids", "pixel_values")  # a model takes one of these


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


def _no_labels(first) -> None:
    return None


_DEFAULTS = {"attention_mask": _ones_mask, "token_type_ids": _zero_types, "labels": _no_labels}


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
    cfg = getattr(model, "config", None)
    if "token_type_ids" in names and not hasattr(cfg, "type_vocab_size"):
        # GPT-2 adds wte(token_type_ids) when they are given: zeros are not
        # its default (None, no term), so they are not an input here
        names.remove("token_type_ids")
    if not set(_FIRST) & set(names):
        raise NotImplementedError(
            f"{type(model).__name__}: only text and image models (a forward taking "
            "input_ids or pixel_values) convert from transformers"
        )
    # decided before tracing: the check calls the module, which torch.fx
    # would record
    norms = frozenset(id(m) for m in model.modules() if rms_norm_of(m) is not None)
    ranks: dict = {}  # the shape of each dummy input it traced with
    outputs: list = []  # the classes of the transformers outputs it recorded
    problem = dropped = None
    for with_labels in (True, False) if "labels" in names else (False,):
        if not with_labels and "labels" in names:
            names.remove("labels")
        try:
            with (
                _tracing(model),
                fx_undone(model),
                _named_forward(model, names),
                dict_outputs(model),
            ):
                with hf_labels.problem(model) as problem:
                    tracer = _tracer_class(norms, ranks, outputs)
                    gm = symbolic_trace(model, input_names=names, tracer_cls=tracer)
            break
        except NotImplementedError as e:
            if "is not supported yet" not in str(e):
                raise
            if not with_labels:
                raise NotImplementedError(  # its message lists ~500 models
                    f"{type(model).__name__}: transformers' fx tracer does not trace this "
                    "architecture (transformers.utils.fx lists those it does)"
                ) from None
        except Exception as e:  # the loss did not trace: the model without labels=
            if not with_labels:
                plain = lambda: _fails(model, names, symbolic_trace)  # noqa: E731
                refusal = hf_refusals.untraced(model, e, plain)
                if refusal is None:
                    raise
                raise refusal from e
            dropped = e
        ranks.clear()
        outputs.clear()
    hf_labels.inline_losses(gm)
    free = getattr(getattr(model, "config", None), "model_type", None) in _ANY_SIZE
    _mark_ranks(gm, ranks, type(model).__name__, free)
    mark_fields(gm, outputs)
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    hf_labels.mark(gm, problem, floats[0] if floats else torch.get_default_dtype())
    if dropped is not None:  # (labels= then names this, not "unexpected keyword")
        out = next(n for n in gm.graph.nodes if n.op == "output")
        out.meta[NO_LABELS] = f"{type(dropped).__name__}: {str(dropped).strip()[:200]}"
    return gm, {n: _DEFAULTS[n] for n in names if n in _DEFAULTS}


class MaskShapeError(ValueError, NotImplementedError):
    """An attention_mask of a rank the converted graph does not follow: a
    ValueError, as transformers raises for a shape it refuses itself
    (BERT's 1-D or 4-D mask), and a NotImplementedError, as for what
    transformers takes and a converted model does not (GPT-2's 4-D mask)."""


# node.meta key: (rank, model class name, shape, whether any image size goes)
_RANK = "cryptgpu_traced_rank"

# the image models whose forward does not branch on the image's size
# (convolutions, pooling, SegFormer's overlapping patches): others follow
# the traced size only (ViT's position embeddings, Dinov2's interpolation of
# them, Swin's window padding), and a graph traced at one size gave wrong
# outputs at another of the same patch count (Dinov2 at 4x16: 0.72 off).
# (ConvNextV2 and RegNet are not on transformers' tracer's list: refused)
_ANY_SIZE = frozenset({"resnet", "convnext", "segformer"})


def _mark_ranks(gm: torch.fx.GraphModule, ranks: dict, name: str, free: bool) -> None:
    """Marks the input_ids, pixel_values and attention_mask placeholders of
    ``gm`` with the rank each was traced with (``name``: the model's class), for
    :func:`check_ranks`; not a mask that only recorded mask makers
    (:func:`_recorded`) read: those run transformers' own code on the mask
    given at each call, in plaintext, whatever its rank (Llama's 4-D
    masks, taken as they are). Elsewhere the forward's branches on the
    mask's rank (GPT-2's ``attention_mask.ndim < 4``, BERT's ``dim() ==
    2``) were taken for the traced rank only."""
    for node in gm.graph.nodes:
        if node.op != "placeholder" or node.target not in (*_FIRST, "attention_mask"):
            continue
        if node.target == "attention_mask" and all(
            getattr(u.target, "public_of_shapes", False) for u in node.users
        ):
            continue
        if node.target in ranks:
            node.meta[_RANK] = (len(ranks[node.target]), name, ranks[node.target], free)


def check_ranks(graph: torch.fx.Graph, bound: dict) -> None:
    """Refuses a mask of a rank other than the one its placeholder was
    traced with (:func:`_mark_ranks`), with a :class:`MaskShapeError`
    naming the shape the converted model takes (until 2026-12-06 a 4-D
    mask ran GPT-2's graph, traced for [batch, seq] masks: logits 3 off,
    silently), and private input_ids that are not one-hot rows of ids of
    the traced rank, with a ShapeError."""
    for node in graph.nodes:
        if node.op != "placeholder":
            return
        traced = node.meta.get(_RANK)
        v = bound.get(node.target)
        if hf_labels.LABELS in node.meta:
            hf_labels.check(node, v)
        if traced is not None and v is None and node.target in _FIRST:
            raise ValueError(f"You have to specify {node.target}")  # transformers' words
        if (
            node.target in _FIRST
            and v is not None
            and not isinstance(v, (torch.Tensor, SharedTensor))
        ):
            raise TypeError(  # (until 2026-12-06 "'int' object is not callable")
                f"{node.target} must be a torch tensor or a SharedTensor, got "
                f"{type(v).__module__}.{type(v).__name__}: torch.as_tensor(...) first, as "
                "transformers takes torch tensors"
            )
        if traced is None or not isinstance(v, (torch.Tensor, SharedTensor)):
            continue
        rank, name, shape, free = traced
        if node.target == "pixel_values":
            if len(v.shape) != rank:  # an image without its batch dim
                raise ShapeError(  # (an IndexError of a size until 2026-12-06)
                    f"pixel_values of shape {list(v.shape)}: this converted {name} takes "
                    f"rank-{rank} images ([batch, channels, height, width]), as "
                    "transformers does"
                )
            size, want = tuple(v.shape[-2:]), tuple(shape[-2:])
            if size != want and not free:
                raise ShapeError(
                    f"pixel_values of {size[0]}x{size[1]}: this converted {name} was traced "
                    f"at {want[0]}x{want[1]} (its config's image_size) and takes that size "
                    "only (its forward branches on the size: position embeddings checked or "
                    "interpolated, windows padded; the convolutional models take any size)"
                )
            continue
        if node.target == "input_ids":
            if isinstance(v, SharedTensor) and len(v.shape) != rank + 1:
                # its sizes would be read as those of one-hot rows' ids
                # (until 2026-12-06 BERT's an IndexError of a size)
                raise ShapeError(
                    f"input_ids shared as a SharedTensor of shape {list(v.shape)}: this "
                    f"converted {name} takes private ids as one-hot rows of rank {rank + 1} "
                    "([batch, seq, vocab]: cryptensor(F.one_hot(ids, vocab))), or public "
                    "ids; shared integer ids cannot index an embedding"
                )
            continue
        if len(v.shape) == rank:
            continue
        form = "[batch, seq]" if rank == 2 else f"rank-{rank}"
        raise MaskShapeError(
            f"{node.target} of shape {list(v.shape)}: this converted {name} takes a "
            f"{form} {node.target} (1 to attend, 0 for padding), the rank it was traced "
            f"with; its forward branches on the mask's rank, and the traced graph follows "
            f"the rank-{rank} branch only. Pass the {form} padding mask (a 4-D mask is "
            "taken as transformers takes it by the models that hand it to transformers' "
            "mask functions as it is: Llama, Mistral, Qwen2, GPT-J, GPT-Neo)"
        )


def dummy_input(graph: torch.fx.Graph) -> tuple | None:
    """The first input, zeros of the shape transformers' tracer traced with,
    for shifts.keys (the attention key biases, whose gradient is exactly 0:
    until 2026-12-06 found only with a dummy input given, which a
    transformers model is converted without)."""
    for node in graph.nodes:
        if node.op == "placeholder" and node.target in _FIRST and _RANK in node.meta:
            shape = node.meta[_RANK][2]
            return (torch.zeros(shape, dtype=torch.long if node.target == "input_ids" else None),)
    return None


def _fails(model: torch.nn.Module, names: list, symbolic_trace) -> bool:
    """Whether transformers' own ``symbolic_trace`` fails on ``model``."""
    try:
        with _tracing(model, record=False), _named_forward(model, names):
            symbolic_trace(model, input_names=names)
    except Exception:  # noqa: BLE001 (any failure of its own)
        return True
    return False


@contextlib.contextmanager
def _tracing(model: torch.nn.Module, record: bool = True):
    """While transformers' tracer runs: the mask makers of ``model``'s
    modules recorded as one step each (:func:`_recorded`; not without
    ``record``), and afterwards, even when tracing failed, everything it
    and we changed put back."""
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
    state = random.getstate()  # its dummy inputs' sizes are drawn from Python's
    masks = _mask_makers(model) if record else {}
    saved.update({mod: dict(vars(mod)) for mod in masks})
    # models that make their mask in a method of their own (OPT, GPT-J,
    # Bloom, GPT-Neo: an in-place write the graph cannot hold)
    own = [m for m in model.modules() if callable(getattr(type(m), "_update_causal_mask", None))]
    own = own if record else []
    attributes = {m: dict(vars(m)) for m in model.modules()}
    # and its submodules (transformers' tracer adds the loss modules its
    # forward makes at each call to the model)
    children = {m: dict(m._modules) for m in model.modules()}
    # and its buffers' values: the tracer runs the modules on its dummy
    # inputs for their shapes, a BatchNorm in train mode too, which moved
    # the user's running statistics (until 2026-12-06 each conversion added
    # one to num_batches_tracked and pulled the running mean and variance
    # toward the dummy's)
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        for mod, found in masks.items():
            for name, fn in found.items():
                setattr(mod, name, _recorded(fn))
        for m in own:
            m._update_causal_mask = _recorded(m._update_causal_mask)
        yield
    finally:
        log.setLevel(level)
        _restore(saved)
        random.setstate(state)
        _restore_attributes(attributes)
        for m, before in children.items():
            if m._modules != before:
                m._modules.clear()
                m._modules.update(before)
        with torch_grad(False):  # (interrupt-safe: autograd.torch_grad)
            for b, value in buffers:
                b.copy_(value)


def _restore_attributes(before: dict) -> None:
    """Each module's attributes as they were before tracing: a forward that
    sets one (Swin's ``self.window_size = torch_int(...)``) left a traced
    value there, and the user's torch model then failed at other image
    sizes, and a second conversion failed (until 2026-12-06); our own
    ``_update_causal_mask`` recorders go too."""
    for m, attrs in before.items():
        now = vars(m)
        for name in [k for k in now if k not in attrs]:
            del now[name]
        for name, value in attrs.items():
            if name not in now or now[name] is not value:
                now[name] = value


@contextlib.contextmanager
def no_cache(model: torch.nn.Module):
    """A transformers model's ``config.use_cache`` off while it is converted
    (a traced graph keeps no key/value cache, and the conversion's check
    compares outputs without one), then as it was (until 2026-12-06 it
    stayed off: the user's model ran without its cache afterwards)."""
    cfg = getattr(model, "config", None) if is_hf_model(model) else None
    cache = getattr(cfg, "use_cache", False)
    if cache:
        cfg.use_cache = False
    try:
        yield
    finally:
        if cache:
            cfg.use_cache = cache


@contextlib.contextmanager
def _named_forward(model: torch.nn.Module, names: list):
    """While tracing, ``model`` as a subclass named as its nearest
    transformers class (transformers' tracer takes only the classes it
    lists, by name: a user's ``class MyGPT(GPT2LMHeadModel)`` was refused),
    whose forward names its inputs where the class's own takes ``*args,
    **kwargs`` (Llama's, wrapped by transformers' decorators): torch.fx
    cannot make placeholders of those (its "co_varnames is too small")."""
    base = type(model)
    known = next((c for c in base.__mro__ if c.__module__.startswith("transformers.")), base)
    code = getattr(base.forward, "__code__", None)
    wrapped = code is not None and code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
    if not wrapped and known is base:
        yield
        return

    def forward(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        token_type_ids=None,
        labels=None,
    ):
        given = zip(_INPUTS, (input_ids, pixel_values, attention_mask, token_type_ids, labels))
        return base.forward(self, **{n: v for n, v in given if n in names})

    body = {"__module__": known.__module__, **({"forward": forward} if wrapped else {})}
    model.__class__ = type(known.__name__, (base,), body)
    try:
        yield
    finally:
        model.__class__ = base


def _tracer_class(leaves: frozenset, ranks: dict, outputs: list):
    """transformers' tracer, whose proxies of sizes also unpack
    (``(*k.shape[:-1], -1, d)`` in GPT-2's attention): each element is read
    by index, as torch.fx records ``shape[i]``; which keeps the modules
    of ``leaves`` (ids: RMSNorms) as calls, not traced through; which
    puts the shape of each dummy input it makes in ``ranks``, and the class
    of each transformers ModelOutput it records (a plain dict in the
    graph) in ``outputs``."""
    from transformers.utils import ModelOutput as Recorded
    from transformers.utils.fx import HFAttribute, HFProxy, HFTracer

    class Proxy(Augmenting, HFProxy):
        def __getattr__(self, k):
            # ``y = x.T; y += 1`` in place (inplace._Proxy.__getattr__)
            if k == "_metadata":
                return self.__getattribute__(k)
            return Attribute(self, k)

        def __iter__(self):
            meta = getattr(self, "_metadata", None)
            if isinstance(meta, (torch.Size, tuple, list)):
                return iter([self[i] for i in range(len(meta))])
            # a tensor's rows (their count would be fixed), or a size whose
            # metadata is unknown, unpacked as ``b, n, c = h.size()`` in the
            # model's code, which torch's own check looks for one frame up
            # from itself: here (Swin with absolute embeddings did not trace)
            n = _unpacked(inspect.currentframe().f_back)
            return iter([self[i] for i in range(n)]) if n else super().__iter__()

    class Attribute(Proxy, HFAttribute):
        pass

    class Tracer(AugmentingTracer, HFTracer):
        cryptgpu_functions = True  # a custom Function's apply: one step (custom_functions.traced)

        def proxy(self, node):
            return Proxy(node, self)

        def create_arg(self, a):
            if isinstance(a, Recorded):
                outputs.append(type(a))
            return super().create_arg(a)

        def is_leaf_module(self, m, name):
            return id(m) in leaves or super().is_leaf_module(m, name)

        def create_proxy(self, kind, target, args, kwargs, *rest, **named):
            out = super().create_proxy(kind, target, args, kwargs, *rest, **named)
            if kind == "call_module" and id(self.root.get_submodule(target)) in leaves:
                # an RMSNorm's output is shaped as its input (transformers'
                # tracer would run it on meta tensors with CPU weights)
                meta = getattr(args[0], "_metadata", None)
                if isinstance(meta, torch.Tensor):
                    out.install_metadata(meta)
            return out

        def _generate_dummy_input(self, model, input_name, shape, input_names):
            # its random sequence length (10 to 20) within the model's
            # positions: GPT-2's causal buffer has only n_positions rows
            # (CLIPModel's in its text_config; not an image's width)
            cfg = getattr(model, "config", None)
            most = getattr(cfg, "max_position_embeddings", None)
            most = most or getattr(getattr(cfg, "text_config", None), "max_position_embeddings", 0)
            text = input_name != "pixel_values"
            if text and isinstance(most, int) and len(shape) > 1 and shape[-1] > most > 1:
                shape = [*shape[:-1], most]
            if type(model).__name__.endswith("ForSequenceClassification"):
                # without a pad token it pools the last position, and takes
                # only one sequence at a time: a batch of one to trace it
                if getattr(cfg, "pad_token_id", 0) is None:
                    shape = [1, *shape[1:]]
            out = super()._generate_dummy_input(model, input_name, shape, input_names)
            ranks.update((k, tuple(v.shape)) for k, v in out.items() if torch.is_tensor(v))
            return out

    return Tracer


def _unpacked(frame) -> int | None:
    """The number of names that the instruction ``frame`` runs unpacks into,
    where it is an UNPACK_SEQUENCE (``a, b, c = value``), else None."""
    if frame is None:
        return None
    for ins in dis.get_instructions(frame.f_code):
        if ins.offset >= frame.f_lasti:
            return ins.argval if ins.opname == "UNPACK_SEQUENCE" else None
    return None


# transformers' mask makers (masking_utils): a decoder's causal mask, made
# from the public attention mask, positions and the shape of the embeddings
_MASK_MAKERS = (
    "create_causal_mask",
    "create_sliding_window_causal_mask",
    "create_chunked_causal_mask",
)


# the mask makers' arguments of which only the shape is read
_SHAPES_ONLY = frozenset({"input_embeds", "inputs_embeds", "input_tensor"})


# the older makers (modeling_attn_mask_utils: BERT and RoBERTa as decoders,
# XGLM, ...) -> the eager form each is recorded as. Both make their float
# mask with torch.full(..., finfo(dtype).min) in the default dtype, which
# a float64 dtype's minimum overflows (until 2026-12-06 BertLMHeadModel did
# not convert): they get float32 embeddings to read the dtype from, as a
# float32 model's
_OLD_MAKERS = {
    "_prepare_4d_causal_attention_mask": "_prepare_4d_causal_attention_mask",
    "_prepare_4d_causal_attention_mask_for_sdpa": "_prepare_4d_causal_attention_mask",
}


def _mask_makers(model: torch.nn.Module) -> dict:
    """{modeling module: {name: mask maker}} for the modules of ``model``'s
    classes that call one of transformers' mask makers by its name."""
    mu = sys.modules.get("transformers.masking_utils")
    old = sys.modules.get("transformers.modeling_attn_mask_utils")
    found = [getattr(mu, n, None) for n in _MASK_MAKERS]
    found += [getattr(old, n, None) for n in _OLD_MAKERS]
    makers = {id(f): f for f in found if f}
    out: dict = {}
    for m in model.modules():
        mod = sys.modules.get(type(m).__module__)
        found = {n: f for n, f in vars(mod).items() if id(f) in makers} if mod else {}
        if found:
            out[mod] = found
    return out


def _recorded(maker):
    """``maker`` as the traced forward calls it: one graph node of its traced
    arguments (the others, the config among them, kept in the node's
    function), which computes the mask in plaintext (:func:`public_of_shapes`).
    For an eager model the mask is the eager form (a float mask, 0 or the
    dtype's minimum). For an sdpa model it is transformers' sdpa mask of the
    given mask (bool, or a 4-D mask as given), and where that is None (no
    position padded: the form depends on the values, which one graph cannot
    follow) the eager causal mask made bool."""
    from torch.fx.proxy import Proxy

    names = list(inspect.signature(maker).parameters)

    def call(*args, **kwargs):
        bound = {**dict(zip(names, args)), **kwargs}
        traced = {n: v for n, v in bound.items() if isinstance(v, Proxy)}
        if not traced:
            return maker(**bound)
        fixed = {n: v for n, v in bound.items() if n not in traced}
        # sdpa's own mask is bool: a row with nothing kept gets zeros there,
        # where eager's float mask gives it equal weights (masks.py)
        as_bool = getattr(fixed.get("config"), "_attn_implementation", None) == "sdpa"
        own = dict(fixed)  # the model's own (sdpa) form, tried first at each call
        if fixed.get("config") is not None:
            fixed["config"] = _eager(fixed["config"])
        make, owner = maker, getattr(maker, "__self__", None)
        single = getattr(maker, "__module__", "") == "transformers.modeling_attn_mask_utils"
        if single:  # the eager form: what the traced sdpa form computed
            make = getattr(sys.modules[maker.__module__], _OLD_MAKERS[maker.__name__])
        if isinstance(owner, torch.nn.Module):  # a model's _update_causal_mask:
            # on a shallow copy reading an eager config
            owner = copy.copy(owner)
            owner.config = _eager(owner.config)
            make = types.MethodType(maker.__func__, owner)
        order = tuple(traced)

        def mask(*values):
            given, dtype = dict(zip(order, values)), None
            for n, v in given.items():
                if single and n in _SHAPES_ONLY and torch.is_tensor(v) and v.is_floating_point():
                    given[n], dtype = torch.zeros(v.shape, dtype=torch.float32), v.dtype
            if as_bool:
                # transformers' sdpa mask: bool, or a 4-D mask as given (until
                # 2026-12-06 a float one of -1e9 fills was read as keeping
                # every position), or None where nothing is padded (it takes
                # then a [1, S] or [S] mask, as torch's run does): the graph
                # reads a mask, the causal one of no padding (no packing)
                out = make(**own, **given)
                if out is not None:
                    return out
                given.update((n, None) for n in ("attention_mask", "position_ids") if n in given)
            out = make(**fixed, **given)
            if as_bool and torch.is_tensor(out) and out.is_floating_point():
                out = out > torch.finfo(out.dtype).min / 2  # True: attend
            if dtype is not None and torch.is_tensor(out) and out.is_floating_point():
                # in the embeddings' dtype (float64 in the conversion check):
                # torch 2.15's float64 sdpa misreads a float32 mask
                out = out.to(dtype)
            return out

        mask.__name__ = maker.__name__
        mask.public_of_shapes = True
        mask.shapes_only = frozenset(i for i, n in enumerate(order) if n in _SHAPES_ONLY)
        mask.arg_names = dict(enumerate(order))
        tracer = next(iter(traced.values())).tracer
        out = tracer.create_proxy("call_function", mask, tuple(traced.values()), {})
        # its shape for the tracer (attention code reads mask.ndim): the mask
        # of stand-ins of the traced arguments' shapes
        metas = [getattr(v, "_metadata", None) for v in traced.values()]
        if all(isinstance(t, (torch.Tensor, torch.Size)) for t in metas):
            stand_ins = [_stand_in(t, n) for t, n in zip(metas, order)]
            out.install_metadata(mask(*stand_ins).to("meta"))
        return out

    return call


def _eager(config):
    """A copy of ``config`` asking for the eager attention's mask."""
    config = copy.copy(config)
    config._attn_implementation = "eager"
    return config


def _stand_in(meta, name: str):
    """A plaintext tensor of ``meta``'s shape and dtype: zeros for a float
    one, ones for a mask (keeping every position), positions counted along
    the last dim otherwise (cache_position, position_ids); a size as it is
    (the older makers' input_shape)."""
    if isinstance(meta, torch.Size):
        return meta
    if meta.is_floating_point():
        return torch.zeros(meta.shape, dtype=meta.dtype)
    if "mask" in name or meta.dim() == 0:
        return torch.ones(meta.shape, dtype=meta.dtype)
    return torch.arange(meta.shape[-1], dtype=meta.dtype).expand(meta.shape).clone()


def public_only(name: str) -> str:
    """The refusal of a private ``attention_mask``, ``token_type_ids`` or
    ``labels``."""
    if name == "labels":
        return (
            "labels must be public (a torch tensor of class ids, as transformers takes "
            "them; every party sees them): to keep labels private, share one-hot targets, "
            "nn.CrossEntropyLoss()(out.logits, cryptensor(one_hot)) (a causal LM's "
            "shifted: logits[:, :-1] against the targets of positions 1 on)"
        )
    return (
        f"{name} must be public (a torch tensor): the masks and positions made from it "
        "are computed in plaintext (until 2026-12-06 a shared mask was read as zeros)"
    )


def public_of_shapes(fn, args: tuple, kwargs: dict):
    """A recorded mask maker ``fn`` on public values: a private argument of
    which it reads only the shape (the embeddings) stands as zeros of that
    shape; any other private argument is refused."""
    shapes_only = getattr(fn, "shapes_only", ())

    def plain(i, v):
        if not isinstance(v, SharedTensor):
            return v
        if i not in shapes_only:
            raise NotImplementedError(public_only(getattr(fn, "arg_names", {}).get(i, "a mask")))
        return torch.zeros(tuple(v.shape))

    return fn(*[plain(i, a) for i, a in enumerate(args)], **kwargs)


def rms_norm_of(m: torch.nn.Module) -> tuple | None:
    """(weight, eps) where ``m`` is a transformers RMSNorm that computes
    torch's ``F.rms_norm`` (Llama's, Mistral's, Qwen2's: checked on a
    sample, so Gemma's ``1 + weight`` is not taken), else None. Converted
    as our RMSNorm, whose statistics keep more bits than its traced
    operations would (x^2 of a hidden state of 0.05 keeps 2^-16 / 2.5e-3:
    a logit 2% off in a 2-layer Llama)."""
    w, eps = getattr(m, "weight", None), getattr(m, "variance_epsilon", None)
    if not type(m).__name__.endswith("RMSNorm") or not isinstance(eps, float):
        return None
    if not isinstance(w, torch.nn.Parameter) or w.dim() != 1 or len(list(m.children())):
        return None
    with torch_grad(False):
        # float32 throughout, whatever torch's default dtype (until
        # 2026-12-06 the sample took the default: under float64 the check
        # compared float32 with float64, raised, and every RMSNorm was
        # traced as operations, logits 10x further off)
        x = torch.linspace(-2, 3, 4 * w.numel(), dtype=torch.float32).reshape(4, -1)
        want = F.rms_norm(x, (w.numel(),), w.detach().float(), eps)
        tol = 8 * max(torch.finfo(w.dtype).eps, 1e-5)  # bf16 and fp16 models compute so
        try:
            got = m(x.to(w.dtype))
        except Exception:  # noqa: BLE001 (its forward fails on a sample: not one we know)
            return None
    if not torch.is_tensor(got) or got.shape != want.shape or not got.is_floating_point():
        return None
    return (w, eps) if torch.allclose(got.float(), want, tol, tol) else None


def _restore(saved: dict) -> None:
    for ns, before in saved.items():
        for name, value in before.items():
            if vars(ns).get(name) is not value:
                try:
                    setattr(ns, name, value)
                except (AttributeError, TypeError):  # read-only slots stay as they are
                    pass
