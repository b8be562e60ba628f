"""torch.einsum on SharedTensors (cryptgpu/einsum.py): attention-style
batched contractions, implicit outputs, ellipses, broadcasting size-1
dims, sums of one operand, a chain of three operands, public operands
mixed in, inside a converted forward with its gradient, repeated
subscripts (traces, diagonals), and torch's errors.

Tolerance: a contraction of k terms of encoded operands is within
conftest.prod_tol(k, max|a|, max|b|) (one truncation per output element);
a permutation or a sum of one operand only adds encodings (n ENC for a sum
of n). The three-operand chain carries the first product's error through
the second contraction (k2 terms times max|c|).
"""

import math

import pytest
import torch
import torch.nn as tnn

import cryptgpu
from conftest import ENC, TRUNC, prod_tol

D = torch.float64
G = torch.Generator().manual_seed(0)


def r(*shape):
    return torch.randn(*shape, dtype=D, generator=G)


PAIRS = [
    ("bhqd,bhkd->bhqk", r(2, 3, 4, 5), r(2, 3, 6, 5), 5),
    ("bhqk,bhkd->bhqd", r(2, 3, 4, 6), r(2, 3, 6, 5), 6),
    ("ij,jk", r(3, 4), r(4, 5), 4),
    ("i,i->", r(5), r(5), 5),
    ("i,j->ij", r(3), r(4), 1),
    ("...ij,...jk->...ik", r(2, 3, 4), r(2, 4, 5), 4),
    ("bij,jk->bik", r(2, 3, 4), r(4, 5), 4),
    ("ij,ij->ij", r(3, 4), r(3, 4), 1),
    ("bi,bj->bij", r(2, 3), r(1, 4), 1),
]


@pytest.mark.parametrize("eq,a,b,k", PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize("public_b", [False, True], ids=["shared", "public"])
def test_two_operand_contractions(session, eq, a, b, k, public_b):
    """torch.einsum raised NotImplementedError on a SharedTensor."""
    want = torch.einsum(eq, a, b)
    bb = b if public_b else cryptgpu.cryptensor(b)
    got = torch.einsum(eq, cryptgpu.cryptensor(a), bb).get_plain_text(dtype=D)
    assert got.shape == want.shape
    tol = prod_tol(k, float(a.abs().max()), float(b.abs().max()))
    assert (got - want).abs().max() <= tol


def test_one_operand_and_three_operands(session):
    x = r(3, 4)
    got = torch.einsum("ij->ji", cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    assert (got - x.t()).abs().max() <= ENC
    got = torch.einsum("ij->j", cryptgpu.cryptensor(x)).get_plain_text(dtype=D)
    assert (got - x.sum(0)).abs().max() <= 3 * ENC  # three encodings summed
    a, b, c = r(2, 3), r(4, 3, 5), r(2, 5)
    want = torch.einsum("bn,anm,bm->ba", a, b, c)
    got = torch.einsum("bn,anm,bm->ba", *(cryptgpu.cryptensor(t) for t in (a, b, c)))
    ab = torch.einsum("bn,anm->bam", a, b).abs().max().item()
    e1 = prod_tol(3, float(a.abs().max()), float(b.abs().max()))
    tol = 5 * e1 * float(c.abs().max()) + prod_tol(5, ab, float(c.abs().max()))
    assert (got.get_plain_text(dtype=D) - want).abs().max() <= tol


class _Bilinear(tnn.Module):
    def __init__(self):
        super().__init__()
        self.w = tnn.Parameter(torch.randn(4, 5, generator=G))

    def forward(self, x):
        return torch.einsum("bi,ij->bj", x, self.w)


def test_einsum_in_a_converted_forward_and_its_gradient(session):
    m = _Bilinear().double()
    x = r(3, 4)
    pm = cryptgpu.nn.from_pytorch(m, x).encrypt().train()
    y = pm(cryptgpu.cryptensor(x))
    xmax, wmax = float(x.abs().max()), float(m.w.detach().abs().max())
    assert (y.get_plain_text(dtype=D) - m(x).detach()).abs().max() <= prod_tol(4, xmax, wmax)
    y.sum().backward()
    m(x).sum().backward()
    # dW = x^T 1: 3 terms of |x| times 1, one truncation
    got = pm.w.grad.get_plain_text(dtype=D)
    assert (got - m.w.grad).abs().max() <= prod_tol(3, xmax, 1.0) + TRUNC


@pytest.mark.parametrize(
    "eq,shapes,err",
    [
        ("ij,jk->il", [(3, 4), (4, 5)], RuntimeError),
        ("ij,jk", [(3, 4), (5, 5)], RuntimeError),
        ("ijk", [(3, 4)], RuntimeError),
        ("ii->i", [(3, 4)], RuntimeError),
    ],
)
def test_einsum_errors_leave_the_session_usable(session, eq, shapes, err):
    with pytest.raises(err):
        torch.einsum(eq, *(cryptgpu.cryptensor(torch.zeros(s)) for s in shapes))
    x = cryptgpu.cryptensor(torch.tensor([1.5]))
    assert math.isclose((x + 1).get_plain_text().item(), 2.5, abs_tol=ENC)


def test_a_pair_of_shared_operands_costs_one_product(session):
    """Design table: a shared product is 2 rounds and n ring elements per
    party (n: the output size, 8 bytes each) with the probabilistic
    truncation of inference; the permutes and reshapes around it are
    local."""
    q = cryptgpu.cryptensor(r(2, 3, 4, 5))
    k = cryptgpu.cryptensor(r(2, 3, 6, 5))
    cryptgpu.reset_stats()
    with torch.no_grad():
        out = torch.einsum("bhqd,bhkd->bhqk", q, k)
    total = cryptgpu.stats()["total"]
    assert total["rounds"] == 2
    assert total["bytes_per_party"] == 8 * out.numel()


@pytest.mark.parametrize(
    "eq,shapes",
    [
        ("ii", [(4, 4)]),
        ("ii->i", [(4, 4)]),
        ("bii->b", [(3, 4, 4)]),
        ("...ii->...i", [(3, 4, 4)]),
        ("iji->j", [(3, 2, 3)]),
        ("ii,ij->j", [(4, 4), (4, 5)]),
        ("iij,jk->ik", [(4, 4, 5), (5, 2)]),
        ("ij,jj->i", [(5, 4), (4, 4)]),
    ],
)
def test_repeated_subscripts_take_the_diagonal(session, eq, shapes):
    """A letter repeated in one operand (a trace, a diagonal) raised
    NotImplementedError until 2026-12-05; the diagonal is taken first
    (public positions, exact). Tolerance: a trace sums 4 encoded entries
    below 1 (4 ENC); a product after it is prod_tol over its 5 terms of
    operands below 4 (a diagonal sum) and 1; the gradient of a sum is exact."""
    g = torch.Generator().manual_seed(8)
    ops = [torch.rand(s, generator=g, dtype=torch.float64) * 2 - 1 for s in shapes]
    want = torch.einsum(eq, *ops)
    shared = [cryptgpu.cryptensor(o, requires_grad=True) for o in ops]
    got = torch.einsum(eq, *shared)
    tol = 4 * ENC if len(ops) == 1 else prod_tol(5, 4.0, 1.0)
    assert (got.get_plain_text(dtype=torch.float64) - want).abs().max() <= tol
    if len(ops) == 1:
        a = ops[0].clone().requires_grad_()
        torch.einsum(eq, a).sum().backward()
        got.sum().backward()
        assert torch.equal(shared[0].grad.get_plain_text(dtype=torch.float64), a.grad)
