"""Recurrent layers: torch.nn.RNN, LSTM and GRU (and their cells) on private (or public)
sequences with private (or public) weights, as torch computes them, and
the table converting torch's layers into them.

Each layer and direction projects the whole sequence through its input
weights in one product, then runs the cells step by step. A cell's gates
go through one batched sigmoid (an LSTM's cell candidate as tanh(g) =
2 sigmoid(2g) - 1 in the same call), and an LSTM's two products f*c and
i*g are one batched multiplication. Training back-propagates through time
by the recorded operations. Parameters keep torch's names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``), so state
dicts and ``to_pytorch`` map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _session
from .. import autograd as ag
from ..tensor import SharedTensor
from .layers import _as_operand, _public_input
from .module import Module
from .stats import OTHER, _track


def _lin(x, w, b):
    """x W^T + b for shared or public x and weights."""
    if isinstance(x, SharedTensor):
        return x.linear(_as_operand(w), None if b is None else _as_operand(b))
    if isinstance(w, SharedTensor):
        x = _public_input(x, w)
        return x.linear(w, None if b is None else _as_operand(b))
    b = None if b is None else b.to(x.dtype)
    return F.linear(x, w.to(x.dtype), b)


def _add(a, b):
    """a + b, either of them None (zero)."""
    if a is None:
        return b
    return a if b is None else a + b


def _bias(b, like):
    """A public bias in the dtype of a public value it is added to."""
    if b is None or isinstance(b, SharedTensor) or isinstance(like, SharedTensor):
        return b
    return b.to(like.dtype)


def _hidden(h, w_hh, b_hh, xi):
    """h W_hh^T + b_hh; for a zero state (None: no h0 given) the bias alone,
    with a zero gradient (not None) for W_hh as torch's product with its
    zero h0 gives it: with one time step or one cell call, W_hh's gradient
    was None, and weight decay (SGD's, AdamW's) then skipped it (7e-2 off
    torch's in 3 steps, a user probe)."""
    if h is not None:
        return _lin(h, w_hh, b_hh)
    hh = _bias(b_hh, xi)
    if isinstance(w_hh, SharedTensor) and ag.needs_grad(w_hh) and isinstance(xi, SharedTensor):
        with ag.no_grad():
            zero = xi * 0  # exact and local
        hh = _add(hh, ag.record(zero, (w_hh,), lambda g: (w_hh.detach() * 0,)))
    return hh


class _Tracked(Module):
    """A recurrent layer or cell, counted in the per-layer statistics as
    "other" (a module of kind OTHER is not tracked by default: containers
    and shape layers)."""

    kind = OTHER

    def _call_tracked(self, *args, **kwargs):
        with _track(OTHER, args[0] if args else None):
            return self.forward(*args, **kwargs)


class _Recurrent(_Tracked):
    """What RNN, LSTM and GRU share: torch's constructor, parameters and
    input/output layout ([L, N, F], ``batch_first``, unbatched [L, F]),
    stacked layers with dropout between them in training, two directions."""

    _torch = torch.nn.RNNBase

    def __init__(self, *args, _from: torch.nn.RNNBase | None = None, _plain=None, **kwargs):
        super().__init__()
        m = _from if _from is not None else self._torch(*args, **kwargs)
        self.input_size, self.hidden_size = m.input_size, m.hidden_size
        self.num_layers, self.bias = m.num_layers, m.bias
        self.batch_first, self.dropout = m.batch_first, float(m.dropout)
        self.bidirectional = m.bidirectional
        self.proj_size = getattr(m, "proj_size", 0)
        self.nonlinearity = getattr(m, "nonlinearity", "tanh")
        for name, p in m.named_parameters():
            self.register_parameter(name, _plain(p) if _plain else p.detach().clone())

    def extra_repr(self) -> str:
        """torch's description of the layer."""
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"

    def _weights(self, layer: int, direction: int):
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        p = self._params
        return (
            p[f"weight_ih{sfx}"],
            p[f"weight_hh{sfx}"],
            p.get(f"bias_ih{sfx}"),
            p.get(f"bias_hh{sfx}"),
            p.get(f"weight_hr{sfx}"),
        )

    def _any_shared(self) -> SharedTensor | None:
        for v in self._params.values():
            if isinstance(v, SharedTensor):
                return v
        return None

    def _states(self, hx, batched: bool, n: int):
        """The initial states as a list of (per layer and direction) tuples,
        each entry None where it starts at zero."""
        count = self.num_layers * (2 if self.bidirectional else 1)
        many = self._state_count > 1
        if hx is None:
            parts = (None,) * self._state_count
        elif many != isinstance(hx, (tuple, list)) or (many and len(hx) != self._state_count):
            want = "a tuple (h_0, c_0)" if many else "one tensor h_0"
            raise TypeError(f"{type(self).__name__} takes {want} as its initial state")
        else:
            parts = hx if many else (hx,)
        out = []
        for j, s in enumerate(parts):
            if s is None:
                out.append([None] * count)
                continue
            width = self._state_width(j)
            want = (count, n, width) if batched else (count, width)
            if tuple(s.shape) != want:
                which = f"hidden[{j}]" if many else "hidden"
                raise RuntimeError(f"Expected {which} size {want}, got {list(s.shape)}")
            if not batched:
                s = s.unsqueeze(1)
            w = self._any_shared()
            s = _public_input(s, w) if w is not None else s
            out.append([s[i] for i in range(count)])
        return [tuple(col) for col in zip(*out)]

    _state_count = 1

    def _state_width(self, j: int) -> int:
        return self.proj_size or self.hidden_size

    def forward(self, input, hx=None):
        """(output, h_n) -- (output, (h_n, c_n)) for an LSTM -- for a
        [L, N, input_size] sequence ([N, L, ...] with ``batch_first``, or an
        unbatched [L, input_size]) and optional initial states."""
        if isinstance(input, torch.nn.utils.rnn.PackedSequence):
            raise NotImplementedError(
                f"{type(self).__name__} on a PackedSequence (pad the batch and mask instead)"
            )
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.dim()}D instead"
            )
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.shape[-1]}"
            )
        batched = input.dim() == 3
        x = input
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        w = self._any_shared()
        if w is not None:
            x = _public_input(x, w)
        seq, n = x.shape[0], x.shape[1]
        if seq == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        states = self._states(hx, batched, n)
        dirs = 2 if self.bidirectional else 1
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                seq_out, final = self._run(x, layer, d, states[layer * dirs + d], seq, n)
                outs.append(seq_out)
                finals.append(final)
            x = outs[0] if dirs == 1 else torch.cat(outs, -1)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = _session.dropout_scale(x.shape, self.dropout)
                x = x * (mask if isinstance(x, SharedTensor) else mask.to(x.dtype))
        if not batched:
            out = x.squeeze(1)
        else:
            out = x.transpose(0, 1) if self.batch_first else x
        hs = [torch.stack([f[j] for f in finals]) for j in range(self._state_count)]
        if not batched:
            hs = [h.squeeze(1) for h in hs]
        return out, (tuple(hs) if self._state_count > 1 else hs[0])

    def _run(self, x, layer: int, d: int, state: tuple, seq: int, n: int):
        """One layer in one direction: the output sequence and final states."""
        w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, d)
        width = w_ih.shape[0]
        xi = _lin(x.reshape(seq * n, x.shape[-1]), w_ih, b_ih).reshape(seq, n, width)
        steps = range(seq - 1, -1, -1) if d else range(seq)
        outs: list = [None] * seq
        for t in steps:
            h = state[0]
            hh = _hidden(h, w_hh, b_hh, xi[t])
            state = self._cell(xi[t], hh, state)
            if w_hr is not None:
                state = (_lin(state[0], w_hr, None),) + state[1:]
            outs[t] = state[0]
        return torch.stack(outs), state


