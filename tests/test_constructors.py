"""MPO.identity / zeros, MPS.product_state, MPO.trace and expand_bonds: parity with the peers' basics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host, random_array


def test_identity_and_zeros_on_every_backend(backend):
    like = backend.asarray(np.zeros(1))
    eye = tnlib.MPO.identity((2, 3, 2), like=like)
    assert backend.is_mine(eye.cores[0]) and eye.bond_dims == (1, 1)
    np.testing.assert_array_equal(host(eye.to_matrix()), np.eye(12))
    zero = tnlib.MPO.zeros((2, 2), (3, 1), like=like)
    assert zero.shape == (4, 3) and not host(zero.to_matrix()).any()


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([(2, 2), (3, 2, 2), (2, 4)]), st.integers(1, 6), st.integers(0, 10**6))
def test_trace_equals_the_dense_trace(dims, bond, seed):
    n = int(np.prod(dims))
    W = random_array((n, n), seed=seed)
    mpo = tnlib.MPO.from_matrix(W, dims, dims, truncation=tnlib.Truncation(max_bond=bond))
    assert float(mpo.trace()) == pytest.approx(float(np.trace(mpo.to_matrix())), rel=1e-10, abs=1e-10)


def test_trace_on_every_backend(backend):
    W = random_array((16, 16), "complex128", seed=3)
    mpo = tnlib.MPO.from_matrix(backend.asarray(W), (4, 4), (4, 4))
    np.testing.assert_allclose(host(mpo.trace()), np.trace(W), rtol=1e-10)
    with pytest.raises(ValueError, match=r"trace needs a square MPO with out_dims == in_dims"):
        tnlib.MPO.from_matrix(backend.asarray(random_array((16, 8))), (4, 4), (2, 4)).trace()


def test_product_state_is_the_kronecker_product(backend):
    vs = [random_array((d,), seed=d) for d in (2, 3, 4)]
    psi = tnlib.MPS.product_state([backend.asarray(v) for v in vs])
    assert psi.bond_dims == (1, 1) and backend.is_mine(psi.cores[0])
    np.testing.assert_allclose(host(psi.to_dense()).reshape(-1), np.kron(np.kron(vs[0], vs[1]), vs[2]), atol=1e-14)
    with pytest.raises(ValueError, match=r"vectors\[1\] has shape \(2, 2\); expected a non-empty 1-D array"):
        tnlib.MPS.product_state([np.ones(2), np.ones((2, 2))])
    with pytest.raises(TypeError, match=r"vectors must be a non-empty sequence"):
        tnlib.MPS.product_state([])


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 3), st.integers(0, 3), st.integers(0, 10**6))
def test_expand_bonds_keeps_the_tensor(extra0, extra1, seed):
    mps = tnlib.MPS.from_dense(random_array((2, 3, 2, 2), seed=seed), truncation=tnlib.Truncation(max_bond=2))
    target = tuple(b + e for b, e in zip(mps.bond_dims, (extra0, extra1, 0)))
    big = mps.expand_bonds(target)
    assert big.bond_dims == target and big.center is None
    np.testing.assert_allclose(big.to_dense(), mps.to_dense(), atol=1e-14)
    # the padded chain still canonicalizes and truncates back
    back = big.truncate(tnlib.Truncation(max_bond=2))
    np.testing.assert_allclose(back.to_dense(), mps.to_dense(), atol=1e-12)


def test_expand_bonds_errors():
    mpo = tnlib.MPO.from_matrix(random_array((16, 16)), (4, 4), (4, 4))
    with pytest.raises(ValueError, match=r"bond_dims has 2 entries; this chain has 1 bonds"):
        mpo.expand_bonds((20, 20))
    with pytest.raises(ValueError, match=r"bond_dims\[0\]=3 is below the current bond 16"):
        mpo.expand_bonds((3,))
    assert mpo.expand_bonds((20,)).bond_dims == (20,)
