"""The CUDA kernels (kernels/*.cu) on machines without a GPU.

1. NVRTC compiles every kernel file the engine embeds, wherever libnvrtc can
   be found (the ``nvidia-cuda-nvrtc`` wheel, a test dependency, provides it
   without a GPU), so a kernel that does not compile fails CI.
2. The same files compiled as host C++ (tests/cuda_emu/emu.h) and run one
   thread at a time over a small grid give bit for bit what the CPU device
   computes: the PRG stream, bit slicing, the conv/pool data movement, the
   views, and both limb decompositions of the ring GEMM (the limb GEMMs
   themselves run in torch on the CPU here, in float64 and in int64 with an
   int32 range check, standing in for cuBLAS and cuBLASLt).

All comparisons are exact: the kernels work in the ring Z_2^64.
"""

import ctypes
import glob
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from cryptgpu import _native

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
u64p = ctypes.POINTER(ctypes.c_uint64)


# ------------------------------------------------------------------ NVRTC


def find_nvrtc():
    """libnvrtc from the nvidia-cuda-nvrtc wheel, CUDA_HOME, or the system."""
    cands = []
    try:
        import nvidia

        for base in nvidia.__path__:
            cands += glob.glob(os.path.join(base, "*", "lib", "libnvrtc.so*"))
    except ImportError:
        pass
    for home in filter(None, [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]):
        cands += glob.glob(os.path.join(home, "lib64", "libnvrtc.so*"))
    cands += ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]
    for c in cands:
        if "builtins" in c:
            continue
        try:
            return ctypes.CDLL(c, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
    return None


def test_every_kernel_compiles_with_nvrtc():
    """The engine's own NVRTC path (cudarc, dynamic loading), with libnvrtc
    from the nvidia-cuda-nvrtc wheel preloaded so that it is found."""
    if find_nvrtc() is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc provides it)")
    sources = dict(_native.cuda_kernel_sources())
    # the engine embeds exactly the files under kernels/, up to date
    assert sorted(sources) == sorted(
        p.name for p in KERNELS.iterdir() if p.suffix in (".cu", ".cuh")
    )
    for name, src in sources.items():
        assert src == (KERNELS / name).read_text(), f"{name}: embedded copy is stale"
    compiled = dict(_native.cuda_compile_kernels("compute_90"))
    assert sorted(compiled) == sorted(n for n in sources if n.endswith(".cu"))
    assert all(size > 1000 for size in compiled.values()), compiled


def test_every_kernel_is_launched_by_the_device():
    """No dead kernels: each __global__ of kernels/*.cu is in the CUDA
    device's launch table, and each table entry is in its file."""
    defined = {
        (p.name, k)
        for p in KERNELS.glob("*.cu")
        for k in re.findall(r'extern "C" __global__ void (\w+)\(', p.read_text())
    }
    table = {(f, k) for f, k, _ in _native.cuda_kernel_signatures()}
    assert defined == table


PTX_KIND = {"p": ".u64", "u64": ".u64", "u32": ".u32", "geom": ".b8[96]", "view": ".b8[144]"}


def ptx_params(ptx: str, kernel: str) -> list[str]:
    """Parameter types of `.entry kernel(...)` in PTX: .u64, .u32, or .b8[size]
    for a struct passed by value."""
    m = re.search(r"\.entry\s+" + kernel + r"\s*\((.*?)\)", ptx, re.S)
    assert m, f"kernel {kernel} is not in the PTX"
    out = []
    for p in m.group(1).split(","):
        t = re.search(r"\.param\s+(?:\.align\s+\d+\s+)?(\.\w+)\s+\w+(\[\d+\])?", p)
        out.append(t.group(1) + (t.group(2) or ""))
    return out


def test_every_launch_matches_its_kernels_parameters():
    """The CUDA device's table of what each launch site passes (which
    `launch!` checks by count at run time) against the parameters NVRTC
    compiled each kernel to: same count, and the same type and size for
    each, pointers being 64-bit and the conv.cu structs their byte size."""
    if find_nvrtc() is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc provides it)")
    sigs = _native.cuda_kernel_signatures()
    assert len(sigs) > 20
    for file, kernel, sig in sigs:
        got = ptx_params(_native.cuda_ptx(file), kernel)
        assert got == [PTX_KIND[k] for k in sig], (file, kernel, got, sig)


def test_an_unsupported_arch_is_a_value_error():
    with pytest.raises(ValueError, match="arch"):
        _native.cuda_compile_kernels("sm_1")


