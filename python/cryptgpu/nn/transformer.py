"""Transformer encoder and decoder layers (issue 19) on the attention of
attention.py: torch.nn.TransformerEncoderLayer, TransformerEncoder,
TransformerDecoderLayer, TransformerDecoder and Transformer, built with
torch's arguments or converted by ``from_pytorch``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from . import activations
from .attention import MultiheadAttention
from .containers import ModuleList
from .layers import GELU, Dropout, Linear, ReLU, Sigmoid, Tanh
from .layers_extra import LayerNorm
from .module import Module
from .stats import OTHER, RELU


def _fresh(p):
    """A parameter of a torch layer built here, kept as cryptgpu's own
    layers keep theirs (``Linear(4, 2)``, ``MultiheadAttention(8, 2)``)."""
    return None if p is None else p.detach().clone()


def _given(cls, *parts):
    """A ``cls`` holding the given parts: the converter's way in (the
    constructors take torch's arguments)."""
    m = cls.__new__(cls)
    Module.__init__(m)
    m._take(*parts)
    return m


class TransformerEncoderLayer(Module):
    """torch.nn.TransformerEncoderLayer: self-attention and a feed-forward
    block (Linear, ReLU or GELU, Linear), each with a residual and a
    LayerNorm, before (``norm_first``) or after; dropout in training.
    Built with torch's arguments (``d_model, nhead, dim_feedforward=2048,
    dropout=0.1, activation=relu, layer_norm_eps=1e-5, batch_first=False,
    norm_first=False, bias=True, device=None, dtype=None``): torch's layer
    is built with them and its weights taken, so the same
    ``torch.manual_seed`` gives torch's weights."""

    kind = OTHER
    _torch = torch.nn.TransformerEncoderLayer

    def __init__(self, *args, **kwargs):
        super().__init__()
        t = self._torch(*args, **kwargs)
        self._take(*_layer_parts(t, _fresh, type(self).__name__))

    def _take(self, attns, linear1, linear2, norms, activation, dropout, norm_first):
        # attention(s), the feed-forward pair, the norms and dropouts under
        # torch's names (self_attn, multihead_attn; norm1..; dropout1..)
        # in torch's order (named_modules() as torch's; until 2026-12-07 the
        # dropouts came last and a function activation was listed too)
        for name, m in zip(("self_attn", "multihead_attn"), attns):
            self.add_module(name, m)
        self.add_module("linear1", linear1)
        self.add_module("dropout", Dropout(dropout))
        self.add_module("linear2", linear2)
        for i, norm in enumerate(norms, 1):
            self.add_module(f"norm{i}", norm)
        for i in range(1, len(norms) + 1):
            self.add_module(f"dropout{i}", Dropout(dropout))
        if isinstance(activation, _Call) or getattr(activation, "_of_function", False):
            object.__setattr__(self, "activation", activation)  # torch's F.relu: no child
        else:
            self.add_module("activation", activation)  # torch's nn.GELU(): its last child
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
    LayerNorm if it has one. ``TransformerEncoder(encoder_layer,
    num_layers, norm=None)`` as torch's: ``num_layers`` copies of the layer
    (cryptgpu's, or torch's converted), the final ``norm`` (cryptgpu's
    LayerNorm, or torch's converted); ``enable_nested_tensor`` and
    ``mask_check`` are accepted and change nothing (no nested tensors)."""

    kind = OTHER

    def __init__(
        self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True
    ):
        super().__init__()
        self._take(_clones(encoder_layer, num_layers, "encoder_layer"), _own_norm(norm))

    def _take(self, layers, norm):
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
    after; dropout in training. Built with torch's arguments, as the
    encoder layer."""

    _torch = torch.nn.TransformerDecoderLayer

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
            hidden = m["dropout"](self.activation(m["linear1"](t)))
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
    ``memory``), then its final LayerNorm if it has one.
    ``TransformerDecoder(decoder_layer, num_layers, norm=None)`` as
    torch's (copies of the layer, as the encoder)."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        Module.__init__(self)
        self._take(_clones(decoder_layer, num_layers, "decoder_layer"), _own_norm(norm))

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
    decoder attends to while it runs on ``tgt``. Built with torch's
    arguments (``d_model=512, nhead=8, num_encoder_layers=6,
    num_decoder_layers=6, dim_feedforward=2048, dropout=0.1, ...,
    custom_encoder=None, custom_decoder=None, ..., batch_first=False``):
    torch's Transformer is built with them (its xavier_uniform_
    initialisation included) and converted. A ``custom_encoder`` or
    ``custom_decoder`` may be torch's (re-initialised by torch, as always,
    then converted) or cryptgpu's: that one is used as given, its weights
    kept (torch's initialisation reaches only torch parameters)."""

    kind = OTHER

    def __init__(self, *args, **kwargs):
        super().__init__()
        t = torch.nn.Transformer(*args, **kwargs)
        self._take(_stack(t.encoder, "custom_encoder"), _stack(t.decoder, "custom_decoder"))

    def _take(self, encoder, decoder):
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
    if act is F.relu or act is F.gelu:  # torch's "relu", "gelu": a function, no child
        out = ReLU() if act is F.relu else GELU()
        out._of_function = True
        return out
    if isinstance(act, torch.nn.ReLU):
        return ReLU()
    if isinstance(act, torch.nn.GELU):
        return GELU(act.approximate)
    if type(act) in (torch.nn.Tanh, torch.nn.Sigmoid):  # (until 2026-12-08 refused)
        return Tanh() if isinstance(act, torch.nn.Tanh) else Sigmoid()
    convert = activations.converters(lambda p: p.detach().double().clone()).get(type(act))
    if convert is not None:  # nn.SiLU(), nn.LeakyReLU(0.1), ...
        return convert(act)
    if callable(act) and not isinstance(act, torch.nn.Module):
        return _Call(act)  # F.silu, torch.tanh: on a SharedTensor by its method
    if isinstance(act, torch.nn.Module) and trace_module is not None:
        # any other module (CLIP's QuickGELU: x * torch.sigmoid(1.702 * x)):
        # its forward traced and converted as from_pytorch converts a model
        # (until 2026-12-08 refused, though torch runs it and it converts
        # elsewhere); an op that does not convert raises NotImplementedError
        return trace_module(act)
    raise NotImplementedError(f"transformer activation {act!r} at {where}")


# set by conversion.py (which imports this module): ``trace_module(m)`` is a
# torch module ``m`` traced and converted into a Graph, as from_pytorch does
trace_module = None


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
    cls = TransformerDecoderLayer if decoder else TransformerEncoderLayer
    return _given(cls, *_layer_parts(m, plain, where))


def _layer_parts(m, plain, where: str) -> tuple:
    """The parts of torch's encoder or decoder layer ``m``, converted."""
    decoder = isinstance(m, torch.nn.TransformerDecoderLayer)
    attns = (m.self_attn, m.multihead_attn) if decoder else (m.self_attn,)
    norms = (m.norm1, m.norm2, m.norm3) if decoder else (m.norm1, m.norm2)
    return (
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
    return _given(TransformerDecoder if decoder else TransformerEncoder, layers, norm)


def convert_transformer(m: torch.nn.Transformer, plain, where: str) -> Transformer:
    """Our Transformer from torch's (its encoder and decoder)."""
    return _given(
        Transformer, convert_stack(m.encoder, plain, where), convert_stack(m.decoder, plain, where)
    )


def _clones(layer, n, name: str) -> list:
    """torch's _get_clones for a stack built with torch's arguments: ``n``
    deep copies of ``layer``, cryptgpu's, or torch's converted first."""
    kinds = (torch.nn.TransformerEncoderLayer, torch.nn.TransformerDecoderLayer)
    if isinstance(layer, kinds):
        layer = convert_layer(layer, _fresh, name)
    elif isinstance(layer, torch.nn.Module):
        raise TypeError(
            f"{name}: a torch.nn.{type(layer).__name__} cannot be a cryptgpu stack's layer; "
            "give cryptgpu.nn's TransformerEncoderLayer/TransformerDecoderLayer (or your own "
            "cryptgpu.nn.Module), or convert the whole torch model with from_pytorch"
        )
    return [copy.deepcopy(layer) for _ in range(n)]


def _own_norm(norm):
    """A stack's final norm: cryptgpu's as given, torch's LayerNorm converted."""
    if isinstance(norm, torch.nn.LayerNorm):
        return _layer_norm(norm, _fresh)
    if isinstance(norm, torch.nn.Module):
        raise TypeError(
            f"norm: a torch.nn.{type(norm).__name__} cannot be a cryptgpu stack's final norm; "
            "give cryptgpu.nn.LayerNorm (or your own cryptgpu.nn.Module)"
        )
    return norm


def _stack(m, name: str):
    """nn.Transformer's encoder or decoder: a custom one of cryptgpu's as
    given, torch's (built or custom) converted."""
    if isinstance(m, (torch.nn.TransformerEncoder, torch.nn.TransformerDecoder)):
        return convert_stack(m, _fresh, name)
    if isinstance(m, torch.nn.Module):
        raise TypeError(
            f"{name}: a torch.nn.{type(m).__name__} cannot be converted here; give "
            "cryptgpu.nn's TransformerEncoder/TransformerDecoder (or your own "
            "cryptgpu.nn.Module), or convert the whole torch model with from_pytorch"
        )
    return m


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
