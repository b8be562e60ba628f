"""Tracing a torch model for ``from_pytorch``: torch.fx (or the Hugging
Face tracer) in eval and in train mode, constants that depend on the mode
(``F.dropout(x, p, self.training)``) marked so that the converted graph
follows its own ``.train()``/``.eval()``, and the converted layers placed
in a module tree that names and orders parameters as torch does.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import warnings

import torch

from ..autograd import torch_grad
from . import containers, flags, guards, hf, hf_refusals, model_state, wrapped
from .inplace import AugmentingTracer, in_place
from .metadata import METADATA
from .module import Module
from .param_state import register_inside

# torch.fx patches torch globals while it traces (nn.Module.__getattr__ and
# __call__ among them), so a conversion must not overlap another thread's
# trace: the SPMD runtime converts the same torch model in three party
# threads, and one reading the model's weights during another's trace could
# see the tracer's patched attributes. The whole conversion holds the lock
# (it sends nothing, so no party waits on another while holding it).
LOCK = threading.RLock()


class ModeDependent:
    """A constant of the traced graph that differs between eval and train
    mode (``self.training`` itself, a dropout probability ``p if
    self.training else 0``): the converted graph picks the one for its
    own mode when it runs."""

    def __init__(self, eval_value, train_value):
        self.eval_value, self.train_value = eval_value, train_value

    def __repr__(self) -> str:
        return f"ModeDependent(eval={self.eval_value!r}, train={self.train_value!r})"


class _TracedTypeError(TypeError, NotImplementedError):
    """A forward that raised TypeError while traced: torch's type for the
    same call, and NotImplementedError as every tracing failure."""


def resolve(args, training: bool):
    """``args`` (nested tuples, lists, dicts) with every ModeDependent
    replaced by its value for the mode; containers without one are
    returned as they are (a torch.Size stays a Size)."""
    if isinstance(args, ModeDependent):
        return args.train_value if training else args.eval_value
    if isinstance(args, (tuple, list)) and not isinstance(args, torch.Size):
        items = [resolve(a, training) for a in args]
        if all(i is a for i, a in zip(items, args)):
            return args
        return tuple(items) if isinstance(args, tuple) else items
    if isinstance(args, dict):
        items = {k: resolve(v, training) for k, v in args.items()}
        return args if all(items[k] is args[k] for k in args) else items
    return args


def has_marks(graph: torch.fx.Graph) -> bool:
    """Whether any node of ``graph`` has a :class:`ModeDependent` argument."""
    found = []

    def see(a):
        if isinstance(a, ModeDependent):
            found.append(a)
        return a

    for n in graph.nodes:
        torch.fx.node.map_aggregate((n.args, n.kwargs), see)
    return bool(found)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside torch's wrappers (torch.compile's, DataParallel's);
    a TorchScript module, which torch.fx cannot trace, is refused."""
    if isinstance(model, torch.jit.ScriptModule):
        raise NotImplementedError(
            "a TorchScript module (torch.jit.script / torch.jit.trace) cannot be traced by "
            "torch.fx: convert the nn.Module it was made from"
        )
    inner = getattr(model, "_orig_mod", None)  # torch.compile
    if isinstance(inner, torch.nn.Module):
        return unwrapped(inner)
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return unwrapped(model.module) if isinstance(model, parallel) else model


def is_namedtuple(f) -> bool:
    """Whether ``f`` is a namedtuple class (a forward's output record)."""
    return isinstance(f, type) and issubclass(f, tuple) and hasattr(f, "_fields")


def mutable(out):
    """A graph's output with torch.fx's immutable lists and dicts (how it
    stores node arguments) made plain again, as the torch model returns."""
    if isinstance(out, torch.fx.immutable_collections.immutable_list):
        return [mutable(v) for v in out]
    if isinstance(out, torch.fx.immutable_collections.immutable_dict):
        return {k: mutable(v) for k, v in out.items()}
    if type(out) is tuple:  # not a namedtuple, not a torch.Size
        return tuple(mutable(v) for v in out)
    return out


# node.meta key: the node was traced with gradients off (a ``with
# torch.no_grad():`` block or a ``@torch.no_grad()`` forward): it runs so
NO_GRAD = "cryptgpu_no_grad"


