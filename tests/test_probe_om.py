"""Probe OM (2026-12-07, save / load): a plaintext save and a shared save
under one name both stayed on disk and load chose by mtime (after a copy,
or with 1-second file times, the stale plaintext object; in separate
processes the parties could choose differently and go out of step); load
of a party's own file (the path save returns) or of a file object returned
the raw record; a dataclass holding a SharedTensor was refused with advice
to call the very cryptgpu.save that was called; a namedtuple came back a
plain tuple and a SharedTensor saved twice came back as two.

Tolerance: the values are encoded once (16 fractional bits) and then only
added to public integers, which is exact: ENC = 2**-17 per value."""

import collections
import dataclasses
import glob
import os
import shutil
import textwrap

import pytest
import torch
from test_distributed import run_launcher

import cryptgpu
from conftest import ENC, assert_close, usable

D = torch.float64


def _plain_then_shared(f):
    cryptgpu.save({"w": torch.tensor([10.0, 20.0])}, f)
    cryptgpu.save({"w": cryptgpu.cryptensor(torch.tensor([1.0, 2.0]))}, f)


def test_a_copy_that_resets_file_times_loads_the_checkpoint_saved_last(session, tmp_path):
    d, f = tmp_path / "run", str(tmp_path / "run" / "ck.pt")
    d.mkdir()
    _plain_then_shared(f)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in sorted(os.listdir(d), reverse=True):  # mtimes become copy times
        shutil.copy(d / name, copy)
    got = cryptgpu.load(copy / "ck.pt")["w"]
    assert isinstance(got, cryptgpu.SharedTensor)  # was the stale plaintext tensor([10., 20.])
    assert_close(
        got.get_plain_text(dtype=D), torch.tensor([1.0, 2.0], dtype=D), ENC
    )  # ENC: one encoding
    assert not os.path.exists(f)  # the shared save removed the older plaintext one
    # and the other way: the plaintext save removes the party files, whatever the times
    g = str(tmp_path / "tick.pt")
    cryptgpu.save({"w": cryptgpu.cryptensor(torch.tensor([1.0, 2.0]))}, g)
    cryptgpu.save({"w": torch.tensor([10.0, 20.0])}, g)
    assert glob.glob(g + ".party*") == []
    assert torch.equal(cryptgpu.load(g)["w"], torch.tensor([10.0, 20.0]))


def test_both_kinds_under_one_name_are_refused_whatever_the_times(session, tmp_path):
    f = str(tmp_path / "ck.pt")
    cryptgpu.save({"w": cryptgpu.cryptensor(torch.tensor([1.0, 2.0]))}, f)
    torch.save({"w": torch.tensor([10.0, 20.0])}, f)  # as an older cryptgpu left them
    t = int(os.path.getmtime(f))
    for p in glob.glob(f + "*"):  # 1-second file times: a tie (load took f on a tie)
        os.utime(p, (t, t))
    with pytest.raises(ValueError, match=r"both a plaintext checkpoint .*ck\.pt.*party0"):
        cryptgpu.load(f)
    assert usable()
    os.remove(f)  # as the message says: then the shares load
    got = cryptgpu.load(f)["w"]
    assert_close(
        got.get_plain_text(dtype=D), torch.tensor([1.0, 2.0], dtype=D), ENC
    )  # ENC: one encoding


def test_a_party_file_or_a_file_object_is_refused_naming_the_call(session, tmp_path):
    f = str(tmp_path / "pf.pt")
    paths = cryptgpu.save(cryptgpu.cryptensor(torch.tensor([1.5, -2.0])), f)
    for p in paths:
        with pytest.raises(
            ValueError, match=r"party \d's file of checkpoint .*call cryptgpu\.load"
        ):
            cryptgpu.load(p)
    with open(paths[1], "rb") as fh, pytest.raises(ValueError, match=r"party 1's file"):
        cryptgpu.load(fh)
    assert usable()
    got = cryptgpu.load(f)
    assert_close(
        got.get_plain_text(dtype=D), torch.tensor([1.5, -2.0], dtype=D), ENC
    )  # ENC: one encoding


@dataclasses.dataclass
class Ckpt:
    weights: object
    step: int


class Slotted:
    __slots__ = ("inner",)

    def __init__(self, inner):
        self.inner = inner


