"""The Module base class of cryptgpu.nn (the containers: containers.py).

Every layer (layers.py), loss (losses.py) and converted graph (conversion.py)
derives from :class:`Module`, which sits right above the statistics (stats.py).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch.nn.modules.module import _IncompatibleKeys

from .. import _lifecycle, _session, autograd
from ..tensor import SharedTensor, cryptensor
from . import habits, param_state, user_attrs
from .habits import _BORROWED, ModuleHabits, cast_plain, flagged
from .param_state import Counter as _Counter
from .param_state import as_param as _as_param
from .param_state import check_entry, check_param_value, inside_training, note, own, set_rg
from .param_state import copy_of as _copy_of
from .param_state import owned_plain as _owned_plain
from .stats import OTHER, _track
from .update import sgd_step

# tensors encrypt()/decrypt() converted in this call, by id: a tied weight is one tensor
_TIED = threading.local()
# how deep this thread is in nested module calls (0: a call from outside)
_CALLS = threading.local()


def _has_state(m: torch.nn.Module) -> bool:
    """A torch module holding parameters (anywhere inside): a weighted loss
    (its class weights are a buffer) stays usable as an attribute."""
    return any(True for _ in m.parameters())


class Module(ModuleHabits):
    """Base class: parameters, submodules, encrypt/decrypt, train/eval (and
    torch's hooks and accessors: habits.py)."""

    kind = OTHER

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        note(self)  # (a copy's and an unpickled one's too: param_state.inside_training)
        return self

    def __init__(self) -> None:
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        # A module built directly starts in training mode, as in torch and
        # CrypTen (from_pytorch's result starts in eval mode).
        self.training = True
        self.encrypted = False

    @property
    def _parameters(self):
        """The parameter table under torch's and CrypTen's name (CrypTen's
        tutorials read and assign ``layer._parameters["weight"]``)."""
        return self._params

    # -- structure
    def register_parameter(self, name: str, value, requires_grad: bool = True) -> None:
        """Add a parameter (torch tensor, SharedTensor or None) under ``name``;
        ``requires_grad=False`` (CrypTen's argument) freezes it, as setting
        ``requires_grad = False`` on it does (``train()`` keeps it frozen)."""
        if "_params" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        check_entry(self, name, "parameter"), check_param_value(name, value)  # torch's
        self._modules.pop(name, None)
        if _owned_plain(value) and not _BORROWED.get():
            # as CrypTen's register_parameter: a fresh layer in training mode
            # trains (its torch parameters require grad) before any train()
            own(value)  # its requires_grad setters record a freeze (param_state.py)
            value._on = self.training and not getattr(value, "_frozen", False)
            set_rg(value, value._on)
        self._params[name] = value
        if not requires_grad and value is not None:
            value.requires_grad = False

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name`` (checked as torch checks it)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a cryptgpu.nn.Module subclass")
        check_entry(self, name, "module", taken=False)  # (assignment replaces: __setattr__)
        param_state.refuse_over_tensor(self, name)  # torch's KeyError over one
        self._params.pop(name, None)
        self._modules[name] = module

    def register_module(self, name: str, module: Module | None) -> None:
        """:meth:`add_module` (torch's and CrypTen's alias), refusing a name
        the module has as another attribute (``forward``), as torch's."""
        check_entry(self, name, "module")
        self.add_module(name, module)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Add a buffer: state that is not a parameter (not trained, not in
        ``parameters()``), as torch's and CrypTen's. A torch tensor is
        shared by :meth:`encrypt` from the model owner, like BatchNorm's
        running statistics, and opened by :meth:`decrypt`; it is in
        ``state_dict()`` unless ``persistent=False``."""
        d = self.__dict__
        if "_params" not in d:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if name not in d.get("_buffers", {}) and (
            name in self._params or name in self._modules or name in d
        ):
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, (torch.Tensor, SharedTensor)):
            raise TypeError(
                f"cannot assign {type(tensor).__name__} as buffer {name!r} "
                "(a tensor, a SharedTensor or None expected)"
            )
        if "_buffers" not in d:
            object.__setattr__(self, "_buffers", OrderedDict())
        self._buffers[name] = tensor
        transient = d.setdefault("_transient", set())
        if persistent:
            transient.discard(name)
        else:
            transient.add(name)

    def set_parameter(self, name: str, value) -> None:
        """Replace this module's own parameter ``name`` (CrypTen's; not a
        child's): ValueError when there is none. A SharedTensor becomes a
        trainable parameter in training mode, as :meth:`encrypt` makes them."""
        if name not in self._params:
            raise ValueError(f"Parameter {name} does not exist.")
        setattr(self, name, value)  # checked as an assignment to a parameter
        if isinstance(value, SharedTensor):
            _as_param(value, self.training, False)

    def set_buffer(self, name: str, value) -> None:
        """Replace this module's own buffer ``name`` (CrypTen's): ValueError
        when there is none."""
        if name not in (self.__dict__.get("_buffers") or {}):
            raise ValueError(f"Buffer {name} does not exist.")
        setattr(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        # As torch.nn.Module: a module assigned to an attribute is a child
        # (encrypt, parameters(), train() and state_dict() reach it), a
        # torch.nn.Parameter is a parameter, and assigning to a registered
        # parameter replaces it.
        d = self.__dict__
        if isinstance(value, Module):
            if "_modules" not in d:
                raise AttributeError("cannot assign module before Module.__init__() call")
            param_state.refuse_over_tensor(self, name, value)  # torch's TypeError
            param_state.drop_entry(d, name, "_buffers")  # (assignment replaces, as torch's)
            self.add_module(name, value)
        elif isinstance(value, torch.nn.Parameter) or flagged(value, "_is_param"):  # (shared:
            param_state.drop_entry(d, name, "_modules", "_buffers")  # torch flags its detach())
            self.register_parameter(name, value)
        elif isinstance(value, getattr(torch.nn, "Buffer", ())) or flagged(value, "_is_buffer"):
            self.register_buffer(name, value.data, persistent=getattr(value, "persistent", True))
        elif isinstance(value, torch.nn.Module) and not name.startswith("_") and _has_state(value):
            # as add_module and the containers refuse it: kept as a plain
            # attribute, encrypt() missed its weights and each party ran its
            # own plaintext copy (results 1e9 off, a user probe); one without
            # parameters (torch.nn.ReLU(), a weighted loss) stays an attribute
            raise TypeError(
                f"cannot assign torch.nn.{type(value).__name__} as child module {name!r} of a "
                "cryptgpu.nn.Module (its weights would stay plaintext, outside encrypt()): use "
                "cryptgpu.nn's layer of that name, or write the model in torch and convert it "
                "with cryptgpu.nn.from_pytorch(model, dummy_input); to keep a torch model as a "
                "plain reference, name the attribute with a leading underscore"
            )
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} "
                    "(cryptgpu.nn.Module or None expected)"
                )
            d["_modules"][name] = None
        elif "_params" in d and name in d["_params"]:
            if value is not None and not isinstance(value, (torch.Tensor, SharedTensor)):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} "
                    "(a tensor, a SharedTensor or None expected)"
                )
            d["_params"][name] = value
        elif "_buffers" in d and name in d["_buffers"]:  # buffers (BatchNorm's statistics)
            d["_buffers"][name] = value
            if "_affine" in d:
                d["_affine"] = None  # BatchNorm's eval affine, recomputed from them
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for table in (self.__dict__.get("_params"), self.__dict__.get("_modules")):
            if table is not None and name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def __getstate__(self):
        # pickling and deepcopy (torch.save of a decrypted model): the weak
        # references decrypt() keeps for the next encrypt() are not state
        state = dict(self.__dict__)
        state.pop("_shared_before", None)
        state.pop("_hooks_before", None)
        return state

    def __setstate__(self, state) -> None:
        # a copy's (or unpickled) parameters start without .grad, as torch's
        # Parameters do (until 2026-12-07 a deepcopy's first backward added
        # onto the gradients copied with it)
        self.__dict__.update(state)
        for v in self._params.values():
            if isinstance(v, (SharedTensor, torch.Tensor)) and v.is_leaf:
                v.grad = None
            if type(v) is torch.Tensor and hasattr(v, "_on"):
                own(v)  # pickled as a plain tensor (param_state.PlainParameter)

    def __getattr__(self, name):
        d = self.__dict__
        if "_params" in d and name in d["_params"]:
            return d["_params"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        if "_buffers" in d and name in d["_buffers"]:
            return d["_buffers"][name]
        return user_attrs.setting(self, name)  # a converted layer's torch settings

    def children(self):
        """Yield the direct child modules (each once, as torch's)."""
        for _, m in self.named_children():
            yield m

    def named_children(self):
        """Yield (name, child) for the direct child modules; a child placed
        twice (``Sequential(lin, act, lin)``) under its first name, as torch's."""
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate=True):
        """Yield (dotted name, parameter) for this module and, with
        ``recurse``, its children, skipping None; each tensor once (a tied
        weight under its first name) unless ``remove_duplicate=False``; names
        under ``prefix`` + "." where a prefix is given: as torch's."""
        pre = prefix + "." if prefix else ""
        yield from self._walk_params(pre, set() if remove_duplicate else None, recurse)

    def _walk_params(self, pre: str, seen: set | None, recurse: bool):
        for k, v in self._params.items():
            if v is None or (seen is not None and id(v) in seen):
                continue
            if seen is not None:
                seen.add(id(v))
            yield pre + k, v
        if recurse:  # every name (the tensors deduplicated by ``seen``)
            for name, m in self._modules.items():
                if m is not None:
                    yield from m._walk_params(pre + name + ".", seen, True)

    def parameters(self, recurse: bool = True):
        """Yield every parameter of this module and (with ``recurse``) its children."""
        for _, v in self.named_parameters(recurse=recurse):
            yield v

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate=True):
        """Yield (dotted name, buffer) for this module's buffers (BatchNorm's
        running statistics and ``num_batches_tracked``, those of
        :meth:`register_buffer`) and, with ``recurse``, its children's, as
        torch's (None skipped; a module under two names once unless
        ``remove_duplicate=False``)."""
        tree = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
        for name, m in tree if recurse else [(prefix, self)]:
            pre = name + "." if name else ""
            for k, v in (m.__dict__.get("_buffers") or {}).items():
                if v is not None:
                    yield pre + k, v
            if "num_batches_tracked" in m.__dict__:
                yield pre + "num_batches_tracked", _Counter(m)["num_batches_tracked"]

    def buffers(self, recurse: bool = True):
        """Yield every buffer (see :meth:`named_buffers`)."""
        for _, v in self.named_buffers(recurse=recurse):
            yield v

    def modules(self):
        """Yield this module and every descendant, depth first (each once)."""
        for _, m in self.named_modules():
            yield m

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """Yield (dotted name, module) for this module and every descendant,
        as torch's (each module once, unless ``remove_duplicate=False``:
        under each of its names)."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                sub = f"{prefix}.{name}" if prefix else name
                yield from m.named_modules(memo, sub, remove_duplicate)

    def apply(self, fn) -> Module:
        """Call ``fn`` on every child (recursively) and then on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _named_state(self, prefix: str = ""):
        """(dotted name, owning module, table, key) for every parameter and
        buffer (BatchNorm's running statistics), skipping None."""
        transient = self.__dict__.get("_transient", ())
        for table in (self._params, self.__dict__.get("_buffers") or {}):
            for k, v in table.items():
                if v is not None and not (table is not self._params and k in transient):
                    yield prefix + k, self, table, k
        if "num_batches_tracked" in self.__dict__:  # BatchNorm, as torch lists it
            yield prefix + "num_batches_tracked", self, _Counter(self), "num_batches_tracked"
        for name, m in self._modules.items():  # every name, as torch's state_dict
            if m is not None:
                yield from m._named_state(prefix + name + ".")

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and buffers by dotted name after ``prefix`` (into
        ``destination`` when given), as ``torch.nn.Module.state_dict``
        (SharedTensors once encrypted): detached, as torch's, sharing the
        value (an optimiser step or an in-place change of either shows in
        the other), unless ``keep_vars`` (the parameters themselves; until
        2026-12-06 always: arithmetic on them was recorded). Save it with
        :func:`cryptgpu.save`. Runs the modules' state-dict hooks, as torch's."""
        out = OrderedDict() if destination is None else destination

        def collect():
            for name, _, table, k in self._named_state():
                v = table[k]
                tensor = isinstance(v, (torch.Tensor, SharedTensor))
                out[prefix + name] = v.detach() if tensor and not keep_vars else v
            return out

        return habits.state_dict_hooks(self, prefix, keep_vars, collect)

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        """Load parameters and buffers from ``state`` (e.g. from :func:`cryptgpu.load`,
        or a torch model's ``state_dict()``). A shared parameter is updated in
        place, so optimisers built on it keep working; plaintext values into
        an encrypted model are shared from party 0 (as ``encrypt()``). With
        ``strict`` (the default), missing or unexpected names and shape
        mismatches raise RuntimeError as in torch; returns the missing and
        unexpected names as torch's named tuple (``.missing_keys``,
        ``.unexpected_keys``). ``assign=True`` takes a plaintext model's
        values as its tensors rather than copying them in, as torch's (a
        SharedTensor is copied unless ``assign``: the model does not hold
        the caller's tensors). Shares loaded into a plaintext model make it
        an encrypted one (``encrypted`` True on every module, as after
        ``encrypt()``). A non-mapping is torch's TypeError."""
        if not isinstance(state, Mapping):  # dict(state) took a list of pairs
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state)}.")
        state = dict(state)
        extra = habits.load_pre_hooks(self, state, strict)  # (they may rename keys in state)
        own_names = {name for name, *_ in self._named_state()}
        for name, v in state.items():
            if name in own_names and not isinstance(v, (torch.Tensor, SharedTensor)):
                raise RuntimeError(
                    f"Error(s) in loading state_dict for {type(self).__name__}: While copying "
                    f"the parameter named {name!r}, expected torch.Tensor or Tensor-like object "
                    f"from checkpoint but received {type(v)}"
                )
        for name, m in self.named_modules():
            if hasattr(m, "_from_torch_names"):  # torch's names for our layout
                m._from_torch_names(name + "." if name else "", state)
        own = {name: (m, table, k) for name, m, table, k in self._named_state()}
        # torch's BatchNorm loads a state without num_batches_tracked (older
        # checkpoints) and keeps its own count
        missing = [n for n in own if n not in state and not n.endswith("num_batches_tracked")]
        keys = _IncompatibleKeys(missing + extra[0], [n for n in state if n not in own] + extra[1])
        if strict and not any(m.__dict__.get("_ld_post") for m in self.modules()):
            habits.strict_check(self, keys)  # nothing loaded (with post hooks: after them)
        tied: dict = {}  # id of a parameter replaced -> its replacement
        shared_in = False  # a share loaded where the model held plaintext
        for name, (m, table, k) in own.items():
            if name not in state:
                continue
            new, old = state[name], table[k]
            if tuple(new.shape) != tuple(old.shape):
                raise RuntimeError(
                    f"size mismatch for {name}: copying a param with shape {tuple(new.shape)}, "
                    f"the shape in the current model is {tuple(old.shape)}"
                )
            if isinstance(old, SharedTensor) and not isinstance(new, SharedTensor):
                # plaintext values (a torch model's state_dict) into an
                # encrypted model: shared from party 0, as encrypt() does,
                # in place (optimisers keep their parameters)
                new = cryptensor(torch.as_tensor(new).detach(), src=0)
            if isinstance(old, SharedTensor) and isinstance(new, SharedTensor):
                new._s()  # refuses a tensor of an earlier session
                old._t, old._session, old._st = new._t, new._session, new._st
            elif isinstance(new, SharedTensor) and table is m._params:
                shared_in = True
                # a copy, as torch's (until 2026-12-06 the model held the
                # caller's tensor: training changed the loaded dict itself),
                # one per parameter object: tied parameters stay tied
                if id(old) not in tied:
                    new = new if assign else _copy_of(new)
                    tied[id(old)] = _as_param(new, m.training, getattr(old, "_frozen", False))
                table[k] = tied[id(old)]
            elif (
                isinstance(old, torch.Tensor)
                and isinstance(new, torch.Tensor)
                and isinstance(table, dict)  # not BatchNorm's counter, an int
                and not assign
            ):
                # plaintext into plaintext: the values copied in place, as
                # torch's (the model's tensors keep their identity and
                # float64; until 2026-12-05 it held the caller's tensors,
                # so a later change of the torch model reached it)
                with autograd.torch_grad(False):
                    old.copy_(new.detach().to(old.dtype))
            else:  # a SharedTensor buffer copied, as a parameter
                shared_in = shared_in or isinstance(new, SharedTensor)
                shared = isinstance(new, SharedTensor) and not assign
                table[k] = _copy_of(new) if shared else new
            if hasattr(m, "_affine"):
                m._affine = None  # BatchNorm's eval affine, recomputed from the new statistics
        if shared_in:
            # shares in a plaintext model: it computes encrypted now, and
            # says so, as after encrypt() (until 2026-12-08 the flag stayed
            # False; decrypt() and encrypt() work on the mix as on a model)
            for m in self.modules():
                m.encrypted = True
        if habits.load_post_hooks(self, keys) and strict:
            habits.strict_check(self, keys)
        return keys

    # -- modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) on this module and its children;
        returns self. As in CrypTen, the shared parameters require grad in
        training mode and not in eval mode (where the forward records no
        tape for them, and inference stays as fast as under ``no_grad``; an
        input that requires grad still gets its gradient). A module called
        from outside in training mode trains every parameter below it that
        is not frozen, also those of submodules put in eval mode, and
        ``eval()`` of a module inside one in training mode (``model[1].eval()``
        to keep a BatchNorm's statistics while fine-tuning) changes no
        requires_grad, as torch's (until 2026-12-07 they read False and a
        ``filter(requires_grad)`` optimiser left them out). Raises
        RuntimeError, changing nothing, when a module below cannot train
        (see :meth:`_why_not_trainable`)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        if mode:
            for m in self.modules():
                why = m._why_not_trainable()
                if why:
                    raise RuntimeError(why)
        keep = not mode and inside_training(self)  # requires_grad as it is
        for m in self.modules():
            was, m.training = m.training, mode
            for v in () if keep else m._params.values():
                if isinstance(v, SharedTensor):
                    v._rg = mode and not v._frozen
                elif _owned_plain(v):
                    # a decrypted (plaintext) parameter trains with torch as
                    # a shared one would here; one frozen by the user in
                    # training mode stays frozen
                    if was and getattr(v, "_on", False) and not v.requires_grad:
                        v._frozen = True  # we turned it on; the user turned it off
                    v._on = mode and not getattr(v, "_frozen", False)
                    set_rg(own(v), v._on)
        return self

    def _why_not_trainable(self) -> str | None:
        """Why this module cannot be put in training mode (None: it can)."""
        return None

    def eval(self) -> Module:
        """Set evaluation mode; returns self."""
        return self.train(False)

    def encrypt(self, mode=True, src: int = 0) -> Module:
        """Secret-share every parameter from party ``src`` (the model owner).
        Shared parameters are autograd leaves, requiring grad in training
        mode (see :meth:`train`). CrypTen's signature: ``encrypt(mode=True,
        src=0)``, ``mode=False`` decrypting; a whole number as the first
        argument is ``src`` (this library's ``encrypt(1)``)."""
        if isinstance(mode, bool):
            if not mode:
                return self.decrypt()
        else:
            src = mode  # encrypt(1): the owner by position
        # one sharing per tensor: a weight tied between layers (converted
        # from one torch Parameter) stays one shared parameter
        self._check_session()
        outer = getattr(_TIED, "memo", None)
        if outer is None:
            _TIED.memo = {}
        try:
            for m in self.modules():
                m._encrypt_own(src)
        finally:
            if outer is None:
                _TIED.memo = None
        return self

    def _check_session(self) -> None:
        """Refuse a model whose shares belong to an earlier session (encrypt()
        left them as they were, so the model failed at its next use)."""
        for m in self.modules():
            tables = (m._params, m.__dict__.get("_buffers") or {})
            for v in (v for t in tables for v in t.values()):
                # the session looked up only for a share (a plaintext model
                # decrypts with no session, as before)
                if isinstance(v, SharedTensor) and v._session.id != _session.current().id:
                    other = _lifecycle.foreign(v._session.id, "this model")
                    if other is not None:
                        raise RuntimeError(other)
                    raise RuntimeError(
                        "this model was encrypted in an earlier session (cryptgpu.init() was "
                        "called again, or it was encrypted inside a run_multiprocess function, "
                        "whose parties' sessions end with it), whose shares ended with it: "
                        "load its weights again "
                        "(model.load_state_dict(torch_model.state_dict()), or convert the "
                        "PyTorch model again) and encrypt"
                    )

    def _encrypt_own(self, src: int) -> None:
        """Share this module's own parameters (not its children's); a layer
        with more state (BatchNorm's running statistics) extends it."""
        memo = getattr(_TIED, "memo", None)
        for k, v in self._params.items():
            if v is not None and not isinstance(v, SharedTensor):
                if memo is not None and id(v) in memo:
                    self._params[k] = memo[id(v)][1]
                    continue
                frozen = bool(getattr(v, "_frozen", False))
                frozen = frozen or (getattr(v, "_on", False) and not v.requires_grad)
                shared = cryptensor(v, src=src)
                ref = self.__dict__.get("_shared_before", {}).pop(k, None)
                old = ref() if ref is not None else None
                if isinstance(old, SharedTensor):
                    # encrypted again after decrypt(): the same parameter
                    # object takes the new shares, so that an optimiser (or
                    # any reference the user kept) still holds the model's
                    # parameter, as torch's parameters keep their identity
                    # through model.to(device)
                    old._t, old._session, old._st = shared._t, shared._session, None
                    old._view, old._back, old.grad = None, None, None
                    shared = old
                elif k in self.__dict__.get("_hooks_before", {}):  # kept by decrypt()
                    shared._hooks = self.__dict__["_hooks_before"].pop(k)
                self._params[k] = _as_param(shared, self.training, frozen)
                if _owned_plain(v):  # an optimiser still holding v refuses to step
                    v._replaced_by_encrypt = True
                if memo is not None:
                    memo[id(v)] = (v, self._params[k])  # v kept: its id stays unique
        buffers = self.__dict__.get("_buffers") or {}
        for k, v in buffers.items():  # the owner's state, as its parameters
            if isinstance(v, torch.Tensor):
                buffers[k] = cryptensor(v.detach(), src=src)
        self.encrypted = True

    def to(self, *args, **kwargs) -> Module:
        """``model.to(device)``, CrypTen's and torch's: the module itself
        for the session's own device (where its shares and tensors are);
        another device raises NotImplementedError, changing nothing (the
        device is chosen by ``cryptgpu.init(device=...)``). A float dtype
        leaves shared values as they are and casts plaintext ones."""
        here = _session.device().type
        for a in list(args) + [kwargs.get("device"), kwargs.get("dtype")]:
            if isinstance(a, (torch.Tensor, SharedTensor)):
                a = a.device
            if isinstance(a, (str, torch.device)) and torch.device(a).type != here:
                raise NotImplementedError(
                    f"to({a!r}): this session computes on {here}; choose the device with "
                    "cryptgpu.init(device=...)"
                )
            if isinstance(a, torch.dtype) and not a.is_floating_point:
                raise NotImplementedError(f"to({a}): only float dtypes are supported")
        dtype = next((a for a in args if isinstance(a, torch.dtype)), kwargs.get("dtype"))
        if dtype is not None:
            for m in self.modules():
                for table in (m._params, m.__dict__.get("_buffers") or {}):
                    for k, v in table.items():
                        if isinstance(v, torch.Tensor) and v.is_floating_point():
                            table[k] = cast_plain(v, dtype)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients, as torch's: ``set_to_none=False``
        zeroes each gradient in place (an optimiser's momentum and weight
        decay then still move a parameter the next backward misses)."""
        for p in self.parameters():
            if isinstance(p, SharedTensor) or isinstance(p, torch.Tensor):
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.zero_()

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter below, as torch's
        ``module.requires_grad_``; returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
            if isinstance(p, torch.Tensor):
                p._frozen = not requires_grad  # kept by train() and encrypt()
        return self

    def update_parameters(self, learning_rate: float, grad_threshold: float | None = None) -> None:
        """CrypTen's plain SGD step: p <- p - lr * p.grad, for the
        parameters with a gradient; on an unencrypted model, on its torch
        parameters, as CrypTen's. ``grad_threshold``: see
        :func:`cryptgpu.nn.update.sgd_step`. In eval mode: RuntimeError, as
        CrypTen's assertion (it stepped nothing, silently)."""
        if not self.training:
            raise RuntimeError("module not in training mode: call model.train() first")
        sgd_step(list(self.parameters()), learning_rate, grad_threshold)

    def decrypt(self) -> Module:
        """Open every parameter (and BatchNorm's running statistics) back
        into float64 torch tensors."""
        self._check_session()
        outer = getattr(_TIED, "memo", None)
        if outer is None:
            _TIED.memo = {}
        try:
            for m in self.modules():
                m._decrypt_own()
        finally:
            if outer is None:
                _TIED.memo = None
        return self

    def _decrypt_own(self) -> None:
        """Open this module's own parameters (not its children's)."""
        memo = getattr(_TIED, "memo", None)
        for k, v in self._params.items():
            if isinstance(v, SharedTensor):
                if memo is not None and id(v) in memo:
                    self._params[k] = memo[id(v)][1]  # a tied weight: opened once
                    continue
                self._params[k] = own(v.get_plain_text(dtype=torch.float64))
                self._params[k]._on = self.training and not v._frozen
                set_rg(self._params[k], self._params[k]._on)
                # for the next encrypt(), by weak reference: it matters only
                # while something else (an optimiser) holds the parameter,
                # and it must not keep the shares alive nor be pickled
                self.__dict__.setdefault("_shared_before", {})[k] = weakref.ref(v)
                if v._frozen:
                    self._params[k]._frozen = True  # for the next encrypt()
                if getattr(v, "_hooks", None):  # register_hook's: a parameter no one
                    self.__dict__.setdefault("_hooks_before", {})[k] = v._hooks  # holds too
                if memo is not None:
                    memo[id(v)] = (v, self._params[k])
        buffers = self.__dict__.get("_buffers") or {}
        for k, v in buffers.items():
            if isinstance(v, SharedTensor):
                buffers[k] = v.get_plain_text(dtype=torch.float64)
        self.encrypted = False

    # -- running
    def forward(self, x):
        """The computation of the layer; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args, **kwargs):
        outer = getattr(_CALLS, "depth", 0)
        if not outer and self.training:
            # The module called from outside trains every parameter below
            # it that is not frozen, whatever its own submodule's mode: as
            # in torch, `bn.eval()` inside a training model freezes the
            # running statistics only, not the affine weights.
            for p in self.parameters():
                if isinstance(p, SharedTensor):
                    p._rg = not p._frozen
        _CALLS.depth = outer + 1
        try:
            return self._hooked(self._call_tracked, args, kwargs)
        finally:
            _CALLS.depth = outer

    def _call_tracked(self, *args, **kwargs):
        """The forward, counted in the per-layer statistics under ``kind``."""
        x = args[0] if args else None
        if args and not isinstance(x, (SharedTensor, torch.Tensor, tuple)):
            self._check_tensor_first(x)
        if self._modules or self.kind == OTHER:
            return self.forward(*args, **kwargs)
        with _track(self.kind, x):
            return self.forward(*args, **kwargs)
