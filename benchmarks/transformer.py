"""Private inference of transformer encoders (issue 19) on the local
three-party runtime, CPU: BERT-tiny at sequence length 128, a ViT-Tiny on
32x32 images (4x4 patches, 64 tokens), one BERT-base encoder layer on 128
hidden states and the whole BERT-base (12 layers, 128 tokens; timed cold),
random weights, batch 1. Wall time of a forward after a warm-up (the
median of --reps; BERT-base once, cold; the input shared before timing,
the logits opened inside it), rounds and MB per party as the engine counts
them, the time per layer kind (linear; LayerNorm; GELU; the rest:
attention's products and softmax, residuals, opening the logits), and
plaintext float64 PyTorch on the same forward beside it.

    python benchmarks/transformer.py [--models bert_tiny,vit_tiny,bert_base_layer,bert_base]

Prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import cryptgpu
from cryptgpu import models


def _bert(make):
    torch.manual_seed(0)
    model = make(vocab=30522, max_len=128).double().eval()
    ids = torch.randint(0, 30522, (1, 128))
    return model, ids, lambda: cryptgpu.cryptensor(F.one_hot(ids, 30522).double(), src=1)


def _vit():
    torch.manual_seed(0)
    img = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    model = models.vit_tiny(32, 4, 3, 10).double().eval()
    return model, img, lambda: cryptgpu.cryptensor(img, src=1)


def _bert_base_layer():
    """One BERT-base encoder layer (post-norm, GELU, width 768, 12 heads,
    MLP 3072) on 128 shared hidden states."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True
    )
    model = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False).double().eval()
    h = torch.randn(1, 128, 768, dtype=torch.float64)
    return model, h, lambda: cryptgpu.cryptensor(h, src=1)


# name -> builder of (model, plaintext input, private input maker); built
# one at a time (BERT-base's embedding table alone is 23M words per share).
CASES = {
    "bert_tiny": lambda: _bert(models.bert_tiny),
    "vit_tiny": _vit,
    "bert_base_layer": _bert_base_layer,
    "bert_base": lambda: _bert(models.bert_base),
}
# Timed cold (no warm-up forward): a warm-up would double a long run.
COLD = {"bert_base"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(CASES))
    ap.add_argument("--reps", type=int, default=3, help="timed forwards after the warm-up (median)")
    opts = ap.parse_args()
    if opts.reps < 1:
        ap.error("--reps must be at least 1")
    want = opts.models.split(",")
    cryptgpu.init()
    print(
        "| model | tokens | private s | plaintext s | rounds | MB per party | linear s "
        "| LayerNorm s | GELU s | attention and rest s | max abs logit error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in want:
        model, plain_in, private_in = CASES[name]()
        pm = cryptgpu.nn.from_pytorch(model, plain_in).encrypt()
        x = private_in()
        if name not in COLD:
            pm(x).get_plain_text()  # warm-up
        runs = []
        for _ in range(1 if name in COLD else opts.reps):
            cryptgpu.reset_stats()
            t = time.perf_counter()
            out = pm(x).get_plain_text(dtype=torch.float64)
            runs.append((time.perf_counter() - t, cryptgpu.stats(per_layer=True)))
        # The run of median wall time, with its own per-layer split.
        wall, st = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        plains = []
        for _ in range(len(runs)):
            t = time.perf_counter()
            with torch.no_grad():
                ref = model(plain_in)
            plains.append(time.perf_counter() - t)
        plain = sorted(plains)[len(plains) // 2]
        tot = st["total"]
        layers = st.get("layers", {})
        secs = [layers.get(k, {}).get("time_s", 0.0) for k in ("linear", "batchnorm", "relu")]
        secs.append(wall - sum(secs))  # attention products, softmax, residuals, opening
        tokens = plain_in.shape[1] if plain_in.dim() in (2, 3) else (32 // 4) ** 2
        print(
            f"| {name} | {tokens} | {wall:.2f} | {plain:.4f} | {tot['rounds']} | "
            f"{tot['bytes_per_party'] / 1e6:.1f} | "
            + " | ".join(f"{v:.2f}" for v in secs)
            + f" | {(out - ref).abs().max().item():.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
