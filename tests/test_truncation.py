import dataclasses
import math
import warnings

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host, random_array


def spectrum_matrix(s, seed=0):
    """A matrix with singular values ``s`` (descending) and random singular vectors."""
    rng = np.random.default_rng(seed)
    n = len(s)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n + 5, n)))
    return (u * s) @ v.T


S = np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.1, 1e-3, 1e-8])
A = spectrum_matrix(S)


def test_none_keeps_everything():
    r = tnlib.truncated_svd(A)
    np.testing.assert_allclose(r.S, S, rtol=1e-10, atol=1e-13)
    assert r.discarded == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose((r.U * r.S) @ r.Vh, A, atol=1e-12)


@pytest.mark.parametrize(
    "truncation, chi",
    [
        (tnlib.Truncation(max_bond=3), 3),
        (tnlib.Truncation(cutoff=0.04), 5),  # keep s >= 0.4
        (tnlib.Truncation(cutoff=0.04, max_bond=2), 2),
        (tnlib.Truncation(max_bond=1, min_bond=1), 1),
        (tnlib.Truncation(cutoff=0.5, min_bond=4), 4),
        (tnlib.Truncation(min_bond=20, cutoff=0.9), 8),  # never above the number of values
        (tnlib.Truncation(), 8),
    ],
)
def test_rank_selection(truncation, chi):
    r = tnlib.truncated_svd(A, truncation)
    assert r.S.shape == (chi,) and r.U.shape == (A.shape[0], chi) and r.Vh.shape == (chi, A.shape[1])
    assert r.discarded == pytest.approx(float(np.sum(S[chi:] ** 2)), rel=1e-9, abs=1e-24)
    err = np.linalg.norm(A - (r.U * r.S) @ r.Vh) ** 2
    assert err == pytest.approx(r.discarded, rel=1e-6, abs=1e-20)


def test_max_discarded_keeps_smallest_chi():
    total = np.sum(S**2)
    for eps in [0.0, 1e-12, 1e-6, 1e-3, 0.01, 0.05, 0.2, 0.9]:
        chi = tnlib.truncated_svd(A, tnlib.Truncation(max_discarded=eps)).S.shape[0]
        tails = [np.sum(S[k:] ** 2) / total for k in range(len(S) + 1)]
        expected = next(k for k in range(1, len(S) + 1) if tails[k] <= eps)
        assert chi == expected, eps


def test_max_entropy_loss_keeps_smallest_chi():
    p = S**2 / np.sum(S**2)
    full = -np.sum(p * np.log(p))

    def kept_entropy(k):
        q = p[:k] / p[:k].sum()
        return -np.sum(q * np.log(q))

    for loss in [0.0, 0.01, 0.1, 0.3, 0.6, 1.0]:
        chi = tnlib.truncated_svd(A, tnlib.Truncation(max_entropy_loss=loss)).S.shape[0]
        expected = next(k for k in range(1, len(S) + 1) if kept_entropy(k) >= (1 - loss) * full - 1e-15)
        assert chi == expected, loss


def test_max_params_for_two_factors():
    m, n = A.shape
    r = tnlib.truncated_svd(A, tnlib.Truncation(max_params=3 * (m + n) + 1))
    assert r.S.shape == (3,)
    with pytest.raises(ValueError, match=r"max_params=10 is too small for a 8 x 13 matrix"):
        tnlib.truncated_svd(A, tnlib.Truncation(max_params=10))


def test_randomized_svd_meets_max_bond_and_reports_projection_error():
    rng = np.random.default_rng(0)
    s = 2.0 ** -np.arange(200)
    u, _ = np.linalg.qr(rng.standard_normal((300, 200)))
    v, _ = np.linalg.qr(rng.standard_normal((400, 200)))
    M = (u * s) @ v.T
    r = tnlib.truncated_svd(M, tnlib.Truncation(max_bond=20), svd="randomized")
    exact = tnlib.truncated_svd(M, tnlib.Truncation(max_bond=20))
    err2 = np.linalg.norm(M - (r.U * r.S) @ r.Vh) ** 2
    assert r.S.shape == (20,)
    assert err2 == pytest.approx(r.discarded, rel=1e-3, abs=1e-28)
    assert math.sqrt(r.discarded) <= 1.05 * math.sqrt(exact.discarded) + 1e-15


