"""Peak memory: blockwise reductions, Q in place, and the peak of MPO.from_matrix (tracemalloc)."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import tnlib
from conftest import host, random_array
from tnlib import _backend as backend_mod
from tnlib import _linalg as linalg


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 60), n=st.integers(1, 60), k=st.integers(1, 8), block=st.integers(1, 4096),
       dtype=st.sampled_from(["float64", "complex128"]), seed=st.integers(0, 2**31))
def test_projection_residual_is_the_direct_one(m, n, k, block, dtype, seed):
    a = random_array((m, n), dtype, seed)
    u = linalg.qr(random_array((m, min(k, m)), dtype, seed + 1))[0]
    direct = float(np.linalg.norm(a - u @ (u.conj().T @ a))) ** 2
    got = linalg.projection_residual(a, u, block_bytes=block)
    assert got == pytest.approx(direct, rel=1e-12, abs=1e-12 * float(np.linalg.norm(a)) ** 2)


def test_projection_residual_in_every_namespace(backend):
    a = random_array((30, 70), "float64", 3)
    u = np.linalg.qr(random_array((30, 4), "float64", 4))[0]
    direct = float(np.linalg.norm(a - u @ (u.T @ a))) ** 2
    for shape_a, shape_u in ((a, u), (a.T.copy(), np.linalg.qr(random_array((70, 4), "float64", 5))[0])):
        exp = float(np.linalg.norm(shape_a - shape_u @ (shape_u.T @ shape_a))) ** 2
        got = linalg.projection_residual(backend.asarray(shape_a), backend.asarray(shape_u), block_bytes=256)
        assert got == pytest.approx(exp, rel=1e-12)
    assert direct > 0


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 50), cols=st.integers(1, 9), block=st.integers(1, 2048),
       exponent=st.sampled_from([-300, -150, 0, 150, 300]), seed=st.integers(0, 2**31))
def test_blockwise_norms_match_numpy_at_any_scale(rows, cols, block, exponent, seed):
    a = random_array((rows, cols, 2), "float64", seed) * 10.0**exponent
    exact = float(np.linalg.norm(a.ravel() / 10.0**exponent)) * 10.0**exponent
    assert backend_mod.frobenius_norm(a, block_bytes=block) == pytest.approx(exact, rel=1e-13)
    if exponent == 0:
        assert backend_mod.sum_squares(a, block_bytes=block) == pytest.approx(exact**2, rel=1e-13)
    pieces = list(backend_mod.leading_blocks(a, block_bytes=block))
    assert np.array_equal(np.concatenate(pieces, axis=0), a)
    assert all(p.nbytes <= max(block, a[:1].nbytes) for p in pieces)


def test_check_finite_counts_bad_entries_in_every_block(backend):
    a = random_array((40, 5), "float64", 1)
    a[3, 1], a[39, 4], a[20, 0] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"W has 3 NaN or infinite entries out of 200"):
        backend_mod.check_finite(backend.asarray(a), "W", block_bytes=80)
    backend_mod.check_finite(backend.asarray(np.ones((40, 5))), "W", block_bytes=80)


@pytest.mark.parametrize("dtype", ["float64", "float32", "complex128"])
def test_tall_skinny_qr_in_place(dtype):
    a = random_array((9000, 12), dtype, 2)
    original = a.copy()
    q, r = linalg.qr(a, overwrite=True)
    tol = 1e-5 if dtype == "float32" else 1e-13
    assert np.shares_memory(q, a)  # Q took the input's memory
    assert np.abs(q @ r - original).max() <= tol * np.abs(original).max()
    assert np.abs(q.conj().T @ q - np.eye(12)).max() <= tol
    b = original.copy()
    q2, _ = linalg.qr(b)  # without overwrite the input is left alone
    assert np.array_equal(b, original) and not np.shares_memory(q2, b)


def test_decomposition_never_writes_to_its_input():
    w = random_array((128, 8192), "float64", 6)  # the exact chain factors a 8192 x 64 unfolding by TSQR
    keep = w.copy()
    for trunc in (None, tnlib.Truncation(max_bond=4)):
        tnlib.MPS.from_dense(w.reshape(128, 64, 128), truncation=trunc)
        tnlib.MPO.from_matrix(w, (16, 8, 1), (1, 64, 128), truncation=trunc)
    assert np.array_equal(w, keep)


def _peak(f) -> float:
    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bond", [None, 16, 64])
def test_peak_extra_memory_of_from_matrix_is_at_most_2_5x_the_input(bond):
    # 2048 x 4096 float64 (64 MiB); dims as the 4096^2 benchmark's: an 8192 x 64 last unfolding
    w = random_array((2048, 4096), "float64", 7)
    trunc = None if bond is None else tnlib.Truncation(max_bond=bond)
    with threadpool_limits(1):
        peak = _peak(lambda: tnlib.MPO.from_matrix(w, (8, 4, 8, 8), (8, 8, 8, 8), truncation=trunc))
        mpo = tnlib.MPO.from_matrix(w, (8, 4, 8, 8), (8, 8, 8, 8), truncation=trunc)
    assert peak <= 2.5 * w.nbytes, f"peak {peak / w.nbytes:.2f}x the input"
    err = float(np.linalg.norm(host(mpo.to_matrix()) - w))  # the sweep's discarded weights are its error
    assert err == pytest.approx(mpo.report.error_bound, rel=1e-6, abs=1e-10 * float(np.linalg.norm(w)))


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("trunc", [None, tnlib.Truncation(cutoff=1e-14), tnlib.Truncation(max_bond=1000)])
@pytest.mark.parametrize("shape", [(2, 100), (3, 4, 50), (600,)])
def test_chains_never_share_the_input_memory(library, trunc, shape):
    # unfoldings that keep every row leave the input as the last core's data unless it is copied
    data = random_array(shape, "float64", 8)
    if library == "torch":
        torch = pytest.importorskip("torch")
        t = torch.asarray(data.copy())
    else:
        t = data.copy()
    mps = tnlib.MPS.from_dense(t, truncation=trunc)
    before = host(mps.to_dense()).copy()
    t[...] = 0.0  # the caller reuses its array
    np.testing.assert_array_equal(host(mps.to_dense()), before)
    np.testing.assert_allclose(before, data, atol=1e-12)
