"""The README's main job end to end: train on scikit-learn's digits in
plaintext, convert, infer privately on the whole held-out split, and compare
predictions. Target (issue 5): identical predictions on all but a handful,
accuracy within 0.5 points."""

import importlib.util
import pathlib
import sys

import torch

import cryptgpu

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location(
        "digits_example", ROOT / "examples" / "digits_inference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["digits_example"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_private_inference_on_digits():
    ex = load_example()
    torch.manual_seed(0)
    xtr, xte, ytr, yte = ex.load()
    model = ex.train(ex.DigitsCNN(), xtr, ytr, epochs=8)
    with torch.no_grad():
        plain = model(xte).double()
    cryptgpu.init(seed=21)
    pm = cryptgpu.nn.from_pytorch(model, xte[:1]).encrypt(src=0)
    priv = torch.cat(
        [
            pm(cryptgpu.cryptensor(xte[i : i + 150], src=1)).get_plain_text(dtype=torch.float64)
            for i in range(0, len(xte), 150)
        ]
    )
    differ = int((plain.argmax(1) != priv.argmax(1)).sum())
    acc_plain = (plain.argmax(1) == yte).double().mean().item() * 100
    acc_priv = (priv.argmax(1) == yte).double().mean().item() * 100
    assert acc_plain > 90  # the plaintext model learned something
    assert differ <= 3
    assert abs(acc_plain - acc_priv) <= 0.5
    cryptgpu.uninit()