def test_register_svd_and_errors():
    calls = []

    def plain(a, rank):
        calls.append(rank)
        return np.linalg.svd(a, full_matrices=False)

    tnlib.register_svd("test-plain", plain, overwrite=True)
    assert "test-plain" in tnlib.svd_methods()
    r = tnlib.truncated_svd(A, tnlib.Truncation(max_bond=2), svd="test-plain")
    assert calls == [2] and r.S.shape == (2,)
    mpo = tnlib.MPO.from_matrix(random_array((16, 16)), (4, 4), (4, 4),
                                truncation=tnlib.Truncation(max_bond=3), svd="test-plain")
    assert mpo.bond_dims == (3,)
    with pytest.raises(ValueError, match="already registered; pass overwrite=True"):
        tnlib.register_svd("test-plain", plain)
    with pytest.raises(ValueError, match=r"svd='nope' is not a registered SVD method"):
        tnlib.truncated_svd(A, svd="nope")
    with pytest.raises(TypeError, match="method must be callable"):
        tnlib.register_svd("x", 3)


def test_gesdd_failure_falls_back_to_gesvd(monkeypatch):
    import scipy.linalg

    real = scipy.linalg.svd
    drivers = []

    def flaky(a, *args, lapack_driver="gesdd", **kw):
        drivers.append(lapack_driver)
        if lapack_driver == "gesdd":
            raise np.linalg.LinAlgError("SVD did not converge")
        return real(a, *args, lapack_driver=lapack_driver, **kw)

    monkeypatch.setattr(scipy.linalg, "svd", flaky)
    r = tnlib.truncated_svd(A, tnlib.Truncation(max_bond=2))
    assert drivers == ["gesdd", "gesvd"]
    np.testing.assert_allclose(r.S, S[:2], rtol=1e-12)


def test_report_text_and_relative_fields():
    W = random_array((64, 64))
    mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (4, 4, 4), truncation=tnlib.Truncation(max_bond=4))
    rep = mpo.report
    text = str(rep)
    assert "max_bond=4" in text and "error bound" in text and text.count("\n") == 4
    assert rep.relative_error_bound == pytest.approx(rep.error_bound / np.linalg.norm(W))
    assert sum(rep.relative_discarded) == pytest.approx(rep.relative_error_bound**2)


def test_truncation_is_frozen_and_readable():
    t = tnlib.Truncation(max_bond=8, cutoff=1e-10)
    with pytest.raises(AttributeError):
        t.max_bond = 3  # type: ignore[misc]
    assert repr(t) == "Truncation(max_bond=8, cutoff=1e-10)"
    assert not t.is_exact and tnlib.Truncation().is_exact


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_bond": 0}, r"Truncation.max_bond=0 is invalid; expected an int >= 1"),
        ({"max_bond": -3}, r"Truncation.max_bond=-3 is invalid"),
        ({"cutoff": -1e-3}, r"Truncation.cutoff=-0.001 is invalid; expected a float in \[0, 1\)"),
        ({"cutoff": 1.0}, r"Truncation.cutoff=1.0 is invalid"),
        ({"cutoff": float("nan")}, r"Truncation.cutoff=nan is invalid"),
        ({"max_discarded": 1.0}, r"Truncation.max_discarded=1.0 is invalid"),
        ({"max_discarded": float("nan")}, r"Truncation.max_discarded=nan"),
        ({"max_entropy_loss": 1.5}, r"Truncation.max_entropy_loss=1.5 is invalid; expected a float in \[0, 1\]"),
        ({"max_params": 0}, r"Truncation.max_params=0 is invalid"),
        ({"min_bond": 0}, r"Truncation.min_bond=0 is invalid"),
        ({"max_bond": 2, "min_bond": 3}, r"Truncation.max_bond=2 is below min_bond=3"),
    ],
)
def test_invalid_truncation_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tnlib.Truncation(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_bond": 2.5}, "Truncation.max_bond must be an int, got 2.5"),
        ({"max_bond": True}, "Truncation.max_bond must be an int, got True"),
        ({"cutoff": "1e-3"}, "Truncation.cutoff must be a float, got '1e-3'"),
    ],
)
def test_wrong_type_truncation_names_the_field(kwargs, message):
    with pytest.raises(TypeError, match=message):
        tnlib.Truncation(**kwargs)


