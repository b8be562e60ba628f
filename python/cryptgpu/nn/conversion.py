"""PyTorch to cryptgpu conversion: ``from_pytorch`` traces a model with
torch.fx, folds BatchNorm into convolutions, maps every layer and function to
its cryptgpu counterpart (layers.py) and runs the result as a :class:`Graph`.
"""

from __future__ import annotations

import threading

import torch

from .. import _keywords, party_io
from .._plain import _refuse_complex
from ..autograd import torch_grad
from ..tensor import SharedTensor
from . import (
    activations,
    aliases,
    bare,
    batchnorm_nd,
    check,
    early,
    embedding_bag,
    flags,
    fold_agree,
    folding,
    hf,
    hf_labels,
    hf_model,
    indices,
    inplace,
    layers1d,
    layers_extra,
    layers_more,
    layers_moves,
    loss_layers,
    masks,
    model_state,
    norm_checks,
    recurrent,
    resize,
    shifts,
    to_torch,
    tracing,
    transformer,
    user_attrs,
)
from .containers import _ByPosition
from .functional import FUNCTIONS as _FUNCTIONS
from .functional import METHODS as _METHODS
from .functional import PUBLIC_FUNCTIONS as _PUBLIC_FUNCTIONS
from .functional import unsupported
from .layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from .module import Module
from .stats import _track, check_node
from .token_ids import id_inputs, reading


def _plain(p):
    """A torch parameter as a float64 copy; one with requires_grad=False
    (frozen) is marked so that encrypt() and train() keep it frozen. During
    a conversion the same torch Parameter always gives the same copy, so a
    weight tied between layers stays one tensor (shared once, trained once)."""
    if p is None:
        return None
    memo = getattr(_CONVERTING, "memo", None)
    if memo is not None and id(p) in memo:
        return memo[id(p)][1]
    _refuse_complex(p, f"a parameter of shape {list(p.shape)}")  # (lost its imaginary part)
    out = p.detach().to(torch.float64).clone()
    if isinstance(p, torch.nn.Parameter) and not p.requires_grad:
        out._frozen = True
    if memo is not None:
        memo[id(p)] = (p, out)  # p kept: its id stays unique during the conversion
    return out


_CONVERTING = threading.local()
transformer.trace_module = lambda m: _convert(m, None, False)  # (an activation module)


