"""BatchNorm folding decided by the owner of the weights, in a multi-party
run: CrypTen's examples (tfe_benchmarks, mpc_cifar) convert the trained
model on party 0, in eval mode after validation, and a fresh dummy on the
others, in train mode. The owner's conversion folded BatchNorm into its
convolutions and the others' did not: different parameter lists, a
PeerError "out of step" with a hint naming another cause (a user probe).
At ``encrypt(src=k)`` every party now folds as party k's model did; a
party whose model folded what the owner kept cannot unfold, and every
party raises the same ValueError saying what to do.

Tolerances follow conftest's model (f = 16 fractional bits): each layer
sums k products of encoded values (``prod_tol``) and carries the previous
layer's error times the sum of its absolute weights.
"""

import pytest
import torch
import torch.nn as tnn

import cryptgpu as crypten
from conftest import ENC, prod_tol, usable

D = torch.float64


class Net(tnn.Module):
    """conv (no bias) + BN, a nested conv + BN, a BatchNorm1d after a
    Linear (never folded), and a layer never called (kept as unread
    parameters by a conversion that does not fold)."""

    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(1, 4, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(4)
        self.block = tnn.Sequential(tnn.Conv2d(4, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU())
        self.fc = tnn.Linear(16, 3)
        self.bn3 = tnn.BatchNorm1d(3)
        self.unused = tnn.Linear(2, 2)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.bn3(self.fc(self.block(x).flatten(1)))


def trained() -> Net:
    """A Net with BatchNorm statistics far from their defaults, in eval
    mode (as after CrypTen's validate())."""
    torch.manual_seed(3)
    m = Net()
    for bn in (m.bn1, m.block[1], m.bn3):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n) * 0.2)
        bn.running_var.copy_(torch.rand(n) + 0.5)
        bn.weight.data.copy_(torch.rand(n) + 0.5)
        bn.bias.data.copy_(torch.randn(n) * 0.2)
    return m.eval()


X = torch.rand(2, 1, 6, 6)


def bound(model: Net, x: torch.Tensor, folded: bool = True) -> float:
    """The error bound of the private forward, layer by layer: a layer of
    k products per output carries the input's error e times k max|w|, plus
    prod_tol(k, max |input|, max |w|) of its own, plus its bias's encoding
    (ENC). A BatchNorm in eval mode is a layer of one product (its scale)
    where it is not folded into the conv before it (scale times weight)."""
    m = model.double()
    x = x.double()

    def scale(bn):
        return bn.weight / torch.sqrt(bn.running_var + bn.eps)

    c1 = m.conv1(x)
    a1 = torch.relu(m.bn1(c1))
    c2 = m.block[0](a1)
    a2 = m.block(a1).flatten(1)
    f = m.fc(a2)
    s1, s2, s3 = scale(m.bn1), scale(m.block[1]), scale(m.bn3)
    w1, w2 = m.conv1.weight, m.block[0].weight
    if folded:
        w1, w2 = w1 * s1.reshape(-1, 1, 1, 1), w2 * s2.reshape(-1, 1, 1, 1)
        stages = [(9, x, w1), (36, a1, w2), (16, a2, m.fc.weight), (1, f, s3)]
    else:
        stages = [(9, x, w1), (1, c1, s1), (36, a1, w2), (1, c2, s2)]
        stages += [(16, a2, m.fc.weight), (1, f, s3)]
    e = 0.0
    for k, inp, w in stages:
        wmax = w.abs().max().item()
        e = k * wmax * e + prod_tol(k, inp.abs().max().item(), wmax) + ENC
    model.float()
    return e


@pytest.mark.parametrize(
    "src, dummy_modes",
    [(0, ("train", "train")), (0, ("train", "eval")), (1, ("train", "train"))],
)
def test_the_owners_eval_model_folds_on_every_party(src, dummy_modes):
    """The owner's trained model in eval mode (folded), the others' fresh
    dummies in train mode (not folded), or one of each: every party ends
    with the owner's structure, and the output is torch's."""
    model = trained()
    want = model.double()(X.double())
    model.float()
    tol = bound(model, X)
    modes = iter(dummy_modes)
    dummy_mode = {k: next(modes) for k in range(3) if k != src}

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        rank = crypten.comm.get().get_rank()
        if rank == src:
            mine = model
        else:
            mine = Net().train() if dummy_mode[rank] == "train" else Net().eval()
        pm = crypten.nn.from_pytorch(mine, torch.empty(1, 1, 6, 6)).encrypt(src=src)
        x = crypten.cryptensor(X if rank == 0 else torch.empty(X.size()), src=0)
        names = [n for n, _ in pm.named_parameters()]
        try:  # the folded conv keeps its BatchNorm's rank check on every party
            pm(crypten.cryptensor(torch.zeros(1, 6, 6), src=0))
            refused = None
        except ValueError as e:
            refused = str(e)
        return names, list(pm.state_dict()), pm(x).get_plain_text(dtype=D), refused

    results = job()
    for names, keys, got, refused in results:
        assert refused == "expected 4D input (got 3D input)"  # torch's BatchNorm2d's
        assert names == results[src][0] and keys == results[src][1]
        assert "bn1.weight" not in names and "conv1.bias" in names  # folded, as the owner's
        assert "unused.weight" not in names  # a folding conversion keeps no unread ones
        assert (got - want).abs().max() <= tol  # layer-by-layer bound (module docstring)


