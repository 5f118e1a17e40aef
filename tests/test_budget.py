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


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(2, 9), min_size=3, max_size=6).filter(lambda s: int(np.prod(s)) <= 20_000),
    st.integers(0, 10**6),
    st.sampled_from([0.05, 0.1, 0.2, 0.5]),
    st.booleans(),
    st.sampled_from(["round", "floor", "ceil"]),
    st.booleans(),
)
def test_budget_never_loses_to_tensorlys_rank_rules(shape, seed, fraction, constant, rounding, low_rank):
    """At the parameter count of TensorLy's ``validate_tt_rank`` ranks (proportional or constant, any
    rounding), TT-SVD with tnlib's allocation is never less accurate than TT-SVD with those ranks
    (it was on random 4-way tensors: 15.19 vs 15.10)."""
    import warnings

    import tensorly as tl
    from tensorly.decomposition import tensor_train
    from tensorly.tt_tensor import validate_tt_rank

    rng = np.random.default_rng(seed)
    T = rng.standard_normal(shape)
    if low_rank:  # a low-rank tensor plus noise: spectra that decay, then flatten
        T = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_bond=3)).to_dense() + 0.1 * T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rank = validate_tt_rank(tuple(shape), rank=fraction, constant_rank=constant, rounding=rounding)
    if min(rank) < 1:
        return  # TensorLy's rule gives no network at this fraction
    tt = tensor_train(T, rank)
    budget = sum(int(f.size) for f in tt)
    err_tl = np.linalg.norm(tl.tt_to_tensor(tt) - T)
    mps = tnlib.MPS.from_dense(T, truncation=tnlib.Truncation(max_params=budget))
    assert mps.num_params <= budget
    assert np.linalg.norm(mps.to_dense() - T) <= err_tl * (1 + 1e-9) + 1e-12 * np.linalg.norm(T)


def test_pair_moves_stay_within_the_budget_and_bounds():
    from tnlib.budget import chain_params, pair_moves, proportional_cap

    phys, low, upper, budget = (4, 4, 4, 4), (1, 1, 1), (4, 16, 4), 120
    chi = proportional_cap(phys, (1.0, 1.0, 1.0), low, upper, budget)
    assert chain_params(chi, phys) <= budget and chi == [3, 3, 3]  # [4, 4, 4] needs 160
    moves = pair_moves(chi, phys, low, upper, budget)
    assert moves and all(chain_params(m, phys) <= budget for m in moves)
    assert all(lo <= c <= up for m in moves for c, lo, up in zip(m, low, upper))
    assert (4, 3, 3) in moves and (2, 5, 3) in moves  # one larger; one smaller and the freed count moved


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.floats(0.3, 1.0)), min_size=1, max_size=3),
       st.integers(1, 5), st.integers(0, 10**6))
