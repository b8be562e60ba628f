"""The SPMD runtime (every party runs the same script on its own share, one
thread per party here, one process per party in a distributed run) matches
the local runtime bit for bit and counter for counter with the same seed."""

import threading
import time

import pytest
import torch

import cryptgpu

SEED = 77


def inputs():
    # Built once, outside the party threads: torch's global RNG is shared by
    # threads (each process of a distributed run has its own).
    torch.manual_seed(0)
    a = torch.randn(4, 6, dtype=torch.float64)
    w = torch.randn(6, 3, dtype=torch.float64)
    m = (
        torch.nn.Sequential(
            torch.nn.Conv2d(1, 2, 3),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(2, 2),
        )
        .double()
        .eval()
    )
    return a, w, m, torch.randn(1, 1, 4, 4, dtype=torch.float64)


def job(a, w, m, image):
    x = cryptgpu.cryptensor(a, src=0)
    y = cryptgpu.cryptensor(w, src=1)
    z = (x @ y).relu() + (x[:, :3] < 0.2)
    net = cryptgpu.nn.from_pytorch(m).encrypt(src=0)
    img = cryptgpu.cryptensor(image, src=2)
    out = net(img)
    st = cryptgpu.stats(per_party=True)["parties"]
    return (z.get_plain_text(dtype=torch.float64), out.get_plain_text(dtype=torch.float64), st)


def test_spmd_matches_the_local_runtime_bit_for_bit():
    args = inputs()
    cryptgpu.init(seed=SEED)
    z_local, out_local, st_local = job(*args)
    cryptgpu.uninit()
    results = cryptgpu.spmd.run(job, *args, seed=SEED)
    for rank, (z, out, st) in enumerate(results):
        assert torch.equal(z, z_local)
        assert torch.equal(out, out_local)
        # this party's counters (the opens above are not yet counted in either)
        assert st[0] == st_local[rank]


def test_rank_and_reveal_to_one_party():
    def f():
        x = cryptgpu.cryptensor(torch.tensor([3.0]), src=2)
        return cryptgpu.rank(), x.get_plain_text(dst=1)

    res = cryptgpu.spmd.run(f, seed=1)
    assert [r for r, _ in res] == [0, 1, 2]
    assert res[0][1] is None and res[2][1] is None
    assert res[1][1].tolist() == [3.0]


def test_a_failing_party_fails_everyone_without_a_hang():
    def f():
        n = 3 if cryptgpu.rank() == 1 else 2  # party 1 disagrees on the shape
        x = cryptgpu.cryptensor(torch.ones(n), src=0)
        return (x * x).get_plain_text()

    # (until 2026-12-05 "message of 3 elements where 2 were expected")
    with pytest.raises(cryptgpu.PeerError, match=r"out of step.*of shape \["):
        cryptgpu.spmd.run(f, seed=1, timeout_s=10)


def test_only_the_own_share_is_held():
    def f():
        x = cryptgpu.cryptensor(torch.ones(2), src=0)
        own = x.party_shares(cryptgpu.rank())
        with pytest.raises(ValueError, match="not held"):
            x.party_shares((cryptgpu.rank() + 1) % 3)
        return own[0].shape

    assert cryptgpu.spmd.run(f, seed=1) == [(2,), (2,), (2,)]


def test_parties_running_different_programs_are_told_so():
    # Same shapes and the same number of rounds, different operations (a
    # public factor on party 1, a shared one elsewhere): the step tag on
    # every message stops the mixing of unrelated shares, which otherwise
    # opened garbage with no error.
    def f():
        x = cryptgpu.cryptensor(torch.tensor([1.0, -2.0, 3.0]), src=0)
        y = x * 2.5 if cryptgpu.rank() == 1 else x * x
        return y.get_plain_text()

    t0 = time.monotonic()
    with pytest.raises(cryptgpu.PeerError, match="out of step"):
        cryptgpu.spmd.run(f, seed=1, timeout_s=30)
    assert time.monotonic() - t0 < 10, "reported at the timeout, not at once"