def _convert_module(m: torch.nn.Module, where: str) -> Module:
    t = torch.nn
    if isinstance(m, t.Linear):
        return Linear(_plain(m.weight), _plain(m.bias))
    if isinstance(m, (t.Conv1d, t.Conv2d)) and m.padding_mode != "zeros":
        return layers_moves.mode_padded(m, _plain)  # reflect, replicate, circular
    if isinstance(m, t.Conv2d):
        # "valid" and "same" as given: SharedTensor.conv2d pads as torch does
        pad = m.padding
        return Conv2d(_plain(m.weight), _plain(m.bias), m.stride, pad, m.dilation, m.groups)
    if isinstance(m, t.ReLU):
        return ReLU()
    if isinstance(m, t.Tanh):
        return Tanh()
    if isinstance(m, t.Sigmoid):
        return Sigmoid()
    if isinstance(m, t.GELU):
        return GELU(m.approximate)
    if isinstance(m, t.MaxPool2d):
        if m.return_indices:
            raise NotImplementedError(f"MaxPool2d with return_indices at {where}")
        if m.ceil_mode and m.dilation not in (1, (1, 1)):
            raise NotImplementedError(f"MaxPool2d with ceil_mode and dilation at {where}")
        return MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
    if isinstance(m, t.AvgPool2d):
        opts = (m.ceil_mode, m.count_include_pad, m.divisor_override)
        return AvgPool2d(m.kernel_size, m.stride, m.padding, *opts)
    if isinstance(m, t.AdaptiveAvgPool2d):
        return AdaptiveAvgPool2d(m.output_size)
    if isinstance(m, (t.BatchNorm1d, t.BatchNorm2d, t.BatchNorm3d, t.SyncBatchNorm)):
        bn = BatchNorm(
            _plain(m.weight),
            _plain(m.bias),
            _plain(m.running_mean),
            _plain(m.running_var),
            m.eps,
            m.momentum,
            int(m.num_batches_tracked) if m.num_batches_tracked is not None else 0,
        )
        if m.running_mean is not None:  # else batch statistics in eval mode too
            bn._set_affine(*folding.bn_affine(m))  # exact, from the owner's plaintext
        bn._ranks = norm_checks.bn_ranks(m)  # torch's input ranks (norm_checks.py)
        return batchnorm_nd.classed(bn, m)  # isinstance(bn, cryptgpu.nn.BatchNorm2d)
    kind = type(m)
    if torch.nn.utils.parametrize.is_parametrized(m):  # ParametrizedConv1d (weight_norm):
        kind = kind.__bases__[0]  # the class it was made from (it reads the computed weight)
    for table in (
        activations,
        embedding_bag,
        layers1d,
        layers_extra,
        layers_more,
        layers_moves,
        loss_layers,
        recurrent,
        resize,
    ):
        act = table.converters(_plain).get(kind)
        if act is not None:
            return act(m)
    for kind, convert in transformer.CONVERTERS.items():
        if isinstance(m, kind):
            return convert(m, _plain, where)
    if isinstance(m, t.Embedding):
        if m.max_norm is not None:
            raise NotImplementedError(f"Embedding with max_norm at {where} {layers_extra.MAX_NORM}")
        return layers_extra.Embedding(
            weight=_plain(m.weight),
            padding_idx=m.padding_idx,
            scale_grad_by_freq=m.scale_grad_by_freq,
        )
    if isinstance(m, t.LayerNorm):
        return layers_extra.LayerNorm._given(
            m.normalized_shape,
            _plain(getattr(m, "weight", None)),
            _plain(getattr(m, "bias", None)),
            m.eps,
        )
    if isinstance(m, t.Flatten):
        return Flatten(m.start_dim, m.end_dim)
    if isinstance(m, t.Dropout):
        return Dropout(m.p)
    if isinstance(m, t.Identity):
        return Identity()
    if (norm := hf.rms_norm_of(m)) is not None:  # transformers' own (Llama's)
        return layers_extra.RMSNorm(norm[0].numel(), norm[1], weight=_plain(norm[0]))
    if isinstance(m, t.Softmax):
        return Softmax(m.dim)
    if isinstance(m, t.LogSoftmax):
        return LogSoftmax(m.dim)
    raise NotImplementedError(
        f"unsupported layer {type(m).__module__}.{type(m).__qualname__} at {where}"
    )


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_CASTS = ("to", "float", "double", "type_as", "cpu")


def _shared_cast(x: SharedTensor, name: str, args: tuple, kwargs: dict):
    """``x.to(...)``, ``x.float()``, ``x.double()``, ``x.type_as(t)``,
    ``x.cpu()`` on a private tensor: shares hold fixed-point reals whatever
    the float dtype, so a cast to a float dtype (or to the CPU) is the tensor
    itself where torch's would be (x's own dtype, ``copy=False``) and a
    local copy where torch's copies (SharedTensor.to)."""
    if name in _CASTS:
        dtype = {"float": torch.float32, "double": torch.float64}.get(name)
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, SharedTensor):  # type_as(another private tensor)
                continue
            if isinstance(a, torch.Tensor):
                a = a.dtype
            dtype = a if a in _FLOAT_DTYPES else dtype
            ok = a is None or isinstance(a, bool) or a in _FLOAT_DTYPES
            ok = ok or (
                isinstance(a, (str, torch.device))
                and torch.device(a).type in ("cpu", x.device.type)
            )
            if not ok:
                raise NotImplementedError(
                    f".{name}({a!r}) on a private tensor: only float dtypes (fixed-point "
                    "shares serve every one) are supported"
                )
        return x.to(dtype, copy=bool(kwargs.get("copy", False)))
    raise NotImplementedError(
        f".{name}() on a private tensor is not supported (only on public values)"
    )


def _call_method(obj, name: str, args: tuple, kwargs: dict):
    if isinstance(obj, SharedTensor):
        if name in _CASTS or not hasattr(obj, name):
            return _shared_cast(obj, name, args, kwargs)
    elif name in inplace.INTO and _first_shared(args + tuple(kwargs.values())) is not None:
        return inplace.into_public(obj, name, args, kwargs)  # torch.zeros_like(x).copy_(x)
    return getattr(obj, name)(*args, **kwargs)


def _first_shared(args):
    for a in args:
        if isinstance(a, SharedTensor):
            return a
        if isinstance(a, (list, tuple)):
            found = _first_shared(a)
            if found is not None:
                return found
    return None


