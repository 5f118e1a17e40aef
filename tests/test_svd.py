"""svd="auto" fast routes: used only when certified, never less accurate than the full SVD."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import random_array
from tnlib.svd import _certified as certified


def smooth(n):
    x = np.linspace(0, 1, n)
    return np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.1)


@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("bond", [4, 16])
def test_auto_matches_lapack_quality_and_report(kind, bond):
    W = random_array((512, 512), seed=1) if kind == "random" else smooth(512)
    dims = (8, 8, 8)
    auto = tnlib.MPO.from_matrix(W, dims, dims, truncation=tnlib.Truncation(max_bond=bond))
    full = tnlib.MPO.from_matrix(W, dims, dims, truncation=tnlib.Truncation(max_bond=bond), svd="lapack")
    norm = np.linalg.norm(W)
    err_auto = np.linalg.norm(auto.to_matrix() - W) / norm
    err_full = np.linalg.norm(full.to_matrix() - W) / norm
    assert err_auto <= 1.05 * err_full + 1e-13
    assert err_auto == pytest.approx(auto.report.relative_error_bound, rel=1e-6, abs=2e-15)


def test_gram_route_is_certified_on_a_gapped_spectrum():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((32, 32)))
    v, _ = np.linalg.qr(rng.standard_normal((4096, 32)))
    s = np.concatenate([np.ones(8), 0.1 * np.ones(24)])
    A = (u * s) @ v.T
    got = certified.fast_left_factor(A, tnlib.Truncation(max_bond=8))
    assert got is not None
    U, S, chi, discarded = got
    assert chi == 8 and U.shape == (32, 8)
    assert discarded == pytest.approx(24 * 0.01, rel=1e-9)
    np.testing.assert_allclose(U @ U.T, u[:, :8] @ u[:, :8].T, atol=1e-10)  # the same subspace


def test_gram_route_refuses_what_it_cannot_resolve():
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.standard_normal((32, 32)))
    v, _ = np.linalg.qr(rng.standard_normal((4096, 32)))
    # singular values around 1e-9 s_max: invisible to a Gram matrix, large for a 1e-12 target
    s = np.concatenate([np.ones(4), 1e-9 * np.ones(28)])
    A = (u * s) @ v.T
    assert certified.fast_left_factor(A, tnlib.Truncation(max_bond=8)) is None
    # ... so the full SVD is used and the error is right
    r = tnlib.truncated_svd(A, tnlib.Truncation(max_bond=8))
    assert r.discarded == pytest.approx(24 * 1e-18, rel=1e-6)
    # a tiny cutoff cannot be judged on Gram eigenvalues either
    s2 = np.concatenate([np.ones(8), 0.1 * np.ones(24)])
    assert certified.fast_left_factor((u * s2) @ v.T, tnlib.Truncation(max_bond=8, cutoff=1e-9)) is None


@pytest.mark.parametrize("seed", range(4))
def test_gram_route_accepts_a_cut_inside_a_noise_floor_at_the_optimum(seed):
    # structure of rank 12 plus noise, cut at 25 by max_bond: consecutive eigenvalues at the cut are
    # closer than the gap test allows, so the result is accepted on its measured error against the
    # eigenvalues' tail, and must then be the optimum to that tolerance
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((128, 12)) @ rng.standard_normal((12, 1024)) + 1e-3 * rng.standard_normal((128, 1024))
    trunc = tnlib.Truncation(max_bond=25)
    lam = np.linalg.eigvalsh(a @ a.T)[::-1]
    assert (lam[24] - lam[25]) / lam[0] < 1e-5  # the gap test alone would refuse it
    got = certified.gram_factor(a, trunc)
    assert got is not None and got.chi == 25
    best = float(np.sum(np.linalg.svd(a, compute_uv=False)[25:] ** 2))
    measured = float(np.linalg.norm(a - got.U @ (got.U.T @ a))) ** 2
    assert measured == pytest.approx(got.discarded, rel=1e-9)
    assert best * (1 - 1e-12) <= measured <= best * (1 + 2e-6)
    np.testing.assert_allclose(got.U.T @ got.U, np.eye(25), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 96), st.integers(4, 8), st.integers(1, 24), st.integers(1, 30),
       st.sampled_from([0.0, 1e-8, 1e-3, 1e-1]), st.integers(0, 10**6))
def test_gram_route_is_the_optimal_truncation_whenever_it_answers(short, aspect, rank, cap, noise, seed):
    # tall or wide, low rank plus noise of any size, any cap: whatever the Gram route (partial or whole
    # eigendecomposition) returns keeps the optimal subspace, to its stated tolerance
    rng = np.random.default_rng(seed)
    rank, cap = min(rank, short), min(cap, short - 1)
    a = rng.standard_normal((short, rank)) @ rng.standard_normal((rank, aspect * short))
    a = a + noise * rng.standard_normal(a.shape)
    a = a if seed % 2 else np.ascontiguousarray(a.T)
    got = certified.gram_factor(a, tnlib.Truncation(max_bond=cap))
    if got is None:
        return
    s = np.linalg.svd(a, compute_uv=False)
    total = float(np.sum(s**2))
    best = float(np.sum(s[got.chi:] ** 2))
    measured = float(np.linalg.norm(a - got.U @ (got.U.conj().T @ a))) ** 2
    assert got.chi == cap
    assert measured == pytest.approx(got.discarded, rel=1e-8, abs=1e-24 * total)
    assert measured <= best * (1 + 2e-6) + 1e-24 * total
    np.testing.assert_allclose(got.S[: got.chi], s[: got.chi], rtol=1e-6, atol=1e-7 * s[0])


@settings(max_examples=40, deadline=None)
@given(st.integers(48, 160), st.integers(1, 3), st.integers(1, 8), st.floats(0.5, 0.99), st.integers(0, 10**6))
def test_randomized_route_is_within_its_stated_five_percent_whenever_it_answers(short, aspect, cap, decay, seed):
    # geometric spectra of any decay: an accepted result's error is within 5 % of the optimum's
    rng = np.random.default_rng(seed)
    k = min(short, aspect * short)
    u = np.linalg.qr(rng.standard_normal((short, k)))[0]
    v = np.linalg.qr(rng.standard_normal((aspect * short, k)))[0]
    s = decay ** np.arange(k)
    a = (u * s) @ v.T
    got = certified.randomized_factor(a, tnlib.Truncation(max_bond=cap))
    if got is None:
        return
    best = float(np.sum(s[got.chi:] ** 2))
    measured = float(np.linalg.norm(a - got.U @ (got.U.T @ a))) ** 2
    assert measured == pytest.approx(got.discarded, rel=1e-8, abs=1e-26 * float(np.sum(s**2)))
    assert measured <= 1.05**2 * best + 1e-26 * float(np.sum(s**2))


def test_gram_route_refuses_a_cut_set_by_a_cutoff_inside_a_noise_floor():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 12)) @ rng.standard_normal((12, 1024)) + 1e-3 * rng.standard_normal((128, 1024))
    s = np.linalg.svd(a, compute_uv=False)
    cut = float(s[24] * 0.999999 / s[0])  # keeps 25, a rank chosen on noise eigenvalues
    assert certified.gram_factor(a, tnlib.Truncation(cutoff=max(cut, 1e-5))) is None


@pytest.mark.parametrize("wide", [True, False])
def test_gram_route_refines_eigenvectors_of_a_tail_below_rounding(wide):
    # a smooth kernel's first unfolding: its tail after 16 values is far below rounding, so the
    # Gram eigenvectors (error ~ eps / gap) are not accurate enough, and subspace iteration fixes that
    x = np.linspace(0, 1, 2048)
    a = np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.1).reshape(8, 256, 8, 256).transpose(0, 2, 1, 3)
    a = np.ascontiguousarray(a).reshape(64, -1) / 2**11
    a = a if wide else np.ascontiguousarray(a.T)  # 64 x 65536 or 65536 x 64
    trunc = tnlib.Truncation(max_bond=16)
    total = float(np.sum(a * a))
    if wide:
        top = np.linalg.eigh(a @ a.T)[1][:, ::-1][:, :16]
        assert np.linalg.norm(a - top @ (top.T @ a)) ** 2 > 1e-26 * total  # eigenvectors alone fail
    got = certified.gram_factor(a, trunc)
    assert got is not None and got.chi == 16
    full = np.linalg.svd(a, compute_uv=False)
    best = float(np.sum(full[16:] ** 2))
    measured = float(np.linalg.norm(a - got.U @ (got.U.T @ a))) ** 2
    assert measured == pytest.approx(got.discarded, rel=1e-6, abs=1e-30 * total)
    assert measured <= max(1e-30 * total, 1.05 * best)  # as good as the full SVD, to rounding
    np.testing.assert_allclose(got.U.T @ got.U, np.eye(16), atol=1e-13)


def test_randomized_route_needs_a_certificate():
    rng = np.random.default_rng(2)
    flat = rng.standard_normal((400, 400))
    assert certified.randomized_factor(flat, tnlib.Truncation(max_bond=20)) is None  # flat: no certificate
    low = smooth(400)
    got = certified.randomized_factor(low, tnlib.Truncation(max_bond=20))
    assert got is not None
    U, S, chi, discarded = got
    err = np.linalg.norm(low - U @ (U.T @ low))
    assert err**2 == pytest.approx(discarded, rel=1e-6, abs=1e-28)


def test_krylov_route_is_optimal_on_a_flat_spectrum():
    rng = np.random.default_rng(3)
    flat = rng.standard_normal((600, 600))
    t = tnlib.Truncation(max_bond=20)
    got = certified.fast_left_factor(flat, t)
    assert got is not None  # the randomized route declines, PROPACK converges
    U, S, chi, discarded = got
    s = np.linalg.svd(flat, compute_uv=False)
    assert chi == 20
    np.testing.assert_allclose(S[:20], s[:20], rtol=1e-9)
    assert discarded == pytest.approx(float(np.sum(s[20:] ** 2)), rel=1e-9)
    np.testing.assert_allclose(U.T @ U, np.eye(20), atol=1e-10)
