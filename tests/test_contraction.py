import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from tnlib.apply import apply_halves, best_split
from tnlib.contraction import _compile
from conftest import host, random_array


@pytest.mark.parametrize(
    "subscripts, shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("ijk,kjl,lm->im", [(3, 4, 5), (5, 4, 6), (6, 2)]),
        ("ijk,ijl->jkl", [(3, 4, 5), (3, 4, 7)]),  # batch index j
        ("ij,ji", [(3, 4), (4, 3)]),  # implicit output: scalar
        ("ij->ji", [(3, 4)]),
        ("ijk->k", [(2, 3, 4)]),
        ("ab,bc,cd,de->ae", [(2, 30), (30, 3), (3, 40), (40, 2)]),
        ("xa,ay,yb->xb", [(5, 2), (2, 3), (3, 4)]),
        ("abc,cd,d->ab", [(2, 3, 4), (4, 5), (5,)]),
    ],
)
def test_contract_matches_einsum_on_every_backend(backend, subscripts, shapes):
    ops = [random_array(s, "complex128" if k == 0 else "float64", seed=k) for k, s in enumerate(shapes)]
    got = tnlib.contract(subscripts, *[backend.asarray(o) for o in ops])
    assert backend.is_mine(got)
    np.testing.assert_allclose(host(got), np.einsum(subscripts, *ops), rtol=1e-12, atol=1e-12)


def test_plan_is_cached_and_reports_speedup():
    _compile.cache_clear()
    a, b, c = np.ones((100, 2)), np.ones((2, 100)), np.ones((100, 3))
    for _ in range(5):
        tnlib.contract("ab,bc,cd->ad", a, b, c)
    info = _compile.cache_info()
    assert info.misses == 1 and info.hits == 4
    plan = tnlib.contraction_plan("ab,bc,cd->ad", (100, 2), (2, 100), (100, 3))
    assert plan.path == ((1, 2), (0, 1))
    assert plan.flops < plan.naive_flops and plan.speedup > 10
    assert plan.largest_intermediate == 300
    assert "speed-up" in str(plan)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(0, 1000))
def test_chain_of_three_matches_einsum(a, b, c, d, seed):
    rng = np.random.default_rng(seed)
    x, y, z = rng.standard_normal((a, b)), rng.standard_normal((b, c, a)), rng.standard_normal((c, d))
    np.testing.assert_allclose(
        tnlib.contract("ab,bca,cd->ad", x, y, z), np.einsum("ab,bca,cd->ad", x, y, z), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "subscripts, shapes, message",
    [
        ("ij,jk->ik", [(3, 4), (5, 6)], r"index 'j' has size 4 in one operand and 5 in operand 1"),
        ("ij,jk->ik", [(3, 4)], r"names 2 operands but 1 were given"),
        ("ii->i", [(3, 3)], r"index 'i' repeats in operand 0 \(a diagonal\); not supported"),
        ("...i,ij->...j", [(2, 3), (3, 4)], r"ellipses are not supported"),
        ("ij,jk->iq", [(3, 4), (4, 5)], r"output index 'q' must appear"),
        ("ijk,jk->i", [(3, 4), (4, 5)], r"operand 0 has shape \(3, 4\) but subscripts='ijk,jk->i' give it 3 indices"),
    ],
)
def test_contract_errors(subscripts, shapes, message):
    with pytest.raises(ValueError, match=message):
        tnlib.contract(subscripts, *[np.ones(s) for s in shapes])


def test_apply_matches_dense_on_every_backend(backend, dtype):
    W = random_array((48, 40), dtype, seed=3)
    mpo = tnlib.MPO.from_matrix(backend.asarray(W), (3, 4, 4), (2, 5, 4))
    x = random_array((7, 40), dtype, seed=4)
    y = mpo.apply(backend.asarray(x))
    assert backend.is_mine(y)
    tol = 1e-4 if dtype in ("float32", "complex64") else 1e-12
    np.testing.assert_allclose(host(y), x @ W.T, rtol=tol, atol=tol * 10)


def test_apply_batch_shapes_padding_and_matmul():
    W = random_array((30, 7))
    mpo = tnlib.MPO.from_matrix(W, (2, 4, 4), (2, 2, 2), pad=True)
    x = random_array((2, 3, 7), seed=1)
    np.testing.assert_allclose(mpo.apply(x), x @ W.T, atol=1e-12)
    v = random_array((7,), seed=2)
    np.testing.assert_allclose(mpo @ v, W @ v, atol=1e-12)
    V = random_array((7, 5), seed=3)
    np.testing.assert_allclose(mpo @ V, W @ V, atol=1e-12)
    with pytest.raises(ValueError, match=r"x has shape \(3, 8\); expected \(\.\.\., 7\) for an MPO of shape \(30, 7\)"):
        mpo.apply(np.ones((3, 8)))
    with pytest.raises(ValueError, match=r"other has shape \(7, 2, 2\); expected \(N,\) or \(N, K\)"):
        mpo @ np.ones((7, 2, 2))


def test_apply_refuses_another_library():
    torch = pytest.importorskip("torch")
    mpo = tnlib.MPO.from_matrix(random_array((16, 16)), (4, 4), (4, 4))
    with pytest.raises(TypeError, match=r"x is a torch.Tensor but the MPO's cores are numpy.ndarray"):
        mpo.apply(torch.ones(16, dtype=torch.float64))


def test_apply_both_strategies_every_split(backend):
    W = random_array((48, 40), "complex128", seed=5)
    mpo = tnlib.MPO.from_matrix(backend.asarray(W), (3, 4, 4), (2, 5, 4), truncation=tnlib.Truncation(max_bond=5))
    dense = host(mpo.to_matrix())
    x = random_array((9, 40), "float64", seed=6)
    xb = backend.asarray(x)
    for split in (1, 2):
        y = apply_halves(mpo.cores, xb, split)
        np.testing.assert_allclose(host(y), x @ dense.T, rtol=1e-12, atol=1e-12)
    big = random_array((300, 40), "float64", seed=7)  # large batch: the two-halves route
    assert best_split(mpo.cores, 300)[0] is not None
    np.testing.assert_allclose(host(mpo.apply(backend.asarray(big))), big @ dense.T, rtol=1e-12, atol=1e-11)