# --------------------------------------------------------- host emulation


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel emulation")
    out = tmp_path_factory.mktemp("emu") / "libemu.so"
    srcs = sorted(str(p) for p in KERNELS.glob("*.cu"))
    subprocess.run(
        [
            cxx,
            "-O1",
            "-shared",
            "-fPIC",
            f"-I{KERNELS}",
            "-x",
            "c++",
            "-include",
            str(ROOT / "tests/cuda_emu/emu.h"),
            *srcs,
            str(ROOT / "tests/cuda_emu/emu.cpp"),
            "-o",
            str(out),
        ],
        check=True,
    )
    return ctypes.CDLL(str(out))


def launch(lib, kernel: str, *args, grid=(3, 5)):
    """Run a kernel over a grid of 3 blocks of 5 threads, one thread at a time
    (the grid-stride loops then cover any size, as on a GPU)."""
    f = getattr(lib, kernel)
    f.restype = None
    for b in range(grid[0]):
        for t in range(grid[1]):
            lib.emu_set_thread(
                ctypes.c_uint64(b),
                ctypes.c_uint64(t),
                ctypes.c_uint64(grid[0]),
                ctypes.c_uint64(grid[1]),
            )
            f(*args)


def ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def U(v):
    return ctypes.c_uint64(int(v))


def ring(n, seed):
    return np.random.default_rng(seed).integers(0, 2**64, size=n, dtype=np.uint64)


def test_local_product_steps(emu):
    n = 37
    r = ring(n, 3)
    out = np.zeros(n, dtype=np.uint64)
    x0, x1, y0, y1 = ring(n, 4), ring(n, 5), ring(n, 6), ring(n, 7)
    with np.errstate(over="ignore"):
        launch(emu, "rss_mul_local", ptr(x0), ptr(x1), ptr(y0), ptr(y1), ptr(r), ptr(out), U(n))
        assert np.array_equal(out, x0 * y0 + x0 * y1 + x1 * y0 + r)
        launch(emu, "rss_and_local", ptr(x0), ptr(x1), ptr(y0), ptr(y1), ptr(r), ptr(out), U(n))
        assert np.array_equal(out, (x0 & y0) ^ (x0 & y1) ^ (x1 & y0) ^ r)
        launch(emu, "ring_add_scalar", ptr(x0), U(9), ptr(out), U(n))
        assert np.array_equal(out, x0 + np.uint64(9))
        launch(emu, "ring_neg", ptr(x0), ptr(out), U(n))
        assert np.array_equal(out, np.uint64(0) - x0)