def test_allocate_ranks_is_the_optimum_for_equal_costs_and_never_loses_to_the_baseline(items, cost, seed):
    rng = np.random.default_rng(seed)
    spectra = [np.sort(rng.uniform(0, 1, n) * decay ** np.arange(n))[::-1] for n, decay in items]
    costs = [cost] * len(items)
    budget = int(rng.integers(len(items), sum(len(s) for s in spectra) + 1)) * cost
    ranks = tnlib.budget.allocate_ranks(spectra, costs, budget)
    assert sum(r * c for r, c in zip(ranks, costs)) <= budget and all(1 <= r <= len(s) for r, s in zip(ranks, spectra))

    def loss(rs):
        return sum(float(np.sum(s[r:] ** 2) / np.sum(s**2)) for s, r in zip(spectra, rs))

    feasible = [rs for rs in itertools.product(*(range(1, len(s) + 1) for s in spectra))
                if sum(r * c for r, c in zip(rs, costs)) <= budget]
    assert loss(ranks) <= min(loss(rs) for rs in feasible) + 1e-12  # equal costs: greedy is exact
    base = tuple(max(1, len(s) // 2) for s in spectra)
    if sum(r * c for r, c in zip(base, costs)) <= budget:
        with_base = tnlib.budget.allocate_ranks(spectra, costs, budget, baseline=base)
        assert loss(with_base) <= loss(base) + 1e-12


def test_allocate_ranks_errors():
    s = np.ones(4)
    with pytest.raises(tnlib.truncation.BudgetTooSmallError, match=r"budget of 5 parameters cannot hold 2 matrices"):
        tnlib.budget.allocate_ranks([s, s], [4, 4], 5)
    with pytest.raises(ValueError, match=r"one entry per matrix, got 2, 1"):
        tnlib.budget.allocate_ranks([s, s], [4], 50)
    with pytest.raises(ValueError, match=r"baseline must have one rank per matrix \(2\), got 1"):
        tnlib.budget.allocate_ranks([s, s], [4, 4], 50, baseline=[1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.floats(0.3, 1.0), st.floats(0.0, 10.0)), min_size=1, max_size=3),
       st.integers(1, 5), st.integers(0, 10**6))
def test_allocate_ranks_with_sensitivities_is_the_optimum_of_the_weighted_absolute_loss(items, cost, seed):
    rng = np.random.default_rng(seed)
    spectra = [np.sort(rng.uniform(0, 1, n) * decay ** np.arange(n))[::-1] for n, decay, _ in items]
    sens = [g for *_, g in items]
    costs = [cost] * len(items)
    budget = int(rng.integers(len(items), sum(len(s) for s in spectra) + 1)) * cost
    ranks = tnlib.budget.allocate_ranks(spectra, costs, budget, sensitivities=sens)

    def loss(rs):
        return sum(g * float(np.sum(s[r:] ** 2)) for s, r, g in zip(spectra, rs, sens))

    feasible = [rs for rs in itertools.product(*(range(1, len(s) + 1) for s in spectra))
                if sum(r * c for r, c in zip(rs, costs)) <= budget]
    assert sum(r * c for r, c in zip(ranks, costs)) <= budget
    assert loss(ranks) <= min(loss(rs) for rs in feasible) + 1e-12


def test_allocate_ranks_refuses_bad_sensitivities():
    s = np.ones(4)
    for bad in ([1.0], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match=r"sensitivities must be 2 non-negative finite numbers"):
            tnlib.budget.allocate_ranks([s, s], [4, 4], 50, sensitivities=bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(budget=float("nan")), "budget must be an int"),
    (dict(budget=-5), "budget=-5 is invalid"),
    (dict(costs=[-32, 32]), r"costs\[0\]=-32 is invalid"),
    (dict(costs=[0, 32]), r"costs\[0\]=0 is invalid"),
    (dict(max_ranks=[-1, 4]), r"max_ranks\[0\]=-1 is invalid"),
    (dict(min_rank=-2), "min_rank=-2 is invalid"),
    (dict(spectra=[np.array([1.0, np.nan]), np.ones(4)]), r"spectra\[0\] must be a 1-D array of finite"),
])
def test_allocate_ranks_refuses_impossible_settings(kwargs, match):
    args = dict(spectra=[0.5 ** np.arange(8), np.ones(8)], costs=[32, 32], budget=8 * 32)
    args.update(kwargs)
    spectra, costs, budget = args.pop("spectra"), args.pop("costs"), args.pop("budget")
    with pytest.raises((TypeError, ValueError), match=match):
        tnlib.budget.allocate_ranks(spectra, costs, budget, **args)


def test_min_ranks_keep_a_floor_under_every_matrix():
    steep, flat = 0.3 ** np.arange(32), np.ones(32)
    free = tnlib.budget.allocate_ranks([steep, flat], [64, 64], budget=32 * 64)
    assert free[0] < 4  # the steep spectrum gives its budget away
    floored = tnlib.budget.allocate_ranks([steep, flat], [64, 64], budget=32 * 64, min_ranks=[8, 0])
    assert floored[0] == 8 and sum(r * 64 for r in floored) <= 32 * 64
    with pytest.raises(ValueError, match="min_ranks must have one rank per matrix"):
        tnlib.budget.allocate_ranks([steep, flat], [64, 64], budget=32 * 64, min_ranks=[8])
    with pytest.raises(tnlib.truncation.BudgetTooSmallError, match="and their min_ranks"):
        tnlib.budget.allocate_ranks([steep, flat], [64, 64], budget=10 * 64, min_ranks=[8, 8])
