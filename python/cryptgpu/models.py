"""The paper's model zoo as plain PyTorch modules (convert them with
:func:`cryptgpu.nn.from_pytorch`):

- ``LeNet`` for MNIST (1x28x28), as in CryptGPU/Falcon;
- ``AlexNet`` and ``VGG16`` for CIFAR-10 (3x32x32, 10 classes) and Tiny
  ImageNet (3x64x64, 200 classes), in the variants used by Falcon and
  CryptGPU (an 11x11 stride-4 first conv for AlexNet, fully connected heads
  sized from the input);
- ``resnet50/101/152`` for ImageNet (3x224x224, 1000 classes): the standard
  bottleneck ResNet, written here so no torchvision is needed;
- transformers beyond the paper: ``TextTransformer`` (BERT-style;
  ``bert_tiny``, ``bert_base``) and ``VisionTransformer`` (ViT-style;
  ``vit_tiny``, ``vit_base``).

``pool="avg"`` swaps max pooling for average pooling, as the paper's
training experiments do.
"""

from __future__ import annotations

import torch
from torch import nn

from .autograd import torch_grad


def _pool(kind: str, k: int, s: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(k, s)
    if kind == "avg":
        return nn.AvgPool2d(k, s)
    raise ValueError(f"pool must be 'max' or 'avg', got {kind!r}")


def _flat_size(features: nn.Module, shape) -> int:
    with torch_grad(False):  # (interrupt-safe: autograd.torch_grad)
        return int(features(torch.zeros(1, *shape)).numel())


class LeNet(nn.Module):
    """LeNet-5 for 1x28x28 inputs: two 5x5 convs (20, 50 channels), two fully
    connected layers (500, 10)."""

    def __init__(self, num_classes: int = 10, pool: str = "max"):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 20, 5),
            nn.ReLU(),
            _pool(pool, 2, 2),
            nn.Conv2d(20, 50, 5),
            nn.ReLU(),
            _pool(pool, 2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, num_classes)
        )

    def forward(self, x):
        """Logits for a batch of 1x28x28 images."""
        return self.classifier(self.features(x))


