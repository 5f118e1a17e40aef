"""MPO.apply and the kernels behind it (tnlib._apply): both routes, every backend."""

import numpy as np
import pytest

import tnlib
from conftest import host, random_array
from tnlib._apply import apply_halves, best_split


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