@pytest.mark.parametrize("skipped", ["barrier", "print", "reveal"])
def test_a_collective_skipped_on_one_party_is_caught_before_a_reveal(skipped):
    """One party skips a barrier, an ordered print or a reveal of a vector
    (logging on one rank), then every party reveals a scalar: the skipped
    operation's messages met the scalar reveal's and opened garbage (1e14
    for a loss of 16.8), silently (a user probe). A reveal's step tag now
    carries its shape, and barrier and ordered print open a public zero
    of a shape no user value has, so the parties are out of step at once
    and no value reaches the program."""
    seen = []

    def f():
        x = cryptgpu.cryptensor(torch.tensor([0.5, 1.0, 2.0]), src=0)
        total = (x * x).sum()
        if cryptgpu.rank() != 2:
            if skipped == "barrier":
                cryptgpu.comm.get().barrier()
            elif skipped == "print":
                cryptgpu.print("log", in_order=True)
            else:
                x.get_plain_text()
        v = total.item()
        seen.append(v)
        return v

    t0 = time.monotonic()
    with pytest.raises(cryptgpu.PeerError, match="out of step|left the session|aborted"):
        cryptgpu.spmd.run(f, seed=1, timeout_s=30)
    assert time.monotonic() - t0 < 10, "reported at the timeout, not at once"
    assert seen == [], seen


@pytest.mark.parametrize("placeholder", [(3, 4), (12,), (4, 4)])
def test_a_placeholder_of_another_shape_is_named_at_once(placeholder):
    """A placeholder with as many elements but another shape was shared in
    silence and opened garbage (3e13 after a transpose); the sharing's step
    tag now carries the shape, so the parties are out of step at its first
    message, and the error names the shape."""

    def f():
        mine = cryptgpu.rank() == 1
        x = cryptgpu.cryptensor(torch.ones(4, 3) if mine else torch.empty(placeholder), src=1)
        return x.t().contiguous().flatten().get_plain_text()

    t0 = time.monotonic()
    with pytest.raises(cryptgpu.PeerError, match=r"out of step.*of shape \["):
        cryptgpu.spmd.run(f, seed=1, timeout_s=30)
    assert time.monotonic() - t0 < 10, "reported at the timeout, not at once"


def test_a_party_left_waiting_by_the_others_is_told_at_once():
    """CrypTen's classic mistake, `if rank() == 0: print(x.get_plain_text())`:
    party 0 waited for the others' messages until the timeout (60 s by
    default); a party whose program ended now says so, as a ZeroMQ link's
    BYE does."""

    def f():
        x = cryptgpu.cryptensor(torch.ones(3), src=0)
        if cryptgpu.rank() == 0:
            return x.get_plain_text()
        return None

    t0 = time.monotonic()
    with pytest.raises(cryptgpu.PeerError, match="program ended"):
        cryptgpu.spmd.run(f, seed=1, timeout_s=30)
    assert time.monotonic() - t0 < 10, "reported at the timeout, not at once"


def test_placeholders_on_the_other_parties_are_never_read():
    # CrypTen's tutorials pass torch.empty (any bits, NaN included) on the
    # parties that do not own the data.
    def f():
        mine = cryptgpu.rank() == 1
        d = torch.tensor([1.0, 2.0]) if mine else torch.tensor([float("nan"), 1e30])
        return cryptgpu.cryptensor(d, src=1).get_plain_text()

    assert [r.tolist() for r in cryptgpu.spmd.run(f, seed=1)] == [[1.0, 2.0]] * 3


def test_a_bad_value_or_an_exception_on_one_party_fails_the_others_at_once():
    def bad_value():
        d = torch.tensor([float("nan")]) if cryptgpu.rank() == 0 else torch.zeros(1)
        return cryptgpu.cryptensor(d, src=0).get_plain_text()

    def own_bug():
        x = cryptgpu.cryptensor(torch.ones(2), src=0)
        if cryptgpu.rank() == 2:
            raise KeyError("party 2's own code failed")
        return (x * x).get_plain_text()

    for fn, err in ((bad_value, cryptgpu.EncodingError), (own_bug, KeyError)):
        t0 = time.monotonic()
        with pytest.raises(err):
            cryptgpu.spmd.run(fn, seed=1, timeout_s=30)
        assert time.monotonic() - t0 < 10, f"{fn.__name__}: the others waited for the timeout"


