"""Probe ND (2026-12-07, transformer training runs): integer token ids
shared as numbers (``cryptensor(ids)``), not as one-hot rows, in a model
that reads ``idx.size()`` before its embedding (nanoGPT's ``b, t =
idx.size()``) failed with ``IndexError: tuple index out of range`` deep in
the graph; README promises a ShapeError naming the one-hot form (a bare
Embedding and converted Hugging Face models gave one). Now the size read
checks the shared ids' last dimension against the embedding's rows.

Tolerance (f = 16, conftest): the one-hot rows select each embedding row
in one product (a truncation, ULP, plus the table's encoding, ENC); the
head is a Linear of 4 inputs (prod_tol) carrying that error times its
weights' sum of magnitudes.
"""

import pytest
import torch
import torch.nn.functional as F

import cryptgpu
from conftest import ENC, ULP, prod_tol, usable

D = torch.float64


class TinyLM(torch.nn.Module):
    """nanoGPT's first lines: the ids' size read before the embeddings."""

    def __init__(self, V=10, T=8, E=4):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(V, E), torch.nn.Embedding(T, E)
        self.head = torch.nn.Linear(E, V)

    def forward(self, idx):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        return self.head(self.wte(idx) + self.wpe(pos))


def test_ids_shared_as_numbers_are_a_shape_error_naming_one_hot_rows(session):
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.randint(0, 10, (2, 8))
    pm = cryptgpu.nn.from_pytorch(model, ids).encrypt()
    with pytest.raises(cryptgpu.ShapeError, match=r"not one-hot rows \[\.\.\., 10\]"):
        pm(cryptgpu.cryptensor(ids.double()))
    assert usable()
    # the one-hot form the message names gives torch's logits
    got = pm(cryptgpu.cryptensor(F.one_hot(ids, 10).double())).get_plain_text(dtype=D)
    want = model.double()(ids)
    emb = 2 * (ULP + ENC)  # two selected rows, each one product of encoded values
    h = (model.wte(ids) + model.wpe(torch.arange(8))).abs().max().item()
    w = model.head.weight.abs()
    tol = prod_tol(4, h, w.max().item()) + w.sum(1).max().item() * emb + ENC
    assert (got - want).abs().max().item() <= tol
