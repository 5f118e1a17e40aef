"""MPO.apply and the kernels behind it (tnlib._apply): both routes, every backend."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5)), min_size=1, max_size=4),
       st.integers(1, 10**6))
def test_one_cost_model_for_eager_plans_and_traced_forms(legs, rows):
    """Eager inference plans, traced forms and MPO.apply's route all read tnlib._cost.split_cost."""
    pytest.importorskip("torch")
    from tnlib._apply import inference_split
    from tnlib._cost import split_cost
    from tnlib.nn._layers._traced import form_split

    bonds = [1] + [b for _, _, b in legs[:-1]] + [1]
    shapes = [(bonds[k], o, i, bonds[k + 1]) for k, (o, i, _) in enumerate(legs)]
    cores = [np.zeros(s) for s in shapes]
    assert inference_split(cores) == form_split(shapes, None) == split_cost(shapes).split
    # with every product paying the build, the form never costs less than without it
    assert split_cost(shapes, rows, build=True).macs >= split_cost(shapes, rows).macs
    # the halves MPO.apply considers are the cheapest cut when the dense matrix is left out
    split, flops = best_split(cores, rows)
    halves = split_cost(shapes, rows, build=True, dense=False)
    assert split == halves.split and (split is None or flops == 2.0 * halves.macs)
    # the dense matrix is chosen exactly when no cut is cheaper per row
    outs, ins = [o for o, _, _ in legs], [i for _, i, _ in legs]
    prod = math.prod
    per_row = [prod(ins[:s]) * bonds[s] * prod(outs[s:]) * (prod(ins[s:]) + prod(outs[:s]))
               for s in range(1, len(legs))]
    assert (split_cost(shapes).split is None) == all(c >= prod(outs) * prod(ins) for c in per_row)


def test_a_low_rank_plan_uses_its_two_products_without_timing(monkeypatch):
    """The truncated SVD's layout: the merged form is the chain's own two GEMMs, so no call is spent timing them;
    the result is the dense product."""
    import tnlib._apply as apply

    def refuse(*_: object, **__: object) -> bool:
        raise AssertionError("timed a choice between two identical forms")

    monkeypatch.setattr(apply, "first_is_faster", refuse)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 8)) @ rng.standard_normal((8, 96))
    mpo = tnlib.MPO.from_matrix(w, (64, 1), (1, 96), truncation=tnlib.Truncation(max_bond=8))
    plan = apply.WeightPlan(mpo.cores)
    for batch in (1, 7, 300):
        x = rng.standard_normal((batch, 96))
        assert np.allclose(plan(x), x @ w.T, atol=1e-10 * np.abs(w).max() * 96)
        assert not plan.contracts(x)