class Graph(bare.Adopting, Module):
    """A converted torch.fx graph: nodes run in order on the converted layers."""

    _tensor_first = False

    # the BatchNorm layers folded into their convs (set by the conversion):
    # top-level names, and {every one's dotted path: its conv's}
    _folded_names: frozenset = frozenset()
    _folded: dict = {}
    # the pairs a conversion with folding folds, and the parameters a
    # conversion without keeps unread (fold_agree.py)
    _foldable: dict = {}
    _bn2d = False  # the torch model had BatchNorm2d layers (fold_agree.py)
    _unread: list = []
    # forward parameters traced as None (refused when given), and those
    # whose None the forward answers otherwise (refused when left None)
    _fixed_none: frozenset = frozenset()
    _needed: dict = {}  # name -> None, or why fx cannot trace its None branch
    _id_inputs: dict = {}  # inputs read as ids by an embedding: its rows
    _shifts: dict = {}  # call node -> the BatchNorm it runs into (shifts.py)

    def __init__(
        self,
        graph: torch.fx.Graph,
        modules: dict[str, Module],
        attrs: dict,
        folded_batchnorms: int = 0,
        params: dict | None = None,
        defaults: dict | None = None,
        order: dict | None = None,
        layout: dict | None = None,
    ):
        params = params or {}
        super().__init__()
        self._graph = graph
        # the inputs, in order, with the forward's own default where it has one
        self._inputs = [(n.target, n.args) for n in graph.nodes if n.op == "placeholder"]
        # inputs a caller may leave out: name -> function of the first input
        self._defaults = defaults or {}
        self._root_target = None  # the module target standing for a wrapped bare layer
        self._attrs = attrs
        # The model's own parameters read by get_attr (a positional embedding,
        # a class token) are parameters here: encrypt() shares them, training
        # updates them (not public constants every party sees).
        # constants that differ between the eval and train traces (tracing.py)
        self._mode_marks = tracing.has_marks(graph)
        # each layer's place in the tree, looked up at every call, so that
        # a layer replaced (model.fc = Linear(...)) or deleted is the one
        # that runs, or raises, as in torch
        attr_at, self._module_at = tracing.mount(self, modules, params, order or {}, layout)
        # the tree as mounted: a block traced through (its layers inline in
        # the graph) replaced later is refused, not half run; the model's
        # own parameters are read from their owner's place at each call
        self._mounted = {tuple(n.split(".")): m for n, m in self.named_modules() if n}
        where = {id(m): p for p, m in self._mounted.items()}
        self._attr_at = {t: (where.get(id(o), ()), leaf) for t, (o, leaf) in attr_at.items()}
        self._folded_batchnorms = folded_batchnorms

    def _encrypt_own(self, src: int) -> None:
        """As Module's, and the buffers read as graph constants become
        src's (:func:`party_io.public_from`; they stay public). First, in a
        multi-party run, every party's BatchNorm layers are folded as
        src's are (:func:`fold_agree.agree`)."""
        fold_agree.agree(self, src)
        super()._encrypt_own(src)
        self._attrs = party_io.public_from(src, self._attrs)

    def _why_not_trainable(self) -> str | None:
        """A model whose BatchNorm layers were folded into convolutions at
        conversion would train without batch statistics: a different network."""
        if not self._folded_batchnorms:
            return None
        return (
            f"this model was converted with {self._folded_batchnorms} BatchNorm layer(s) "
            "folded into the preceding convolutions (the PyTorch model was in eval mode, "
            "or fold_batchnorm=True), which is right for inference only; to train, convert "
            "the model in train mode (model.train()) or pass fold_batchnorm=False"
        )

    def add_module(self, name: str, module) -> None:
        """As Module's; a BatchNorm folded into its conv at conversion cannot
        be replaced (its effect stays in the conv)."""
        if name in self._folded_names:
            raise NotImplementedError(
                f"{name!r} was folded into the convolution before it at conversion: its "
                "effect stays there; convert with fold_batchnorm=False to change it"
            )
        super().add_module(name, module)

    def _from_torch_names(self, prefix: str, state: dict) -> None:
        """Called by ``load_state_dict`` (of this model, or of one holding
        it) before loading: a state with entries of a BatchNorm folded at
        conversion (a torch model's) is refused (RuntimeError), strict or
        not: its conv's weights are the unfolded ones (folding.py)."""
        folding.refuse_keys(self._folded, prefix, state)
        super()._from_torch_names(prefix, state)  # a bare module's own (bare.py)

    def _layer(self, target: str):
        """The module now at the place the conversion mounted ``target``."""
        if target == self._root_target and "_bare" in self.__dict__:
            return self.__dict__["_bare"]  # a bare module, the graph in its place
        return self._walk(self._module_at[target], target)

    def _walk(self, path: tuple, target: str):
        """The module at ``path`` now; the blocks on the way must be those
        mounted (their own forward ran inline at conversion)."""
        m = self
        for i, part in enumerate(path):
            sub = m.__dict__["_modules"]
            if part not in sub:
                raise AttributeError(
                    f"{type(m).__name__} has no attribute {part!r} (the converted forward "
                    f"reads {target!r}: it was deleted)"
                )
            m = sub[part]
            if i < len(path) - 1 and m is not self._mounted.get(path[: i + 1], m):
                block = ".".join(path[: i + 1])
                raise NotImplementedError(
                    f"{block!r} was replaced, but it is a block the conversion traced "
                    "through: its old forward runs inline in the converted graph; replace "
                    "it in the PyTorch model and convert that again, or replace its layers"
                )
        return m

    def _layers(self):
        """(target, module now in its place) of every converted layer still there."""
        for target in self._module_at:
            try:
                yield target, self._layer(target)
            except AttributeError:
                continue

    def _own_name(self, name: str) -> str:
        """A bare layer converted wrapped has its parameters under the
        wrapper's target ("0.weight"): torch names them "weight"."""
        root = self._root_target
        if root is not None and name.startswith(root + "."):
            return name[len(root) + 1 :]
        return name

    def __getattr__(self, name):  # (and the torch model's own attributes and methods)
        return user_attrs.getattr_(self, name, super().__getattr__)

    def _named_state(self, prefix: str = ""):
        for name, m, table, k in super()._named_state():
            yield prefix + self._own_name(name), m, table, k

    def _walk_params(self, pre: str, seen, recurse: bool):
        """(name, parameter) under torch's names, in torch's order (the
        order the torch model registered its modules and parameters)."""
        for name, p in super()._walk_params("", seen, recurse):
            yield pre + self._own_name(name), p

    def _bind(self, inputs: tuple, named: dict) -> dict:
        """The graph's inputs by placeholder name, from positional and
        keyword arguments (and the defaults of those left out)."""
        names = [name for name, _ in self._inputs]
        star = next((i for i, n in enumerate(names) if tracing.stars(n) == 1), None)
        kw = next((n for n in names if tracing.stars(n) == 2), None)
        if star is not None and len(inputs) > star:  # forward(self, x, *rest)
            inputs = tuple(inputs[:star]) + (tuple(inputs[star:]),)
        if len(inputs) > len(names) - (kw is not None):
            raise TypeError(f"forward takes {len(names)} inputs, got {len(inputs)}")
        bound = dict(zip(names, inputs))
        hf_labels.by_keyword(
            self._graph, bound, len(inputs), names
        )  # (transformers' position differs)
        if star is not None:
            bound.setdefault(names[star], ())
        if kw is not None:  # forward(self, x, **kw): the other keywords
            bound[kw] = {k: v for k, v in named.items() if k not in names}
            named = {k: v for k, v in named.items() if k in names}
        for k, v in named.items():
            if k not in names:
                raise TypeError(f"forward got an unexpected keyword argument {k!r}")
            if k in bound:
                raise TypeError(f"forward got multiple values for argument {k!r}")
            bound[k] = v
        for k, own in self._inputs:
            if bound.get(k) is None and k in self._defaults:  # (no first input: hf's error)
                first = bound.get(names[0])
                bound[k] = None if first is None else self._defaults[k](first)
            if k in self._defaults and isinstance(bound.get(k), SharedTensor):
                raise NotImplementedError(hf.public_only(k))
            if k not in bound and own:  # the forward's own default
                bound[k] = own[0]
            if k not in bound:
                raise TypeError(f"missing input {k!r}")
        tracing.check_optional(bound, self._fixed_none, self._needed)
        hf.check_ranks(self._graph, bound)  # HF inputs of the ranks traced
        return bound

    def forward(self, *inputs, **named):
        """Run the converted torch.fx graph on the inputs (by position, or
        by name as the traced model's forward takes them)."""
        env: dict = {}
        bound = self._bind(inputs, named)

        def load(a):
            a = torch.fx.node.map_arg(a, lambda n: env[n.name])
            return tracing.resolve(a, self.training) if self._mode_marks else a

        skip = hf_labels.unlabelled(self._graph, bound)  # the loss, where no labels are given
        grad, off = torch.is_grad_enabled(), False  # nodes traced under no_grad run so
        try:
            for node in self._graph.nodes:
                if node.name in skip:
                    continue
                if (tracing.NO_GRAD in node.meta) != off:  # a no_grad block starts or ends
                    off = not off
                    torch._C._set_grad_enabled(grad and not off)
                if node.op == "placeholder":
                    env[node.name] = bound[node.target]
                elif node.op == "get_attr":
                    if node.target in self._attr_at:
                        path, leaf = self._attr_at[node.target]
                        env[node.name] = to_torch._param_of(self._walk(path, node.target), leaf)
                    else:
                        env[node.name] = self._attrs[node.target]
                elif node.op == "call_module":
                    m = self._layer(node.target)
                    bn = self._shifts.get(node.name)
                    if bn is None:  # the usual case: no BatchNorm cancels this call's bias
                        args = masks.at_softmax(load(node.args), node, env)  # (nn.Softmax)
                        env[node.name] = m(*args, **load(node.kwargs))
                    else:
                        with shifts.cancelled(m, bn if torch.is_tensor(bn) else self._layer(bn)):
                            env[node.name] = m(*load(node.args), **load(node.kwargs))
                elif node.op == "call_function":
                    args, kwargs = load(node.args), load(node.kwargs)
                    args = reading(node, args, self._id_inputs) if self._id_inputs else args
                    shared = _first_shared(args + tuple(kwargs.values()))
                    # (public nodes too reach check_node's in-place shape check: review s29)
                    if shared is None:  # public values (or the conversion check)
                        env[node.name] = node.target(*args, **kwargs)
                    elif getattr(node.target, "public_of_shapes", False):  # a decoder's mask
                        env[node.name] = hf.public_of_shapes(node.target, args, kwargs)
                    elif tracing.is_namedtuple(node.target):  # an output record (GoogLeNet's)
                        env[node.name] = node.target(*tracing.mutable(tuple(args)), **kwargs)
                    elif node.target in _PUBLIC_FUNCTIONS or node.target not in _FUNCTIONS:
                        name = getattr(node.target, "__name__", str(node.target))
                        raise NotImplementedError(
                            f"{name} on a private tensor at node {node.name!r} is not supported"
                        )
                    else:
                        fn, kind = _FUNCTIONS[node.target]
                        args = masks.masked_operands(args, node, env)
                        with _track(kind, shared):
                            env[node.name] = _keywords.call(fn, node.target, args, kwargs)
                elif node.op == "call_method":
                    args, kwargs = load(node.args), load(node.kwargs)
                    args = reading(node, args, self._id_inputs) if self._id_inputs else args
                    if node.target not in _METHODS:  # on public values only (conversion)
                        if isinstance(args[0], SharedTensor):
                            raise NotImplementedError(
                                f".{node.target}() on a private tensor at node {node.name!r} "
                                "is not supported"
                            )
                        env[node.name] = getattr(args[0], node.target)(*args[1:], **kwargs)
                    else:
                        if isinstance(args[0], SharedTensor):
                            args = masks.masked_operands(args, node, env)
                        with _track(_METHODS[node.target], args[0]):
                            env[node.name] = _call_method(args[0], node.target, args[1:], kwargs)
                elif node.op == "output":
                    out = tracing.mutable(load(hf_labels.kept(node.args[0], skip)))
                    return hf.model_output(out, node) if isinstance(out, dict) else out
                check_node(self, node, env.get(node.name), env)  # (stats.py)
        finally:
            torch._C._set_grad_enabled(grad)  # native: no interrupt before it
        raise RuntimeError("graph has no output node")


