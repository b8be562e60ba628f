"""GroupNorm, InstanceNorm2d, AdaptiveMaxPool2d and nearest-neighbour
Upsample / F.interpolate, converted from PyTorch and called directly,
against float64 torch: inference and one backward pass.

Tolerances (f = 16): the normalisation's private statistics are LayerNorm's
(within 1e-4 relative of the inverse std, test_transformer), so a
normalised value (|xhat| < 3 here) is within 3e-4 plus a few units; the
affine scales (below 1.5) and a conv of 18 products carry it; the final
linear has row sums below 2. Upsampling and max pooling copy or select
values exactly.
"""

import torch
import torch.nn as tnn
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, assert_close, prod_tol


def pt(x):
    return x.get_plain_text(dtype=torch.float64)


class Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 4, 3, padding=1)
        self.gn = tnn.GroupNorm(2, 4)
        self.inorm = tnn.InstanceNorm2d(4, affine=True)
        self.up = tnn.Upsample(scale_factor=2)
        self.pool = tnn.AdaptiveMaxPool2d(1)
        self.fc = tnn.Linear(4, 3)

    def forward(self, x):
        y = F.relu(self.gn(self.conv(x)))
        y = self.inorm(self.up(y)) + F.interpolate(y, scale_factor=2)
        return self.fc(self.pool(y).flatten(1))


def test_group_instance_norm_upsample_and_global_max(session):
    torch.manual_seed(0)
    m = Net().double()
    with torch.no_grad():
        m.gn.weight.uniform_(0.5, 1.5)
        m.inorm.weight.uniform_(0.5, 1.5)
        m.inorm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    norm = 3 * 1e-4 + 8 * 2.0**-16  # one normalised value
    conv = prod_tol(18, 4, 0.4)
    # conv error through a normalisation (divided by a std above 0.2 here),
    # two normalisations and their scales, then the linear's row sum
    tol = 2 * (1.5 * (conv / 0.2 + norm) * 1.5 + norm) * 1.5
    cm = cryptgpu.nn.from_pytorch(m.eval(), x).encrypt()
    assert_close(pt(cm(cryptgpu.cryptensor(x))), m(x).detach(), tol)
    cm = cryptgpu.nn.from_pytorch(m.train(), x).encrypt().train()
    y = torch.tensor([0, 2])
    cryptgpu.nn.CrossEntropyLoss()(cm(cryptgpu.cryptensor(x)), y).backward()
    F.cross_entropy(m(x), y).backward()
    for p, w in zip(cm.parameters(), m.parameters()):
        # gradients: the same chain backwards on an output gradient below
        # 1/2 (a mean over 2 samples of softmax - onehot), softmax's 3e-4
        assert_close(pt(p.grad), w.grad, 0.5 * tol + 3e-4)


def test_direct_forms(session, rng):
    a = torch.rand(2, 3, 2, 2, generator=rng, dtype=torch.float64) * 4 - 2
    e = cryptgpu.cryptensor(a)
    assert_close(pt(F.interpolate(e, size=(4, 6))), F.interpolate(a, size=(4, 6)), ENC)
    assert_close(pt(F.adaptive_max_pool2d(e, 1)), F.adaptive_max_pool2d(a, 1), ENC)
    assert_close(pt(e.repeat_interleave(2, 1)), a.repeat_interleave(2, 1), ENC)
    assert_close(pt(e.repeat_interleave(3)), a.repeat_interleave(3), ENC)
    gn = cryptgpu.nn.GroupNorm(3, 3)
    assert_close(pt(gn(e)), F.group_norm(a, 3), 3 * 1e-4 + 8 * 2.0**-16)
