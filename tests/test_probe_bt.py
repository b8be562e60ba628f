"""What user probes of graph, tabular and statistics code found missing or
misleading: a public sparse adjacency times a SharedTensor, a dict input to
from_pytorch, the "share it first" hint where sharing does not help,
F.embedding of a private table, BatchNorm training on a plaintext input,
torch.cov / corrcoef / count_nonzero / logical ops, torch's sorting and
counting functions of public indices in a converted forward, and random
noise drawn inside a converted forward. Each test fails on the code before
its fix. Tolerances follow conftest's model (ENC, TRUNC, prod_tol) and are
derived next to each assertion.
"""

import warnings

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import ENC, TRUNC, assert_close, prod_tol, rand, usable

D = torch.float64


def opened(x):
    return x.get_plain_text(dtype=D)


def _adjacency():
    """A GCN's normalised adjacency, sparse (COO), with dyadic values (each
    encodes exactly at f = 16)."""
    idx = torch.tensor([[0, 1, 1, 2, 3, 3], [1, 0, 2, 1, 3, 0]])
    val = torch.tensor([0.5, 0.25, 1.0, 0.75, -1.0, 0.5], dtype=D)
    with warnings.catch_warnings():  # torch's note on sparse invariant checks
        warnings.simplefilter("ignore")
        return torch.sparse_coo_tensor(idx, val, (4, 4)).coalesce()


def test_a_public_sparse_matrix_times_a_shared_one_is_its_dense_product(session, rng):
    """A @ X, torch.spmm(A, X), torch.sparse.mm(A, X) with A a public
    sparse tensor (COO or CSR) failed with numpy's "can't convert Sparse
    layout tensor" or named torch's private _sparse_mm; now the product of
    A's dense value, gradient included."""
    a = _adjacency()
    dense = a.to_dense()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CSR support is "beta" in torch
        csr = a.to_sparse_csr()
    x = rand(4, 3, gen=rng)
    g = rand(4, 3, gen=rng)
    want = dense @ x
    want_grad = dense.t() @ g
    # A is exact on the grid, x within ENC: a sum of 4 products, |a| <= 1,
    # |x| <= 1, truncated once; the gradient likewise A^T g, g within ENC
    tol = prod_tol(4, 1.0, 1.0)
    cases = [
        lambda s: a @ s,
        lambda s: csr @ s,
        lambda s: torch.spmm(a, s),
        lambda s: torch.sparse.mm(a, s),
        lambda s: torch.sparse.mm(csr, s),
        lambda s: torch.mm(a, s),
        lambda s: (s.t() @ a.t()).t(),  # the sparse one on the right
    ]
    for case in cases:
        s = cryptgpu.cryptensor(x, requires_grad=True)
        out = case(s)
        assert_close(opened(out), want, tol)
        out.backward(g)
        assert_close(opened(s.grad), want_grad, tol)
    s = cryptgpu.cryptensor(x)
    with pytest.raises(NotImplementedError, match="reduce"):
        torch.sparse.mm(csr, s, reduce="amax")
    with pytest.raises(RuntimeError):  # torch's: the inner sizes differ
        torch.sparse.mm(a, s[:3])
    assert usable()


class _DictModel(tnn.Module):
    def __init__(self):
        super().__init__()
        self.emb = tnn.Embedding(5, 2)
        self.fc = tnn.Linear(4, 1)

    def forward(self, feats):
        h = torch.cat([self.emb(feats["ids"]), feats["num"]], -1)
        return self.fc(h) + feats["offset"]


def test_from_pytorch_takes_a_dict_input_as_the_forward_receives_it(session, rng):
    """from_pytorch(model, {"num": ...}) for a forward reading feats["num"]
    raised "Could not infer dtype of dict" in the conversion check; a dict
    is now one input, as torch's model(dummy) passes it: converted, checked,
    run on a dict of shared and public values, trained."""
    torch.manual_seed(0)
    m = _DictModel().double()
    ids = torch.tensor([0, 3, 4, 1])
    num, off = rand(4, 2, gen=rng), rand(4, 1, gen=rng)
    pm = cryptgpu.nn.from_pytorch(m, {"ids": ids, "num": num, "offset": off}).encrypt()
    pm.train()
    out = pm({"ids": ids, "num": cryptgpu.cryptensor(num), "offset": cryptgpu.cryptensor(off)})
    want = m({"ids": ids, "num": num, "offset": off})
    # the embedding rows within ENC (an exact one-hot selection), num
    # within ENC; fc: a sum of 4 products of inputs and weights of
    # magnitude below 1 (the table's rows are randn: |e| < 3), truncated
    # once; the bias and offset within ENC each
    tol = prod_tol(4, 3.0, 1.0) + 2 * ENC
    assert_close(opened(out), want.detach(), tol)
    out.sum().backward()
    want.sum().backward()
    for (name, p), q in zip(m.named_parameters(), pm.parameters()):
        # fc.weight: 4 rows' inputs summed (each within ENC; the gradient
        # of a sum is exactly 1); fc.bias exactly 4; the table's gradient
        # is fc.weight (within ENC) per selected row, one truncation
        assert_close(opened(q.grad), p.grad, 4 * ENC + TRUNC), name
    # a forward that takes a tensor, given a dict: torch's own TypeError
    lin = tnn.Linear(2, 1)
    with pytest.raises(TypeError, match="dict"):
        cryptgpu.nn.from_pytorch(lin, {"num": num})
    assert usable()