def test_batchnorm_statistics_are_the_owners_in_every_party():
    """A model with an unfolded BatchNorm (BatchNorm1d never folds): the
    owner's running statistics are shared with its weights. They were left
    plaintext by encrypt(), so each party used its own model's statistics
    (a dummy's 0 and 1 on the others): logits off by 4e9."""
    torch.manual_seed(1)

    def make():
        return torch.nn.Sequential(
            torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
        )

    owner = make()
    owner[1].running_mean.uniform_(-1, 1)
    owner[1].running_var.uniform_(0.5, 2)
    owner.double().eval()
    x = torch.rand(5, 3, dtype=torch.float64)

    def party():
        rank = cryptgpu.comm.get().get_rank()
        model = owner if rank == 0 else make().double().eval()
        net = cryptgpu.nn.from_pytorch(model, torch.empty(1, 3)).encrypt(src=0)
        bn = [m for m in net.modules() if isinstance(m, cryptgpu.nn.BatchNorm)][0]
        assert all(isinstance(v, cryptgpu.SharedTensor) for v in bn._buffers.values())
        data = x if rank == 1 else torch.empty(5, 3)
        return net(cryptgpu.cryptensor(data, src=1)).get_plain_text(dtype=torch.float64)

    want = owner(x).detach()
    for got in cryptgpu.spmd.run(party):
        # two linear layers (3 and 4 terms, |w| < 0.6, |x| < 1) around the
        # BatchNorm's affine (scale below 1 / sqrt(0.5) and its private
        # inverse square root within 1e-4 relative): a few 1e-5 at most
        assert (got - want).abs().max() <= 2e-4


def test_init_with_other_settings_inside_a_party_warns():
    """init(precision_bits=24) inside spmd.run was ignored in silence (the
    party keeps its session, as CrypTen code's init() must)."""

    def f():
        with pytest.warns(UserWarning, match="keeps the party's session"):
            cryptgpu.init(precision_bits=24)
        cryptgpu.init()  # the same settings: no warning
        return cryptgpu._session.current().precision_bits

    assert cryptgpu.spmd.run(f) == [16, 16, 16]


def test_dst_takes_a_numpy_int_or_a_0d_tensor_as_src_does():
    """get_plain_text(dst=np.int64(1)) and dst=torch.tensor(1) raised
    TypeError though src takes them (a user probe): both reveal to party 1
    only. Exact: 2.0 and 3.0 are encoded exactly."""
    import numpy as np

    def f():
        x = cryptgpu.cryptensor(torch.tensor([2.0, 3.0]), src=np.int64(0))
        return x.get_plain_text(dst=np.int64(1)), x.get_plain_text(dst=torch.tensor(1))

    out = cryptgpu.spmd.run(f, seed=1, timeout_s=30)
    for rank, (a, b) in enumerate(out):
        if rank == 1:
            assert torch.equal(a, torch.tensor([2.0, 3.0])) and torch.equal(b, a)
        else:
            assert a is None and b is None
    with pytest.raises(TypeError, match="party index"):
        cryptgpu.spmd.run(lambda: cryptgpu.cryptensor(torch.ones(1)).get_plain_text(dst=1.0))


def _long_job():
    """A run_multiprocess job of about a minute (n = 100,000)."""
    a = torch.randn(64, 64, dtype=torch.float64)

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def long_job(n):
        x = cryptgpu.cryptensor(a)
        for _ in range(n):
            x = (x @ x.t()) * 0.001
        return x[0, 0].get_plain_text()

    return long_job