def test_truncated_svd_namespace(backend, dtype):
    M = random_array((12, 9), dtype)
    r = tnlib.truncated_svd(backend.asarray(M), tnlib.Truncation(max_bond=4))
    assert backend.is_mine(r.U) and backend.is_mine(r.S) and backend.is_mine(r.Vh)
    expected = np.linalg.svd(M.astype(np.complex128), compute_uv=False)
    tol = 1e-5 if dtype in ("float32", "complex64") else 1e-12
    np.testing.assert_allclose(host(r.S), expected[:4], rtol=tol)
    assert r.discarded == pytest.approx(float(np.sum(expected[4:] ** 2)), rel=10 * tol)


def test_max_discarded_keeps_no_more_than_needed_in_float32():
    # the weight of a complete spectrum is summed from the small end: a one-ulp difference between
    # sum(s^2) and the total must not wipe out tail weights below eps * total
    s = np.float32([1, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4])
    r = tnlib.truncated_svd(np.diag(s), tnlib.Truncation(max_discarded=3e-8))
    assert r.S.shape == (8,)
    s64 = s.astype(np.float64)
    assert tnlib.truncated_svd(np.diag(s64), tnlib.Truncation(max_discarded=3e-8)).S.shape == (8,)
    tiny = np.array([1.0, 1e-9, 1e-10])  # TeNPy-style threshold far below float64's eps * total
    assert tnlib.truncated_svd(np.diag(tiny), tnlib.Truncation(max_discarded=1e-19)).S.shape == (2,)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=6), st.integers(1, 12), st.integers(0, 10**6))
def test_degeneracy_tol_never_cuts_inside_a_multiplet(sizes, cap, seed):
    # multiplets of equal singular values, distinct levels
    rng = np.random.default_rng(seed)
    levels = np.sort(rng.uniform(0.1, 1.0, size=len(sizes)))[::-1] + np.arange(len(sizes))[::-1] * 0.5
    s = np.concatenate([[lvl] * k for lvl, k in zip(levels, sizes)])
    r = tnlib.truncated_svd(np.diag(s), tnlib.Truncation(max_bond=cap, degeneracy_tol=1e-9))
    chi = r.S.shape[0]
    edges = np.cumsum(sizes)
    assert chi <= cap  # never past the cap
    if cap >= edges[0]:
        assert chi in edges  # the cut sits between two multiplets
    else:
        assert chi == min(cap, len(s))  # the first multiplet is longer than the cap: the cut stays
    assert np.isclose(r.discarded, np.sum(s[chi:] ** 2))


def test_degeneracy_tol_errors_and_min_bond():
    with pytest.raises(ValueError, match=r"Truncation.degeneracy_tol=1.5 is invalid"):
        tnlib.Truncation(degeneracy_tol=1.5)
    s = np.diag([1.0, 1.0, 1.0, 0.1])
    assert tnlib.truncated_svd(s, tnlib.Truncation(max_bond=2, degeneracy_tol=1e-9)).S.shape[0] == 2
    s = np.diag([2.0, 1.0, 1.0, 0.1])
    kept = tnlib.truncated_svd(s, tnlib.Truncation(max_bond=2, min_bond=2, degeneracy_tol=1e-9)).S.shape[0]
    assert kept == 2  # min_bond wins over moving the cut down to 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=3, max_size=3), st.integers(0, 10**6))
