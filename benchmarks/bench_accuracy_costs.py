"""Cost of the range-reduced functions and the other accuracy fixes of
2026-12-05 (three sessions): wall time (best of 3), rounds and bytes per
party (the busiest party's, counted by the engine) of one call each, on the
CPU local runtime.

Run: python3 benchmarks/bench_accuracy_costs.py (a few seconds); the
numbers are in benchmarks/RESULTS.md ("Accuracy fixes of 2026-12-05",
"2026-12-05 (eighth session)", "(tenth session)", "(eleventh session)",
"(twelfth session)" and "2026-12-07 (twenty-sixth session)").
"""

import time

import torch

import cryptgpu


def measure(name, fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        cryptgpu.reset_stats()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    st = cryptgpu.stats()["total"]
    print(f"| {name} | {best * 1e3:.1f} | {st['rounds']} | {st['bytes_per_party'] / 1e6:.2f} |")


def main():
    cryptgpu.init(seed=1)
    n = 10000
    a = torch.rand(n, dtype=torch.float64) * 50 + 0.5
    x = cryptgpu.cryptensor(a)
    print("| operation | ms | rounds | MB per party |\n|---|---|---|---|")
    measure("sqrt", lambda: x.sqrt())
    measure("inv_sqrt", lambda: x.inv_sqrt())
    measure("log", lambda: x.log())
    measure("gelu (inference)", lambda: x.gelu())
    measure("relu", lambda: x.relu())
    rows = cryptgpu.cryptensor(torch.randn(8, 128, dtype=torch.float64))
    measure("log_softmax 8x128", lambda: rows.log_softmax(1))

    def mean_backward():
        z = cryptgpu.cryptensor(a, requires_grad=True)
        z.mean().backward()

    measure("mean forward+backward", mean_backward)
    target = cryptgpu.cryptensor((torch.rand(1000) > 0.5).double())

    def bce():
        z = cryptgpu.cryptensor(torch.randn(1000, dtype=torch.float64) * 3, requires_grad=True)
        cryptgpu.nn.BCEWithLogitsLoss()(z, target).backward()

    measure("BCEWithLogits 1000 fwd+bwd", bce)
    logits = cryptgpu.cryptensor(torch.randn(64, 10, dtype=torch.float64) * 3)
    labels = torch.randint(0, 10, (64,))
    measure("CrossEntropy value 64x10", lambda: cryptgpu.nn.CrossEntropyLoss()(logits, labels))
    # eighth session: the range-reduced reciprocal, sigmoid's and softmax's
    # Newton steps, BatchNorm/LayerNorm's chunked variance, wide argmax
    s = cryptgpu.cryptensor(torch.randn(n, dtype=torch.float64) * 4)
    measure("sigmoid", lambda: s.sigmoid())
    measure("tanh", lambda: s.tanh())
    measure("reciprocal (x in [0.5, 50.5])", lambda: x.reciprocal())
    measure("softmax 8x128", lambda: rows.softmax(1))
    wide = cryptgpu.cryptensor(torch.randn(8, 512, dtype=torch.float64))
    measure("softmax 8x512", lambda: wide.softmax(1))
    h = cryptgpu.cryptensor(torch.randn(32, 768, dtype=torch.float64))
    measure("layer_norm 32x768", lambda: torch.nn.functional.layer_norm(h, (768,)))
    bn = cryptgpu.nn.BatchNorm2d(64).encrypt().train()
    img = cryptgpu.cryptensor(torch.randn(16, 64, 8, 8, dtype=torch.float64))
    measure("BatchNorm2d 16x64x8x8 training forward", lambda: bn(img))
    vocab = cryptgpu.cryptensor(torch.randn(2, 2000, dtype=torch.float64))
    measure("argmax 2x2000", lambda: vocab.argmax(-1))
    # tenth session: division range-reduced in the divisor (against the
    # earlier x times 1/y), erf, logsumexp, the scatter family, the
    # adaptive optimisers' steps, a self-attention's packed projection
    num = cryptgpu.cryptensor(torch.randn(n, dtype=torch.float64) * 100)
    measure("x / y (y in [0.5, 50.5], range-reduced in y)", lambda: num / x)
    measure("x * y.reciprocal() (the earlier division)", lambda: num * x.reciprocal())
    measure("erf", lambda: s.erf())
    measure("logsumexp 8x128", lambda: rows.logsumexp(1))
    idx = torch.randint(0, 100, (n,))
    base = cryptgpu.cryptensor(torch.zeros(100, dtype=torch.float64))
    measure("index_add of 10000 into 100", lambda: base.index_add(0, idx, s))
    for name in ("SGD", "Adam", "RMSprop", "Adagrad"):
        p = cryptgpu.cryptensor(torch.randn(n, dtype=torch.float64), requires_grad=True)
        opt = getattr(cryptgpu.optim, name)([p], lr=1e-3)

        def step(p=p, opt=opt):
            p.grad = s * 0.1
            opt.step()

        measure(f"{name} step, {n} parameters", step)
    if hasattr(cryptgpu.nn, "LSTM"):
        lstm = cryptgpu.nn.LSTM(32, 64).encrypt().eval()
        seq = cryptgpu.cryptensor(torch.randn(16, 8, 32, dtype=torch.float64))
        measure("LSTM 32->64, 16 steps, batch 8", lambda: lstm(seq))
    # eleventh session: exp range-reduced (CrypTen's limit kept as
    # exp_crypten), einsum, RMSNorm, a reflection pad, an LSTM cell step,
    # torch.autograd.grad
    e = cryptgpu.cryptensor(torch.rand(n, dtype=torch.float64) * 36 - 16)
    measure("exp (range-reduced), x in [-16, 20]", lambda: e.exp())
    if hasattr(cryptgpu.functions, "exp_crypten"):
        measure("exp_crypten (the earlier exp)", lambda: cryptgpu.functions.exp_crypten(e))
    q = cryptgpu.cryptensor(torch.randn(2, 4, 64, 16, dtype=torch.float64))
    measure("einsum bhqd,bhkd->bhqk 2x4x64x16", lambda: torch.einsum("bhqd,bhkd->bhqk", q, q))
    measure("q @ k^T, the same product", lambda: q.matmul(q.transpose(-2, -1)))
    if hasattr(cryptgpu.nn, "RMSNorm"):
        rms = cryptgpu.nn.RMSNorm(768).encrypt()
        measure("RMSNorm 32x768", lambda: rms(h))
    reflect = torch.nn.functional.pad
    measure("F.pad reflect 16x64x8x8 by 1", lambda: reflect(img, (1,) * 4, "reflect"))
    if hasattr(cryptgpu.nn, "LSTMCell"):
        cell = cryptgpu.nn.LSTMCell(32, 64).encrypt()
        h0 = cryptgpu.cryptensor(torch.zeros(8, 64, dtype=torch.float64))
        measure("LSTMCell 32->64 step, batch 8", lambda: cell(seq[0], (h0, h0)))
    # twelfth session: the new layers, and cross-entropy with a shared target
    interp = torch.nn.functional.interpolate
    measure(
        "interpolate bilinear x2, 16x64x8x8", lambda: interp(img, scale_factor=2, mode="bilinear")
    )
    measure("interpolate nearest x1.5, 16x64x8x8 (local)", lambda: interp(img, scale_factor=1.5))
    if hasattr(cryptgpu.nn, "LocalResponseNorm"):
        lrn = cryptgpu.nn.LocalResponseNorm(5)
        measure("LocalResponseNorm(5) 16x64x8x8", lambda: lrn(img))
    pool = torch.nn.functional.max_pool2d
    measure("max_pool2d 3/2 16x64x8x8", lambda: pool(img, 3, 2))
    measure("max_pool2d 3/2 ceil_mode 16x64x8x8", lambda: pool(img, 3, 2, ceil_mode=True))
    aap = torch.nn.functional.adaptive_avg_pool2d
    measure("adaptive_avg_pool2d 16x64x8x8 to 3x3", lambda: aap(img, 3))
    amp = torch.nn.functional.adaptive_max_pool2d
    measure("adaptive_max_pool2d 16x64x8x8 to 3x3", lambda: amp(img, 3))
    measure(
        "avg_pool2d 3/2/1 count_include_pad=False", lambda: img.avg_pool2d(3, 2, 1, False, False)
    )
    onehot = torch.nn.functional.one_hot(torch.arange(64) % 10, 10).double()
    shared_y = cryptgpu.cryptensor(onehot)

    def ce_shared_target():
        z = cryptgpu.cryptensor(torch.randn(64, 10, dtype=torch.float64), requires_grad=True)
        cryptgpu.nn.CrossEntropyLoss()(z, shared_y).backward()

    measure("CrossEntropy 64x10 shared one-hot fwd+bwd", ce_shared_target)
    # twenty-sixth session: sin and cos (both from one evaluation)
    if hasattr(s, "cossin"):
        measure("cossin (x ~ 4 N(0, 1))", lambda: s.cossin())
        measure("sin (x ~ 4 N(0, 1))", lambda: s.sin())


if __name__ == "__main__":
    main()
