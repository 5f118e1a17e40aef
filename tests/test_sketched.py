"""The randomized (sketched) TT-SVD route: its certificate, its fallbacks and its bad inputs."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from tnlib import _sketched
from tnlib._legs import interleave, site_dims

DIMS = ((16, 16), (16, 16))  # 256 x 256: first unfolding 256 x 256, sketched at caps up to ~100


def _matrix(rng, n, decay, rank=None, dtype=np.float64):
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.exp(-decay * np.arange(n)) if decay is not None else np.ones(n)
    if rank is not None:
        s[rank:] = 0.0
    a = (u * s) @ v.T
    if np.dtype(dtype).kind == "c":
        a = a + 1j * ((u * s) @ np.roll(v, 1, axis=1).T)
    return a.astype(dtype)


def _from_unfolding(t, d):
    """The ``d^2 x d^2`` matrix whose MPO unfolding over dims ``(d, d) x (d, d)`` is the ``d^2 x d^2`` matrix ``t``."""
    return t.reshape(d, d, d, d).transpose(0, 2, 1, 3).reshape(d * d, d * d)


def _chain(a, cap, seed=0, optimal=False, **criteria):
    out_dims, in_dims = DIMS
    t = interleave(a, out_dims, in_dims)
    dims = site_dims(out_dims, in_dims)
    flat = t.reshape(dims[0], -1)
    norm = float(np.linalg.norm(a))
    trunc = tnlib.Truncation(max_bond=cap, **criteria)
    return _sketched.sketch_chain(flat, dims, trunc, norm, optimal=optimal, seed=seed), flat, dims, norm


def _error(flat, dims, cores):
    """``||T - T_tt||_F`` of the chain formed densely."""
    full = cores[0]
    for c in cores[1:]:
        full = np.tensordot(full, c, axes=([full.ndim - 1], [0]))
    return float(np.linalg.norm(flat.reshape(-1) - full.reshape(-1)))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    decay=st.one_of(st.none(), st.floats(0.01, 2.0)),
    rank=st.one_of(st.none(), st.integers(1, 40)),
    cap=st.integers(2, 40),
    seed=st.integers(0, 10_000),
    dtype=st.sampled_from([np.float64, np.complex128, np.float32]),
)
def test_the_certificate_bounds_the_true_error_and_the_estimate_is_the_error(decay, rank, cap, seed, dtype):
    rng = np.random.default_rng(seed)
    a = _matrix(rng, 256, decay, rank, dtype)
    out, flat, dims, norm = _chain(a, cap, seed=seed)
    assert out is not None  # max_bond alone, svd="randomized": always certified
    cores, _, kept, _, discarded, cert = out
    assert all(k <= cap for k in kept)
    true = _error(flat.astype(np.complex128), dims, [c.astype(np.complex128) for c in cores]) / norm
    rounding = 1e-5 if dtype == np.float32 else 1e-12
    assert true <= cert.error_bound * (1 + 1e-9) + rounding
    assert abs(true - cert.error_estimate) <= 1e-6 * true + 10 * rounding + 1e-3 * cert.error_bound
    assert cert.error_estimate <= cert.error_bound + 1e-15
    assert math.isclose(cert.error_estimate, math.sqrt(sum(discarded)) / norm)


def test_the_test_sketch_fails_no_more_often_than_it_says():
    # the worst case of the Chernoff bound is a residual of rank one; 4000 draws of 16 probes at a stated 5 %
    rng = np.random.default_rng(0)
    failure, probes, draws = 0.05, _sketched.PROBES, 4000
    factor = _sketched.frobenius_confidence(probes, failure)
    e = np.zeros((64, 64))
    e[0, 0] = 1.0
    h = rng.standard_normal((draws, 64, probes))
    estimates = (np.einsum("dip,ij->dpj", h, e) ** 2).sum(axis=(1, 2)) / probes
    missed = np.mean(factor * estimates < 1.0)
    assert missed <= failure
    assert missed > 0.0  # the bound is not vacuous: at 5 % stated, some draws do come close
    # a flat residual concentrates: the estimate is then near the truth
    flat = np.eye(64)
    est = (np.einsum("dip,ij->dpj", h[:50], flat) ** 2).sum(axis=(1, 2)) / probes / 64
    assert np.all(np.abs(est - 1.0) < 0.2)


@pytest.mark.parametrize("factor", [1e-200, 1.0, 1e200])
def test_randomized_mpo_is_certified_and_scale_invariant(factor):
    rng = np.random.default_rng(3)
    a = _from_unfolding(_matrix(rng, 1024, 0.05), 32) * factor
    mpo = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    cert = mpo.report.certificate
    assert cert is not None and cert.sketched == (True,)
    true = float(np.linalg.norm(a / factor - mpo.to_matrix() / factor) / np.linalg.norm(a / factor))
    assert true <= cert.error_bound
    assert math.isclose(mpo.report.relative_error_bound, cert.error_estimate, rel_tol=1e-12)
    assert abs(true - cert.error_estimate) < 1e-8
    assert "with probability 0.999" in str(mpo.report)


def test_auto_takes_the_sketch_only_within_five_percent_of_the_exact_route():
    rng = np.random.default_rng(1)
    a = _from_unfolding(_matrix(rng, 1024, 0.3), 32) + 1e-9 * rng.standard_normal((1024, 1024))
    trunc = tnlib.Truncation(max_bond=12)
    auto = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=trunc)
    exact = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=trunc, svd="lapack")
    assert auto.report.certificate is not None
    err_auto = np.linalg.norm(a - auto.to_matrix())
    err_exact = np.linalg.norm(a - exact.to_matrix())
    assert err_auto <= 1.05 * err_exact
    # a flat spectrum cannot be certified within 5 % (the spectral bound of the residual is loose): exact route
    flat = rng.standard_normal((1024, 1024))
    assert tnlib.MPO.from_matrix(flat, (32, 32), (32, 32), truncation=trunc).report.certificate is None
    assert tnlib.MPO.from_matrix(flat, (32, 32), (32, 32), truncation=trunc,
                                 svd="randomized").report.certificate is not None


@pytest.mark.parametrize("criteria", [
    {"max_entropy_loss": 0.1}, {"max_relative_error": 0.999}, {"degeneracy_tol": 1e-3}, {"max_params": 4000},
])
def test_criteria_that_need_every_singular_value_take_the_exact_route(criteria):
    rng = np.random.default_rng(2)
    a = _matrix(rng, 1024, 0.05)
    trunc = tnlib.Truncation(**({"max_bond": 8} if "max_params" not in criteria else {}), **criteria)
    got = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=trunc, svd="randomized")
    assert got.report.certificate is None


def test_max_discarded_and_cutoff_are_met_or_the_route_falls_back():
    rng = np.random.default_rng(4)
    a = _from_unfolding(_matrix(rng, 256, 0.2), 16)
    (out, flat, dims, norm) = _chain(a, 45, max_discarded=1e-6)
    assert out is not None
    cores, _, kept, full, discarded, cert = out
    # every bond's discarded weight, relative to its unfolding, is within the criterion
    assert _error(flat, dims, cores) ** 2 <= len(kept) * 1e-6 * norm**2 + 1e-20
    # a cutoff between two well separated values: the exact route's bonds
    out, *_ = _chain(a, 40, cutoff=math.exp(-0.2 * 20.5))
    exact = tnlib.MPO.from_matrix(a, DIMS[0], DIMS[1], truncation=tnlib.Truncation(max_bond=40,
                                  cutoff=math.exp(-0.2 * 20.5)), svd="lapack")
    assert out is not None and tuple(out[2]) == exact.bond_dims
    # at the cap, the exact route keeps the cap whatever max_discarded says: so does the sketch (certified)
    flat_spectrum = _from_unfolding(_matrix(rng, 256, None), 16)
    out, *_ = _chain(flat_spectrum, 10, max_discarded=1e-3)
    assert out is not None and out[2] == [10]
    # values just above a cutoff under a heavy tail the sketch cannot resolve: not certified, the exact route
    u, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    v, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    heavy = _from_unfolding((u * np.r_[np.ones(3), np.full(253, 0.3)]) @ v.T, 16)
    out, *_ = _chain(heavy, 10, cutoff=0.29)
    assert out is None
    trunc = tnlib.Truncation(max_bond=10, cutoff=0.29)
    got = tnlib.MPO.from_matrix(heavy, DIMS[0], DIMS[1], truncation=trunc, svd="randomized")
    exact = tnlib.MPO.from_matrix(heavy, DIMS[0], DIMS[1], truncation=trunc, svd="lapack")
    assert got.report.certificate is None and got.bond_dims == exact.bond_dims == (10,)


def test_exact_rank_is_not_overclaimed():
    rng = np.random.default_rng(5)
    a = _from_unfolding(_matrix(rng, 1024, None, rank=5), 32)
    mpo = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    cert = mpo.report.certificate
    true = float(np.linalg.norm(a - mpo.to_matrix()) / np.linalg.norm(a))
    assert true <= cert.error_bound < 1e-10
    exact = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=8), svd="lapack")
    assert mpo.bond_dims == exact.bond_dims


def test_sketched_mps_torch_and_saved_certificate(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    a = _matrix(rng, 1024, 0.1)
    t = torch.from_numpy(a)
    mpo = tnlib.MPO.from_matrix(t, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    assert isinstance(mpo.cores[0], torch.Tensor) and mpo.report.certificate is not None
    # inside an autograd graph the sweep's SVDs carry the gradient: the exact route
    g = t.clone().requires_grad_(True)
    graph = tnlib.MPO.from_matrix(g, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    assert graph.report.certificate is None
    mps = tnlib.MPS.from_dense(a.reshape(32, 32, 32, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    assert mps.report.certificate is not None
    path = tmp_path / "a.tnz"
    np_mpo = tnlib.MPO.from_matrix(a, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    tnlib.save(path, np_mpo)
    assert tnlib.load(path).report.certificate == np_mpo.report.certificate


def test_a_corrupt_certificate_is_named(tmp_path):
    rng = np.random.default_rng(7)
    mpo = tnlib.MPO.from_matrix(rng.standard_normal((1024, 1024)), (32, 32), (32, 32),
                                truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    good = tmp_path / "good.tnz"
    tnlib.save(good, mpo)
    for k, (bad, message) in enumerate([([1, 2], "the report's certificate is a list"),
                                        ({"error_estimate": 0.1}, "the report's certificate is incomplete")]):
        with np.load(good) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(str(arrays["__tnlib__"]))
        header["report"]["certificate"] = bad
        arrays["__tnlib__"] = np.array(json.dumps(header))
        path = tmp_path / f"bad{k}.tnz"
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        with pytest.raises(ValueError, match=message):
            tnlib.load(path)


def test_frobenius_confidence_is_monotone_and_refuses_nothing_silently():
    assert _sketched.frobenius_confidence(16, 1e-3) > _sketched.frobenius_confidence(16, 1e-1) > 1.0
    assert _sketched.frobenius_confidence(64, 1e-3) < _sketched.frobenius_confidence(16, 1e-3)


def _random_mps(n, d, r, seed, decay=None, dtype=np.float64):
    g = np.random.default_rng(seed)
    cores, left = [], 1
    for k in range(n):
        right = 1 if k == n - 1 else r
        core = g.standard_normal((left, d, right)) / np.sqrt(left * d)
        if decay is not None and right > 1:
            core = core * np.exp(-decay * np.arange(right))
        if np.dtype(dtype).kind == "c":
            core = core + 1j * g.standard_normal(core.shape) / np.sqrt(left * d)
        cores.append(core.astype(dtype))
        left = right
    return tnlib.MPS(cores)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(2, 12), r=st.integers(1, 12), cap=st.integers(1, 10), seed=st.integers(0, 1000),
       decay=st.one_of(st.none(), st.floats(0.1, 2.0)), dtype=st.sampled_from([np.float64, np.complex128]))
def test_randomized_rounding_reports_its_true_error(n, r, cap, seed, decay, dtype):
    x = _random_mps(n, 2, r, seed, decay, dtype) + _random_mps(n, 2, r, seed + 1, decay, dtype)
    y = x.compress(tnlib.Truncation(max_bond=cap), algorithm="randomized")
    assert all(b <= cap for b in y.bond_dims)
    cert = y.report.certificate
    true = float((x - y).norm() / x.norm())
    assert true <= cert.error_bound + 1e-7
    assert abs(true - cert.error_estimate) < 1e-6
    assert math.isclose(y.report.relative_error_bound, cert.error_estimate, rel_tol=1e-6, abs_tol=1e-7)
    # the result is left-canonical: its norm is its last core's
    assert math.isclose(float(y.norm()), float(np.linalg.norm(y.cores[-1])), rel_tol=1e-9)


def test_randomized_rounding_near_the_svd_sweep_on_decaying_spectra_and_at_any_scale():
    x = _random_mps(40, 2, 24, 0, decay=0.3) + _random_mps(40, 2, 24, 1, decay=0.3)
    trunc = tnlib.Truncation(max_bond=12)
    svd = x.compress(trunc)
    for factor in (1e-200, 1.0, 1e200):
        rand = (x * factor).compress(trunc, algorithm="randomized")
        assert rand.bond_dims == svd.bond_dims
        assert rand.report.certificate.error_estimate <= 1.1 * svd.report.relative_error_bound
        assert np.all(np.isfinite(rand.cores[-1]))
        assert math.isclose(rand.log_norm(), svd.log_norm() + math.log(factor), rel_tol=1e-3, abs_tol=1e-3)


def test_randomized_rounding_of_a_zero_chain_is_exact():
    zero = _random_mps(6, 2, 4, 0) * 0.0
    got = zero.compress(tnlib.Truncation(max_bond=2), algorithm="randomized")
    assert got.report.certificate.error_estimate == 0.0 and float(got.norm()) == 0.0


def test_randomized_rounding_refuses_what_it_cannot_honour():
    x = _random_mps(6, 2, 4, 0)
    with pytest.raises(ValueError, match="needs truncation.max_bond"):
        x.compress(tnlib.Truncation(cutoff=0.1), algorithm="randomized")
    with pytest.raises(ValueError, match="cannot honour cutoff"):
        x.compress(tnlib.Truncation(max_bond=2, cutoff=0.1), algorithm="randomized")
    with pytest.raises(ValueError, match="'svd', 'variational' or 'randomized'"):
        x.compress(tnlib.Truncation(max_bond=2), algorithm="random")


def test_randomized_rounding_of_an_mpo_and_in_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    mpo = tnlib.MPO.from_matrix(rng.standard_normal((64, 64)), (4, 4, 4), (4, 4, 4))
    y = mpo.compress(tnlib.Truncation(max_bond=6), algorithm="randomized")
    true = np.linalg.norm(mpo.to_matrix() - y.to_matrix()) / np.linalg.norm(mpo.to_matrix())
    assert abs(true - y.report.certificate.error_estimate) < 1e-9
    t = tnlib.MPS([torch.from_numpy(c) for c in _random_mps(8, 3, 5, 2).cores])
    z = t.compress(tnlib.Truncation(max_bond=3), algorithm="randomized")
    assert isinstance(z.cores[0], torch.Tensor) and z.bond_dims[-1] <= 3
