"""Each engine error reaches Python as its own exception class: a subclass of
cryptgpu.CryptGPUError (a RuntimeError) and of the builtin callers already
catch (ValueError, MemoryError, RuntimeError)."""

import pickle
import struct

import pytest
import torch

import cryptgpu
from cryptgpu import _native

# EngineError variant -> (class name, builtin base)
KINDS = {
    "Shape": ("ShapeError", ValueError),
    "Encoding": ("EncodingError", ValueError),
    "Invalid": ("InvalidArgumentError", ValueError),
    "Peer": ("PeerError", RuntimeError),
    "Unavailable": ("UnavailableError", RuntimeError),
    "OutOfMemory": ("OutOfMemoryError", MemoryError),
    "Internal": ("InternalError", RuntimeError),
}


def cls(name):
    return getattr(_native, name)


def one():
    return struct.pack("<d", 1.0)


def test_base_class_is_a_runtime_error():
    assert issubclass(_native.CryptGPUError, RuntimeError)
    assert not issubclass(_native.CryptGPUError, ValueError)
    assert cryptgpu.CryptGPUError is _native.CryptGPUError


@pytest.mark.parametrize("variant", sorted(KINDS))
def test_one_class_per_variant(variant):
    name, builtin = KINDS[variant]
    c = cls(name)
    assert issubclass(c, _native.CryptGPUError)
    assert issubclass(c, builtin)
    assert c.__module__ == "cryptgpu._native" and c.__name__ == name
    assert c.__doc__
    # Wherever the package re-exports a name, it is the same class.
    assert getattr(cryptgpu, name, c) is c
    # Exceptions cross process boundaries (spmd, multiprocessing) by pickle.
    e = pickle.loads(pickle.dumps(c("message")))
    assert type(e) is c and str(e) == "message"


def test_classes_are_distinct():
    classes = [cls(n) for n, _ in KINDS.values()]
    assert len(set(classes)) == len(classes)
    for a in classes:
        for b in classes:
            assert a is b or not issubclass(a, b)


def test_value_errors_are_not_memory_errors():
    for name in ("ShapeError", "EncodingError", "InvalidArgumentError"):
        assert not issubclass(cls(name), MemoryError)
    assert not issubclass(_native.OutOfMemoryError, ValueError)


def test_shape_error(session):
    x = cryptgpu.cryptensor(torch.ones(2, 3))
    y = cryptgpu.cryptensor(torch.ones(4, 5))
    with pytest.raises(_native.ShapeError, match="reshape") as e:
        x.reshape(4, 2)
    assert isinstance(e.value, ValueError) and isinstance(e.value, cryptgpu.CryptGPUError)
    with pytest.raises(_native.ShapeError, match="cat"):
        cryptgpu.cat([x, y], dim=0)
    with pytest.raises(_native.ShapeError, match="buffer sizes"):
        _native.ring_gemm(2, 2, 2, b"", b"")


def test_encoding_error(session):
    for bad in ([float("nan")], [float("inf")], [2.0**40]):
        with pytest.raises(_native.EncodingError) as e:
            cryptgpu.cryptensor(bad)
        assert isinstance(e.value, ValueError) and isinstance(e.value, cryptgpu.CryptGPUError)
    x = cryptgpu.cryptensor([1.0])
    with pytest.raises(_native.EncodingError):
        x + float("nan")


def test_invalid_argument_from_the_engine(session):
    x = cryptgpu.cryptensor([1.0])
    with pytest.raises(_native.InvalidArgumentError, match="party") as e:
        x.party_shares(5)
    assert isinstance(e.value, ValueError) and isinstance(e.value, cryptgpu.CryptGPUError)
    s = _native.Session(seed=1)
    with pytest.raises(_native.InvalidArgumentError, match="src"):
        s.share(one(), [1], 5)
    with pytest.raises(_native.InvalidArgumentError, match="dst"):
        s.reveal_to(s.share(one(), [1], 0), 7)


