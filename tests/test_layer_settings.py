"""A layer's torch settings (``fc.in_features``, ``conv.out_channels``,
``bn.num_features``, ``emb.embedding_dim``, ...), read off a converted
model or a layer built directly, as a PyTorch user reads them to size a
new head (``nn.Linear(model.fc.in_features, 10)``). Until 2026-12-07 each
was an AttributeError. No arithmetic: the values are compared exactly
with the torch layer's own.
"""

import copy
import pickle

import pytest
import torch
import torch.nn as tnn

import cryptgpu
import cryptgpu.nn as cnn

SETTINGS = {
    "conv": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups"),
    "bn": ("num_features", "affine", "track_running_stats", "eps", "momentum"),
    "pool": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "fc": ("in_features", "out_features"),
    "drop": ("p", "inplace"),
    "act": ("negative_slope",),
}


class Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 4, 3, padding=1)
        self.bn = tnn.BatchNorm2d(4)
        self.act = tnn.LeakyReLU(0.2)
        self.pool = tnn.MaxPool2d(2)
        self.drop = tnn.Dropout(0.25)
        self.fc = tnn.Linear(16, 3)

    def forward(self, x):
        x = self.pool(self.act(self.bn(self.conv(x))))
        return self.fc(self.drop(x.flatten(1)))


def test_a_converted_model_answers_its_layers_torch_settings(session):
    torch.manual_seed(0)
    net = Net().eval()
    pm = cnn.from_pytorch(net, torch.zeros(1, 1, 4, 4), fold_batchnorm=False)
    for name, attrs in SETTINGS.items():
        for a in attrs:
            assert getattr(getattr(pm, name), a) == getattr(getattr(net, name), a), (name, a)
    head = cnn.Linear(pm.fc.in_features, 10)  # the transfer-learning habit
    assert tuple(head.weight.shape) == (10, 16)
    with pytest.raises(AttributeError, match="no attribute 'out_feature'"):
        _ = pm.fc.out_feature  # a misspelt name is still torch's AttributeError
    for other in (copy.deepcopy(pm), pickle.loads(pickle.dumps(pm))):
        assert other.fc.out_features == 3 and other.conv.kernel_size == (3, 3)


def test_a_bare_converted_layer_and_an_embedding(session):
    lin = cnn.from_pytorch(tnn.Linear(6, 5, bias=False), torch.zeros(2, 6))
    assert (lin.in_features, lin.out_features) == (6, 5)
    emb = tnn.Embedding(10, 4, padding_idx=0)
    pe = cnn.from_pytorch(tnn.Sequential(emb), torch.tensor([[1, 2]]))
    assert (pe[0].num_embeddings, pe[0].embedding_dim, pe[0].padding_idx) == (10, 4, 0)


@pytest.mark.parametrize(
    "ours, theirs, attrs",
    [
        (lambda: cnn.Linear(6, 5), lambda: tnn.Linear(6, 5), ("in_features", "out_features")),
        (
            lambda: cnn.Conv2d(3, 4, 3, stride=2),
            lambda: tnn.Conv2d(3, 4, 3, stride=2),
            ("in_channels", "out_channels", "kernel_size"),
        ),
        (
            lambda: cnn.Conv1d(3, 4, 5),
            lambda: tnn.Conv1d(3, 4, 5),
            ("in_channels", "out_channels", "kernel_size"),
        ),
        (
            lambda: cnn.BatchNorm2d(3, affine=False),
            lambda: tnn.BatchNorm2d(3, affine=False),
            ("num_features", "affine", "track_running_stats"),
        ),
        (
            lambda: cnn.Embedding(10, 4),
            lambda: tnn.Embedding(10, 4),
            ("num_embeddings", "embedding_dim"),
        ),
        (
            lambda: cnn.GroupNorm(2, 4),
            lambda: tnn.GroupNorm(2, 4),
            ("num_groups", "num_channels", "affine"),
        ),
    ],
)
def test_a_layer_built_directly_answers_torch_settings(session, ours, theirs, attrs):
    a, b = ours(), theirs()
    for name in attrs:
        assert getattr(a, name) == getattr(b, name), name
    with pytest.raises(AttributeError):
        _ = a.no_such_setting