class _GradTracer(AugmentingTracer, wrapped.Inlining, guards.SizeChecks, torch.fx.Tracer):
    """torch.fx's tracer that marks the nodes made while the forward had
    gradients off (:data:`NO_GRAD`): torch.fx records no node for a grad
    mode, so until 2026-12-06 a ``with torch.no_grad():`` backbone trained
    with the head (0.15 off torch's after 3 SGD steps). Traces with
    gradients on, whatever the caller's mode."""

    cryptgpu_functions = True  # a custom Function's apply: one step (custom_functions.traced)

    def trace(self, root, concrete_args=None):
        # (interrupt-safe: autograd.torch_grad, model_state.fx_undone)
        with torch_grad(True), model_state.fx_undone(root):
            return super().trace(root, concrete_args)

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        if not torch.is_grad_enabled():
            node.meta[NO_GRAD] = True
        return node


class _Tracer(_GradTracer):
    """torch.fx's tracer with buffers read as graph attributes, so that a
    buffer sliced by a traced length (nanoGPT's causal mask
    ``self.bias[:, :, :T, :T]``, rotary caches) traces."""

    proxy_buffer_attributes = True


def _trace(model: torch.nn.Module, nones=()):
    """(GraphModule, HF defaults); ``nones``: forward parameters traced as
    None (the branch the forward takes when they are left out)."""
    if hf.is_hf_model(model):
        gm, defaults = hf.trace(model)
        hf_refusals.check(model, gm.graph, maybe_private(gm))  # in words naming why
        return gm, defaults
    concrete = {**flags.fixed(model), **dict.fromkeys(nones)} or None  # (flags.py)
    before = model_state.versions(model)  # a forward changing a buffer: refused
    try:  # buffers as constants: a forward may use one in Python (float(self.scale))
        graph = _GradTracer().trace(model, concrete_args=concrete)
        model_state.unchanged(model, before, lambda: _GradTracer().trace(model, concrete))
        gm = torch.fx.GraphModule(model, graph, model.__class__.__name__)
    except model_state.ModelStateChanged:
        raise
    except Exception as first:
        try:  # buffers as graph values (nanoGPT's self.bias[:, :, :T, :T])
            before = model_state.versions(model)
            graph = _Tracer().trace(model, concrete_args=concrete)
            model_state.unchanged(model, before, lambda: _Tracer().trace(model, concrete))
        except Exception as second:  # both errors: the second may be the cause
            with contextlib.suppress(AttributeError):
                first._also = second
            raise first from None
        gm = torch.fx.GraphModule(model, graph, model.__class__.__name__)
    if concrete:
        flags.guard(gm)
        _unspecialize(gm, model)
    return gm, {}


def _unspecialize(gm: torch.fx.GraphModule, model: torch.nn.Module) -> None:
    """fx's trace with parameters fixed to None checks them with an assert
    node and renames their placeholders (``mask_1``): the assert goes (the
    converted model refuses a value for them itself, Graph._bind) and each
    placeholder takes its parameter's name back, for binding by keyword."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is torch.fx._symbolic_trace._assert_is_none:
            gm.graph.erase_node(node)
    names = [n for n in _signature(model) if not n.startswith("*")]
    holders = [n for n in gm.graph.nodes if n.op == "placeholder" and not n.target.startswith("*")]
    for node, name in zip(holders, names):
        node.target = name
    gm.recompile()


def _signature(model: torch.nn.Module) -> list:
    """The forward's parameter names (``*args``, ``**kw`` as fx names them)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [stars.get(p.kind, "") + p.name for p in params]


def _ops(gm: torch.fx.GraphModule, as_none: str | None = None) -> list:
    """What a graph computes, for comparing two traces: each node but the
    inputs, with its arguments (other nodes by position, inputs by name,
    constants as they are), so that a None branch that only reads a
    buffer or takes a constant (``temperature = 2.0``) differs too; the
    input ``as_none`` counts as the None it is compared with (a mask handed
    on as it is does not branch)."""
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    pos = {n: i for i, n in enumerate(nodes)}

    def arg(a):
        if isinstance(a, ModeDependent):  # marked in gm; the retrace is eval mode's
            return repr(a.eval_value)
        if isinstance(a, torch.fx.Node) and a.op == "placeholder":
            return repr(None) if a.target == as_none else ("input", a.target)
        if isinstance(a, torch.fx.Node):
            return ("node", pos.get(a))
        return repr(a)

    return [
        (n.op, n.target, torch.fx.node.map_aggregate((n.args, n.kwargs), arg))
        for n in nodes
        if not (n.op == "call_function" and n.target is torch.fx._symbolic_trace._assert_is_none)
    ]


