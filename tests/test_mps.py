import math

import numpy as np
import pytest

import tnlib
from conftest import RTOL, host, random_array, rel_err

CUT = tnlib.Truncation(cutoff=1e-12)


def ghz(n: int) -> np.ndarray:
    psi = np.zeros((2,) * n)
    psi[(0,) * n] = psi[(1,) * n] = 2**-0.5
    return psi


def w_state(n: int) -> np.ndarray:
    psi = np.zeros((2,) * n)
    for k in range(n):
        idx = [0] * n
        idx[k] = 1
        psi[tuple(idx)] = n**-0.5
    return psi


def test_issue_example_random_state():
    psi = np.random.default_rng(1).standard_normal(2**12)
    mps = tnlib.MPS.from_dense(psi.reshape((2,) * 12), truncation=tnlib.Truncation(cutoff=1e-10))
    s = mps.singular_values(6)
    assert np.all(np.diff(s) <= 0)
    assert float(mps.entropy(6)) > float(mps.entropy(6, alpha=2)) > 0
    full = np.linalg.svd(psi.reshape(2**7, 2**5), compute_uv=False)
    np.testing.assert_allclose(s, full, rtol=1e-10)


def test_ghz_entropy_is_ln2_everywhere():
    mps = tnlib.MPS.from_dense(ghz(8), truncation=CUT)
    assert mps.bond_dims == (2,) * 7
    np.testing.assert_allclose(mps.entropies(), np.log(2), rtol=1e-12)
    np.testing.assert_allclose(mps.entropies(alpha=2), np.log(2), rtol=1e-12)
    np.testing.assert_allclose(mps.entropies(alpha=np.inf), np.log(2), rtol=1e-12)


def test_product_state_has_zero_entropy():
    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal(3) for _ in range(5)]
    psi = vecs[0]
    for v in vecs[1:]:
        psi = np.multiply.outer(psi, v)
    mps = tnlib.MPS.from_dense(psi, truncation=CUT)
    assert mps.bond_dims == (1,) * 4
    np.testing.assert_allclose(mps.entropies(), 0.0, atol=1e-12)
    # exact decomposition keeps full-rank bonds, but the entropy is still 0
    np.testing.assert_allclose(tnlib.MPS.from_dense(psi).entropies(), 0.0, atol=1e-12)


@pytest.mark.parametrize("n", [3, 6, 9])
def test_w_state_entropy(n):
    mps = tnlib.MPS.from_dense(w_state(n))
    for k in range(1, n):
        p = k / n
        expected = -p * math.log(p) - (1 - p) * math.log(1 - p)
        assert float(mps.entropy(k - 1)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(
        mps.entropies(), [-(k / n) * math.log(k / n) - (1 - k / n) * math.log(1 - k / n) for k in range(1, n)],
        rtol=1e-12,
    )


def test_rank_r_matrix_with_cutoff_gives_small_bonds():
    rng = np.random.default_rng(5)
    r = 3
    A = rng.standard_normal((64, r)) @ rng.standard_normal((r, 64))
    assert tnlib.truncated_svd(A, CUT).S.shape == (r,)
    mps = tnlib.MPS.from_dense(A, truncation=CUT)
    assert mps.bond_dims == (r,)
    assert rel_err(mps.to_dense(), A) < 1e-12


def test_exact_roundtrip_backends(backend, dtype):
    T = random_array((3, 4, 2, 5), dtype, seed=7)
    mps = tnlib.MPS.from_dense(backend.asarray(T))
    assert all(backend.is_mine(c) for c in mps.cores)
    assert mps.phys_dims == (3, 4, 2, 5)
    assert mps.bond_dims == (3, 10, 5)
    dense = mps.to_dense()
    assert backend.is_mine(dense)
    assert rel_err(dense, T) <= RTOL[dtype]


def test_entropies_namespace_and_bounds(backend, dtype):
    T = random_array((2,) * 8, dtype, seed=8)
    mps = tnlib.MPS.from_dense(backend.asarray(T))
    ent = mps.entropies()
    assert backend.is_mine(ent)
    e = host(ent)
    assert e.shape == (7,)
    assert np.all(e >= 0)
    assert np.all(e <= np.log(np.array(mps.bond_dims)) + 1e-5)
    s = mps.singular_values(3)
    assert backend.is_mine(s)
    assert np.all(np.diff(host(s)) <= 1e-6 * host(s)[0])


def test_one_site_mps():
    mps = tnlib.MPS.from_dense(np.arange(1.0, 5.0))
    assert mps.bond_dims == () and mps.num_params == 4
    np.testing.assert_array_equal(mps.to_dense(), np.arange(1.0, 5.0))
    with pytest.raises(ValueError, match="bond=0 is out of range; this chain has 0 bonds"):
        mps.entropy(0)


def test_list_input_is_accepted():
    mps = tnlib.MPS.from_dense([[1.0, 0.0], [0.0, 1.0]])
    assert isinstance(mps.cores[0], np.ndarray)
    assert float(mps.entropy(0)) == pytest.approx(math.log(2))


def test_zero_tensor():
    mps = tnlib.MPS.from_dense(np.zeros((2, 2, 2)), truncation=CUT)
    assert mps.bond_dims == (1, 1)
    np.testing.assert_array_equal(mps.to_dense(), 0.0)
    np.testing.assert_array_equal(mps.entropies(), 0.0)


def test_to_dense_limit():
    mps = tnlib.MPS([np.ones((1, 2, 1))] * 30)
    with pytest.raises(ValueError, match=r"MPS.to_dense would build an array of 1073741824 entries \(8 GiB\)"):
        mps.to_dense()


@pytest.mark.parametrize("scale", [1e-170, 1e-30, 1.0, 1e30, 1e160])
def test_norm_and_log_norm_far_from_one(scale):
    T = np.random.default_rng(1).standard_normal((4, 4, 4))
    reference = np.log(np.linalg.norm(T)) + np.log(scale)
    for mps in (tnlib.MPS.from_dense(T * scale), tnlib.MPS([c for c in tnlib.MPS.from_dense(T * scale).cores])):
        assert mps.log_norm() == pytest.approx(reference, rel=1e-12)
        assert mps.norm() == pytest.approx(np.exp(reference), rel=1e-12)
    assert tnlib.MPS.from_dense(T * scale).report.norm == pytest.approx(np.exp(reference), rel=1e-12)


@pytest.mark.parametrize("per_core", [1e-60, 1e-40, 1.0, 1e40, 1e60])
def test_singular_values_at_any_scale_in_range(per_core):
    """Cores each at 1e+-60 (chain up to 1e+-360 inside, values up to 1e+-300 out): the Schmidt values are
    those of the chain at scale 1 times the scale, where that is in range; beyond it inf or 0, never NaN."""
    rng = np.random.default_rng(3)
    base = tnlib.MPS([rng.standard_normal((1 if i == 0 else 3, 2, 1 if i == 4 else 3)) for i in range(5)])
    scaled = tnlib.MPS([c * per_core for c in base.cores])
    for bond in range(4):
        reference = base.singular_values(bond)
        got = scaled.singular_values(bond)
        expected = reference * per_core**2.5 * per_core**2.5
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    far_scale = 1.0 if per_core == 1.0 else (1e290 if per_core > 1 else 1e-290)
    far = tnlib.MPS([c * far_scale for c in base.cores])  # the chain at 1e+-1450
    values = far.singular_values(2)
    assert not np.isnan(values).any()
    if per_core != 1.0:
        assert np.all(values == (np.inf if per_core > 1 else 0.0))
    np.testing.assert_allclose(far.entropies(), base.entropies(), atol=1e-12)
