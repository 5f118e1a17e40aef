import numpy as np
import pytest

import tnlib
from conftest import host, random_array, rel_err


def pair(dtype="float64"):
    W = random_array((24, 12), dtype, seed=1)
    V = random_array((12, 18), dtype, seed=2)
    return W, V, tnlib.MPO.from_matrix(W, (2, 3, 4), (2, 2, 3)), tnlib.MPO.from_matrix(V, (2, 2, 3), (3, 3, 2))


def test_products_match_dense_on_every_backend(backend, dtype):
    W, V, _, _ = pair(dtype)
    a = tnlib.MPO.from_matrix(backend.asarray(W), (2, 3, 4), (2, 2, 3))
    b = tnlib.MPO.from_matrix(backend.asarray(V), (2, 2, 3), (3, 3, 2))
    ab = a @ b
    assert backend.is_mine(ab.cores[0]) and ab.shape == (24, 18)
    assert ab.bond_dims == tuple(x * y for x, y in zip(a.bond_dims, b.bond_dims))
    tol = 1e-5 if dtype in ("float32", "complex64") else 1e-12
    assert rel_err(ab.to_matrix(), W @ V) < tol
    psi = random_array((12,), dtype, seed=5)
    state = tnlib.MPS.from_dense(backend.asarray(psi.reshape(2, 2, 3)))
    out = a @ state
    assert isinstance(out, tnlib.MPS) and out.phys_dims == (2, 3, 4)
    assert rel_err(host(out.to_dense()).reshape(-1), W @ psi) < tol


def test_sum_scalar_conj_transpose_inner_norm():
    W, _, a, _ = pair("complex128")
    W2 = random_array((24, 12), "complex128", seed=9)
    b = tnlib.MPO.from_matrix(W2, (2, 3, 4), (2, 2, 3))
    s = a + b
    assert s.bond_dims == tuple(x + y for x, y in zip(a.bond_dims, b.bond_dims))
    np.testing.assert_allclose(s.to_matrix(), W + W2, atol=1e-12)
    np.testing.assert_allclose((a - b).to_matrix(), W - W2, atol=1e-12)
    np.testing.assert_allclose((-a).to_matrix(), -W, atol=1e-12)
    np.testing.assert_allclose((2.5j * a).to_matrix(), 2.5j * W, atol=1e-12)
    np.testing.assert_allclose((a / 4).to_matrix(), W / 4, atol=1e-12)
    assert (2.0 * a).center == a.center  # scaling the centre keeps the canonical form
    np.testing.assert_allclose(a.conj().to_matrix(), W.conj(), atol=1e-12)
    np.testing.assert_allclose(a.transpose().to_matrix(), W.T, atol=1e-12)
    np.testing.assert_allclose(a.T.T.to_matrix(), W, atol=1e-12)
    assert complex(a.inner(b)) == pytest.approx(np.vdot(W, W2), rel=1e-12)
    assert a.norm() == pytest.approx(np.linalg.norm(W), rel=1e-12)
    assert (a + b).norm() == pytest.approx(np.linalg.norm(W + W2), rel=1e-12)  # no centre: by inner


def test_real_mps_times_complex_scalar_upcasts(backend):
    psi = random_array((2, 3, 2), "float32")
    mps = tnlib.MPS.from_dense(backend.asarray(psi))
    z = mps * 1j
    assert "complex64" in str(z.dtype)
    np.testing.assert_allclose(host(z.to_dense()), 1j * psi, rtol=1e-5, atol=1e-6)


def test_mps_dot_and_inner():
    x, y = random_array((2, 3, 2), "complex128", 1), random_array((2, 3, 2), "complex128", 2)
    a, b = tnlib.MPS.from_dense(x), tnlib.MPS.from_dense(y)
    assert complex(a.dot(b)) == pytest.approx(np.sum(x * y), rel=1e-12)
    assert complex(a.inner(b)) == pytest.approx(np.vdot(x, y), rel=1e-12)