def test_invalid_argument_from_the_binding():
    # Arguments the binding checks before calling the engine.
    with pytest.raises(_native.InvalidArgumentError, match="timeout_s"):
        _native.Session(timeout_s=-1.0)
    with pytest.raises(_native.InvalidArgumentError, match="unknown device"):
        _native.Session(device="tpu")
    with pytest.raises(_native.InvalidArgumentError, match="multiple of 8"):
        _native.Session().share(b"abc", [1], 0)
    s = _native.Session(seed=1)
    x = s.share(struct.pack("<d", 1.5), [1], 0)
    with pytest.raises(_native.InvalidArgumentError, match="int64 buffer"):
        s.mul_public_int(x, b"abc")  # integer factors travel as int64 bytes
    three = s.mul_public_int(x, struct.pack("<q", -3))
    assert struct.unpack("<d", s.reveal(three))[0] == -4.5  # exact: no truncation
    with pytest.raises(_native.InvalidArgumentError, match="16 bytes"):
        _native.prg_words(b"short", 0, 1)
    with pytest.raises(_native.InvalidArgumentError, match="arch"):
        _native.cuda_ptx("prg.cu", arch="sm_1")
    peers = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    for kwargs, msg in [
        (dict(peers=peers[:1]), "3 peer addresses"),
        (dict(peers=["no port"] * 3), "resolve"),
        (dict(peers=peers, transport="udp"), "transport"),
        (dict(peers=peers, transport="tcp", bind="127.0.0.1:4"), "bind"),
        (dict(peers=peers, key="00"), "both key and pubkeys"),
        (dict(peers=peers, key="00", pubkeys=["00"] * 3), "64 hex digits"),
        (dict(peers=peers, key="0" * 64, pubkeys=["0" * 64] * 2), "3 public keys"),
    ]:
        with pytest.raises(_native.InvalidArgumentError, match=msg):
            _native.Session.connect(0, **kwargs)
    # A party given another party's private key is told at once (it used to
    # learn it when its neighbours' timeout ran out), before it connects.
    pairs = [_native.generate_keypair() for _ in range(3)]
    pubkeys = [pub for _, pub in pairs]
    with pytest.raises(_native.InvalidArgumentError, match="party 1's key"):
        _native.Session.connect(0, peers, key=pairs[1][0], pubkeys=pubkeys, timeout_s=60.0)
    other, _ = _native.generate_keypair()
    with pytest.raises(_native.InvalidArgumentError, match="none of the three"):
        _native.Session.connect(2, peers, key=other, pubkeys=pubkeys, timeout_s=60.0)
    # a list naming one key twice, or an all-zero key, used to fail only at
    # the timeout (blaming encryption settings): refused before connecting
    twice = [pubkeys[0], pubkeys[1], pubkeys[1]]
    with pytest.raises(_native.InvalidArgumentError, match="same key"):
        _native.Session.connect(0, peers, key=pairs[0][0], pubkeys=twice, timeout_s=60.0)
    zero = [pubkeys[0], "0" * 64, pubkeys[2]]
    with pytest.raises(_native.InvalidArgumentError, match="not a usable X25519 key"):
        _native.Session.connect(0, peers, key=pairs[0][0], pubkeys=zero, timeout_s=60.0)


def test_a_key_variable_naming_a_file_without_its_at_sign(tmp_path, monkeypatch):
    key, _ = _native.generate_keypair()
    path = tmp_path / "party0.key"
    path.write_text(key)
    monkeypatch.setenv("CRYPTGPU_KEY", str(path))
    monkeypatch.setenv("CRYPTGPU_PUBKEYS", ",".join(["0" * 64] * 3))
    with pytest.raises(ValueError, match="@"):
        cryptgpu.init(rank=0, peers=["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])


def test_peer_error():
    def f():
        n = 3 if cryptgpu.rank() == 1 else 2  # party 1 disagrees on the shape
        x = cryptgpu.cryptensor(torch.ones(n), src=0)
        return (x * x).get_plain_text()

    with pytest.raises(_native.PeerError) as e:
        cryptgpu.spmd.run(f, seed=1, timeout_s=10)
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, cryptgpu.CryptGPUError)


@pytest.mark.skipif(cryptgpu.cuda_is_available(), reason="needs a machine without a GPU")
def test_unavailable_error_without_a_gpu():
    with pytest.raises(_native.UnavailableError, match="GPU") as e:
        _native.Session(device="cuda")
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, cryptgpu.CryptGPUError)
    with pytest.raises(_native.UnavailableError):
        _native.cuda_ring_gemm(1, 1, 1, bytes(8), bytes(8))
    # The package checks for a GPU itself first: still a RuntimeError.
    with pytest.raises(RuntimeError, match="GPU"):
        cryptgpu.init(device="cuda")


def test_out_of_memory_error():
    s = _native.Session(seed=1)
    x = s.share(one(), [1], 0)
    with pytest.raises(_native.OutOfMemoryError, match="allocate") as e:
        s.pad(x, [(2**61, 0)])  # 2^61 ring elements: more than any allocator gives
    assert isinstance(e.value, MemoryError) and isinstance(e.value, cryptgpu.CryptGPUError)
    # The session survives the refusal.
    y = s.add(x, x)
    assert struct.unpack("<d", s.reveal(y)) == (2.0,)


def test_out_of_memory_inside_a_protocol_keeps_the_session(session):
    """A product whose output cannot fit (2^40 elements, 8 TB per share) is
    refused by all three parties before their first round: a MemoryError,
    and the session stays in step and usable (it is not marked broken)."""
    a = cryptgpu.cryptensor(torch.ones(2**20, 1))
    b = cryptgpu.cryptensor(torch.ones(1, 2**20))
    with pytest.raises(MemoryError, match="cannot allocate"):
        a @ b
    with pytest.raises(MemoryError):
        a.expand(2**20, 2**20)
    x = cryptgpu.cryptensor(torch.tensor([1.5, -2.0]))
    # Exact: a product of values on the fixed-point grid, one truncation of
    # an exact product (no rounding for these values).
    assert (x * x).get_plain_text().tolist() == [2.25, 4.0]
