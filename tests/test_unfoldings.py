"""Leading Schmidt values of unfoldings: tails, their bounds and estimates, sketches and the work model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from tnlib._unfoldings import Partial, Unfoldings, factor_cost


def true_tails(s, ranks):
    s2 = np.asarray(s) ** 2
    return np.array([np.sum(s2[r:]) for r in ranks])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60), st.integers(1, 59), st.floats(0.0, 0.5), st.integers(0, 10**6))
def test_bounds_from_leading_values_hold_at_every_rank(n, c, decay, seed):
    # known: the leading c exact values; the rest anything sorted below them
    c = min(c, n - 1)
    rng = np.random.default_rng(seed)
    s = np.sort(rng.random(n) * np.exp(-decay * np.arange(n)))[::-1]
    part = Partial(s[:c], n, float(np.sum(s**2)), False)
    ranks = np.arange(0, n + 3)
    est, low, up = part.tails(ranks)
    true = true_tails(s, ranks)
    tol = 1e-12 * part.total
    assert np.all(low <= true + tol) and np.all(true <= up + tol)
    assert np.all(low <= est + tol) and np.all(est <= up + tol)
    assert np.allclose(est[: c + 1], true[: c + 1], atol=tol) and np.all(est[n:] == 0)


def test_whole_spectra_give_exact_tails():
    s = np.array([3.0, 2.0, 1.0, 0.5])
    est, low, up = Partial(s, 4, float(np.sum(s**2)), True).tails(np.array([0, 1, 2, 4, 9]))
    assert np.allclose(est, [14.25, 5.25, 1.25, 0.0, 0.0]) and np.array_equal(est, low) and np.array_equal(est, up)


@pytest.mark.parametrize("p,q", [(4, 8), (16, 16), (2, 64)])
def test_sketched_values_are_the_leading_singular_values_of_the_unfolding(p, q):
    rng = np.random.default_rng(0)
    q_mat = np.linalg.qr(rng.standard_normal((128, 128)))[0]
    W = rng.standard_normal((64, 128)) @ np.diag(0.9 ** np.arange(128)) @ q_mat
    total = float(np.sum(W**2))
    B = W.reshape(p, 64 // p, q, 128 // q).transpose(0, 2, 1, 3).reshape(p * q, -1)
    exact = np.linalg.svd(B, compute_uv=False)
    unf = Unfoldings(W, total)
    part = unf.get(p, q, 4, power=1)
    assert unf.work == pytest.approx(Unfoldings(W, total).cost(p, q, 4, power=1))
    assert part.depth >= 4 and unf.cost(p, q, 4) == 0.0  # cached: a second look is free
    k = min(part.depth, len(exact))
    assert np.allclose(part.s[:4], exact[:4], rtol=0.1)  # one power iteration on a flat spectrum
    est, _, _ = part.tails(np.arange(k + 1))
    assert np.all(est >= true_tails(exact, np.arange(k + 1)) - 1e-9 * total)  # a sketch never overstates what it keeps


def test_factor_cost_grows_with_rank_and_size():
    assert factor_cost(512, 512, 8) < factor_cost(512, 512, 64) < factor_cost(512, 512, 512)
    assert factor_cost(256, 256, 32) < factor_cost(1024, 1024, 32)


def test_the_search_spends_within_its_work_and_finds_kronecker_structure():
    rng = np.random.default_rng(0)
    W = np.kron(rng.standard_normal((16, 16)), rng.standard_normal((32, 32))) + 1e-3 * rng.standard_normal((512, 512))
    found = tnlib.layouts(W, W.size // 16)
    assert found.svd.error > 0.8 and found.best.error < 2e-3
    statuses = {r.status for r in found.rows}
    assert statuses <= {"fitted", "pruned", "screened", "not fitted"} and "not fitted" in statuses
    assert sum(r.status == "fitted" for r in found.rows) <= 8
    assert found.mpo.num_params <= W.size // 16
    again = tnlib.layouts(W, W.size // 16)  # the work model, not the clock, rations the search: repeatable
    assert [r.status for r in again.rows] == [r.status for r in found.rows]
    alone = tnlib.layouts(W, W.size // 16, work=1)
    assert [r.status for r in alone.rows].count("fitted") == 1 and alone.best.layout.is_svd


def test_a_search_without_structure_fits_the_truncated_svd_alone():
    W = np.random.default_rng(1).standard_normal((512, 256)) @ np.diag(0.98 ** np.arange(256))
    found = tnlib.layouts(W, W.size // 4)
    assert found.best.layout.is_svd
    assert sum(r.status == "fitted" for r in found.rows) <= 2


@pytest.mark.parametrize("work", [0.5, float("nan"), float("inf")])
def test_work_must_be_at_least_one_fit(work):
    with pytest.raises(ValueError, match=r"work=.* is invalid: pass a finite number >= 1"):
        tnlib.layouts(np.ones((8, 8)), 30, work=work)
    with pytest.raises(TypeError, match=r"work must be a real number"):
        tnlib.layouts(np.ones((8, 8)), 30, work="3")