def optional_inputs(model: torch.nn.Module, gm: torch.fx.GraphModule) -> dict:
    """The forward's parameters defaulting to None whose being None changes
    what it computes (``if src_mask is None: src_mask = causal(...)``, the
    nn.Transformer tutorial's idiom): fx traces an argument as a value, so
    the graph traced with it given cannot follow the None branch. Found by
    tracing once more with each set to None and comparing operations: name
    -> None, or the error of a None branch that does not trace."""
    if hf.is_hf_model(model):
        return {}
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    used = {n.target for n in gm.graph.nodes if n.op == "placeholder" and n.users}
    out = {}
    for name, p in params.items():
        if p.default is not None or name not in used or p.kind not in _NAMED:
            continue
        try:
            with LOCK:
                alt, _ = _trace(model, (name,))
        except Exception as e:  # its None branch does what fx cannot trace
            out[name] = f"{type(e).__name__}: {e}"
            continue
        if _ops(alt) != _ops(gm, name):
            out[name] = None
    return out


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def optional(model, gm, defaults, dummy_input, root):
    """(graph, defaults, parameters traced as None, parameters needed)
    for the inputs of :func:`optional_inputs`: those the dummy input leaves
    out are traced as None (refused when given at a call); the others must
    be given (their None branch is not in the graph). ``root``: the model is
    our wrapper of a bare layer, whose forward has no such branch."""
    found = optional_inputs(model, gm) if root is None else {}
    given = _given_names(model, dummy_input)
    nones = [n for n in found if n not in given] if dummy_input is not None else []
    for n in nones:
        if found[n] is not None:
            raise NotImplementedError(
                f"the model's forward with {n}=None (left out of the dummy input) could "
                f"not be traced ({found[n]}); give {n} in the dummy input and at "
                "every call, or build it from sizes torch.fx traces (x.size(0), not len(x))"
            )
    if nones:
        gm, defaults = trace_modes(model, nones)
    return gm, defaults, frozenset(nones), {n: e for n, e in found.items() if n not in nones}


def _given_names(model, dummy_input) -> set:
    """The forward's parameters that the dummy input gives (by position;
    a None there leaves its parameter out)."""
    if dummy_input is None:
        return set()
    many = isinstance(dummy_input, tuple) and not isinstance(dummy_input, torch.Size)
    names = [n for n in _signature(model) if not n.startswith("*")]
    return {n for n, x in zip(names, dummy_input if many else (dummy_input,)) if x is not None}


def check_optional(bound: dict, fixed_none, needed: dict) -> None:
    """A converted graph's inputs against :func:`optional`'s plan."""
    for k in fixed_none & {k for k, v in bound.items() if v is not None}:
        raise TypeError(
            f"this model was converted with {k!r} left out of the dummy input, "
            f"so it runs what its forward does when {k} is None; to pass one, convert "
            f"it with a dummy input that gives {k} (a keyword-only {k}: with no dummy "
            "input; it is then needed at every call)"
        )
    for k in [k for k in needed if bound.get(k, 0) is None]:
        why = needed[k]
        raise TypeError(
            f"forward needs {k!r}: the model's forward computes something else "
            f"when {k} is None, which a model converted with {k} given cannot "
            + (
                "follow; pass it, or convert with a dummy input that leaves it out"
                if why is None
                else f"follow (and fx cannot trace that branch: {why}); pass it"
            )
        )