def test_ctrl_c_in_the_caller_stops_the_party_threads():
    """Ctrl-C (KeyboardInterrupt) in the caller of run_multiprocess reached
    the caller, but the three party threads computed on to the end, and
    the script could not exit until they had."""
    import signal
    import threading

    from conftest import usable

    cryptgpu.init()
    long_job = _long_job()

    def ctrl_c(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    t = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            long_job(100_000)  # about a minute of work
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - t < 10
    left = [th.name for th in threading.enumerate() if th.name.startswith("cryptgpu-party")]
    assert not left, left
    assert usable()  # the caller's own session
    cryptgpu.uninit()


def test_run_multiprocess_from_a_worker_thread_takes_the_latest_init_settings():
    """Sessions are per thread: run_multiprocess called from a thread
    without a session ran its parties with spmd.run's defaults (16 bits,
    60 s), not the settings of the init() the program called."""
    from concurrent.futures import ThreadPoolExecutor

    cryptgpu.init(precision_bits=12, timeout_s=7)

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def settings():
        s = cryptgpu._session.settings()
        return s["precision_bits"], s["timeout_s"]

    try:
        assert settings() == [(12, 7.0)] * 3
        with ThreadPoolExecutor(1) as ex:
            assert ex.submit(settings).result(timeout=120) == [(12, 7.0)] * 3
    finally:
        cryptgpu.uninit()


def test_each_party_draws_from_its_own_copy_of_torchs_generator():
    """CrypTen forks its parties, so each seeds and draws from its own copy
    of torch's generator (Tutorial 3: torch.manual_seed, then public
    features and weights drawn in every party). The party threads shared
    one generator: seeding and drawing interleaved, each party got other
    "public" values, and a product with them opened as garbage (errors of
    4e9, no exception). Each party thread now has its own generator,
    started from the caller's state as a forked process's is."""
    torch.manual_seed(0)
    x = torch.randn(4, 50)

    def g0():
        return torch.Generator().manual_seed(0)

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def job():
        x_enc = cryptgpu.cryptensor(x, src=0)
        errs, inits = [], []
        for i in range(6):
            torch.manual_seed(100 + i)
            torch.randn(300_000)  # a draw long enough to interleave the threads
            w = torch.randn(50, 3)  # public: the same seed in every party
            g = torch.Generator().manual_seed(100 + i)
            torch.randn(300_000, generator=g)
            w_ref = torch.randn(50, 3, generator=g)
            out = x_enc.matmul(w).get_plain_text().double()
            errs.append((out - x.double() @ w_ref.double()).abs().max().item())
            inits.append(torch.nn.Linear(5, 2).weight.detach().clone())
        # torch.distributions, F.rrelu and random_split's default generator
        others = (
            torch.distributions.Gamma(torch.tensor(2.0), torch.tensor(1.0)).sample((4,)),
            torch.nn.functional.rrelu(-torch.ones(4), training=True),
            torch.utils.data.random_split(range(8), [4, 4])[0].indices,
        )
        # a generator given by position is the caller's, not replaced
        g = torch.Generator().manual_seed(0)
        assert torch.equal(torch.poisson(torch.ones(3), g), torch.poisson(torch.ones(3), g0()))
        return max(errs), inits, torch.initial_seed(), others, torch.is_grad_enabled()

    torch.manual_seed(7)
    expected_next = torch.randn(3)
    torch.manual_seed(7)
    with torch.no_grad():  # the parties inherit the caller's grad mode, as forks do
        results = job()
    # 50 products of |x|, |w| < 5 each encoded within 2^-17, plus one
    # truncation of 2^-16 per output: 50 * 10 * 2^-17 + 2^-16 < 4e-3
    for err, inits, seed, others, grad in results:
        assert err < 4e-3
        assert seed == 105 and not grad
        for a, b in zip(inits, results[0][1]):
            assert torch.equal(a, b)  # nn.Linear's initialisation too
        assert torch.equal(others[0], results[0][3][0])
        assert torch.equal(others[1], results[0][3][1])
        assert others[2] == results[0][3][2]
    # the caller's generator is where it was (a forked party's draws do not
    # move the parent's), and torch.manual_seed is torch's again
    assert torch.equal(torch.randn(3), expected_next)
    assert torch.manual_seed is torch.random.manual_seed
    assert torch.manual_seed.__module__ == "torch.random"
    assert "uniform_" not in torch.Tensor.__dict__ and not hasattr(torch.randn, "__wrapped__")

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def unseeded():
        return torch.randn(3)

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def private_dropout():
        # F.dropout on a SharedTensor dispatches as in the local runtime (a
        # wrapped F.dropout broke that: "unsupported function dropout"),
        # and torch.inference_mode reaches the parties, as a fork's would
        x = cryptgpu.cryptensor(torch.ones(8))
        kept = torch.nn.functional.dropout(x, 0.5, training=False).get_plain_text()
        dropped = torch.nn.Dropout(0.5)(x).get_plain_text()
        return kept, dropped, torch.is_inference_mode_enabled()

    with torch.inference_mode():
        outs = private_dropout()
    for kept, dropped, inference in outs:
        assert torch.equal(kept, torch.ones(8)) and inference
        assert set(dropped.tolist()) <= {0.0, 2.0}  # the kept ones scaled by 1/(1-p), exactly

    torch.manual_seed(11)
    drawn = unseeded()
    # no seed in the parties: each starts from the caller's state, as after a fork
    assert torch.equal(drawn[0], torch.randn(3))
    assert all(torch.equal(d, drawn[0]) for d in drawn)


def test_a_generator_made_before_the_run_gives_every_party_the_same_draws():
    """torch's reproducibility recipe, DataLoader(ds, shuffle=True,
    generator=g) with g seeded before the run: the party threads shared the
    one generator object and each drew another batch order, so party 0's
    features and party 1's labels came from different rows (silently; each
    forked party of CrypTen has its own copy of g). Each party now draws
    from its own copy, started from g's state at the run's start: every
    party's order is torch's, and g is left as forked parties leave it."""
    from torch.utils.data import DataLoader, TensorDataset

    rows = torch.arange(24, dtype=torch.float64)
    ds = TensorDataset(rows.unsqueeze(1) * torch.ones(1, 3, dtype=torch.float64), rows)
    g = torch.Generator()
    g.manual_seed(0)
    loader = DataLoader(ds, batch_size=6, shuffle=True, generator=g)
    noise = torch.Generator().manual_seed(1)
    before = g.get_state(), noise.get_state()

    @cryptgpu.mpc.run_multiprocess(world_size=3)
    def job():
        labels, gaps = [], []
        for x, y in loader:
            xs = cryptgpu.cryptensor(x, src=0)  # party 0 holds the features
            ys = cryptgpu.cryptensor(y.unsqueeze(1), src=1)  # party 1 the labels
            gaps.append((xs - ys).get_plain_text(dtype=torch.float64))  # 0 on one row
            labels.append(y)
        return torch.cat(labels), torch.cat(gaps), torch.randn(4, generator=noise)

    plain = DataLoader(ds, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0))
    want = torch.cat([y for _, y in plain])
    want_noise = torch.randn(4, generator=torch.Generator().manual_seed(1))
    for labels, gaps, drawn in job():
        assert torch.equal(labels, want)
        # integers below 2^15 are encoded exactly and subtract exactly
        assert torch.equal(gaps, torch.zeros(24, 3, dtype=torch.float64))
        assert torch.equal(drawn, want_noise)
    assert torch.equal(g.get_state(), before[0]) and torch.equal(noise.get_state(), before[1])
    assert torch.Generator is torch._C.Generator  # torch's own again


