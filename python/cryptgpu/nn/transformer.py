"""Attention and transformer encoder layers (issue 19): scaled dot-product
attention on shared Q, K, V (batched products of two shared tensors, the
range-reduced softmax of cryptgpu.functions over the last dim, masks as
public additive terms), torch.nn.MultiheadAttention, TransformerEncoderLayer
and TransformerEncoder, converted by ``from_pytorch``.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .. import _session
from ..tensor import SharedTensor, cat
from . import activations
from .containers import ModuleList
from .layers import (
    GELU,
    Dropout,
    Linear,
    ReLU,
    _as_operand,
    _like,
    _public_input,
    gradient_masked,
)
from .layers_extra import LayerNorm
from .masks import _add_mask, _additive, _causal
from .module import Module
from .stats import LINEAR, OTHER, RELU, SOFTMAX, _track


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
        self.add_module("dropout", Dropout(t.dropout))

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
        _check_masks(attn_mask, key_padding_mask, n, h, q_len, k_len)
        if is_causal and attn_mask is None:  # torch's words (its training path)
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the "
                "Transformer module method `generate_square_subsequent_mask` to create "
                "this mask."
            )
        mask = _additive(attn_mask, False)
        if mask is not None and mask.dim() == 3:  # [N * H, L, S]
            mask = mask.reshape(n, h, q_len, k_len)
        if key_padding_mask is not None:
            kp = _additive(key_padding_mask, False).reshape(n, 1, 1, k_len)
            mask = _add_mask(mask, kp)
        drop = self.dropout if self.training and self.dropout.p > 0 else None
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


def _check_masks(attn_mask, key_padding_mask, n, h, q_len, k_len):
    """torch's shape checks of the masks (a mask of the wrong shape would
    otherwise be reshaped into place and silently misread), with its
    exception types and words; integer masks are refused as torch refuses
    them (they were added, +1 at every 1 of a tril(ones) causal mask)."""
    for name, m in (("key_padding_mask", key_padding_mask), ("attn_mask", attn_mask)):
        if isinstance(m, SharedTensor):
            raise NotImplementedError(
                f"attention masks must be public (plaintext tensors): {name} is a SharedTensor"
            )
        if m is not None and not (torch.is_tensor(m) and m.dtype == torch.bool):
            if not torch.as_tensor(m).is_floating_point():
                raise AssertionError(f"only bool and floating types of {name} are supported")
    if key_padding_mask is not None:
        shape = tuple(torch.as_tensor(key_padding_mask).shape)
        if shape != (n, k_len):
            raise AssertionError(
                f"expecting key_padding_mask shape of {(n, k_len)}, but got {shape}"
            )
    if attn_mask is not None:
        shape = tuple(torch.as_tensor(attn_mask).shape)
        want = {2: (q_len, k_len), 3: (n * h, q_len, k_len)}.get(len(shape))
        if want is None:
            raise RuntimeError(f"attn_mask's dimension {len(shape)} is not supported")
        if shape != want:
            raise RuntimeError(
                f"The shape of the {len(shape)}D attn_mask is {shape}, but should be {want}."
            )


class TransformerEncoderLayer(Module):
    """torch.nn.TransformerEncoderLayer: self-attention and a feed-forward
    block (Linear, ReLU or GELU, Linear), each with a residual and a
    LayerNorm, before (``norm_first``) or after; dropout in training."""

    kind = OTHER

    def __init__(self, attns, linear1, linear2, norms, activation, dropout, norm_first):
        super().__init__()
        # attention(s), the feed-forward pair, the norms and dropouts under
        # torch's names (self_attn, multihead_attn; norm1..; dropout1..)
        for name, m in zip(("self_attn", "multihead_attn"), attns):
            self.add_module(name, m)
        self.add_module("linear1", linear1)
        self.add_module("linear2", linear2)
        for i, norm in enumerate(norms, 1):
            self.add_module(f"norm{i}", norm)
        self.add_module("activation", activation)
        for name in ["dropout"] + [f"dropout{i}" for i in range(1, len(norms) + 1)]:
            self.add_module(name, Dropout(dropout))
        self.norm_first = bool(norm_first)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        """One encoder layer on ``src``."""
        x = src

        def sa(t):
            out = self.self_attn(
                t,
                t,
                t,
                attn_mask=src_mask,
                key_padding_mask=src_key_padding_mask,
                need_weights=False,
                is_causal=is_causal,
            )[0]
            return self.dropout1(out)

        def ff(t):
            return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(t)))))

        if self.norm_first:
            x = x + sa(self.norm1(x))
            return x + ff(self.norm2(x))
        x = self.norm1(x + sa(x))
        return self.norm2(x + ff(x))


class TransformerEncoder(Module):
    """torch.nn.TransformerEncoder: its layers in order, then its final
    LayerNorm if it has one."""

    kind = OTHER

    def __init__(self, layers, norm=None):
        super().__init__()
        # a ModuleList under torch's name: parameters read "layers.0. ...",
        # and enc.layers[0] is the first layer, as torch's
        self.add_module("layers", ModuleList(layers))
        if norm is not None:
            self.add_module("norm", norm)

    def _final(self, x):
        norm = self._modules.get("norm")
        return x if norm is None else norm(x)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        """Every layer, then the final norm."""
        x = src
        for layer in self._modules["layers"]:
            x = layer(
                x,
                src_mask=mask,
                src_key_padding_mask=src_key_padding_mask,
                is_causal=bool(is_causal),
            )
        return self._final(x)


class TransformerDecoderLayer(TransformerEncoderLayer):
    """torch.nn.TransformerDecoderLayer: self-attention on ``tgt`` (masks,
    ``tgt_is_causal``), attention to ``memory`` and a feed-forward block,
    each with a residual and a LayerNorm, before (``norm_first``) or
    after; dropout in training."""

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=False,
        memory_is_causal=False,
    ):
        """One decoder layer on ``tgt``, attending to ``memory``."""
        m = self._modules

        def sa(t):
            out = m["self_attn"](
                t,
                t,
                t,
                attn_mask=tgt_mask,
                key_padding_mask=tgt_key_padding_mask,
                need_weights=False,
                is_causal=bool(tgt_is_causal),
            )[0]
            return m["dropout1"](out)

        def mha(t):
            out = m["multihead_attn"](
                t,
                memory,
                memory,
                attn_mask=memory_mask,
                key_padding_mask=memory_key_padding_mask,
                need_weights=False,
                is_causal=bool(memory_is_causal),
            )[0]
            return m["dropout2"](out)

        def ff(t):
            hidden = m["dropout"](m["activation"](m["linear1"](t)))
            return m["dropout3"](m["linear2"](hidden))

        x = tgt
        if self.norm_first:
            x = x + sa(m["norm1"](x))
            x = x + mha(m["norm2"](x))
            return x + ff(m["norm3"](x))
        x = m["norm1"](x + sa(x))
        x = m["norm2"](x + mha(x))
        return m["norm3"](x + ff(x))


class TransformerDecoder(TransformerEncoder):
    """torch.nn.TransformerDecoder: its layers in order (each attending to
    ``memory``), then its final LayerNorm if it has one."""

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        """Every layer, then the final norm."""
        x = tgt
        for layer in self._modules["layers"]:
            x = layer(
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=bool(tgt_is_causal),
                memory_is_causal=memory_is_causal,
            )
        return self._final(x)


class Transformer(Module):
    """torch.nn.Transformer: the encoder on ``src`` gives the memory the
    decoder attends to while it runs on ``tgt``."""

    kind = OTHER

    def __init__(self, encoder: TransformerEncoder, decoder: TransformerDecoder):
        super().__init__()
        self.add_module("encoder", encoder)
        self.add_module("decoder", decoder)

    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        """decoder(tgt, encoder(src)), masks passed on as torch does."""
        memory = self._modules["encoder"](
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self._modules["decoder"](
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )


def _activation(act, where: str) -> Module:
    if act is F.relu or isinstance(act, torch.nn.ReLU):
        return ReLU()
    if act is F.gelu:
        return GELU()
    if isinstance(act, torch.nn.GELU):
        return GELU(act.approximate)
    convert = activations.converters(lambda p: p.detach().double().clone()).get(type(act))
    if convert is not None:  # nn.SiLU(), nn.LeakyReLU(0.1), ...
        return convert(act)
    if callable(act) and not isinstance(act, torch.nn.Module):
        return _Call(act)  # F.silu, torch.tanh: on a SharedTensor by its method
    raise NotImplementedError(f"transformer activation {act!r} at {where}")


class _Call(Module):
    """A transformer layer's activation given as a function (``F.silu``):
    called on the SharedTensor, which takes torch's functions."""

    kind = RELU

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        """``fn(x)``."""
        return self.fn(x)