def trace_modes(model: torch.nn.Module, nones=()):
    """(GraphModule traced in eval mode, the HF inputs' defaults), with the
    constants that the train-mode trace has otherwise marked as
    :class:`ModeDependent`. A forward whose train-mode graph differs in
    structure (an ``if self.training:`` branch) keeps the eval graph, with
    a warning that the converted model follows eval mode's operations.
    ``nones``: forward parameters traced as None (left out of the dummy
    input, where the forward builds its own when they are None)."""
    try:
        with LOCK:
            gm, defaults = _trace(model.eval(), nones)
            try:
                gm_train, _ = _trace(model.train(), nones)
            except Exception:  # train mode may not trace (checkpointing): eval only
                gm_train = None
            finally:
                model.eval()
    except NotImplementedError:
        raise
    except Exception as e:  # tracing errors come in many types
        also = getattr(e, "_also", None)
        text = str(e) + wrapped.where(e)  # the module whose forward raised it
        words, replace = guards.traced_failure(e)  # the forward's line (probe OH)
        if replace:
            text = words + wrapped.where(e).split(", at ")[0]
        elif getattr(e, "_cryptgpu_at", None) is None:
            text += words
        if also is not None and str(also) != str(e):  # (the same words: once)
            text += f"; with buffers as graph values: {also}{wrapped.where(also)}"
        hint = ""
        if "takes 1 positional argument" in text:
            hint = (
                " (torch.fx traces factory functions given sizes read from an input, "
                "torch.ones(T, T), only with the sizes as one tuple: torch.ones((T, T)); "
                "or build the mask with torch.full((T, T), ...) or "
                "nn.Transformer.generate_square_subsequent_mask)"
            )
        if not hint and ("interpreted as an integer" in text or "cannot be iterated" in text):
            hint = (
                " (torch.fx cannot loop over a count read from an input, "
                "range(x.size(1)) or x.unbind(1): loop a constant number of times, "
                "range(SEQ_LEN), and index x[:, t])"
            )
        if not hint and "'len' is not supported in symbolic tracing" in text:
            hint = (
                " (len() of a traced tensor or of its shape: write x.dim() for "
                "len(x.shape), x.size(0) for len(x))"
            )
        if not hint and "finfo() requires a floating point" in text:
            hint = (
                " (torch.finfo(x.dtype) of a traced tensor: write the dtype, "
                "torch.finfo(torch.float32).min, or float('-inf'))"
            )
        if not hint and _packs(model):  # the cause first, fx's words after (probe MB)
            raise NotImplementedError(
                "a model that packs its sequences (pack_padded_sequence) cannot be traced "
                "by torch.fx: pad the batch and mask, or take each sequence's last valid "
                f"step (torch.fx said: {text})"
            ) from e
        # a TypeError from the forward's own calls (a misspelt keyword,
        # F.softmax(h, axis=1)) is torch's TypeError too, as the model's
        # plain call raises it (it was a NotImplementedError only, a probe)
        # (only a call's own words: torch.fx's limits, range(h.size(1)) or
        # torch.ones(T, T), are TypeErrors under tracing alone, a review)
        own = (
            "unexpected keyword",
            "got multiple values",
            "invalid combination",
            "required positional",
        )
        call = isinstance(e, TypeError) and not hint and any(w in str(e) for w in own)
        kind = _TracedTypeError if call else NotImplementedError
        raise kind(f"torch.fx could not trace the model: {text}{hint}") from e
    if gm_train is not None and not _mark(gm, gm_train):
        warnings.warn(
            "the model's forward runs other operations in train mode than in eval mode "
            "(an `if self.training:` branch, such as stochastic depth: timm's drop_path, "
            "torchvision's StochasticDepth); the converted model runs eval mode's "
            "operations in both modes (its nn.Dropout and BatchNorm layers still follow "
            ".train()/.eval())",
            stacklevel=4,
        )
    in_place(gm)
    return gm, defaults


def _packs(model) -> bool:
    """Whether a module's forward packs sequences (pack_padded_sequence)."""
    for m in model.modules():
        try:
            src = inspect.getsource(type(m).forward)
        except Exception:  # builtins, TorchScript's cached forwards
            continue
        if "pack_padded_sequence" in src or "pack_sequence" in src:
            return True
    return False


def _attr(gm: torch.fx.GraphModule, target: str):
    v = gm
    for part in target.split("."):
        v = getattr(v, part, None)
    return v