def test_generic_elementwise_kernels(emu):
    """ring_map2 / ring_map2_into with every op code of the CUDA device
    (rust/engine/src/device/cuda/mod.rs op2_code), signed floor division, bit expansion."""
    n = 41
    a, b = ring(n, 31), ring(n, 32)
    out = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for code, want in enumerate([a + b, a - b, a * b, a ^ b, a & b]):
            launch(emu, "ring_map2", ptr(a), ptr(b), ptr(out), U(n), ctypes.c_uint32(code))
            assert np.array_equal(out, want), code
            d = a.copy()
            launch(emu, "ring_map2_into", ptr(d), ptr(b), U(n), ctypes.c_uint32(code))
            assert np.array_equal(d, want), code
    for div in (1, 3, 7, 65536, 1000003):
        launch(emu, "ring_div_floor", ptr(a), U(div), ptr(out), U(n))
        want = [(int(v) - (1 << 64) if v >> 63 else int(v)) // div for v in a]
        assert out.tolist() == [w % (1 << 64) for w in want], div
    plane = ring(2, 33)  # bits of 128 elements
    n_el, reps = 100, 3
    bits = np.zeros(n_el * reps, dtype=np.uint64)
    launch(emu, "expand_bits", ptr(plane), U(n_el), U(reps), ptr(bits))
    want = [(int(plane[(i // reps) // 64]) >> ((i // reps) % 64)) & 1 for i in range(n_el * reps)]
    assert bits.tolist() == want


def test_scatter_and_index_kernels(emu):
    # scatter is the inverse placement of gather: pad a 3x4 into 5x7 at (1, 2)
    src = ring(12, 34)
    dst = np.zeros(35, dtype=np.uint64)
    v = View(2, 1 * 7 + 2, (ctypes.c_uint64 * 8)(3, 4), (ctypes.c_uint64 * 8)(7, 1))
    launch(emu, "scatter", ptr(src), v, ptr(dst), U(12))
    want = np.zeros((5, 7), dtype=np.uint64)
    want[1:4, 2:6] = src.reshape(3, 4)
    assert np.array_equal(dst.reshape(5, 7), want)
    idx = np.array([3, 0, 3, 5, 1, 3], dtype=np.uint64)
    x = ring(6, 35)
    g = np.zeros(6, dtype=np.uint64)
    launch(emu, "index_gather", ptr(x), ptr(idx), ptr(g), U(6))
    assert g.tolist() == [x[int(i)] for i in idx]
    acc = np.zeros(6, dtype=np.uint64)
    launch(emu, "index_scatter_add", ptr(x), ptr(idx), ptr(acc), U(6))
    want = np.zeros(6, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, i in enumerate(idx):
            want[int(i)] += x[j]
    assert np.array_equal(acc, want)


def test_prg_matches_the_cpu_stream(emu):
    key = bytes(range(16))
    rk = np.zeros(176, dtype=np.uint8)
    kb = np.frombuffer(key, dtype=np.uint8).copy()
    launch(emu, "aes128_key_expand", ptr(kb), ptr(rk), grid=(1, 1))
    for counter, n in [(0, 10), (5, 7), (2**64 - 2, 9), (123456789, 64)]:
        out = np.zeros(n, dtype=np.uint64)
        launch(
            emu, "aes128_ctr_fill", ptr(rk), U(counter % 2**64), U(counter >> 64), ptr(out), U(n)
        )
        want = np.frombuffer(_native.prg_words(key, counter, n), dtype="<u8")
        assert np.array_equal(out, want), (counter, n)


def test_bit_slicing(emu):
    n = 150
    nw = (n + 63) // 64
    x = ring(n, 8)
    planes = np.zeros(64 * nw, dtype=np.uint64)
    launch(emu, "to_planes", ptr(x), U(n), U(nw), ptr(planes))
    # plane j, word w, bit b holds bit j of element 64 w + b; bits past n are 0
    for j in range(64):
        for e in range(64 * nw):
            want = (int(x[e]) >> j) & 1 if e < n else 0
            assert (int(planes[j * nw + e // 64]) >> (e % 64)) & 1 == want, (j, e)
    back = np.zeros(n, dtype=np.uint64)
    launch(emu, "from_planes", ptr(planes), U(n), U(nw), ptr(back))
    assert np.array_equal(back, x)


class Geom(ctypes.Structure):
    _fields_ = [
        (f, ctypes.c_uint64)
        for f in ("n", "c", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw")
    ]


class View(ctypes.Structure):
    _fields_ = [
        ("ndim", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
        ("shape", ctypes.c_uint64 * 8),
        ("strides", ctypes.c_uint64 * 8),
    ]


def small_ints(shape, seed):
    return torch.randint(-50, 50, shape, generator=torch.Generator().manual_seed(seed))


def test_im2col_col2im_window_sum_match_torch(emu):
    n, c, h, w, kh, kw, s, p, d = 2, 3, 6, 5, 3, 2, (2, 1), (1, 1), (1, 2)
    g = Geom(n, c, h, w, kh, kw, s[0], s[1], p[0], p[1], d[0], d[1])
    x = small_ints((n, c, h, w), 1)
    want = torch.nn.functional.unfold(x.double(), (kh, kw), d, p, s).long()  # n, c*kh*kw, L
    oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    xs = x.numpy().astype(np.int64).view(np.uint64).ravel().copy()
    cols = np.zeros(c * kh * kw * n * oh * ow, dtype=np.uint64)
    launch(emu, "im2col", ptr(xs), g, U(0), U(c), ptr(cols))
    got = torch.from_numpy(cols.view(np.int64).reshape(c * kh * kw, n, oh * ow)).permute(1, 0, 2)
    assert torch.equal(got, want)
    # col2im is the adjoint (fold sums overlapping windows)
    y = small_ints((c * kh * kw, n, oh * ow), 2)
    ys = y.numpy().astype(np.int64).view(np.uint64).ravel().copy()
    back = np.zeros(n * c * h * w, dtype=np.uint64)
    launch(emu, "col2im", ptr(ys), g, ptr(back))
    fold = torch.nn.functional.fold(y.permute(1, 0, 2).double(), (h, w), (kh, kw), d, p, s).long()
    assert torch.equal(torch.from_numpy(back.view(np.int64).reshape(n, c, h, w)), fold)
    # window sums: avg_pool2d with count_include_pad times the window size
    gp = Geom(n, c, h, w, 3, 3, 2, 2, 1, 1, 1, 1)
    ph, pw = (h + 2 - 2 - 1) // 2 + 1, (w + 2 - 2 - 1) // 2 + 1
    ws = np.zeros(n * c * ph * pw, dtype=np.uint64)
    launch(emu, "window_sum", ptr(xs), gp, ptr(ws))
    want = torch.nn.functional.avg_pool2d(x.double(), 3, 2, 1) * 9
    assert torch.equal(torch.from_numpy(ws.view(np.int64).reshape(want.shape)), want.round().long())


def test_gather_and_sum_axis(emu):
    src = np.arange(1000, dtype=np.uint64)
    shape, strides, off = [3, 4, 5], [200, 30, 2], 7
    v = View(3, off, (ctypes.c_uint64 * 8)(*shape), (ctypes.c_uint64 * 8)(*strides))
    out = np.zeros(60, dtype=np.uint64)
    launch(emu, "gather", ptr(src), v, ptr(out), U(60))
    want = [off + i * 200 + j * 30 + k * 2 for i in range(3) for j in range(4) for k in range(5)]
    assert out.tolist() == want
    x = ring(2 * 7 * 3, 9)
    s = np.zeros(6, dtype=np.uint64)
    launch(emu, "sum_axis", ptr(x), U(2), U(7), U(3), ptr(s))
    with np.errstate(over="ignore"):
        assert np.array_equal(s, x.reshape(2, 7, 3).sum(axis=1, dtype=np.uint64).ravel())


def ring_gemm_cpu(a, b, m, k, n):
    return np.frombuffer(_native.ring_gemm(m, k, n, a.tobytes(), b.tobytes()), dtype="<u8")


def test_gemm_by_16_bit_limbs_in_float64(emu):
    m, k, n = 5, 33, 4
    a, b = ring(m * k, 10), ring(k * n, 11)
    la = np.zeros(4 * m * k, dtype=np.float64)
    lb = np.zeros(4 * k * n, dtype=np.float64)
    launch(emu, "limbs16_split", ptr(a), U(m * k), ptr(la))
    launch(emu, "limbs16_split", ptr(b), U(k * n), ptr(lb))
    parts = np.zeros(4 * m * n, dtype=np.float64)
    la_, lb_ = la.reshape(4, m, k), lb.reshape(4, k, n)
    for s in range(4):
        # cuBLAS DGEMM stands here, one product per limb pair accumulated into
        # partial s (beta = 1); exact while (s + 1) k 2^32 < 2^53
        acc = torch.zeros(m, n, dtype=torch.float64)
        for i in range(s + 1):
            acc += torch.from_numpy(la_[i]) @ torch.from_numpy(lb_[s - i])
        parts[s * m * n : (s + 1) * m * n] = acc.numpy().ravel()
    c = np.zeros(m * n, dtype=np.uint64)
    launch(emu, "limbs16_combine", ptr(parts), U(m * n), ctypes.c_uint32(0), ptr(c))
    assert np.array_equal(c, ring_gemm_cpu(a, b, m, k, n))


def test_gemm_by_8_bit_limbs_in_int8_with_int32_accumulation(emu):
    m, k, n = 4, 29, 6
    a, b = ring(m * k, 12), ring(k * n, 13)
    da = np.zeros(8 * m * k, dtype=np.int8)
    db = np.zeros(8 * k * n, dtype=np.int8)
    launch(emu, "limbs8_split", ptr(a), U(m * k), ptr(da))
    launch(emu, "limbs8_split", ptr(b), U(k * n), ptr(db))
    parts = np.zeros(8 * m * n, dtype=np.int32)
    da_, db_ = da.astype(np.int64).reshape(8, m, k), db.astype(np.int64).reshape(8, k, n)
    for s in range(8):
        # cuBLAS int8 GemmEx with int32 accumulation stands here, one product
        # per digit pair accumulated into partial s: computed in int64 and
        # checked to fit int32, which the K chunking guarantees
        acc = torch.zeros(m, n, dtype=torch.int64)
        for i in range(s + 1):
            acc += torch.from_numpy(da_[i]) @ torch.from_numpy(db_[s - i])
            assert acc.abs().max() < 2**31
        parts[s * m * n : (s + 1) * m * n] = acc.numpy().astype(np.int32).ravel()
    c = np.zeros(m * n, dtype=np.uint64)
    launch(emu, "limbs8_combine", ptr(parts), U(m * n), ctypes.c_uint32(0), ptr(c))
    assert np.array_equal(c, ring_gemm_cpu(a, b, m, k, n))


@pytest.mark.skipif(
    not __import__("cryptgpu").cuda_is_available(),
    reason="no CUDA GPU here (cryptgpu.cuda_is_available() is False)",
)
def test_the_cuda_device_matches_the_cpu_bit_for_bit():
    """Same seed, same inputs: every op routed through the device (products,
    convolution, pooling, views, the comparison circuits, a training step)
    opens to the same bits on CUDA as on the CPU: the device PRG draws the
    CPU's stream and every operation is exact in the ring."""
    import cryptgpu

    g = torch.Generator().manual_seed(0)
    a = torch.randn(33, 70, generator=g, dtype=torch.float64)
    b = torch.randn(70, 17, generator=g, dtype=torch.float64)
    img = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)

    def run(device):
        cryptgpu.init(device=device, seed=3)
        x, y = cryptgpu.cryptensor(a), cryptgpu.cryptensor(b, src=1)
        im, ww = cryptgpu.cryptensor(img), cryptgpu.cryptensor(w, src=2)
        f64 = torch.float64
        c = im.conv2d(ww, stride=(2, 1), padding=1)
        out = [
            (x @ y).get_plain_text(dtype=f64),
            c.get_plain_text(dtype=f64),
            im.avg_pool2d(2).get_plain_text(dtype=f64),
            im.permute(0, 2, 3, 1)[:, ::2].get_plain_text(dtype=f64),
            # the binary circuits, bit injection and the data movement of
            # pooling, padding, concatenation and reductions
            c.relu().get_plain_text(dtype=f64),
            (x < 0.1).get_plain_text(dtype=f64),
            im.max_pool2d(2).get_plain_text(dtype=f64),
            im.pad((1, 2, 0, 1)).get_plain_text(dtype=f64),
            cryptgpu.cat([x, x * 2], dim=1).get_plain_text(dtype=f64),
            im.sum(dim=(0, 2, 3)).get_plain_text(dtype=f64),
            im.mean(dim=1).get_plain_text(dtype=f64),
        ]
        # one training step of a small CNN: col2im, max-pool backward
        # (index scatter-add), truncation of gradients
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 4 * 4, 3),
        )
        pm = cryptgpu.nn.from_pytorch(net).encrypt(src=0).train()
        opt = cryptgpu.optim.SGD(pm.parameters(), lr=0.1)
        target = cryptgpu.cryptensor(torch.eye(3)[[0, 2]].double(), src=1)
        loss = cryptgpu.nn.MSELoss()(pm(im[:, :, :8, :8]), target)
        loss.backward()
        opt.step()
        out += [p.get_plain_text(dtype=f64) for p in pm.parameters()]
        cryptgpu.uninit()
        return out

    for got, want in zip(run("cuda"), run("cpu")):
        assert torch.equal(got, want)


@pytest.mark.skipif(
    not __import__("cryptgpu").cuda_is_available(),
    reason="no CUDA GPU here (cryptgpu.cuda_is_available() is False)",
)
def test_cuda_messages_between_party_streams_survive_memory_reuse():
    """Many rounds on large tensors whose results are dropped at once, so
    the stream-ordered allocator hands their memory out again while the
    parties' streams run: the openings must equal the CPU's bit for bit.
    cudarc tracks one reader per allocation, so a message read from two
    streams and freed after the last reader only would corrupt some; the
    device copies each message on the receiver's stream instead."""
    import cryptgpu

    g = torch.Generator().manual_seed(1)
    a = torch.rand(1 << 20, generator=g, dtype=torch.float64) * 2 - 1

    def run(device):
        cryptgpu.init(device=device, seed=7)
        x = cryptgpu.cryptensor(a)
        out = []
        for i in range(30):
            y = x * x
            z = (y + x) * x
            del y
            if i % 10 == 9:
                out.append(z.get_plain_text(dtype=torch.float64))
        cryptgpu.uninit()
        return out

    for got, want in zip(run("cuda"), run("cpu")):
        assert torch.equal(got, want)


def test_the_gpu_ring_gemm_needs_a_gpu_or_matches_the_cpu():
    import cryptgpu

    a, b = ring(6 * 5, 20), ring(5 * 4, 21)
    if not cryptgpu.cuda_is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            _native.cuda_ring_gemm(6, 5, 4, a.tobytes(), b.tobytes())
    else:
        got = np.frombuffer(_native.cuda_ring_gemm(6, 5, 4, a.tobytes(), b.tobytes()), dtype="<u8")
        assert np.array_equal(got, ring_gemm_cpu(a, b, 6, 5, 4))
