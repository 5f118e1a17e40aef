import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host, random_array


def decaying_matrix(seed=0):
    """A 256 x 256 matrix whose operator spectra decay at different rates per bond."""
    rng = np.random.default_rng(seed)
    W = np.zeros((256, 256))
    for k in range(12):
        terms = [rng.standard_normal((4, 4)) * 0.5**k for _ in range(4)]
        term = terms[0]
        for t in terms[1:]:
            term = np.kron(term, t)
        W += term
    return W + 1e-3 * rng.standard_normal((256, 256))


def count_params(bonds, phys):
    full = [1, *bonds, 1]
    return sum(full[k] * d * full[k + 1] for k, d in enumerate(phys))


def test_budget_is_met_and_error_equals_report():
    W = decaying_matrix()
    for budget in [400, 2000, 8000, 30000]:
        mpo = tnlib.MPO.from_matrix(W, (4, 4, 4, 4), (4, 4, 4, 4), truncation=tnlib.Truncation(max_params=budget))
        assert mpo.num_params <= budget
        err = np.linalg.norm(mpo.to_matrix() - W)
        assert err == pytest.approx(mpo.report.error_bound, rel=1e-6, abs=1e-12)


def test_budget_beats_the_best_uniform_cap():
    W = decaying_matrix(1)
    exact = tnlib.MPO.from_matrix(W, (4, 4, 4, 4), (4, 4, 4, 4))
    spectra = [host(exact.singular_values(k)) for k in range(3)]

    def weight(chi):  # discarded weight the allocation optimises, from the exact spectra
        return sum(np.sum(s[c:] ** 2) for s, c in zip(spectra, chi))

    for budget in [1000, 3000, 10000]:
        phys = [16] * 4
        best_uniform = max(
            chi for chi in range(1, 257)
            if count_params([min(chi, b) for b in exact.bond_dims], phys) <= budget
        )
        uniform = exact.truncate(tnlib.Truncation(max_bond=best_uniform))
        budgeted = exact.truncate(tnlib.Truncation(max_params=budget))
        assert budgeted.num_params <= budget
        # the sweep's true error is at most the allocation's estimate ...
        assert budgeted.report.error_bound**2 <= weight(budgeted.bond_dims) * (1 + 1e-9)
        # ... and never above the best uniform cap's (a candidate it measured)
        assert budgeted.report.error_bound <= uniform.report.error_bound * (1 + 1e-9)
        chosen = tnlib.allocate_bonds(spectra, phys, budget)
        assert weight(chosen) <= weight(uniform.bond_dims) * (1 + 1e-12)


def test_allocation_close_to_brute_force_on_small_chains():
    rng = np.random.default_rng(4)
    phys = (3, 4, 4, 3)
    spectra = [np.sort(rng.random(n))[::-1] ** 3 for n in (3, 12, 3)]
    for budget in range(30, 200, 7):
        chi = tnlib.allocate_bonds(spectra, phys, budget)
        assert count_params(chi, phys) <= budget
        cost = sum(np.sum(s[c:] ** 2) for s, c in zip(spectra, chi))
        best = min(
            sum(np.sum(s[c:] ** 2) for s, c in zip(spectra, cand))
            for cand in itertools.product(*(range(1, len(s) + 1) for s in spectra))
            if count_params(cand, phys) <= budget
        )
        assert cost <= best * 1.05 + 1e-12, (budget, chi)


def test_budget_too_small_names_max_params():
    W = random_array((16, 16))
    with pytest.raises(ValueError, match=r"Truncation.max_params=10 is below the smallest network with min_bond=1: 32"):
        tnlib.MPO.from_matrix(W, (4, 4), (4, 4), truncation=tnlib.Truncation(max_params=10))


def test_budget_combines_with_per_bond_criteria(backend):
    W = decaying_matrix(2)
    t = tnlib.Truncation(max_params=5000, max_bond=6)
    mpo = tnlib.MPO.from_matrix(backend.asarray(W), (4, 4, 4, 4), (4, 4, 4, 4), truncation=t)
    assert max(mpo.bond_dims) <= 6 and mpo.num_params <= 5000
    assert backend.is_mine(mpo.cores[0])
    err = np.linalg.norm(host(mpo.to_matrix()) - W)
    assert err == pytest.approx(mpo.report.error_bound, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.05, 0.5))
def test_budget_never_worse_than_the_plain_uniform_rank_rule(seed, fraction):
    # TensorLy-style rule: one rank r on every bond (capped by what each bond can carry), the largest that fits
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((4, 4, 4, 4, 4))
    budget = max(60, int(fraction * T.size))
    full = tnlib.MPS.from_dense(T)
    phys = full.phys_dims
    best_uniform = None
    for r in range(1, max(full.bond_dims) + 1):
        mps = full.truncate(tnlib.Truncation(max_bond=r))
        if mps.num_params <= budget:
            best_uniform = mps
    alloc = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_params=budget))
    assert alloc.num_params <= budget and len(phys) == 5
    if best_uniform is not None:
        err = np.linalg.norm(alloc.to_dense() - T)
        assert err <= np.linalg.norm(best_uniform.to_dense() - T) * (1 + 1e-9)
