"""The state and the plumbing of a SharedTensor: its engine handle and
session, wrapping engine results, shape queries, autograd entry points and
opening. The operation mixins (tensor_*.py) build on it; tensor.py composes them.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from . import _native, _session
from . import autograd as ag
from . import tensor_storage as _storage
from ._plain import _buf, _float64, _index, _norm_dim, _plain_array, _strides, zero_d_iteration
from ._session import current

_NUMPY_FLOATS = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


def _py_dtype(dtype) -> bool:
    """One of the Python types torch takes as a dtype (torch.zeros(2, dtype=float))."""
    return any(dtype is t for t in (float, int, bool, complex))


class FixedPointEncoder:
    """CrypTen's fixed-point encoder of a session: x as round(x 2^f) in
    int64 (``encode``), back as a float (``decode``)."""

    def __init__(self, precision_bits: int):
        self.precision_bits = int(precision_bits)
        self.scale = 1 << self.precision_bits

    def encode(self, x) -> torch.Tensor:
        """round(x * scale) as int64."""
        return torch.round(torch.as_tensor(x, dtype=torch.float64) * self.scale).long()

    def decode(self, t) -> torch.Tensor:
        """An encoded int64 tensor as float64."""
        return torch.as_tensor(t).to(torch.float64) / self.scale


class SecretValueError(TypeError, RuntimeError):
    """A SharedTensor's value was asked for implicitly (``if x < y:``,
    ``bool(x)``, ``x.tolist()``, ``numpy.asarray(x)``): refused, since it is
    secret; open it with ``get_plain_text()``. Both a TypeError (what Python
    raises for a value without a truth value) and a RuntimeError (what
    CrypTen raises there, and what its Tutorial 1 catches)."""


class TensorBase(ag.Node):
    """The core of :class:`cryptgpu.SharedTensor`: the shares' engine handle,
    the session that made them, and what every operation needs (session
    check, wrapping engine results, plaintext operands, shape queries)."""

    # _is_param, _is_buffer, persistent: the flags torch.nn.Parameter(x) and
    # nn.Buffer(x) set on a tensor subclass's detach() (Module registers it);
    # _bit: a comparison's result keeps (its handle, its 0/1 ring-integer
    # bit) for an exact where/masked_fill (tensor_compare._ring_bit);
    # _cell: a base and its views share it (tensor_storage: .data = new);
    # _off: a view's offset in its root's storage, torch's (tensor_overlap)
    __slots__ = ("_h", "_session", "_view", "_version", "_st", "_rec_at", "_bit", "_cell", "_off")
    __slots__ += ("__weakref__", "_is_param", "_is_buffer", "persistent")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, handle: _native.Tensor, session: _native.Session):
        self._h = handle
        self._session = session
        # A view (indexing, reshape, permute) remembers its base, as torch's
        # views share storage: (the base, the base's version when last read,
        # base -> view, (base, new view) -> write into the base). The view
        # holds its base alive, as a torch view holds its storage: with a
        # weak reference, a base changed in place and then dropped left the
        # view with the value from before the change.
        self._view = None
        self._version = 0  # bumped by every in-place change
        self._cell = None  # the storage as a base's views know it (tensor_storage.py)
        # The strides torch's tensor would have (a transposed, expanded or
        # strided view); None: contiguous. reshape copies where torch's
        # stride rule cannot view, and contiguous() where torch copies.
        self._st = None
        self._rg = False
        self._frozen = False  # see Node.requires_grad
        self._grad = None
        self._lost = None
        self._back = None

    # ------------------------------------------------------------ views
    @property
    def _t(self) -> _native.Tensor:
        """The engine handle of the shares; for a view whose base was
        changed in place since, first re-read from the base (torch's views
        share storage; here they hold copies, kept in step)."""
        v = self._view
        if v is not None:
            if self._cell is not None and self._cell[0] is not None:
                v = _storage.follow(self, v)  # base.data = new since: the old storage
            base = v[0]
            _ = base._t  # bring the base itself up to date first
            if base._version != v[1]:
                if getattr(base, "_rec_at", -1) > v[1] and ag.is_grad_enabled():
                    raise RuntimeError(_STALE_VIEW)
                with ag.no_grad():
                    fresh = v[2](base)
                self._h = fresh._h
                self._version += 1
                self._view = (base, base._version, v[2], v[3])
        return self._h

    @_t.setter
    def _t(self, handle: _native.Tensor) -> None:
        """Replace the shares in place (an in-place operation, an optimiser
        step, a loaded state): views of this tensor re-read it."""
        self._h = handle
        self._version += 1

    def _strides(self) -> list:
        """The strides torch's tensor would have (dense when contiguous)."""
        return list(self._st) if self._st is not None else _strides(self._t.shape)

    def _set_strides(self, st) -> None:
        """Remember torch's strides of this view; None, or strides that
        are contiguous (size-1 dims aside), make it contiguous."""
        if st is not None:
            dense = _strides(self._t.shape)
            if all(n == 1 or a == b for n, a, b in zip(self._t.shape, st, dense)):
                st = None
        self._st = None if st is None else tuple(st)

    def _as_view_of(self, base, read, write, offset=0) -> TensorBase:
        """Mark this new tensor as a view of ``base``: ``read(base)`` gives
        its value, ``write(base, value)`` puts a new value into the base. A
        view of a view is kept against the first base (``x[1][2]`` writes
        into x even after the temporary x[1] is gone), through the middle
        view's own read: a fresh view of the root, written in place, passes
        the change on by its own write-back. ``offset``: where it starts in
        base's storage, as torch lays it out (None: a layout torch has not)."""
        if self is base:
            return self
        bv = base._view if base._view is None else _storage.follow(base, base._view)
        root = bv[0] if bv is not None else None
        at = 0 if root is None else getattr(base, "_off", None)
        self._off = None if at is None or offset is None else at + offset
        self._cell = _storage.cell(base if root is None else root)
        if root is None:
            # a base reshaped in place since (squeeze_, unsqueeze_) is read
            # and written through a view of the shape this view knew
            shape = tuple(base._h.shape)

            def known(b, shape=shape):
                return b if tuple(b._h.shape) == shape else b.view(shape)

            rd, wr = read, write
            read = lambda b: rd(known(b))  # noqa: E731
            if not getattr(write, "_strided", False):  # (tensor_overlap.write_strided)
                write = lambda b, v: wr(known(b), v)  # noqa: E731
            self._view = (base, base._version, read, write)
        else:
            base_read = bv[2]
            if getattr(bv[3], "_strided", False):  # through an expand: by strides
                write = bv[3]  # (tensor_overlap.write_strided)
            self._view = (
                bv[0],
                root._version,
                lambda r: read(base_read(r)),
                write
                if getattr(write, "_strided", False)
                else (lambda r, v: write(base_read(r), v)),
            )
        return self

    def _write_back(self) -> None:
        """After an in-place change of a view, the same change in its base
        (and so in the base's own base): torch's views share storage."""
        v = self._view
        if v is None:
            return
        v = _storage.follow(self, v)  # (into the old storage after base.data = new)
        base = v[0]
        try:
            v[3](base, self)
        except BaseException:  # refused (an expanded base): the base is as it was,
            self._view = (base, -1, v[2], v[3])  # and this view reads it again
            raise
        self._view = (base, base._version, v[2], v[3])

    # ------------------------------------------------------------ helpers
    def _s(self, *others) -> _native.Session:
        """The current session, checked to be this tensor's, with its
        truncation protocol set for an operation on ``self`` and ``others``
        (exact where autograd records, in "auto" mode)."""
        s = current()
        if s.id != self._session.id:
            raise RuntimeError(_session.not_current(self._session))
        for o in others:  # the engine's "another session" was a ValueError
            if isinstance(o, TensorBase) and o._session.id != s.id:
                raise RuntimeError(_session.not_current(o._session))
        _session.sync_truncation(s, ag.needs_grad(self, *others))
        return s

    def _wrap(self, h: _native.Tensor) -> TensorBase:
        return type(self)(h, self._session)

    @classmethod
    def _share(cls, arr: np.ndarray, src: int) -> TensorBase:
        s = current()
        return cls(s.share(_buf(arr), list(arr.shape), src), s)

    def _other(self, y, what: str):
        """(SharedTensor or None, plain array or None)."""
        if isinstance(y, TensorBase):
            y._s()
            return y, None
        return None, self._plain(y, what)

    def _plain(self, y, what: str) -> np.ndarray:
        """A plaintext operand of an operation on this tensor, as an array.
        One that requires grad, meeting this tensor when it does, cannot get
        its (private) gradient into its .grad: the operation recorded next
        from this tensor carries the news and a backward through it raises
        (until 2026-12-05 the gradient was dropped without a word). Meeting
        a tensor that does not require grad, nothing is recorded (inference
        with plaintext weights): a backward from a result then names it."""
        if isinstance(y, torch.Tensor) and y.requires_grad:
            if ag.needs_grad(self):
                ag.lose_gradient(self, y, what)
            elif ag.is_grad_enabled():
                ag.note_unrecorded(y, what)
        return _plain_array(y, what)

    def _public(self, arr: np.ndarray) -> TensorBase:
        """A sharing of a public array in this tensor's session (no messages)."""
        arr = np.asarray(arr, dtype=np.float64)
        return self._wrap(self._s().public_tensor(_buf(arr), list(arr.shape)))

    def _public_like(self, value, shape=None) -> TensorBase:
        """A sharing of a public constant (no messages)."""
        shp = list(self._t.shape if shape is None else shape)
        return self._public(np.full(shp, float(value)))

    # ------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> TensorBase:
        """Mark this tensor as a leaf whose gradient ``backward`` accumulates."""
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(
                "requires_grad_(): argument 'requires_grad' must be bool, not "
                f"{type(requires_grad).__name__}"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def backward(
        self, gradient=None, retain_graph=None, create_graph=False, inputs=None, *, grad_input=None
    ) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf with
        ``requires_grad`` that this tensor was computed from (torch's
        arguments: ``retain_graph=True`` keeps the recorded graph for
        another backward; ``inputs`` limits the gradients to those tensors;
        ``create_graph`` is not provided; ``grad_input`` is CrypTen's name
        of ``gradient``)."""
        if grad_input is not None:
            if gradient is not None:
                raise TypeError("backward() got both gradient and grad_input (the same argument)")
            gradient = grad_input
        if create_graph:
            raise NotImplementedError("backward(create_graph=True): higher-order gradients")
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, TensorBase) else list(inputs)
        ag.backward(self, gradient, bool(retain_graph), inputs)

    def detach(self) -> TensorBase:
        """The same shares, cut from the autograd graph; as torch's, it
        shares the value: an in-place change of either shows in the other."""
        out = self._wrap(self._t)
        out._st = self._st
        return out._as_view_of(self, _same, _put)

    def detach_(self) -> TensorBase:
        """As torch's: cut this tensor from the autograd graph in place (a
        leaf that does not require grad, and no ``grad_fn``). Refused on a
        view autograd recorded, as torch refuses views, and on a result
        that recorded operations have read (torch keeps their paths; ours
        would cut them); on any other view there is nothing to cut."""
        if self._view is not None and self._back is not None:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead (a view of a tensor that "
                "autograd records)"
            )
        recorded = self._back is not None and self._back is not ag._FREED
        if recorded and self._rg and getattr(self, "_uses", 0):
            # the recorded operations that read it reach its inputs through
            # it (the graph's nodes are the tensors): cut, they would lose
            # their gradients, silently, as until 2026-12-06 (torch keeps them)
            raise RuntimeError(
                "detach_() of a result that recorded operations have already read: their "
                "gradients would no longer reach its inputs; use y = y.detach() (a new "
                "tensor) instead"
            )
        self._rg, self._back, self._lost, self._kind = False, None, None, None
        self._retain = False
        self._gfn = None
        return self

    @property
    def data(self) -> TensorBase:
        """``detach()`` (torch's ``p.data``); assigning to it replaces the
        value without autograd (a SharedTensor, or a public tensor shared
        as known to all; a SharedTensor of another session is refused, as
        ``add_`` refuses it, before anything changes)."""
        return self.detach()

    @data.setter
    def data(self, value) -> None:
        if isinstance(value, TensorBase):
            value._s()
        else:
            if isinstance(value, torch.Tensor):  # torch takes one that requires grad
                value = value.detach()  # (no gradient is involved)
            value = self._public(_float64(value, "data").numpy())
        _storage.replace(self, value)  # views taken before keep the old storage

    # ------------------------------------------------------------ shape info
    @property
    def shape(self) -> torch.Size:
        """The shape, as a torch.Size (shapes are public)."""
        return torch.Size(self._t.shape)

    def size(self, dim: int | None = None):
        """The shape, or the size of one dimension (like ``torch.Tensor.size``)."""
        if dim is None:
            return self.shape
        return self.shape[_norm_dim(dim, self.dim())]

    def dim(self) -> int:
        """Number of dimensions."""
        return len(self._t.shape)

    ndim = property(dim)
    ndimension = dim

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the plaintext is revealed in by default
        (``torch.get_default_dtype()``): shares hold fixed-point reals, so
        code that asks a tensor for its dtype (to build a mask of the same
        type, say) gets a float one."""
        return torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        """Where the shares are computed: ``cpu``, or ``cuda`` for a session
        on the CUDA device (each party's shares on its own GPU)."""
        return _session.device()

    @property
    def is_cuda(self) -> bool:
        """True in a session on the CUDA device."""
        return self.device.type == "cuda"

    def to(self, *args, **kwargs) -> TensorBase:
        """``x.to(torch.float64)``, ``x.to(x.device)``, ``x.to(other)``,
        ``x.to(device, dtype, copy=True)``: shares hold fixed-point reals
        whatever the float dtype and stay on the session's device, so, as
        torch's, the tensor itself where nothing changes (the same dtype as
        ``x.dtype``, the session's device, ``copy=False``) and otherwise a
        copy (local, recorded for autograd as torch's cast: the gradient
        flows back to x), whose ``dtype`` is still the default one. Integer
        or bool dtypes and other devices raise NotImplementedError."""
        kinds = [a for a in args if type(a).__name__ == "ptype"]  # CrypTen's x.to(mpc.arithmetic)
        if kinds:
            if kinds[0].name != "arithmetic":
                raise NotImplementedError("binary shares are not provided (only arithmetic)")
            return self
        kwargs = dict(kwargs)
        copy = kwargs.pop("copy", False)
        flags = [a for a in args if isinstance(a, bool)]  # non_blocking, copy
        if len(flags) > 1:
            copy = flags[1]
        dtype = kwargs.get("dtype")
        for a in [a for a in args if not isinstance(a, bool)] + [
            kwargs.get("dtype"),
            kwargs.get("device"),
        ]:
            if isinstance(a, (torch.Tensor, TensorBase)):
                a = a.dtype
            if a is None:
                continue
            if isinstance(a, torch.dtype):
                if not a.is_floating_point:
                    raise NotImplementedError(
                        f"to({a}): a SharedTensor holds fixed-point reals; only float "
                        "dtypes are supported"
                    )
                dtype = a
                continue
            if isinstance(a, (str, torch.device, int)) and torch.device(a).type == self.device.type:
                continue
            raise NotImplementedError(
                f"to({a!r}): shares stay on the session's device ({self.device}); "
                "choose it with cryptgpu.init(device=...)"
            )
        if copy or (dtype is not None and dtype != self.dtype):
            return self.clone()
        return self

    def float(self, memory_format=torch.preserve_format) -> TensorBase:
        """``to(torch.float32)``: the tensor itself where that is ``x.dtype``
        (the default dtype), else a copy (see :meth:`to`)."""
        return self.to(torch.float32)

    def double(self, memory_format=torch.preserve_format) -> TensorBase:
        """``to(torch.float64)`` (see :meth:`to`): ``w0 = p.detach().double()``
        is a snapshot, not ``p``."""
        return self.to(torch.float64)

    def half(self, memory_format=torch.preserve_format) -> TensorBase:
        """``to(torch.float16)``: a copy (shares stay fixed point)."""
        return self.to(torch.float16)

    def bfloat16(self, memory_format=torch.preserve_format) -> TensorBase:
        """``to(torch.bfloat16)``: a copy (shares stay fixed point)."""
        return self.to(torch.bfloat16)

    def type_as(self, other) -> TensorBase:
        """``x.type_as(t)``: :meth:`to` ``t``'s dtype (a float one; a copy
        where it differs from ``x.dtype``; a SharedTensor's is the default
        float dtype, so the tensor itself)."""
        if not isinstance(other, (torch.Tensor, TensorBase)):
            raise TypeError(
                f"type_as(): argument 'other' must be Tensor, not {type(other).__name__}"
            )
        return self.to(other.dtype)

    def cpu(self, memory_format=torch.preserve_format) -> TensorBase:
        """``to("cpu")``: the tensor itself in a CPU session."""
        return self.to("cpu")

    def cuda(self, device=None, non_blocking=False) -> TensorBase:
        """``to("cuda")``: the tensor itself in a CUDA session."""
        return self.to("cuda" if device is None else device)

    def __deepcopy__(self, memo) -> TensorBase:
        """A copy of a leaf (``copy.deepcopy(model)`` keeps a snapshot of
        shared weights): the shares are never written in place, so the copy
        holds the same shares; ``requires_grad`` and ``grad`` are copied."""
        if self._back is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the "
                "deepcopy protocol at the moment"
            )
        out = self._wrap(self._t)
        out._rg, out._frozen = self._rg, self._frozen
        if self.grad is not None:
            out.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = out
        return out

    def __copy__(self) -> TensorBase:
        return self.__deepcopy__({})

    def __reduce_ex__(self, protocol):
        # pickle (torch.save of a state_dict, multiprocessing) would reach
        # the engine handle and fail with "cannot pickle 'cryptgpu._native.Tensor'"
        raise TypeError(
            "a SharedTensor cannot be pickled (torch.save, pickle, multiprocessing): its "
            "shares belong to the three parties. Save it with cryptgpu.save(obj, path) "
            "(each party writes its own shares; cryptgpu.load reads them back), or open it "
            "first (model.decrypt(), x.get_plain_text()) to save plaintext with torch.save"
        )

    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self._t.shape:
            n *= s
        return n

    nelement = numel

    def __len__(self) -> int:
        if self.dim() == 0:
            # torch's words first (a TypeError, as torch's). torch.tensor(x)
            # and torch.as_tensor(x) read x as nested sequences, down to
            # this len() of a 0-d element: the rest says what they asked
            # for, whatever x's rank. (Until 2026-12-06 the message began
            # with torch.tensor's case, odd for a plain len(x).)
            raise SecretValueError(
                "len() of a 0-d tensor. (If torch.tensor(x) or torch.as_tensor(x) asked, "
                "reading x element by element: a SharedTensor cannot become a torch tensor "
                "or numpy array, whatever its shape: its value is secret; open it with "
                "x.get_plain_text() (every party learns it).)"
            )
        return self._t.shape[0]

    def __iter__(self):
        """The rows along dim 0, as torch; a 0-d tensor raises TypeError."""
        if self.dim() == 0:
            raise TypeError(zero_d_iteration(sys._getframe(1)))
        return (self[i] for i in range(self._t.shape[0]))

    def __repr__(self) -> str:
        return f"SharedTensor(shape={tuple(self._t.shape)}, encrypted)"

    def __bool__(self):
        raise SecretValueError("the truth value of a SharedTensor is secret; reveal it first")

    # ------------------------------------------------------------ opening
    def get_plain_text(self, dst: int | None = None, dtype: torch.dtype | None = None):
        """Open the tensor and return it as a torch tensor.

        Args:
            dst: reveal to this party only (0, 1 or 2) and return what it sees;
                ``None`` reveals to all three. In the SPMD runtime the other
                parties get ``None``.
            dtype: result dtype (default ``torch.get_default_dtype()``); pass
                ``torch.float64`` to keep every fixed-point bit.
        """
        if not (dtype is None or isinstance(dtype, torch.dtype) or _py_dtype(dtype)):
            # before any reveal; torch's TypeError (torch.zeros(2, dtype="cpu"))
            raise TypeError(
                f"get_plain_text(): argument 'dtype' must be torch.dtype, not "
                f"{type(dtype).__name__}"
            )
        ag.refuse_opening()  # inside a custom autograd.Function's forward or backward
        s = self._s()
        if dst is None:
            raw = s.reveal(self._t)
        else:
            if _index(dst) is None:  # an int, NumPy int or 0-d integer tensor, as src
                raise TypeError(f"dst must be a party index (int), got {type(dst).__name__}")
            dst = _index(dst)
            if not 0 <= dst <= 2:
                raise _native.InvalidArgumentError(f"dst must be 0, 1 or 2, got {dst}")
            raw = s.reveal_to(self._t, dst)
            if raw is None:  # SPMD: this party is not ``dst``
                return None
        want = torch.get_default_dtype() if dtype is None else dtype
        if 0 in tuple(self._t.shape):
            # numpy refuses shapes like (2^62, 0) that torch accepts
            return torch.zeros(tuple(self._t.shape), dtype=want)
        arr = np.frombuffer(raw, dtype="<f8").reshape(self._t.shape)
        # The cast in numpy: torch's would wake its OpenMP pool, whose
        # threads then spin for milliseconds beside the party threads.
        np_want = _NUMPY_FLOATS.get(want)
        if np_want is not None:
            with np.errstate(over="ignore"):  # inf beyond float16's range, as torch: no warning
                return torch.from_numpy(arr.astype(np_want))
        return torch.from_numpy(arr.copy()).to(want)

    def item(self) -> float:
        """Open a one-element tensor to every party and return it as a Python
        float (``loss.item()``): the same disclosure as
        ``get_plain_text().item()``, and one reveal round."""
        n = self.numel()
        if n != 1:
            raise RuntimeError(f"a Tensor with {n} elements cannot be converted to Scalar")
        return float(self.get_plain_text(dtype=torch.float64).reshape(()))

    def tolist(self):
        """Refused: the values are secret (``get_plain_text().tolist()``
        opens them to every party, explicitly)."""
        raise SecretValueError(
            "a SharedTensor's values are secret: call get_plain_text() (or "
            "get_plain_text(dst=...)) to open them, then .tolist()"
        )

    def numpy(self, *, force: bool = False):
        """Refused: the values are secret (``get_plain_text().numpy()``
        opens them to every party, explicitly)."""
        raise SecretValueError(
            "a SharedTensor's values are secret: call get_plain_text() (or "
            "get_plain_text(dst=...)) to open them, then .numpy()"
        )

    # float(loss), as torch allows for one element: the same opening as
    # item(). (bool() stays refused: a secret truth value in an `if` would
    # open it without the code saying so.)
    def __float__(self) -> float:
        if self.numel() != 1:  # torch's type and words for float(t)
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self.item()

    def __int__(self) -> int:
        """``int(x)`` of a one-element tensor opens it as ``float(x)`` does
        and truncates toward 0, as torch's int(t). A secret is no index:
        ``operator.index(x)`` (``range(x)``, ``l[x]``) stays a TypeError."""
        return int(self.__float__())

    def __format__(self, spec: str) -> str:
        """``f"{loss:.4f}"``: a one-element tensor formatted as its opened
        value (the disclosure of item()); without a spec, as repr."""
        if not spec:
            return str(self)
        if self.numel() != 1:
            raise TypeError("unsupported format string passed to SharedTensor.__format__")
        return format(self.item(), spec)

    @property
    def encoder(self) -> FixedPointEncoder:
        """CrypTen's ``encoder``: the session's fixed-point encoding
        (``scale``, ``precision_bits``, ``encode``, ``decode``)."""
        return FixedPointEncoder(self._s().precision_bits)

    @property
    def share(self) -> torch.Tensor:
        """CrypTen's ``share``: this party's share as an int64 tensor (the
        first of the two components it holds; party 0's in the local
        runtime, which hosts all three). It reveals nothing by itself."""
        r = _session.rank()
        a, _ = self.party_shares(0 if r is None else r)
        return torch.from_numpy(a.view("<i8").copy())

    @property
    def _tensor(self) -> TensorBase:
        """CrypTen's ``x._tensor`` (its MPCTensor's arithmetic shared
        tensor, read for ``x._tensor.share``): the tensor itself, which
        has ``share`` and ``encoder``."""
        return self

    def party_shares(self, party: int) -> tuple[np.ndarray, np.ndarray]:
        """What ``party`` holds: its two share components as uint64 arrays."""
        if not isinstance(party, int) or isinstance(party, bool):
            raise TypeError(f"party must be an int (0, 1 or 2), got {type(party).__name__}")
        if not 0 <= party <= 2:
            raise _native.InvalidArgumentError(f"party must be 0, 1 or 2, got {party!r}")
        a, b = self._s().party_share(self._t, party)
        shp = self._t.shape
        return (
            np.frombuffer(a, dtype="<u8").reshape(shp),
            np.frombuffer(b, dtype="<u8").reshape(shp),
        )

    # torch's integer and bool casts: as to(that dtype), NotImplementedError
    # naming fixed point ((x > 0).long() was an AttributeError)
    def long(self) -> TensorBase:
        """``to(torch.int64)``: refused (shares hold fixed-point reals; a
        comparison's 0/1 bits serve as floats)."""
        return self.to(torch.int64)

    def int(self) -> TensorBase:
        """``to(torch.int32)``: refused, as :meth:`long`."""
        return self.to(torch.int32)

    def bool(self) -> TensorBase:
        """``to(torch.bool)``: refused, as :meth:`long`."""
        return self.to(torch.bool)


_STALE_VIEW = (
    "a view taken before its base took a recorded result in place (a += w with w "
    "requiring grad) cannot carry the gradient through the base: take the view again "
    "after the change (or read it under no_grad)"
)


def _same(base):
    """A detached view's read: the base's own value."""
    return base


def _put(base, value) -> None:
    """A detached view's write: the base takes the value (no autograd),
    and passes it on when it is itself a view."""
    base._t = value._t
    base._write_back()


# torch's internal-overlap error (tensor_overlap.refuse_internal_overlap)
_OVERLAP = (
    "unsupported operation: more than one element of the written-to tensor refers to a "
    "single memory location. Please clone() the tensor before performing the operation."
)