def test_per_bond_caps(caps, seed):
    T = np.random.default_rng(seed).standard_normal((3, 4, 4, 3))
    mps = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_bond=caps))
    assert all(b <= c for b, c in zip(mps.bond_dims, caps))
    # the report's bound is the true error, as for a single cap
    assert np.linalg.norm(mps.to_dense() - T) == pytest.approx(mps.report.error_bound, rel=1e-8, abs=1e-12)
    again = tnlib.MPS.from_dense(T).truncate(tnlib.Truncation(max_bond=tuple(caps)))
    assert again.bond_dims == mps.bond_dims


def test_apply_an_allocation_and_per_bond_errors(tmp_path):
    T = np.random.default_rng(7).standard_normal((4, 4, 4, 4))
    exact = tnlib.MPS.from_dense(T)
    spectra = [exact.singular_values(k) for k in range(3)]
    alloc = tnlib.allocate_bonds(spectra, exact.phys_dims, max_params=120)
    applied = exact.truncate(tnlib.Truncation(max_bond=alloc))
    assert applied.bond_dims == alloc and applied.num_params <= 120
    with pytest.raises(ValueError, match=r"Truncation.max_bond has 2 caps but the chain has 3 bonds"):
        exact.truncate(tnlib.Truncation(max_bond=[2, 2]))
    with pytest.raises(ValueError, match=r"Truncation.max_bond\[1\]=0 is invalid"):
        tnlib.Truncation(max_bond=[2, 0])
    with pytest.raises(ValueError, match=r"has a cap below min_bond=3"):
        tnlib.Truncation(max_bond=[4, 2], min_bond=3)
    assert tnlib.truncated_svd(np.diag([3.0, 2.0, 1.0]), tnlib.Truncation(max_bond=[2])).S.shape == (2,)
    with pytest.raises(ValueError, match=r"per-bond caps .* cannot be combined with a layout search"):
        tnlib.MPO.from_matrix(T.reshape(16, 16), truncation=tnlib.Truncation(max_bond=[2], max_params=100))
    fitted = exact.compress(tnlib.Truncation(max_bond=[2, 3, 2]), algorithm="variational", sweeps=5)
    assert fitted.bond_dims == (2, 3, 2)
    tnlib.save(tmp_path / "a.tnz", applied)
    assert tnlib.load(tmp_path / "a.tnz").report.truncation == tnlib.Truncation(max_bond=alloc)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.9), st.floats(0.0, 2.0), st.integers(0, 10**6))
def test_max_relative_error_is_met_for_the_whole_chain(eps, decay, seed):
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((4, 4, 4, 4)) * np.exp(-decay * np.arange(4))
    for make in (lambda t: tnlib.MPS.from_dense(T, truncation=t),
                 lambda t: tnlib.MPO.from_matrix(T.reshape(16, 16), (4, 4), (4, 4), truncation=t)):
        approx = make(tnlib.Truncation(max_relative_error=eps))
        dense = approx.to_dense() if isinstance(approx, tnlib.MPS) else approx.to_matrix().reshape(T.shape)
        assert np.linalg.norm(dense - T) <= eps * np.linalg.norm(T) * (1 + 1e-9) + 1e-12
        assert approx.report.relative_error_bound <= eps * (1 + 1e-9) + 1e-12


def test_max_relative_error_splits_the_budget_better_than_equal_shares():
    # a tensor whose bonds differ: the global rule keeps fewer parameters than eps / sqrt(bonds) per bond
    rng = np.random.default_rng(3)
    T = tnlib.MPS.from_dense(rng.standard_normal((4, 4, 4, 4)), truncation=tnlib.Truncation(max_bond=3)).to_dense()
    T = T + 0.05 * rng.standard_normal(T.shape)
    eps = 0.2
    glob = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_relative_error=eps))
    shares = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_discarded=eps**2 / 3))
    assert glob.num_params <= shares.num_params
    assert np.linalg.norm(glob.to_dense() - T) <= eps * np.linalg.norm(T)