def test_a_party_that_folded_what_the_owner_kept_is_told_on_every_party():
    """The other direction: the owner's model in train mode keeps its
    BatchNorm layers, a dummy in eval mode folded them and cannot unfold.
    Every party raises the same ValueError (no PeerError, no hang), the
    session stays usable, and the fix it names works."""
    model = trained()
    want = model.double()(X.double())
    tol = bound(model.float(), X, folded=False)
    model.train()

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        rank = crypten.comm.get().get_rank()
        mine = model if rank == 0 else Net().eval()
        try:
            crypten.nn.from_pytorch(mine, torch.empty(1, 1, 6, 6)).encrypt(src=0)
        except Exception as e:
            err = (type(e), str(e))
        else:
            err = None
        assert usable()  # every party's session, after the error
        pm = crypten.nn.from_pytorch(mine, torch.empty(1, 1, 6, 6), fold_batchnorm=False)
        pm.encrypt(src=0).eval()  # the fix the message names
        return err, pm(crypten.cryptensor(X, src=0)).get_plain_text(dtype=D)

    for err, got in job():
        assert err is not None and err[0] is ValueError
        assert "party 1 and party 2" in err[1] and ".eval() or .train()" in err[1]
        assert "fold_batchnorm" in err[1]
        # BatchNorm layers kept: one product each (bound(folded=False))
        assert (got - want).abs().max() <= tol


def test_parties_with_other_models_are_told_so():
    """A party whose model has other convolution + BatchNorm pairs is told
    on every party that the models differ (it was out of step)."""

    class Fewer(Net):
        def forward(self, x):
            x = torch.relu(self.conv1(x))  # bn1 never called
            return self.bn3(self.fc(self.block(x).flatten(1)))

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        rank = crypten.comm.get().get_rank()
        mine = trained() if rank != 2 else Fewer().eval()
        with pytest.raises(ValueError, match="convert the same model"):
            crypten.nn.from_pytorch(mine, torch.empty(1, 1, 6, 6)).encrypt(src=0)

    job()


def test_the_agreement_costs_the_design_tables_shares_and_reveal():
    """fold_agree.agree's cost, against the design table
    (test_communication.py): three words per party (folded, pairs, a
    checksum), 4 16-bit chunks each at 16 fractional bits (n = 12
    elements), shared from each party (3 rounds, n to each of the two
    others) and opened together (1 round, 3 n from each party): 4 rounds,
    each party sends 5 n ring elements."""

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        from cryptgpu.nn import fold_agree

        rank = crypten.comm.get().get_rank()
        pm = crypten.nn.from_pytorch(trained() if rank == 0 else Net().train())
        comm = crypten.comm.get()
        comm.reset_communication_stats()
        fold_agree.agree(pm, 0)
        return comm.get_communication_stats(), pm._folded_batchnorms

    for stats, folded in job():
        assert folded == 2
        assert stats["rounds"] == 4
        assert stats["bytes"] == 8 * 5 * 12  # 8-byte ring elements


def test_a_dummy_without_running_statistics_is_told_not_left_waiting():
    """A dummy whose BatchNorm layers keep no running statistics has no
    pair to fold; it skipped the exchange the owner's party ran (the
    decision was each party's own), so the others waited in it (out of
    step). Every party now exchanges and hears that the models differ."""

    class NoStats(Net):
        def __init__(self):
            super().__init__()
            for m in self.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.track_running_stats = False
                    m.running_mean = m.running_var = m.num_batches_tracked = None

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        rank = crypten.comm.get().get_rank()
        mine = trained() if rank != 1 else NoStats().train()
        with pytest.raises(ValueError, match="convert the same model"):
            crypten.nn.from_pytorch(mine, torch.empty(1, 1, 6, 6)).encrypt(src=0)

    job()
