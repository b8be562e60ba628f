"""CrypTen's rank and world size in the two runtimes: the local runtime
(one process hosting all three parties) reports rank 0 and world size 1,
as CrypTen's one-process mode does, so CrypTen's examples pick party 0 as
the data's owner; a multi-party run reports the party's rank and 3. Code
that asked for the rank in the local runtime and then shares from another
party is warned, once per session, that this process holds every party's
input (a user probe: CrypTen's ``encrypt_data_tensor_with_src`` shared a
``torch.empty`` placeholder from party 1, silently).

Tolerances follow conftest's model (f = 16 fractional bits).
"""

import warnings

import pytest
import torch

import cryptgpu as crypten
import cryptgpu.communicator as comm
from conftest import ULP, prod_tol


@pytest.fixture
def ctx():
    crypten.init()
    yield
    crypten.uninit()


def encrypt_data_tensor_with_src(input):
    """CrypTen's examples (tfe_benchmarks, mpc_cifar), word for word."""
    rank = comm.get().get_rank()
    world_size = comm.get().get_world_size()
    src_id = 1 if world_size > 1 else 0
    input_upd = input if rank == src_id else torch.empty(input.size())
    return crypten.cryptensor(input_upd, src=src_id)


def test_local_runtime_is_one_process_of_rank_0(ctx):
    assert comm.get().get_rank() == 0
    assert comm.get().get_world_size() == 1


def test_crypten_src_idiom_shares_the_real_data_in_the_local_runtime(ctx):
    torch.manual_seed(0)
    w = torch.randn(4, 6) * 0.5
    for _ in range(3):  # fresh batches, as a data loader gives them
        x = torch.rand(5, 6) - 0.5
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # src 0: nothing to warn of
            enc = encrypt_data_tensor_with_src(x)
        got = (enc @ crypten.cryptensor(w.t())).get_plain_text(dtype=torch.float64)
        want = x.double() @ w.double().t()
        # 6 products with |x| <= 0.5 and |w| < 2.5, truncated once
        assert (got - want).abs().max() <= prod_tol(6, 0.5, 2.5)


def test_run_multiprocess_still_reports_three_parties():
    x = torch.tensor([[1.0, -2.0, 0.5]])

    @crypten.mpc.run_multiprocess(world_size=3)
    def job():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # each party shares its own input: no warning
            enc = encrypt_data_tensor_with_src(x)
        return comm.get().get_rank(), comm.get().get_world_size(), enc.get_plain_text()

    results = job()
    assert [r[:2] for r in results] == [(0, 3), (1, 3), (2, 3)]
    for _, _, got in results:  # party 1's data, shared from party 1
        assert (got - x).abs().max() <= ULP / 2  # one encoding error


def test_sharing_from_another_party_after_get_rank_warns_once_per_session():
    crypten.init()
    try:
        x = torch.tensor([1.0, 2.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            crypten.cryptensor(x, src=1)  # no rank asked: no warning
        rank = comm.get().get_rank()
        with pytest.warns(UserWarning, match="placeholder") as got:
            y = crypten.cryptensor(x if rank == 1 else torch.zeros(2), src=1)
        assert len(got) == 1 and "run_multiprocess" in str(got[0].message)
        assert got[0].filename == __file__  # the user's line, not the library's
        assert torch.equal(y.get_plain_text(), torch.zeros(2))  # what was passed
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per session
            crypten.cryptensor(x, src=2)
            crypten.nn.Linear(2, 1).encrypt(src=1)
        crypten.init()  # a new session warns again, from an encrypted model too
        comm.get().get_world_size()
        with pytest.warns(UserWarning, match="party 2") as got:
            crypten.nn.Linear(2, 1).encrypt(src=2)
        assert len(got) == 1
    finally:
        crypten.uninit()


def test_load_from_party_reads_src_file_here_without_warning(tmp_path):
    crypten.init()
    try:
        f = str(tmp_path / "bob.pth")
        data = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
        crypten.save_from_party(data, f, src=1)
        comm.get().get_rank()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # src's own file, read in this process
            got = crypten.load_from_party(f, src=1)
        assert torch.equal(got.get_plain_text(), data)  # grid values: exact
    finally:
        crypten.uninit()


def test_sharing_from_another_party_after_cryptgpu_rank_warns_once():
    # The README's SPMD idiom run in the local runtime: cryptgpu.rank() is
    # None there (documented), so `data if rank() == 1 else zeros` passes
    # the zeros as party 1's input; asking rank() counts as asking the rank
    # (a user probe: until 2026-12-06 only get_rank() did, and this shared
    # the placeholder without a word).
    crypten.init()
    try:
        data = torch.tensor([1.0, 2.0, 3.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            crypten.cryptensor(data, src=2)  # no rank asked: no warning
        r = crypten.rank()
        assert r is None  # the local runtime's documented value, unchanged
        with pytest.warns(UserWarning, match="placeholder") as got:
            x = crypten.cryptensor(data if r == 1 else torch.zeros(3), src=1)
        assert len(got) == 1 and "cryptgpu.rank() None" in str(got[0].message)
        assert got[0].filename == __file__  # the user's line, not the library's
        assert torch.equal(x.get_plain_text(), torch.zeros(3))  # what was passed
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per session
            crypten.rank()
            crypten.cryptensor(data, src=2)
    finally:
        crypten.uninit()


def test_cryptgpu_rank_in_spmd_gives_the_party_and_no_warning():
    def job():
        r = crypten.rank()
        x = crypten.cryptensor(torch.ones(2) if r == 1 else torch.zeros(2), src=1)
        return r, x.get_plain_text()

    # the filters are process-wide: set once here, not in the party threads
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        results = crypten.spmd.run(job)
    assert not [w for w in seen if "placeholder" in str(w.message)]  # each party's own input
    assert [r for r, _ in results] == [0, 1, 2]
    for _, got in results:
        assert torch.equal(got, torch.ones(2))  # grid values: exact