def test_settings_of_a_model_with_the_layer_replaced(session):
    """A layer assigned after conversion answers its own settings, not the
    replaced layer's."""
    pm = cnn.from_pytorch(Net().eval(), torch.zeros(1, 1, 4, 4))
    pm.fc = cnn.Linear(16, 7)
    assert pm.fc.out_features == 7
    assert cryptgpu.is_initialized()


def test_converted_layers_are_instances_of_cryptgpu_nn_classes_of_torch_names(session):
    """The fine-tuning loop ``for m in model.modules(): if isinstance(m,
    nn.BatchNorm1d): m.eval()`` written with cryptgpu.nn's classes (torch's
    own cannot match: a converted layer is no torch Module) selects the
    converted BatchNorm layers, each only by its own class as in torch.
    Until 2026-12-07 a converted BatchNorm was a bare ``BatchNorm`` (the
    loop selected nothing) and a BatchNorm2d built directly was also a
    BatchNorm1d. The statistics are then compared with torch's loop: the
    same float64 running mean within the input's encoding (none updated)."""
    torch.manual_seed(0)
    tm = tnn.Sequential(tnn.Linear(6, 8), tnn.BatchNorm1d(8), tnn.ReLU(), tnn.Linear(8, 3))
    tm = tm.double()
    pm = cnn.from_pytorch(copy.deepcopy(tm), torch.zeros(2, 6), fold_batchnorm=False).encrypt()
    assert type(pm[1]).__name__ == "BatchNorm1d" and isinstance(pm[1], cnn.BatchNorm)
    for ours, theirs in ((pm, tnn.BatchNorm1d), (tm, tnn.BatchNorm1d)):
        ours.train()
        cls = cnn.BatchNorm1d if ours is pm else theirs
        for m in ours.modules():
            if isinstance(m, cls):
                m.eval()
    assert not pm[1].training and not tm[1].training
    x = torch.randn(16, 6, dtype=torch.float64) * 3 + 1
    pm(cryptgpu.cryptensor(x))
    tm(x)
    got = pm[1].running_mean.get_plain_text(dtype=torch.float64)
    assert (got - tm[1].running_mean).abs().max() <= 2.0**-17  # both still zero
    kinds = (tnn.BatchNorm1d(3), tnn.BatchNorm2d(3), tnn.BatchNorm3d(3))
    ranks = ((4, 3), (2, 3, 4, 4), (2, 3, 2, 2, 2))
    for i, (bn, shape) in enumerate(zip(kinds, ranks)):
        conv = cnn.from_pytorch(tnn.Sequential(bn.double().eval()), torch.zeros(shape))[0]
        built = (cnn.BatchNorm1d, cnn.BatchNorm2d, cnn.BatchNorm3d)[i](3)
        for layer in (conv, built):
            flags = [
                isinstance(layer, c) for c in (cnn.BatchNorm1d, cnn.BatchNorm2d, cnn.BatchNorm3d)
            ]
            assert flags == [j == i for j in range(3)]
    assert pickle.loads(pickle.dumps(cnn.BatchNorm2d(3))).num_features == 3


def test_linear_layers_inside_attention_answer_their_features(session):
    """A transformer layer's and an attention's inner Linear layers (made
    from weights) answer in_features / out_features as torch's (probe MA:
    AttributeError until 2026-12-07), converted or built directly."""
    torch.manual_seed(0)
    layer = tnn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    cm = cnn.from_pytorch(layer.eval(), torch.randn(2, 5, 8))
    built = cnn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True)
    for ours in (cm, built):
        for name in ("linear1", "linear2", "self_attn.out_proj"):
            theirs = layer.get_submodule(name)
            mine = ours.get_submodule(name)
            assert (mine.in_features, mine.out_features) == (
                theirs.in_features,
                theirs.out_features,
            )
    assert cnn.Linear(torch.zeros(3, 5)).in_features == 5