class RNN(_Recurrent):
    """``torch.nn.RNN(input_size, hidden_size, num_layers=1,
    nonlinearity='tanh', bias=True, batch_first=False, dropout=0.0,
    bidirectional=False)``: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)
    (or relu)."""

    _torch = torch.nn.RNN

    def _cell(self, xi, hh, state):
        a = _add(xi, hh)
        return ((a.relu() if self.nonlinearity == "relu" else a.tanh()),)


class LSTM(_Recurrent):
    """``torch.nn.LSTM(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0)``:
    gates i, f, g, o as torch orders them; c' = f c + i g, h' = o tanh(c')
    (projected by ``weight_hr`` when ``proj_size`` > 0). Returns (output,
    (h_n, c_n))."""

    _torch = torch.nn.LSTM
    _state_count = 2

    def _state_width(self, j: int) -> int:
        return self.hidden_size if j == 1 else (self.proj_size or self.hidden_size)

    def _cell(self, xi, hh, state):
        h_size = self.hidden_size
        # one sigmoid for the four gates: tanh(g) = 2 sigmoid(2 g) - 1, the
        # g block doubled by a public integer factor (exact, local)
        twice_g = torch.ones(4 * h_size, dtype=torch.float64)
        twice_g[2 * h_size : 3 * h_size] = 2.0
        s = (_add(xi, hh) * twice_g).sigmoid()
        i, g, o = s[..., :h_size], 2 * s[..., 2 * h_size : 3 * h_size] - 1, s[..., 3 * h_size :]
        c = state[1]
        if c is None:
            c_new = i * g
        else:  # i g and f c in one multiplication: [i, f] * [g, c]
            both = s[..., : 2 * h_size] * torch.cat([g, c], -1)
            c_new = both[..., :h_size] + both[..., h_size:]
        return o * c_new.tanh(), c_new


class GRU(_Recurrent):
    """``torch.nn.GRU(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``: r, z =
    sigmoid(...), n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)),
    h' = (1 - z) n + z h."""

    _torch = torch.nn.GRU

    def _cell(self, xi, hh, state):
        h_size, h = self.hidden_size, state[0]
        rz = _add(xi[..., : 2 * h_size], None if hh is None else hh[..., : 2 * h_size]).sigmoid()
        r, z = rz[..., :h_size], rz[..., h_size:]
        hn = None if hh is None else hh[..., 2 * h_size :]
        nn_ = xi[..., 2 * h_size :]
        if hn is not None:
            nn_ = nn_ + r * hn
        n = nn_.tanh()
        return ((n - z * n) if h is None else n + z * (h - n),)