def test_max_relative_error_errors_and_single_matrix():
    with pytest.raises(ValueError, match=r"max_relative_error and max_params both choose every bond"):
        tnlib.Truncation(max_relative_error=0.1, max_params=10)
    with pytest.raises(ValueError, match=r"Truncation.max_relative_error=1.0 is invalid"):
        tnlib.Truncation(max_relative_error=1.0)
    s = np.diag([3.0, 2.0, 1.0, 0.1])
    r = tnlib.truncated_svd(s, tnlib.Truncation(max_relative_error=0.05))
    assert r.S.shape == (3,) and np.sqrt(r.discarded) <= 0.05 * np.linalg.norm(np.diag(s))


@pytest.mark.parametrize("scale", [1e-170, 1e-100, 1e100, 1e160])
@pytest.mark.parametrize(
    "truncation",
    [tnlib.Truncation(cutoff=0.3), tnlib.Truncation(max_bond=4), tnlib.Truncation(max_params=900),
     tnlib.Truncation(max_relative_error=0.5), tnlib.Truncation(max_discarded=0.1)],
)
def test_truncation_does_not_depend_on_the_scale(scale, truncation, tmp_path):
    W = np.random.default_rng(0).standard_normal((64, 64))
    ref = tnlib.MPO.from_matrix(W, (8, 8), (8, 8), truncation=truncation)
    big = tnlib.MPO.from_matrix(W * scale, (8, 8), (8, 8), truncation=truncation)
    assert big.bond_dims == ref.bond_dims
    true = np.linalg.norm(big.to_matrix() / scale - W) / np.linalg.norm(W)
    assert big.report.relative_error_bound == pytest.approx(ref.report.relative_error_bound, rel=1e-9, abs=1e-12)
    assert true == pytest.approx(ref.report.relative_error_bound, rel=1e-8, abs=1e-12)
    assert big.report.norm == pytest.approx(np.linalg.norm(W) * scale, rel=1e-12)
    np.testing.assert_allclose(big.entropies(), ref.entropies(), rtol=1e-10)
    chain = tnlib.MPO.from_matrix(W * scale, (8, 8), (8, 8)).truncate(truncation)
    assert chain.bond_dims == ref.bond_dims
    tnlib.save(tmp_path / "s.tnz", big)
    assert tnlib.load(tmp_path / "s.tnz").report.relative_error_bound == big.report.relative_error_bound


def test_float32_kernel_gets_the_float64_bonds_under_max_discarded():
    x = np.linspace(0, 1, 256)
    K = np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.1)
    t = tnlib.Truncation(max_discarded=3e-8)
    f64 = tnlib.MPO.from_matrix(K, (4, 4, 4, 4), (4, 4, 4, 4), truncation=t).bond_dims
    f32 = tnlib.MPO.from_matrix(K.astype(np.float32), (4, 4, 4, 4), (4, 4, 4, 4), truncation=t).bond_dims
    assert f32 == f64 == (5, 4, 3)  # float32 used to keep (16, 4, 3)


@pytest.mark.parametrize("svd", ["auto", "lapack"])
def test_degeneracy_tol_is_honoured_by_the_partial_routes(svd):
    """A route that computes only the leading values computes one more than the cap, so that it sees
    whether the cut falls inside a multiplet (the Krylov route used to return exactly max_bond values)."""
    rng = np.random.default_rng(0)
    n = 400
    s = np.concatenate([np.linspace(10, 2, 30), [1.0, 1.0, 1.0], np.linspace(0.5, 0.01, n - 33)])
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (u * s) @ v.T
    r = tnlib.truncated_svd(a, tnlib.Truncation(max_bond=31, degeneracy_tol=1e-6), svd=svd)
    assert r.S.shape[0] == 30
    mpo = tnlib.MPO.from_matrix(a, (n, 1), (1, n), truncation=tnlib.Truncation(max_bond=32, degeneracy_tol=1e-6),
                                svd=svd)
    assert mpo.bond_dims == (30,)