def _mark(gm_eval: torch.fx.GraphModule, gm_train: torch.fx.GraphModule) -> bool:
    """Mark the constants of ``gm_eval``'s nodes that differ in
    ``gm_train``'s; False (nothing marked) where the graphs differ in
    structure."""
    ev, tr = list(gm_eval.graph.nodes), list(gm_train.graph.nodes)

    def same(a, b) -> bool:
        if a.op != b.op:
            return False
        if a.op == "call_module" and a.target != b.target:
            # the HF tracer names the modules it makes of functions by a
            # counter (relu_0 in one trace, relu_1 in the next)
            ma, mb = gm_eval.get_submodule(a.target), gm_train.get_submodule(b.target)
            return type(ma) is type(mb) and not list(ma.parameters())
        if a.op == "get_attr" and a.target != b.target:
            # constants the tracer folded (a buffer compared with a number)
            # are numbered per trace: the same when their values are
            va, vb = _attr(gm_eval, a.target), _attr(gm_train, b.target)
            return torch.is_tensor(va) and torch.is_tensor(vb) and torch.equal(va, vb)
        if getattr(a.target, "public_of_shapes", False):
            # a decoder's mask maker: a function of its own per trace (hf._recorded)
            def key(f):
                return getattr(f, "__name__", ""), getattr(f, "arg_names", None)

            return key(a.target) == key(b.target)
        return a.target == b.target

    if len(ev) != len(tr) or not all(same(a, b) for a, b in zip(ev, tr)):
        return False
    # nodes correspond by position (a tracer may number names differently)
    pos = {id(n): i for nodes in (ev, tr) for i, n in enumerate(nodes)}
    pairs = []
    for a, b in zip(ev, tr):
        args = _merge(a.args, b.args, pos)
        kwargs = _merge(a.kwargs, b.kwargs, pos)
        if args is None or kwargs is None:
            return False
        pairs.append((a, args, kwargs))
    for node, args, kwargs in pairs:
        node.args, node.kwargs = args, kwargs
    return True


_MISMATCH = object()


def _merge(a, b, pos: dict):
    """``a`` with the constants that differ in ``b`` marked, or None where
    the two differ in structure (other nodes, other lengths)."""
    out = _merge_one(a, b, pos)
    return None if out is _MISMATCH else out


def _merge_one(a, b, pos: dict):
    if isinstance(a, torch.fx.Node) or isinstance(b, torch.fx.Node):
        same = isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)
        return a if same and pos[id(a)] == pos[id(b)] else _MISMATCH
    if isinstance(a, (tuple, list)):
        if type(a) is not type(b) or len(a) != len(b):
            return _MISMATCH
        items = [_merge_one(x, y, pos) for x, y in zip(a, b)]
        if any(i is _MISMATCH for i in items):
            return _MISMATCH
        return type(a)(items)
    if isinstance(a, dict):
        if not isinstance(b, dict) or list(a) != list(b):
            return _MISMATCH
        items = {k: _merge_one(a[k], b[k], pos) for k in a}
        if any(i is _MISMATCH for i in items.values()):
            return _MISMATCH
        return items
    if isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
        return a if (type(a), a) == (type(b), b) else ModeDependent(a, b)
    return a