class AlexNet(nn.Module):
    """AlexNet for small images (Falcon's CIFAR-10 / Tiny ImageNet variant)."""

    def __init__(self, input_size: int = 32, num_classes: int = 10, pool: str = "max"):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4, padding=9),
            nn.ReLU(),
            _pool(pool, 3, 2),
            nn.Conv2d(96, 256, 5, padding=1),
            nn.ReLU(),
            _pool(pool, 2, 1),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
        )
        flat = _flat_size(self.features, (3, input_size, input_size))
        hidden = 256 if input_size <= 32 else 1024
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        """Logits for a batch of 3xSxS images."""
        return self.classifier(self.features(x))


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16(nn.Module):
    """VGG-16 (13 3x3 convs, 5 pools) with a 512-512 fully connected head."""

    def __init__(self, input_size: int = 32, num_classes: int = 10, pool: str = "max"):
        super().__init__()
        layers, c = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(_pool(pool, 2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        flat = _flat_size(self.features, (3, input_size, input_size))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):
        """Logits for a batch of 3xSxS images."""
        return self.classifier(self.features(x))


class Bottleneck(nn.Module):
    """The ResNet bottleneck block: 1x1, 3x3 (stride), 1x1 convs with
    BatchNorm, plus the shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        """relu(block(x) + shortcut(x))."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.down is None else self.down(x)
        return self.relu(y + skip)


class ResNet(nn.Module):
    """Bottleneck ResNet for 3x224x224 ImageNet inputs."""

    def __init__(self, blocks: list[int], num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        layers, cin = [], 64
        for i, n in enumerate(blocks):
            width = 64 * 2**i
            for j in range(n):
                layers.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        """Logits for a batch of 3x224x224 images."""
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 for ImageNet (1000 classes)."""
    return ResNet([3, 4, 6, 3], num_classes)


def resnet101(num_classes: int = 1000) -> ResNet:
    """ResNet-101 for ImageNet (1000 classes)."""
    return ResNet([3, 4, 23, 3], num_classes)


def resnet152(num_classes: int = 1000) -> ResNet:
    """ResNet-152 for ImageNet (1000 classes)."""
    return ResNet([3, 8, 36, 3], num_classes)


def _encoder(dim: int, depth: int, heads: int, mlp: int, activation: str) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, mlp, dropout=0.0, activation=activation, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


class _EncoderClassifier(nn.Module):
    """What the two transformer classifiers share: a learned positional
    embedding for `positions` tokens, the encoder, the mean over tokens and
    a linear head."""

    def __init__(self, positions, dim, depth, heads, mlp, num_classes):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, positions, dim) * 0.02)
        self.encoder = _encoder(dim, depth, heads, mlp, "gelu")
        self.head = nn.Linear(dim, num_classes)

    def _classify(self, tokens):
        return self.head(self.encoder(tokens + self.pos).mean(1))


class TextTransformer(_EncoderClassifier):
    """A BERT-style sequence classifier: token embedding plus a learned
    positional embedding, a pre-norm transformer encoder (GELU), the mean
    over positions, a linear head. Its input is a batch of token ids [N, L]
    in PyTorch; converted, a SharedTensor of one-hot rows [N, L, vocab]."""

    def __init__(
        self,
        vocab: int,
        max_len: int,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp: int = 128,
        num_classes: int = 2,
    ):
        super().__init__(max_len, dim, depth, heads, mlp, num_classes)
        self.tokens = nn.Embedding(vocab, dim)

    def forward(self, ids):
        """Logits for a batch of token-id sequences of length max_len."""
        return self._classify(self.tokens(ids))


class VisionTransformer(_EncoderClassifier):
    """A ViT-style image classifier: non-overlapping patches embedded by a
    strided convolution, a learned positional embedding, a pre-norm
    transformer encoder (GELU), the mean over patches (no class token), a
    linear head."""

    def __init__(
        self,
        image_size: int,
        patch: int,
        channels: int = 3,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp: int = 128,
        num_classes: int = 10,
    ):
        super().__init__((image_size // patch) ** 2, dim, depth, heads, mlp, num_classes)
        self.patches = nn.Conv2d(channels, dim, patch, patch)

    def forward(self, x):
        """Logits for a batch of images."""
        return self._classify(self.patches(x).flatten(2).transpose(1, 2))


def bert_tiny(vocab: int = 30522, max_len: int = 128, num_classes: int = 2) -> TextTransformer:
    """BERT-tiny sizes: 2 layers, width 128, 2 heads, MLP 512."""
    return TextTransformer(vocab, max_len, 128, 2, 2, 512, num_classes)


def bert_base(vocab: int = 30522, max_len: int = 128, num_classes: int = 2) -> TextTransformer:
    """BERT-base sizes: 12 layers, width 768, 12 heads, MLP 3072."""
    return TextTransformer(vocab, max_len, 768, 12, 12, 3072, num_classes)


def vit_tiny(image_size: int = 32, patch: int = 4, channels: int = 3, num_classes: int = 10):
    """ViT-Tiny sizes: 12 layers, width 192, 3 heads, MLP 768."""
    return VisionTransformer(image_size, patch, channels, 192, 12, 3, 768, num_classes)


def vit_base(image_size: int = 224, patch: int = 16, channels: int = 3, num_classes: int = 1000):
    """ViT-Base sizes: 12 layers, width 768, 12 heads, MLP 3072."""
    return VisionTransformer(image_size, patch, channels, 768, 12, 12, 3072, num_classes)


def zoo() -> dict:
    """name -> (constructor, input shape without batch) for the paper's models."""
    return {
        "LeNet/MNIST": (lambda: LeNet(), (1, 28, 28)),
        "AlexNet/CIFAR-10": (lambda: AlexNet(32, 10), (3, 32, 32)),
        "VGG-16/CIFAR-10": (lambda: VGG16(32, 10), (3, 32, 32)),
        "AlexNet/TinyImageNet": (lambda: AlexNet(64, 200), (3, 64, 64)),
        "VGG-16/TinyImageNet": (lambda: VGG16(64, 200), (3, 64, 64)),
        "ResNet-50/ImageNet": (lambda: resnet50(), (3, 224, 224)),
        "ResNet-101/ImageNet": (lambda: resnet101(), (3, 224, 224)),
        "ResNet-152/ImageNet": (lambda: resnet152(), (3, 224, 224)),
    }