def test_algebra_errors():
    _, _, a, b = pair()
    with pytest.raises(ValueError, match=r"\+ needs matching legs"):
        a + b
    with pytest.raises(TypeError, match=r"inner needs two MPOs, got MPO and MPS"):
        a.inner(tnlib.MPS.from_dense(np.ones((2, 2))))
    with pytest.raises(
        ValueError, match=r"cannot multiply an MPO with in_dims=\(3, 3, 2\) \(N=18\) by one with out_dims=\(2, 2, 3\)"
    ):
        b @ b
    with pytest.raises(ZeroDivisionError):
        a / 0
    with pytest.raises(TypeError):
        a * "2"


def decaying_product():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 64)
    K = np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.05)
    A = K + 1e-3 * rng.standard_normal((64, 64))
    a = tnlib.MPO.from_matrix(A, (4, 4, 4), (4, 4, 4))
    return A @ A, a @ a


def test_svd_and_variational_compression_match_their_reports():
    dense, big = decaying_product()
    t = tnlib.Truncation(max_bond=6)
    svd = big.compress(t)
    var = big.compress(t, algorithm="variational", sweeps=20)
    for c in (svd, var):
        assert max(c.bond_dims) <= 6 and c.center == 2
        err = np.linalg.norm(c.to_matrix() - dense)
        assert err == pytest.approx(c.report.error_bound, rel=1e-6, abs=1e-10 * np.linalg.norm(dense))
    # one-site fitting reaches the SVD sweep's quality (or better)
    assert var.report.error_bound <= svd.report.error_bound * 1.01 + 1e-12
    assert var.report.norm == pytest.approx(np.linalg.norm(dense), rel=1e-10)


def test_variational_on_torch():
    torch = pytest.importorskip("torch")
    dense, big = decaying_product()
    tb = tnlib.MPO([torch.asarray(c) for c in big.cores])
    var = tb.compress(tnlib.Truncation(max_bond=6), algorithm="variational", sweeps=20)
    assert isinstance(var.cores[0], torch.Tensor)
    err = np.linalg.norm(host(var.to_matrix()) - dense)
    assert err == pytest.approx(var.report.error_bound, rel=1e-6, abs=1e-9)


def test_compress_errors():
    _, big = decaying_product()
    with pytest.raises(ValueError, match=r"algorithm='variational' needs truncation.max_bond"):
        big.compress(tnlib.Truncation(cutoff=0.1), algorithm="variational")
    with pytest.raises(ValueError, match=r"algorithm='als' is invalid; expected 'svd', 'variational' or 'randomized'"):
        big.compress(tnlib.Truncation(max_bond=3), algorithm="als")


def test_compress_method_keyword_still_works_and_warns():
    big = tnlib.MPS.from_dense(random_array((4, 4, 4, 4), seed=9))
    t = tnlib.Truncation(max_bond=3)
    with pytest.warns(DeprecationWarning, match=r"compress\(method=...\) is deprecated; use compress\(algorithm=...\)"):
        old = big.compress(t, method="variational", sweeps=20)
    new = big.compress(t, algorithm="variational", sweeps=20)
    np.testing.assert_allclose(old.to_dense(), new.to_dense(), atol=1e-12)


def test_variational_report_states_the_measured_error_not_per_bond_weights(tmp_path):
    big = tnlib.MPS.from_dense(random_array((4, 4, 4, 4), seed=10))
    fitted = big.compress(tnlib.Truncation(max_bond=3), algorithm="variational", sweeps=20)
    report = fitted.report
    assert all(np.isnan(d) for d in report.discarded)
    true = float(np.linalg.norm(fitted.to_dense() - big.to_dense()))
    assert report.error == pytest.approx(true, rel=1e-6)
    assert report.error_bound == report.error and "fitted: error" in str(report)
    tnlib.save(tmp_path / "f.tnz", fitted)
    assert tnlib.load(tmp_path / "f.tnz").report.error == report.error