def test_seeding_a_generator_made_before_the_run_inside_the_parties_is_the_partys_own():
    """Each forked party seeds its own copy of a generator made before the
    run. The party threads share the object, and a seeding inside the party
    function was told from the other parties' only by timing: the same code
    raised RuntimeError or not depending on whether party 1 seeded before or
    after party 0's first draw, and seeding once per epoch always raised.
    Its methods now act on the party's copy: every party draws torch's
    values whatever the interleaving (forced below with Events, not sleeps).
    Permutations are integers: compared exactly."""
    g = torch.Generator()
    drawn_once, seeded, drawn_twice = threading.Event(), threading.Event(), threading.Event()

    def late_seed():
        r = cryptgpu.rank()
        if r != 0:  # party 0 seeds and draws first
            assert drawn_once.wait(10)
        if r == 2:
            assert drawn_twice.wait(10)
        g.manual_seed(5)
        if r == 1:  # party 1 seeds between party 0's two draws, then waits
            seeded.set()
            assert drawn_twice.wait(10)
        a = torch.randperm(6, generator=g)
        if r == 0:
            drawn_once.set()
            assert seeded.wait(10)
        b = torch.randperm(6, generator=g)
        if r == 0:
            drawn_twice.set()
        return torch.cat([a, b])

    torch_g = torch.Generator().manual_seed(5)
    want = torch.cat([torch.randperm(6, generator=torch_g), torch.randperm(6, generator=torch_g)])
    assert all(torch.equal(got, want) for got in cryptgpu.spmd.run(late_seed))

    def epochs(gen, seeds):
        out = []
        for seed in seeds:  # a DataLoader generator seeded per epoch
            gen.manual_seed(seed)
            out.append(torch.randperm(10, generator=gen))
            cryptgpu.cryptensor(torch.ones(1)).get_plain_text()  # the parties in step
        return torch.cat(out)

    for seeds in ((0, 1), (5, 5)):  # the same seed again starts over, as in torch
        want = torch.cat(
            [torch.randperm(10, generator=torch.Generator().manual_seed(e)) for e in seeds]
        )
        assert all(torch.equal(got, want) for got in cryptgpu.spmd.run(epochs, g, seeds))


