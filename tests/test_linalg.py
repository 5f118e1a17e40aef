"""Dense factorizations (tnlib._linalg): TSQR."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_array
from tnlib import _linalg as linalg


@pytest.mark.parametrize("shape, dtype", [((9000, 8), "float64"), ((20000, 16), "float32"), ((8500, 3), "complex128")])
def test_tall_skinny_qr_is_exact_and_orthonormal(shape, dtype):
    a = random_array(shape, dtype, seed=11)
    q, r = linalg.qr(a)  # blocked TSQR at these sizes
    tol = 1e-5 if dtype == "float32" else 1e-13
    assert q.shape == shape and r.shape == (shape[1], shape[1]) and q.dtype == a.dtype
    assert np.abs(q @ r - a).max() <= tol * np.abs(a).max()
    assert np.abs(q.conj().T @ q - np.eye(shape[1])).max() <= tol


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 40),
       dtype=st.sampled_from(["float32", "float64", "complex64", "complex128"]), seed=st.integers(0, 2**31))
def test_lapack_qr_is_a_reduced_qr(m, n, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal((m, n))
    a = a.astype(dtype)
    q, r = linalg.qr(a)  # LAPACK geqrf/orgqr called directly at these sizes
    k = min(m, n)
    tol = 1e-4 if dtype in ("float32", "complex64") else 1e-12
    assert q.shape == (m, k) and r.shape == (k, n) and q.dtype == a.dtype and r.dtype == a.dtype
    assert np.allclose(q @ r, a, atol=tol * max(1.0, float(np.abs(a).max())) * max(m, n))
    assert np.allclose(q.conj().T @ q, np.eye(k), atol=tol * max(m, n))
    assert np.allclose(r, np.triu(r))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       kind=st.sampled_from(["numpy", "torch", "torch-grad"]))
def test_top_eigenvectors_span_the_leading_eigenspace(n, k, seed, kind):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    h = a @ a.T + np.diag(np.arange(n, dtype=float))  # distinct eigenvalues: one leading subspace
    lam, q = np.linalg.eigh(h)
    arg = h
    if kind != "numpy":
        torch = pytest.importorskip("torch")
        arg = torch.tensor(h, requires_grad=kind == "torch-grad")
    v = linalg.top_eigenvectors(arg, k)
    v = v.detach().numpy() if kind != "numpy" else v
    assert v.shape == (n, k)
    np.testing.assert_allclose(v.T @ v, np.eye(k), atol=1e-10)
    leading = q[:, n - k:]
    np.testing.assert_allclose(leading @ (leading.T @ v), v, atol=1e-8)  # inside the top-k eigenspace


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 24), st.floats(-1e-3, 1e-3), st.booleans(), st.booleans(), st.integers(0, 10**6))
def test_a_shifted_cholesky_exists_exactly_when_no_eigenvalue_is_below_minus_the_shift(n, lowest, complex_, torch_,
                                                                                        seed):
    """Success proves every eigenvalue >= -shift; failure happens only with one below it (up to double rounding)."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0))[0]
    lam = np.concatenate([[lowest], rng.uniform(0.1, 1.0, n - 1)])
    c = (q * lam) @ q.conj().T
    c = (c + c.conj().T) / 2
    shift = 1e-4
    arg = c
    if torch_:
        torch = pytest.importorskip("torch")
        arg = torch.from_numpy(c)
    before = np.array(c)
    ok = linalg.shifted_cholesky_exists(arg, shift)
    assert np.array_equal(c, before)  # the caller's Gram is never shifted in place
    if lowest >= -shift * (1 - 1e-6):
        assert ok
    elif lowest <= -shift * (1 + 1e-6):
        assert not ok


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 24), st.booleans(), st.booleans(), st.integers(0, 10**6))
def test_a_cholesky_factor_and_its_inverse(n, complex_, torch_, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + 3, n)) + (1j * rng.standard_normal((n + 3, n)) if complex_ else 0)
    c = x.conj().T @ x
    arg = c
    if torch_:
        torch = pytest.importorskip("torch")
        arg = torch.from_numpy(c)
    factor = linalg.cholesky_factor(arg)
    assert factor is not None
    low, inv = (np.asarray(f) for f in factor)
    assert np.allclose(low @ low.conj().T, c, atol=1e-10 * np.abs(c).max())
    assert np.allclose(inv @ low, np.eye(n), atol=1e-8)
    assert np.array_equal(low, np.tril(low)) and np.array_equal(inv, np.tril(inv))
    singular = c.copy()
    singular[:, 0] = singular[0, :] = 0.0
    if n > 1:
        assert linalg.cholesky_factor(-np.eye(n)) is None
    factored = linalg.cholesky_factor(singular)
    assert factored is None or np.isfinite(np.asarray(factored[1])).all()