Graph.to_pytorch = to_torch.graph_to_pytorch


class PretrainedGraph(hf_model.Pretrained, Graph):
    """A converted transformers model: a Graph that also answers as a
    ``PreTrainedModel`` (``config``, ``base_model``, ...: hf_model.py)."""


class SequentialGraph(_ByPosition, Graph):
    """A converted ``torch.nn.Sequential``: also indexed, measured and
    iterated as torch's (``model[1]`` is its second layer, converted);
    layers added after conversion (``append``, ``add_module``) run after
    the converted ones, as torch's Sequential runs them."""

    def forward(self, *inputs, **named):
        """The converted layers, then any added since."""
        out = super().forward(*inputs, **named)
        traced = self.__dict__.get("_traced_names", set(self._seq_names))
        for name in self._seq_names:
            m = self._modules.get(name)
            if name not in traced and m is not None:
                out = m(out)
        return out


def from_pytorch(
    model: torch.nn.Module, dummy_input=None, fold_batchnorm: bool | None = None
) -> Graph:
    """Convert a trained PyTorch model into a cryptgpu module by torch.fx
    tracing. Handles nn layers (Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d,
    AdaptiveAvgPool2d, BatchNorm1d/2d, LayerNorm, GELU, Tanh, Sigmoid, Embedding,
    MultiheadAttention, TransformerEncoderLayer/Encoder, TransformerDecoderLayer/
    Decoder, Transformer, Flatten, Dropout, Identity, Softmax/LogSoftmax), their
    functional forms, ``x.view``/``torch.flatten``, residual ``+`` and
    ``torch.cat``, and transformers (Hugging Face) 4.x models such as
    BertForSequenceClassification (cryptgpu.nn.hf). An unsupported op raises
    NotImplementedError naming it and its graph node.

    ``dummy_input`` (a tensor, or a tuple of them for a model of several
    inputs; a dict is one input, as ``model(dummy_input)`` passes it, for
    a forward reading ``feats["num"]``), when given, is run through the
    converted model in plaintext and compared with the original, to catch
    conversion errors early (an input with undefined values, such as
    CrypTen's ``torch.empty(...)``, becomes uniform values of its shape).
    Call ``.encrypt(src=...)`` on the result to share the weights.

    ``fold_batchnorm``: ``None`` (the default) folds BatchNorm into the
    preceding convolution only for a model in eval mode; a model in train
    mode keeps its BatchNorm layers, so that ``.train()`` trains with batch
    statistics as PyTorch does. ``True`` folds anyway (inference only:
    ``.train()`` on the result then raises), ``False`` never folds. The
    converted module starts in eval mode, whatever the model's mode (the
    model's own mode, and each of its submodules', is left as it was).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"from_pytorch expects a torch.nn.Module, got {type(model).__name__}")
    model = tracing.unwrapped(model)
    # the lock: also around reading the mode another thread may be flipping;
    # torch_grad: torch's grad mode put back, whatever torch's code inside did
    with torch_grad(), tracing.LOCK:
        was_training = model.training
        # each submodule's own mode (a BatchNorm or Dropout put in eval mode
        # inside a training model, for fine-tuning) is restored, not just
        # the top's: model.train(was) turned them all back to training
        modes = [(m, m.training) for m in model.modules()]
        if fold_batchnorm is None:
            fold_batchnorm = not was_training
        _CONVERTING.memo = {}
        try:
            with hf.no_cache(model), model_state.kept(model):  # no k/v cache; tensors kept
                return _convert(model.eval(), dummy_input, bool(fold_batchnorm))
        finally:
            _CONVERTING.memo = None
            model.train(was_training)  # the class's own (DualGraphModule swaps its graph)
            for m, mode in modes:
                m.training = mode


def _convert(model: torch.nn.Module, dummy_input, fold_batchnorm: bool) -> Graph:
    # A bare layer (nn.Linear, ...) traces to its functional form, and fx
    # cannot trace into a transformer encoder or decoder (control flow on
    # its masks); wrapped, each stays one module call, converted whole (the
    # transformer and recurrent ones by a wrapper with their own inputs,
    # masks and initial states).
    root = None
    wrapped = transformer.whole(model) or recurrent.whole(model)
    if wrapped is not None:
        model, root = wrapped, "m"
    elif not list(model.children()) and type(model).__module__.startswith("torch.nn"):
        # torch's own layers only: a user's module without children (all
        # functional, maybe of several inputs) is traced as it is
        model, root = bare.wrap(model), "0"  # (several inputs: bare.py)
    gm, defaults = flags.traced(tracing.trace_modes, model, dummy_input)  # (flag arguments)
    # inputs whose None the forward answers with its own (a causal mask)
    gm, defaults, nones, needed = tracing.optional(model, gm, defaults, dummy_input, root)
    mods = dict(gm.named_modules())
    foldable = folding.candidates(gm, mods)
    pairs = folding.fold_batchnorm(gm, mods, foldable) if fold_batchnorm else {}
    folded = len(pairs)
    converted: dict[str, Module] = {}
    attrs: dict = {}
    params: dict = {}
    private = tracing.maybe_private(gm)
    indices.rewrite(gm.graph, private, mods)  # argmax, max(dim).indices: torch's indices
    early.refuse(gm.graph, private)  # F.embedding(max_norm=), as a call would (early.py)
    for node in gm.graph.nodes:
        where = f"node {node.name!r}"
        if node.op == "call_module":
            if node.target not in converted:
                converted[node.target] = layer = _convert_module(mods[node.target], where)
                user_attrs.remember_settings(layer, mods[node.target])  # lin.out_features
        elif node.op == "call_function":
            known = node.target in _FUNCTIONS or node.target in _PUBLIC_FUNCTIONS
            known = known or tracing.is_namedtuple(node.target)
            if not known and node in private:
                raise NotImplementedError(unsupported(node, where))
        elif node.op == "call_method":
            if node.target not in _METHODS and node in private:
                raise NotImplementedError(unsupported(node, where))
        elif node.op == "get_attr":
            v = gm
            for part in node.target.split("."):
                v = getattr(v, part)
            if isinstance(v, torch.nn.Parameter):
                params[node.target] = _plain(v)
                continue
            if isinstance(v, torch.Tensor):
                # float constants in float64; bool and integer ones (masks,
                # indices) keep their dtype
                v = v.detach().double() if v.is_floating_point() else v.detach()
                v = v.clone()  # the torch model's own buffer changing later is not ours
            attrs[node.target] = v
    for bn, conv in pairs.items():  # a folded BatchNorm's rank check, kept by its conv
        converted[conv]._ranks = norm_checks.bn_ranks(mods[bn])
    unread = tracing.unread(model, gm, converted, folded)
    params.update((n, _plain(p)) for n, p in unread)
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    # and the parameters, each in its owner's registration order
    order.update((name, i) for i, (name, _) in enumerate(model.named_parameters()))
    sequential = root is None and isinstance(model, torch.nn.Sequential)  # not a bare layer
    kind = SequentialGraph if sequential else Graph
    kind = PretrainedGraph if hf.is_hf_model(model) else kind
    layout = aliases.layout(model)  # torch containers, under each of their names
    out = kind(gm.graph, converted, attrs, folded, params, defaults, order, layout)
    # BatchNorm layers folded into their convs: changing them would not
    # reach the conv (refused), on the top level by name or position
    out._folded_names = {
        n
        for n, m in model.named_children()
        if isinstance(m, folding.FOLDABLE) and n not in converted
    }
    fold_agree.mark_folded(out, pairs)
    # what encrypt(src=) needs to fold as src did (fold_agree.py)
    out._foldable = {bn.target: conv.target for bn, conv in foldable}
    out._bn2d = any(isinstance(m, folding.FOLDABLE) for m in model.modules())
    out._unread = [n for n, _ in unread]
    out._root_target = root
    aliases.name_all(out, model, layout, _plain)  # a module or weight torch names twice
    bare.adopt(out, root if wrapped is not None else None)  # torch's names (bare.py)
    user_attrs.attach(out, model)  # model.nhid, model.init_hidden(bsz)
    out._id_inputs = id_inputs(gm.graph, converted)  # one-hot rows of shared ids
    out._shifts = shifts.pairs(gm.graph, converted)  # biases a BatchNorm cancels
    if hf.is_hf_model(model):  # transformers' model.config (num_labels, id2label), a copy
        hf_model.attach(out, model)
    out._fixed_none, out._needed = nones, needed
    out.eval()
    if dummy_input is not None:
        # one input, or a tuple of them (a decoder's tgt and memory)
        many = isinstance(dummy_input, tuple) and not isinstance(dummy_input, torch.Size)
        xs = tuple(check.tree(check.dummy, x) for x in (dummy_input if many else (dummy_input,)))
        with torch_grad(False):  # (interrupt-safe: autograd.torch_grad)
            want, xs, tol = check.reference(model, xs)
            got = check.run_converted(out, xs)
        if not check.all_close(got, want, tol):
            raise RuntimeError(check.failure(model, xs, want, got, folded))
    else:  # a transformers model: the dummy transformers' tracer made
        xs = hf.dummy_input(gm.graph) if hf.is_hf_model(model) else None
    if xs is not None:  # attention key biases
        out._shifts.update(shifts.keys(gm.graph, converted, model, xs))
    return out