def test_an_object_holding_shared_tensors_is_refused_with_the_containers_to_use(session, tmp_path):
    s = cryptgpu.cryptensor(torch.ones(2))
    for obj, name in ((Ckpt(s, 3), "Ckpt"), ({"c": [Slotted({"w": s})]}, "Slotted")):
        f = tmp_path / f"{name}.pt"
        with pytest.raises(TypeError, match=f"cannot save a {name} holding SharedTensors.*dicts"):
            cryptgpu.save(obj, f)
        assert os.listdir(tmp_path) == []  # nothing written
    assert usable()


Ck = collections.namedtuple("Ck", "weights step")


def test_a_namedtuple_comes_back_a_namedtuple(session, tmp_path):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D)
    Local = collections.namedtuple("Local", "a b")  # not importable: a class of the same fields
    f = tmp_path / "nt.pt"
    cryptgpu.save({"ck": Ck(cryptgpu.cryptensor(x), 3), "loc": Local(1.5, [2])}, f)
    o = cryptgpu.load(f)
    assert type(o["ck"]) is Ck and o["ck"].step == 3  # was a plain tuple: o.step raised
    assert type(o["loc"]).__name__ == "Local" and o["loc"]._fields == ("a", "b")
    assert o["loc"].a == 1.5 and o["loc"].b == [2]
    assert_close(o["ck"].weights.get_plain_text(dtype=D), x, ENC)  # ENC: one encoding
    assert usable()


def test_a_shared_tensor_saved_twice_comes_back_as_one(session, tmp_path):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D)
    s = cryptgpu.cryptensor(x)
    f = tmp_path / "al.pt"
    cryptgpu.save({"a": s, "b": [s], "c": (s, 1)}, f)
    o = cryptgpu.load(f)
    assert o["a"] is o["b"][0] is o["c"][0]  # was three tensors
    o["a"].add_(1)
    for t in (o["a"], o["b"][0], o["c"][0]):
        assert_close(t.get_plain_text(dtype=D), x + 1, ENC)  # ENC: one encoding, exact + 1
    assert usable()


# Each party in its own directory: "separate hosts" that see only their
# own files. Party 0 has an older plaintext file beside its shares.
JOB = textwrap.dedent(
    """
    import os, sys, torch, cryptgpu
    cryptgpu.init(seed=3, timeout_s=20)
    r = cryptgpu.rank()
    out = open(os.path.join(sys.argv[1], f"out{r}"), "w", buffering=1)
    os.makedirs(os.path.join(sys.argv[1], f"host{r}"), exist_ok=True)
    os.chdir(os.path.join(sys.argv[1], f"host{r}"))
    x = cryptgpu.cryptensor(torch.tensor([1.0, 2.0]), src=0)
    cryptgpu.save({"w": x}, "ck.pt")
    if r == 0:
        torch.save({"w": torch.tensor([10.0, 20.0])}, "ck.pt")  # as an older cryptgpu left it
    try:
        cryptgpu.load("ck.pt")
        print(r, "LOADED", file=out)
    except ValueError as e:
        msg = str(e)
        print(r, "REFUSED", "are named here" in msg, "another party found both" in msg, file=out)
    # in step: the next product is right at every party
    y = (x * x).get_plain_text(dtype=torch.float64)
    print(r, "NEXT", y.tolist(), file=out)
    # a shared filesystem: the last save's kind is what loads, at every party
    os.chdir(sys.argv[1])
    cryptgpu.save({"w": torch.tensor([7.0])}, "s.pt")
    cryptgpu.save({"w": x}, "s.pt")
    print(r, "SHARED", type(cryptgpu.load("s.pt")["w"]).__name__, file=out)
    cryptgpu.save({"w": torch.tensor([7.0])}, "s.pt")
    print(r, "PLAIN", type(cryptgpu.load("s.pt")["w"]).__name__, file=out)
    """
)


def test_parties_in_separate_processes_refuse_together_and_stay_in_step(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    r = run_launcher(script, tmp_path, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for p in range(3) for ln in (tmp_path / f"out{p}").read_text().splitlines()]
    # party 0 saw both kinds and says so; 1 and 2 failed at the same check
    assert "0 REFUSED True False" in lines, lines
    for p in (1, 2):
        assert f"{p} REFUSED False True" in lines, lines  # was: 1 and 2 loaded shares
    for p in range(3):
        nxt = next(ln for ln in lines if ln.startswith(f"{p} NEXT"))
        got = torch.tensor(eval(nxt.split(" ", 2)[2]), dtype=D)
        # x = [1, 2] encoded exactly; one product truncated once: within 2 * ENC
        assert_close(got, torch.tensor([1.0, 4.0], dtype=D), 2 * ENC)
        assert f"{p} SHARED SharedTensor" in lines and f"{p} PLAIN Tensor" in lines