def convert_attention(m: torch.nn.MultiheadAttention, plain, where: str) -> MultiheadAttention:
    """Our MultiheadAttention from torch's, weights in float64 (``plain``
    detaches and converts one parameter)."""
    if m.bias_k is not None or m.add_zero_attn:
        raise NotImplementedError(f"MultiheadAttention with add_bias_kv/add_zero_attn at {where}")
    return MultiheadAttention(_torch=m, _plain=plain)


def _layer_norm(t, plain) -> LayerNorm:
    return LayerNorm._given(t.normalized_shape, plain(t.weight), plain(t.bias), t.eps)


def convert_layer(m, plain, where: str):
    """Our TransformerEncoderLayer or TransformerDecoderLayer from torch's."""
    decoder = isinstance(m, torch.nn.TransformerDecoderLayer)
    attns = (m.self_attn, m.multihead_attn) if decoder else (m.self_attn,)
    norms = (m.norm1, m.norm2, m.norm3) if decoder else (m.norm1, m.norm2)
    return (TransformerDecoderLayer if decoder else TransformerEncoderLayer)(
        [convert_attention(a, plain, where) for a in attns],
        Linear(plain(m.linear1.weight), plain(m.linear1.bias)),
        Linear(plain(m.linear2.weight), plain(m.linear2.bias)),
        [_layer_norm(n, plain) for n in norms],
        _activation(m.activation, where),
        m.dropout.p,
        m.norm_first,
    )


