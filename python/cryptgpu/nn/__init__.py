"""cryptgpu.nn: layers for private inference, and ``from_pytorch`` to convert a
trained PyTorch model by torch.fx tracing.

A module holds plaintext torch parameters until ``encrypt(src)`` shares them
from party ``src`` (the model owner); the input is shared by whoever owns the
data. An unencrypted module also runs on a SharedTensor, with its weights as
public operands (the model is then not hidden).

The package is split by role, each module importing only those before it:
stats (per-layer statistics, overflow check), module (Module, Sequential),
layers, losses, conversion (``from_pytorch``, :class:`Graph`).
"""

from .. import functions
from ..tensor import SharedTensor, cat, cryptensor
from . import utils
from .activations import (
    CELU,
    ELU,
    GLU,
    SELU,
    CosineSimilarity,
    Hardshrink,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    Mish,
    PairwiseDistance,
    PReLU,
    ReLU6,
    SiLU,
    Softmin,
    Softplus,
    Softshrink,
    Softsign,
    Tanhshrink,
    Threshold,
)
from .attention import MultiheadAttention, scaled_dot_product_attention
from .batchnorm_nd import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .containers import ModuleDict, ModuleList, Sequential
from .conversion import Graph, from_pytorch
from .embedding_bag import EmbeddingBag
from .kl_div import KLDivLoss
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
from .layers1d import (
    AdaptiveAvgPool1d,
    AdaptiveMaxPool1d,
    AvgPool1d,
    Conv1d,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    MaxPool1d,
)
from .layers_extra import (
    AdaptiveMaxPool2d,
    ConvTranspose1d,
    ConvTranspose2d,
    Embedding,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
    LocalResponseNorm,
    RMSNorm,
)
from .layers_more import Bilinear, RReLU
from .layers_moves import LAYERS as _MOVE_LAYERS
from .layers_moves import AlphaDropout, Unflatten
from .losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .losses_more import (
    CosineEmbeddingLoss,
    GaussianNLLLoss,
    HingeEmbeddingLoss,
    MarginRankingLoss,
    PoissonNLLLoss,
    TripletMarginLoss,
    TripletMarginWithDistanceLoss,
)
from .module import Module
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .resize import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d
from .stats import (
    BATCHNORM,
    LINEAR,
    OTHER,
    POOLING,
    RELU,
    SOFTMAX,
    FixedPointOverflowError,
    check_overflow,
)
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "BATCHNORM",
    "LINEAR",
    "OTHER",
    "POOLING",
    "RELU",
    "SOFTMAX",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Bilinear",
    "Conv2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "L1Loss",
    "HuberLoss",
    "NLLLoss",
    "SmoothL1Loss",
    "Dropout",
    "Embedding",
    "GLU",
    "CosineSimilarity",
    "EmbeddingBag",
    "FixedPointOverflowError",
    "Flatten",
    "GELU",
    "Graph",
    "Identity",
    "LayerNorm",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "KLDivLoss",
    "CosineEmbeddingLoss",
    "GaussianNLLLoss",
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "PoissonNLLLoss",
    "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
    "MaxPool2d",
    "Module",
    "MultiheadAttention",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "scaled_dot_product_attention",
    "ReLU",
    "Sigmoid",
    "ModuleList",
    "ModuleDict",
    "Sequential",
    "SharedTensor",
    "Softmax",
    "Tanh",
    "Tanhshrink",
    "Threshold",
    "CELU",
    "ELU",
    "SELU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "LogSigmoid",
    "Mish",
    "PairwiseDistance",
    "PReLU",
    "RReLU",
    "ReLU6",
    "SiLU",
    "Softmin",
    "Softplus",
    "Softshrink",
    "Softsign",
    "utils",
    "AdaptiveMaxPool2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "GroupNorm",
    "RMSNorm",
    "LocalResponseNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "Upsample",
    "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    "AdaptiveAvgPool1d",
    "AdaptiveMaxPool1d",
    "AvgPool1d",
    "Conv1d",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "MaxPool1d",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "check_overflow",
    "cat",
    "cryptensor",
    "from_pytorch",
    "functions",
]

# the padding layers, PixelShuffle/Unshuffle, ChannelShuffle (torch's constructors)
globals().update(_MOVE_LAYERS)
__all__ += ["AlphaDropout", "Unflatten", *_MOVE_LAYERS]
