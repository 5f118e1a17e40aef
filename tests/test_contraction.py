import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host, random_array


@pytest.mark.parametrize(
    "subscripts, shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("ijk,kjl,lm->im", [(3, 4, 5), (5, 4, 6), (6, 2)]),
        ("ijk,ijl->jkl", [(3, 4, 5), (3, 4, 7)]),  # batch index j
        ("ij,ji", [(3, 4), (4, 3)]),  # implicit output: scalar
        ("ij->ji", [(3, 4)]),
        ("ijk->k", [(2, 3, 4)]),
        ("ab,bc,cd,de->ae", [(2, 30), (30, 3), (3, 40), (40, 2)]),
        ("xa,ay,yb->xb", [(5, 2), (2, 3), (3, 4)]),
        ("abc,cd,d->ab", [(2, 3, 4), (4, 5), (5,)]),
    ],
)
def test_contract_matches_einsum_on_every_backend(backend, subscripts, shapes):
    ops = [random_array(s, "complex128" if k == 0 else "float64", seed=k) for k, s in enumerate(shapes)]
    got = tnlib.contract(subscripts, *[backend.asarray(o) for o in ops])
    assert backend.is_mine(got)
    np.testing.assert_allclose(host(got), np.einsum(subscripts, *ops), rtol=1e-12, atol=1e-12)


def test_path_is_found_once_per_shape_and_plan_reports_speedup(monkeypatch):
    import opt_einsum

    calls = []
    real = opt_einsum.contract_path

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(opt_einsum, "contract_path", counting)
    a, b, c = np.ones((101, 2)), np.ones((2, 101)), np.ones((101, 3))
    results = [tnlib.contract("ab,bc,cd->ad", a, b, c) for _ in range(5)]
    assert len(calls) == 2  # the optimal and the naive path, once; four more calls reuse them
    assert all(np.array_equal(r, results[0]) for r in results)
    tnlib.contract("ab,bc,cd->ad", np.ones((102, 2)), np.ones((2, 102)), np.ones((102, 3)))
    assert len(calls) == 4  # new shapes, new paths
    plan = tnlib.contraction_plan("ab,bc,cd->ad", (100, 2), (2, 100), (100, 3))
    assert plan.path == ((1, 2), (0, 1))
    assert plan.flops < plan.naive_flops and plan.speedup > 10
    assert plan.largest_intermediate == 300
    assert "speed-up" in str(plan)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(0, 1000))
def test_chain_of_three_matches_einsum(a, b, c, d, seed):
    rng = np.random.default_rng(seed)
    x, y, z = rng.standard_normal((a, b)), rng.standard_normal((b, c, a)), rng.standard_normal((c, d))
    np.testing.assert_allclose(
        tnlib.contract("ab,bca,cd->ad", x, y, z), np.einsum("ab,bca,cd->ad", x, y, z), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "subscripts, shapes, message",
    [
        ("ij,jk->ik", [(3, 4), (5, 6)], r"index 'j' has size 4 in one operand and 5 in operand 1"),
        ("ij,jk->ik", [(3, 4)], r"names 2 operands but 1 were given"),
        ("ii->i", [(3, 3)], r"index 'i' repeats in operand 0 \(a diagonal\); not supported"),
        ("...i,ij->...j", [(2, 3), (3, 4)], r"ellipses are not supported"),
        ("ij,jk->iq", [(3, 4), (4, 5)], r"output index 'q' must appear"),
        ("ijk,jk->i", [(3, 4), (4, 5)], r"operand 0 has shape \(3, 4\) but subscripts='ijk,jk->i' give it 3 indices"),
    ],
)
def test_contract_errors(subscripts, shapes, message):
    with pytest.raises(ValueError, match=message):
        tnlib.contract(subscripts, *[np.ones(s) for s in shapes])