def convert_stack(m, plain, where: str):
    """Our TransformerEncoder or TransformerDecoder from torch's."""
    decoder = isinstance(m, torch.nn.TransformerDecoder)
    layers = [convert_layer(layer, plain, where) for layer in m.layers]
    norm = None if m.norm is None else _layer_norm(m.norm, plain)
    return (TransformerDecoder if decoder else TransformerEncoder)(layers, norm)


def convert_transformer(m: torch.nn.Transformer, plain, where: str) -> Transformer:
    """Our Transformer from torch's (its encoder and decoder)."""
    return Transformer(
        convert_stack(m.encoder, plain, where), convert_stack(m.decoder, plain, where)
    )


# torch transformer modules -> our converters (attention, layers, stacks)
CONVERTERS = {
    torch.nn.MultiheadAttention: convert_attention,
    torch.nn.TransformerEncoderLayer: convert_layer,
    torch.nn.TransformerDecoderLayer: convert_layer,
    torch.nn.TransformerEncoder: convert_stack,
    torch.nn.TransformerDecoder: convert_stack,
    torch.nn.Transformer: convert_transformer,
}


# Signatures for converting a bare transformer module (fx would trace its
# internals, or a Sequential wrapper would drop its masks): the module is
# wrapped as one call with the same inputs.
def whole(model: torch.nn.Module) -> torch.nn.Module | None:
    """A wrapper whose forward has the model's own signature and calls it
    once (so that fx records one call_module), or None for other models."""
    kinds = {
        torch.nn.MultiheadAttention: _WholeAttention,
        torch.nn.TransformerEncoderLayer: _WholeEncoderLayer,
        torch.nn.TransformerEncoder: _WholeEncoder,
        torch.nn.TransformerDecoderLayer: _WholeDecoder,
        torch.nn.TransformerDecoder: _WholeDecoder,
        torch.nn.Transformer: _WholeTransformer,
    }
    for kind, wrap in kinds.items():
        if type(model) is kind:
            return wrap(model)
    return None


class _WholeEncoderLayer(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        return self.m(src, src_mask, src_key_padding_mask, is_causal)


class _WholeAttention(_WholeEncoderLayer):
    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        return self.m(
            query,
            key,
            value,
            key_padding_mask,
            need_weights,
            attn_mask,
            average_attn_weights,
            is_causal,
        )


class _WholeEncoder(_WholeEncoderLayer):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        return self.m(src, mask, src_key_padding_mask, is_causal)


class _WholeDecoder(_WholeEncoderLayer):
    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=False,
        memory_is_causal=False,
    ):
        return self.m(
            tgt,
            memory,
            tgt_mask,
            memory_mask,
            tgt_key_padding_mask,
            memory_key_padding_mask,
            tgt_is_causal,
            memory_is_causal,
        )


class _WholeTransformer(_WholeEncoderLayer):
    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        return self.m(
            src,
            tgt,
            src_mask,
            tgt_mask,
            memory_mask,
            src_key_padding_mask,
            tgt_key_padding_mask,
            memory_key_padding_mask,
            src_is_causal,
            tgt_is_causal,
            memory_is_causal,
        )