def test_a_max_bond_that_caps_a_max_relative_error_warns_and_says_so_in_the_report(tmp_path):
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal((1 if k == 0 else 6, 2, 1 if k == 9 else 6)) for k in range(10)]
    mps = tnlib.MPS(cores)
    capped = tnlib.Truncation(max_bond=2, max_relative_error=1e-6)
    with pytest.warns(UserWarning, match=r"max_relative_error=1e-06 is not met: the relative error is 0\.\d+"):
        got = mps.compress(capped)
    alone = mps.compress(tnlib.Truncation(max_bond=2))
    # the least error the cap allows (it kept fewer values than allowed before), and the report says so
    assert got.bond_dims == alone.bond_dims
    assert got.report.relative_error_bound == pytest.approx(alone.report.relative_error_bound, rel=1e-12)
    assert len(got.report.unmet) == 1 and "max_bond=2 caps the bonds" in got.report.unmet[0]
    assert "not met: max_relative_error" in str(got.report)
    tnlib.save(tmp_path / "m.tnz", got)
    assert tnlib.load(tmp_path / "m.tnz").report.unmet == got.report.unmet
    # a fit of fixed bonds cannot honour the guarantee: refused in words, not dropped
    with pytest.raises(ValueError, match="cannot honour max_relative_error"):
        mps.compress(capped, algorithm="variational")
    # met guarantees stay silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = mps.compress(tnlib.Truncation(max_bond=64, max_relative_error=0.3))
    assert ok.report.unmet == () and ok.report.relative_error_bound <= 0.3


@pytest.mark.parametrize("route", ["compress", "from_dense", "from_matrix", "dask"])
def test_a_max_bond_that_caps_a_max_discarded_warns_at_the_callers_line_and_says_so(route):
    rng = np.random.default_rng(1)
    T = rng.standard_normal((4,) * 6)
    capped = tnlib.Truncation(max_bond=2, max_discarded=1e-6)
    calls = {
        "compress": lambda t: tnlib.MPS.from_dense(T).compress(t),
        "from_dense": lambda t: tnlib.MPS.from_dense(T, truncation=t),
        "from_matrix": lambda t: tnlib.MPO.from_matrix(T.reshape(64, 64), (8, 8), (8, 8), truncation=t),
        "dask": lambda t: tnlib.MPO.from_matrix(da.from_array(T.reshape(64, 64), chunks=16), (8, 8), (8, 8),
                                                truncation=t),
    }
    with pytest.warns(UserWarning, match=r"max_discarded=1e-06 is not met at \d bond\(s\): bond \d discards 0\.\d+") \
            as caught:
        got = calls[route](capped)
    assert {w.filename for w in caught} == {__file__}  # the user's line, not one deep inside tnlib
    alone = calls[route](tnlib.Truncation(max_bond=2))
    assert got.bond_dims == alone.bond_dims
    assert len(got.report.unmet) == 1 and "max_bond=2 caps the bonds" in got.report.unmet[0]
    worst = max(got.report.relative_discarded)
    assert f"{worst:.3g}" in got.report.unmet[0]
    with warnings.catch_warnings():  # a met guarantee, or a cap that is not binding, stays silent
        warnings.simplefilter("error")
        ok = calls[route](tnlib.Truncation(max_bond=64, max_discarded=0.2))
    assert ok.report.unmet == () and max(ok.report.relative_discarded) <= 0.2


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.sampled_from([1e-1, 1e-2, 1e-4]), st.integers(0, 10**6))
def test_unmet_names_exactly_the_broken_per_bond_guarantees(bond, limit, seed):
    """Property: the report names max_discarded as unmet if and only if some bond discards more than it."""
    T = np.random.default_rng(seed).standard_normal((3,) * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_bond=bond, max_discarded=limit))
    broken = any(d > limit * (1 + 1e-9) for d in got.report.relative_discarded)
    assert bool(got.report.unmet) == broken


