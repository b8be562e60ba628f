"""Attention (issue 19): scaled dot-product attention on shared Q, K, V
(batched products of two shared tensors, the range-reduced softmax of
cryptgpu.functions over the last dim, masks as public additive terms) and
torch.nn.MultiheadAttention, with torch's checks of its inputs' shapes.
The encoder and decoder layers built on it: transformer.py.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .. import _session
from ..tensor import SharedTensor, cat
from .layers import (
    Dropout,
    Linear,
    _as_operand,
    _like,
    _public_input,
    gradient_masked,
)
from .masks import _add_mask, _additive, _causal
from .module import Module
from .stats import LINEAR, OTHER, SOFTMAX, _track


def _scope(kind: str, x):
    """A per-layer statistics scope for part of an attention, unless one is
    open already (a converted graph's node): nested scopes would count the
    same rounds twice."""
    if getattr(_session._ctx, "layer_kinds", None):
        return contextlib.nullcontext()
    return _track(kind, x)


def _project(x, w, b):
    """x W^T + b (an attention projection) on a SharedTensor or a plaintext
    tensor, as Linear computes it."""
    x = _public_input(x, w)
    if isinstance(x, SharedTensor):
        return x.linear(_as_operand(w), None if b is None else _as_operand(b))
    return F.linear(x, *_like(x, w, b))


def _attention(q, k, v, mask, dropout: Dropout | None, scale: float):
    """(softmax(q k^T * scale + mask) v, the attention weights); the two
    products count as linear layers and the softmax as one in the
    per-layer statistics."""
    with _scope(LINEAR, q):
        if (
            isinstance(q, SharedTensor)
            and isinstance(k, SharedTensor)
            and q.shape[:-2] == k.shape[:-2]
        ):
            scores = q._matmul_t(k) * scale  # k read in place, no transpose
        else:
            scores = q.matmul(k.transpose(-2, -1)) * scale
    if mask is not None:
        mask = mask.resolved()
        scores = mask.apply(scores)
    with _scope(SOFTMAX, scores):
        w = scores.softmax(-1)
    rows = None if mask is None else mask.rows_kept()
    if rows is not None:
        w = w * rows  # an integer factor: exact and local
    if dropout is not None:
        w = dropout(w)
    with _scope(LINEAR, w):
        return w.matmul(v), w


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw
):
    """``torch.nn.functional.scaled_dot_product_attention`` on shared (or
    public) Q, K, V: a bool ``attn_mask`` marks the positions that take
    part (True), a float one is added; ``is_causal`` masks the future.
    Dropout is applied only as torch does it, i.e. whenever ``dropout_p`` >
    0 (with a mask common to the parties)."""
    if kw.get("enable_gqa") and query.dim() >= 3:  # torch's grouped-query attention
        hq, hk, hv = (t.shape[-3] for t in (query, key, value))
        if hq % hk or hq % hv:
            raise RuntimeError(
                f"scaled_dot_product_attention with enable_gqa: the query's {hq} heads "
                f"must be a multiple of the key's {hk} and the value's {hv}"
            )
        key = key.repeat_interleave(hq // hk, -3) if hq != hk else key
        value = value.repeat_interleave(hq // hv, -3) if hq != hv else value
    m = attn_mask
    if m is not None and not isinstance(m, SharedTensor) and not torch.is_tensor(m):
        m = torch.as_tensor(m)
    if torch.is_tensor(m) and m.dtype != torch.bool and not m.is_floating_point():
        raise RuntimeError(
            "Expected attn_mask dtype to be bool or float or to match query dtype, but got "
            f"attn_mask.dtype: {m.dtype}"
        )
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    d = query.shape[-1]
    s = 1.0 / math.sqrt(d) if scale is None else float(scale)
    mask = _additive(attn_mask, True)
    if is_causal:
        mask = _add_mask(mask, _causal(query.shape[-2], key.shape[-2]))
    drop = Dropout(dropout_p).train() if dropout_p > 0 else None
    return _attention(query, key, value, mask, drop, s)[0]


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention (same constructor, inputs, outputs and
    parameters: ``in_proj_weight`` [3E, E] and ``in_proj_bias`` packed, or
    ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` for other
    key/value sizes, and ``out_proj``), so a torch state_dict loads and the
    parameters pair with torch's in order. Self-attention (the same tensor
    as query, key and value) projects once with the packed weight (one
    shared product instead of three); the heads are a reshape, scaled
    dot-product attention per head, the output projection. ``batch_first``
    either way, unbatched inputs, bool or float ``attn_mask`` and
    ``key_padding_mask`` (True: masked out, as torch), ``is_causal``,
    attention dropout in training. Not supported: ``add_bias_kv``,
    ``add_zero_attn``."""

    kind = OTHER

    def __init__(self, *args, _torch=None, _plain=None, **kwargs):
        super().__init__()
        t = _torch if _torch is not None else torch.nn.MultiheadAttention(*args, **kwargs)
        plain = _plain or (lambda p: p.detach().clone())
        if t.bias_k is not None or t.add_zero_attn:
            raise NotImplementedError("MultiheadAttention with add_bias_kv/add_zero_attn")
        self.num_heads, self.embed_dim = int(t.num_heads), int(t.embed_dim)
        self.batch_first = bool(t.batch_first)
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            w = getattr(t, name)
            if w is not None:
                self.register_parameter(name, plain(w))
        b = t.in_proj_bias
        self.register_parameter("in_proj_bias", None if b is None else plain(b))
        out = t.out_proj
        self.add_module(
            "out_proj", Linear(plain(out.weight), None if out.bias is None else plain(out.bias))
        )
        # a float, as torch's (until 2026-12-07 a Dropout child, an extra
        # "dropout" in named_modules() that torch's does not list)
        self.dropout = float(t.dropout)

    def _from_torch_names(self, prefix: str, state: dict) -> None:
        """A state dict of the earlier layout (three Linear projections,
        ``q_proj.weight`` ...) under the packed names."""
        for kind in ("weight", "bias"):
            keys = [f"{prefix}{n}.{kind}" for n in ("q_proj", "k_proj", "v_proj")]
            if all(k in state for k in keys):
                parts = [state.pop(k) for k in keys]
                if kind == "weight" and "in_proj_weight" not in self._params:
                    for n, part in zip(("q", "k", "v"), parts):
                        state[f"{prefix}{n}_proj_weight"] = part
                    continue
                join = cat if isinstance(parts[0], SharedTensor) else torch.cat
                state[f"{prefix}in_proj_{kind}"] = join(parts, 0)

    def _projections(self, query, key, value, same: bool):
        """(q, k, v) projected: one product with the packed weight for
        self-attention, else one per input with its third of it."""
        e, p = self.embed_dim, self._params
        w, b = p.get("in_proj_weight"), _key_bias_cancelled(p.get("in_proj_bias"), e)
        with _scope(LINEAR, query):
            if w is not None and same:
                qkv = _project(query, w, b)
                return qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
            if w is not None:
                ws = (w[:e], w[e : 2 * e], w[2 * e :])
            else:
                ws = (p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"])
            bs = (None,) * 3 if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
            return tuple(_project(t, wi, bi) for t, wi, bi in zip((query, key, value), ws, bs))

    def forward(
        self,
        query,
        key=None,
        value=None,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        """(attention output, attention weights or None), as torch."""
        same = (key is None or key is query) and (value is None or value is query)
        key = query if key is None else key
        value = key if value is None else value
        _check_inputs(self, query, key, value, key_padding_mask, attn_mask, is_causal)
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = torch.as_tensor(key_padding_mask).unsqueeze(0)
        if not self.batch_first or unbatched:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, q_len, e = query.shape
        k_len, h = key.shape[1], self.num_heads
        d = e // h

        def heads(t, length):
            return t.reshape(n, length, h, d).permute(0, 2, 1, 3)

        q, k, v = self._projections(query, key, value, same)
        q, k, v = heads(q, q_len), heads(k, k_len), heads(v, k_len)
        mask = _additive(attn_mask, False)
        if mask is not None and mask.dim() == 3:  # [N * H, L, S]
            mask = mask.reshape(n, h, q_len, k_len)
        if key_padding_mask is not None:
            kp = _additive(key_padding_mask, False).reshape(n, 1, 1, k_len)
            mask = _add_mask(mask, kp)
        p = getattr(self.dropout, "p", self.dropout)  # (a model pickled before: a Dropout)
        drop = Dropout(p) if self.training and p > 0 else None
        out, w = _attention(q, k, v, mask, drop, 1.0 / math.sqrt(d))
        out = self.out_proj(out.permute(0, 2, 1, 3).reshape(n, q_len, e))
        if not self.batch_first or unbatched:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            w = w.mean(1)
        return out, (w.squeeze(0) if unbatched else w)


def _key_bias_cancelled(b, e: int):
    """The packed in-projection bias with an exactly zero gradient for its
    key third: the key bias adds q_i . b_k to every score of row i, which
    the softmax over that row removes, so torch's gradient is ~1e-17 and
    ours would be fixed-point noise that Adam, RMSprop and Adagrad scale to
    learning-rate steps (the bias would random-walk away from torch's,
    though the outputs do not depend on it). Values unchanged: the bias's
    own shares; the query and value thirds keep their gradients."""
    if b is None:
        return b
    keep = torch.ones(b.shape, dtype=torch.float64)
    keep[e : 2 * e] = 0.0
    return gradient_masked(b, keep)


def _check_inputs(m, query, key, value, key_padding_mask, attn_mask, is_causal):
    """torch's checks of MultiheadAttention's inputs, in its order, with its
    exception types and words (torch.nn.functional's _mha_shape_check and
    multi_head_attention_forward): shapes are read in torch's [L, N, E]
    layout, so the messages name the shapes torch names. Without them an
    input of the wrong shape was reshaped into place: a value [3, 4, E]
    for a key [2, 6, E] mixed rows across batch elements, silently."""
    _check_mask_types(attn_mask, key_padding_mask)
    batched = _check_ranks(query, key, value, key_padding_mask, attn_mask, m.num_heads)
    if is_causal and attn_mask is None:  # torch's words (its training path)
        raise RuntimeError(
            "Need attn_mask if specifying the is_causal hint. You may use the "
            "Transformer module method `generate_square_subsequent_mask` to create "
            "this mask."
        )
    q, k, v = (_torch_layout(t.shape, batched, m.batch_first) for t in (query, key, value))
    (q_len, n, e), (k_len, nk, ek), h = q, k, m.num_heads
    if e != m.embed_dim:
        raise AssertionError(f"was expecting embedding dimension of {m.embed_dim}, but got {e}")
    p = m._params
    if "q_proj_weight" in p:  # kdim/vdim: other feature sizes for key and value
        if k[:2] != v[:2]:
            raise AssertionError(
                f"key's sequence and batch dims {k[:2]} do not match value's {v[:2]}"
            )
        for name, t in (("key", k), ("value", v)):
            w = torch.Size(p[f"{name[0]}_proj_weight"].shape)
            if w != (e, t[2]):
                raise AssertionError(f"expecting {name} weights shape of {(e, t[2])}, but got {w}")
    else:
        if k != v:
            raise AssertionError(f"key shape {k} does not match value shape {v}")
        if ek != e:  # torch: its in-projection's matmul refuses it
            raise RuntimeError(
                f"mat1 and mat2 shapes cannot be multiplied: key and value have {ek} "
                f"features, the packed in-projection takes embed_dim={e} (kdim and vdim "
                "set other sizes)"
            )
    if attn_mask is not None:
        shape = torch.Size(torch.as_tensor(attn_mask).shape)
        want = (q_len, k_len) if len(shape) == 2 else (n * h, q_len, k_len)
        if shape != want:
            raise RuntimeError(
                f"The shape of the {len(shape)}D attn_mask is {shape}, but should be {want}."
            )
    if nk != n:  # torch: the view of the projected key into heads fails
        raise RuntimeError(
            f"key and value have batch size {nk} but query has {n}: shape "
            f"'[{k_len}, {n * h}, {e // h}]' is invalid for input of size {k_len * nk * e}"
        )
    if key_padding_mask is not None:
        shape = tuple(torch.as_tensor(key_padding_mask).shape)
        shape = shape if batched else (1, *shape)
        if shape != (n, k_len):
            raise AssertionError(
                f"expecting key_padding_mask shape of {(n, k_len)}, but got {shape}"
            )


def _torch_layout(shape, batched: bool, batch_first: bool) -> torch.Size:
    """An input's shape as torch's attention sees it: [L, N, E]."""
    if not batched:
        return torch.Size((shape[0], 1, shape[1]))
    return torch.Size((shape[1], shape[0], shape[2])) if batch_first else torch.Size(shape)


def _check_mask_types(attn_mask, key_padding_mask):
    """Masks are public, bool or float: integer masks are refused as torch
    refuses them (they were added, +1 at every 1 of a tril(ones) causal
    mask)."""
    for name, m in (("key_padding_mask", key_padding_mask), ("attn_mask", attn_mask)):
        if isinstance(m, SharedTensor):
            raise NotImplementedError(
                f"attention masks must be public (plaintext tensors): {name} is a SharedTensor"
            )
        if m is not None and not (torch.is_tensor(m) and m.dtype == torch.bool):
            if not torch.as_tensor(m).is_floating_point():
                raise AssertionError(f"only bool and floating types of {name} are supported")


def _check_ranks(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    """torch's _mha_shape_check: whether the inputs are batched (3-D) or
    not (2-D), with key, value and the masks of the matching ranks."""
    kd, vd = key.dim(), value.dim()
    kpm = None if key_padding_mask is None else torch.as_tensor(key_padding_mask)
    am = None if attn_mask is None else torch.as_tensor(attn_mask)
    if query.dim() not in (2, 3):
        raise AssertionError(
            "query should be unbatched 2D or batched 3D tensor but received "
            f"{query.dim()}-D query tensor"
        )
    batched = query.dim() == 3
    kind, want = ("batched (3-D)", 3) if batched else ("unbatched (2-D)", 2)
    if kd != want or vd != want:
        raise AssertionError(
            f"For {kind} `query`, expected `key` and `value` to be {want}-D"
            f" but found {kd}-D and {vd}-D tensors respectively"
        )
    if kpm is not None and kpm.dim() != want - 1:
        raise AssertionError(
            f"For {kind} `query`, expected `key_padding_mask` to be `None` or {want - 1}-D"
            f" but found {kpm.dim()}-D tensor instead"
        )
    if am is not None and am.dim() not in (2, 3):
        raise AssertionError(
            f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D"
            f" but found {am.dim()}-D tensor instead"
        )
    if am is not None and am.dim() == 3 and not batched:
        expected = (num_heads, query.shape[0], key.shape[0])
        if am.shape != expected:
            raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got {am.shape}")
    return batched