def mount(graph: Module, modules: dict, params: dict, order: dict, layout=None) -> tuple:
    """Place the converted modules and the get_attr parameters in a module
    tree mirroring the torch model's (containers for the torch modules that
    were traced through), in the order torch registered them, so that
    parameter and state-dict names and order are torch's ("0.0.weight",
    not "0_0.weight"). A parameter read by get_attr from a converted layer
    (``F.linear(x, self.fc.weight)`` beside ``self.fc(...)``) is that
    layer's own (tied); one whose owner cannot hold it is mounted at the top
    under its name with dots as underscores. A torch container traced
    through (``layout``: path -> (kind, child names)) is one of ours
    (containers.traced), indexed as torch's. Returns (target -> (owning
    module, name) for the parameters, target -> path of names from the
    graph for the modules)."""
    leaves = {id(m) for m in modules.values()}
    big = len(order) + 1

    def container(parts):
        """The module at ``parts`` (containers made on the way), or None
        where the path runs into a converted layer."""
        node = graph
        for i, part in enumerate(parts):
            nxt = node._modules.get(part)
            if nxt is None:
                kind, names = (layout or {}).get(".".join(parts[: i + 1]), (None, ()))
                nxt = containers.traced(kind, names)
                nxt.training = graph.training
                node.add_module(part, nxt)
            if id(nxt) in leaves and i < len(parts) - 1:
                return None
            node = nxt
        return node

    # the modules, and the containers of get_attr parameters (a custom
    # module traced through, holding its own nn.Parameter), in torch's
    # registration order: siblings then list their parameters as torch does
    owners = {t.rpartition(".")[0] for t in params} - {""}
    module_at = {}
    entries = [(order.get(t, big), 0, t) for t in modules]
    entries += [(order.get(o, big), 1, o) for o in owners if o not in modules]
    for _, is_owner, target in sorted(entries):
        if is_owner:
            container(target.split("."))
            continue
        owner_path, _, leaf = target.rpartition(".")
        node = container(owner_path.split(".") if owner_path else [])
        path = owner_path.split(".") if owner_path else []
        if node is None or id(node) in leaves or leaf in node._modules or leaf in node._params:
            node, leaf, path = graph, target.replace(".", "_"), []
        node.add_module(leaf, modules[target])
        module_at[target] = tuple(path) + (leaf,)
    attr_at = {}
    # by owner, then in the owner's registration order (``order`` also
    # numbers the parameters: a custom module's own, read by the forward
    # in another order, keep torch's)
    for target in sorted(
        params, key=lambda t: (order.get(t.rpartition(".")[0], big), order.get(t, big))
    ):
        owner_path, _, leaf = target.rpartition(".")
        node = container(owner_path.split(".") if owner_path else [])
        if node is not None and id(node) in leaves and node._params.get(leaf) is params[target]:
            attr_at[target] = (node, leaf)  # the converted layer's own parameter: tied
            continue
        if node is None or id(node) in leaves or leaf in node._modules or leaf in node._params:
            node, leaf = graph, target.replace(".", "_")
        register_inside(node, leaf, params[target])
        attr_at[target] = (node, leaf)
    return attr_at, module_at


def unread(model, gm, converted: dict, folded: int) -> list:
    """(name, parameter) for the model's parameters that the traced ``gm``
    never reads (``converted``: its called modules' targets) (a mask
    token used only with ``bool_masked_pos``, a layer built and not called),
    by torch's names: kept as parameters, so that names, order and state
    dicts are torch's (until 2026-12-06 they were dropped, and loading the
    torch model's own state dict failed); none where BatchNorms were folded
    into convolutions (their parameters are in the convolutions)."""
    if folded:
        return []
    mods = dict(gm.named_modules())
    read = {id(p) for t in converted for p in mods[t].parameters()}
    read |= {id(_attr(gm, n.target)) for n in gm.graph.nodes if n.op == "get_attr"}
    return [(n, p) for n, p in model.named_parameters() if id(p) not in read]


# What an op on a private tensor returns in public: its metadata.
_METADATA = METADATA


def maybe_private(gm: torch.fx.GraphModule) -> set:
    """The nodes whose value may be private: the inputs, the parameters (an
    encrypted model shares them), a layer (its weights), and what is
    computed from those, except their metadata (``x.size(1)``, ``x.shape``).
    Any torch function or method on the other nodes (``torch.arange(T).cos()``
    for rotary embeddings from public positions, buffers sliced by a length)
    runs as torch runs it."""
    params = {n for n, _ in gm.named_parameters()}
    private: set = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or (node.op == "get_attr" and node.target in params):
            private.add(node)
        elif node.op in ("call_module", "call_function", "call_method"):
            name = node.target if isinstance(node.target, str) else ""
            if node.target is getattr and len(node.args) > 1:
                name = node.args[1]
            if name in _METADATA or node.target is len:
                continue
            if getattr(node.target, "public_of_shapes", False):  # hf's masks
                continue
            inputs = node.all_input_nodes
            if node.op == "call_module" or any(i in private for i in inputs):
                private.add(node)
    return private


def stars(name: str) -> int:
    """1 for fx's placeholder of ``*args``, 2 for ``**kwargs``, else 0."""
    return 2 if name.startswith("**") else (1 if name.startswith("*") else 0)