def test_truncation_lists_its_criteria_in_one_place():
    t = tnlib.Truncation(max_bond=4, max_discarded=1e-3, max_params=100, degeneracy_tol=1e-8)
    assert t.criteria == ("max_bond", "max_discarded", "max_params")
    assert t.value_criteria == ("max_discarded", "max_params", "degeneracy_tol")
    assert t.chain_criteria == ("max_params",)
    assert tnlib.Truncation().criteria == () and tnlib.Truncation().is_exact
    assert set(tnlib.Truncation.CRITERIA) | {"min_bond", "degeneracy_tol"} == {
        f.name for f in dataclasses.fields(tnlib.Truncation)}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), eps=st.sampled_from([0.05, 0.2, 0.5]), tol=st.sampled_from([1e-3, 0.1, 0.5]))
def test_degeneracy_tol_never_breaks_the_error_guarantee(seed, eps, tol):
    rng = np.random.default_rng(seed)
    levels = np.sort(rng.uniform(0.01, 1.0, 4))[::-1]
    s = np.repeat(levels, rng.integers(1, 6, 4))  # multiplets of one to five equal values
    n = len(s)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (u * s) @ v.T
    r = tnlib.truncated_svd(a, tnlib.Truncation(max_relative_error=eps, degeneracy_tol=tol))
    assert np.linalg.norm(a - (r.U * r.S) @ r.Vh) / np.linalg.norm(a) <= eps * (1 + 1e-9)


@settings(max_examples=25, deadline=None)
@given(
    rank=st.integers(1, 6),
    decay=st.floats(0.05, 0.9),
    dtype=st.sampled_from(["float32", "float64", "complex128"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_default_drops_only_rounding_noise(rank, decay, dtype, seed):
    """Truncation.default keeps the error at the dtype's rounding level and never keeps more than exact."""
    rng = np.random.default_rng(seed)
    W = sum(decay**k * np.kron(rng.standard_normal((8, 8)), rng.standard_normal((8, 8))) for k in range(rank))
    if dtype.startswith("complex"):
        W = W + 1j * np.kron(rng.standard_normal((8, 8)), rng.standard_normal((8, 8)))
        rank += 1
    A = W.astype(dtype)
    exact = tnlib.MPO.from_matrix(A, (8, 8), (8, 8))
    default = tnlib.MPO.from_matrix(A, (8, 8), (8, 8), truncation=tnlib.Truncation.default(A.dtype))
    eps = float(np.finfo(A.dtype).eps)
    assert default.num_params <= exact.num_params
    assert default.bond_dims[0] <= rank < exact.bond_dims[0]  # the noise above the rank is gone
    err = np.linalg.norm(W - host(default.to_matrix())) / np.linalg.norm(W)
    exact_err = np.linalg.norm(W - host(exact.to_matrix())) / np.linalg.norm(W)
    assert err <= exact_err + 64 * eps  # rounding level: within a few dozen eps of the exact route


def test_default_names_a_dtype_it_cannot_use():
    torch = pytest.importorskip("torch")
    assert tnlib.Truncation.default(torch.float32) == tnlib.Truncation.default("float32")
    assert tnlib.Truncation.default(np.complex64).cutoff == 16 * float(np.finfo(np.float32).eps)
    for bad in ("int32", np.float16, torch.bfloat16, "nonsense", np.longdouble):
        with pytest.raises(TypeError, match=r"Truncation.default\(dtype=.*expected a floating or complex dtype"):
            tnlib.Truncation.default(bad)