class _Cell(_Tracked):
    """What RNNCell, LSTMCell and GRUCell share: torch's constructor and
    parameters (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), one
    step of the matching layer's cell on a [N, input_size] batch (or an
    unbatched [input_size] vector) and its optional state."""

    _torch = torch.nn.RNNCellBase
    _state_count = 1
    proj_size = 0

    def __init__(self, *args, _from: torch.nn.RNNCellBase | None = None, _plain=None, **kwargs):
        super().__init__()
        m = _from if _from is not None else self._torch(*args, **kwargs)
        self.input_size, self.hidden_size, self.bias = m.input_size, m.hidden_size, m.bias
        self.nonlinearity = getattr(m, "nonlinearity", "tanh")
        for name, p in m.named_parameters():
            self.register_parameter(name, _plain(p) if _plain else p.detach().clone())

    def extra_repr(self) -> str:
        """torch's description of the cell."""
        return f"{self.input_size}, {self.hidden_size}"

    def _state(self, hx, batched: bool, n: int, like) -> tuple:
        """The state as a tuple of [N, hidden] values, None where zero."""
        many = self._state_count > 1
        if hx is None:
            return (None,) * self._state_count
        if many != isinstance(hx, (tuple, list)) or (many and len(hx) != self._state_count):
            want = "a tuple (h_0, c_0)" if many else "one tensor hx"
            raise TypeError(f"{type(self).__name__} takes {want} as its state")
        parts = tuple(hx) if many else (hx,)
        out = []
        for j, s in enumerate(parts):
            if s.dim() != (2 if batched else 1):
                want = "2D hidden (batch x hidden_size)" if batched else "1D hidden"
                raise RuntimeError(
                    f"Expected {want} for {'a 2D' if batched else 'an unbatched 1D'} "
                    f"input, but got {s.dim()}D hidden{j}"
                )
            if s.shape[-1] != self.hidden_size:
                raise RuntimeError(
                    f"hidden{j} has inconsistent hidden_size: got {s.shape[-1]}, "
                    f"expected {self.hidden_size}"
                )
            if batched and s.shape[0] != n:
                raise RuntimeError(
                    f"Input batch size {n} doesn't match hidden{j} batch size {s.shape[0]}"
                )
            s = s if batched else s.unsqueeze(0)
            out.append(_public_input(s, like) if like is not None else s)
        return tuple(out)

    def forward(self, input, hx=None):
        """The next state: h' for RNNCell and GRUCell, (h', c') for
        LSTMCell, as torch's cells compute it."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.shape[-1]} "
                f"expected {self.input_size}"
            )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        w = next((v for v in self._params.values() if isinstance(v, SharedTensor)), None)
        if w is not None:
            x = _public_input(x, w)
        state = self._state(hx, batched, x.shape[0], w)
        p = self._params
        xi = _lin(x, p["weight_ih"], p.get("bias_ih"))
        h, b_hh = state[0], p.get("bias_hh")
        hh = _hidden(h, p["weight_hh"], b_hh, xi)
        state = self._cell(xi, hh, state)
        if not batched:
            state = tuple(s.squeeze(0) for s in state)
        return state if self._state_count > 1 else state[0]


class RNNCell(_Cell):
    """``torch.nn.RNNCell(input_size, hidden_size, bias=True,
    nonlinearity='tanh')``: one step of RNN."""

    _torch = torch.nn.RNNCell
    _cell = RNN._cell


class LSTMCell(_Cell):
    """``torch.nn.LSTMCell(input_size, hidden_size, bias=True)``: one step
    of LSTM; takes and returns (h, c)."""

    _torch = torch.nn.LSTMCell
    _state_count = 2
    _cell = LSTM._cell


class GRUCell(_Cell):
    """``torch.nn.GRUCell(input_size, hidden_size, bias=True)``: one step
    of GRU."""

    _torch = torch.nn.GRUCell
    _cell = GRU._cell


def converters(plain) -> dict:
    """torch layer class -> function(layer) -> our layer."""
    t = torch.nn
    return {
        kind: (lambda m, ours=ours: ours(_from=m, _plain=plain))
        for kind, ours in (
            (t.RNN, RNN),
            (t.LSTM, LSTM),
            (t.GRU, GRU),
            (t.RNNCell, RNNCell),
            (t.LSTMCell, LSTMCell),
            (t.GRUCell, GRUCell),
        )
    }


class _Whole(torch.nn.Module):
    """A bare torch recurrent layer wrapped as one call with its own two
    inputs (a Sequential wrapper would drop the initial state)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input, hx=None):
        return self.m(input, hx)


def whole(model: torch.nn.Module) -> torch.nn.Module | None:
    """The wrapper for a bare torch recurrent layer or cell, else None."""
    t = torch.nn
    kinds = (t.RNN, t.LSTM, t.GRU, t.RNNCell, t.LSTMCell, t.GRUCell)
    return _Whole(model) if type(model) in kinds else None