def test_a_generator_made_before_the_run_is_left_as_it_was_when_the_parties_seed_it():
    """A forked party leaves the caller's generator as it was, also when it
    seeds its copy; the run left it in the parties' seeded state. (A
    barrier keeps the parties' seedings before their draws.)"""
    g = torch.Generator().manual_seed(3)
    torch.randn(2, generator=g)
    before = g.get_state()
    all_seeded = threading.Barrier(3)

    def job():
        g.manual_seed(5)
        all_seeded.wait(10)
        return torch.randn(2, generator=g, dtype=torch.float64)

    want = torch.randn(2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert all(torch.equal(got, want) for got in cryptgpu.spmd.run(job))  # exact: one draw
    assert torch.equal(g.get_state(), before)
    plain = torch.Generator().manual_seed(3)
    torch.randn(2, generator=plain)
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=plain))
    assert type(torch.Generator.manual_seed).__name__ == "method_descriptor"  # torch's own again


def test_a_generators_state_read_inside_the_parties_is_the_partys():
    """Saving a DataLoader generator's state inside the party function (to
    replay an epoch) read the shared object, which the run had parked at an
    unrelated state: get_state() gave garbage and initial_seed() a random
    number instead of 3, silently, and set_state of that state did not
    replay the epoch. They read and set the party's copy now, as in a forked
    process; copy.deepcopy too. Party 0 holds the features, party 1 the
    labels: their difference opens as 0 on every row (integers below 2^15
    are encoded and subtracted exactly) only when both draw torch's order."""
    import copy

    from torch.utils.data import DataLoader, TensorDataset

    rows = torch.arange(12, dtype=torch.float64)
    ds = TensorDataset(rows.unsqueeze(1), rows)
    g = torch.Generator().manual_seed(3)
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=g)

    def orders(loader, g):
        first = torch.cat([y for _, y in loader])
        state, seed, twin = g.get_state(), g.initial_seed(), copy.deepcopy(g)
        second = torch.cat([y for _, y in loader])
        g.set_state(state)
        return (
            first,
            seed,
            second,
            torch.cat([y for _, y in loader]),
            torch.randperm(5, generator=twin),
        )

    def job():
        *got, replay, twin = orders(loader, g)
        gaps = []
        for x, y in DataLoader(ds, batch_size=4, shuffle=True, generator=g):
            xs = cryptgpu.cryptensor(x, src=0)
            ys = cryptgpu.cryptensor(y.unsqueeze(1), src=1)
            gaps.append((xs - ys).get_plain_text(dtype=torch.float64))
        return got, replay, twin, torch.cat(gaps)

    plain_g = torch.Generator().manual_seed(3)
    want = orders(DataLoader(ds, batch_size=4, shuffle=True, generator=plain_g), plain_g)
    for (first, seed, second), replay, twin, gaps in cryptgpu.spmd.run(job):
        assert seed == 3
        assert torch.equal(first, want[0]) and torch.equal(second, want[2])
        assert torch.equal(replay, want[3]) and torch.equal(replay, second)
        assert torch.equal(twin, want[4])
        assert torch.equal(gaps, torch.zeros(12, 1, dtype=torch.float64))


def test_ctrl_c_while_the_party_threads_start_stops_those_started(monkeypatch):
    """A Ctrl-C that arrived while run_multiprocess started its threads
    (Thread.start waits for the thread) left the parties started computing
    to the end: the thread starts were outside the try that stops the
    parties. Party 2 is never started here."""
    import threading

    from conftest import usable

    cryptgpu.init()
    real_start = threading.Thread.start

    def start(self):
        real_start(self)
        if self.name == "cryptgpu-party-1":
            raise KeyboardInterrupt  # as Ctrl-C in party 1's start, which waits for it

    monkeypatch.setattr(threading.Thread, "start", start)
    long_job = _long_job()

    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        long_job(100_000)  # about a minute of work for party 0 alone to wait on
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert time.monotonic() - t < 10
    left = [th.name for th in threading.enumerate() if th.name.startswith("cryptgpu-party")]
    assert not left, left
    assert usable()
    cryptgpu.uninit()
