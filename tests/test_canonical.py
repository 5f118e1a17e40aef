import numpy as np
import pytest

import tnlib
from conftest import host, random_array, rel_err

TOL = {"float32": 1e-5, "complex64": 1e-5, "float64": 1e-12, "complex128": 1e-12}


def random_mps(dims, bond, dtype="float64", seed=0):
    rng_seed = seed
    cores = []
    left = 1
    for k, d in enumerate(dims):
        right = 1 if k == len(dims) - 1 else bond
        cores.append(random_array((left, d, right), dtype, seed=rng_seed + k))
        left = right
    return tnlib.MPS(cores)


def left_gram(core):
    l, p, r = core.shape
    m = core.reshape(l * p, r)
    return m.conj().T @ m


def right_gram(core):
    l, p, r = core.shape
    m = core.reshape(l, p * r)
    return m @ m.conj().T


@pytest.mark.parametrize("center", [0, 2, -1])
def test_canonical_cores_are_isometries(backend, dtype, center):
    mps = random_mps((3, 2, 4, 2, 3), 5, dtype)
    dense = host(mps.to_dense())
    canon = tnlib.MPS([backend.asarray(host(c)) for c in mps.cores]).canonicalize(center)
    c = center % 5
    assert canon.center == c
    cores = [host(x) for x in canon.cores]
    for k, core in enumerate(cores):
        if k < c:
            np.testing.assert_allclose(left_gram(core), np.eye(core.shape[2]), atol=TOL[dtype] * 10)
        elif k > c:
            np.testing.assert_allclose(right_gram(core), np.eye(core.shape[0]), atol=TOL[dtype] * 10)
    assert rel_err(canon.to_dense(), dense) <= TOL[dtype] * 10


def test_mpo_canonical_cores_are_isometries_over_out_and_in():
    W = random_array((64, 64), "complex128")
    mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (4, 4, 4)).canonicalize(1)
    g0 = mpo.cores[0].reshape(16, -1)
    np.testing.assert_allclose(g0.conj().T @ g0, np.eye(g0.shape[1]), atol=1e-12)
    g2 = mpo.cores[2].reshape(mpo.cores[2].shape[0], -1)
    np.testing.assert_allclose(g2 @ g2.conj().T, np.eye(g2.shape[0]), atol=1e-12)
    assert rel_err(mpo.to_matrix(), W) < 1e-12


def test_movable_center_touches_only_cores_between():
    mps = random_mps((2,) * 6, 4).canonicalize(1)
    moved = mps.canonicalize(3)
    assert moved.cores[0] is mps.cores[0]
    assert moved.cores[5] is mps.cores[5]
    assert moved.center == 3
    assert rel_err(moved.to_dense(), mps.to_dense()) < 1e-12


def test_singular_values_are_exact_schmidt_values():
    mps = random_mps((2, 3, 2, 3, 2), 4)
    dense = host(mps.to_dense())
    for bond in range(4):
        left = int(np.prod(dense.shape[: bond + 1]))
        expected = np.linalg.svd(dense.reshape(left, -1), compute_uv=False)
        got = host(mps.singular_values(bond))
        np.testing.assert_allclose(got, expected[: len(got)], rtol=1e-10, atol=1e-12 * expected[0])
        assert np.all(expected[len(got):] < 1e-10 * expected[0])


def test_mpo_singular_values_from_operator_unfolding():
    W = random_array((16, 16))
    mpo = tnlib.MPO.from_matrix(W, (4, 4), (4, 4))
    t = W.reshape(4, 4, 4, 4).transpose(0, 2, 1, 3).reshape(16, 16)
    np.testing.assert_allclose(mpo.singular_values(0), np.linalg.svd(t, compute_uv=False), rtol=1e-12)
    p = np.linalg.svd(t, compute_uv=False) ** 2
    p /= p.sum()
    assert float(mpo.entropy(0)) == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    assert float(mpo.entropy(0, alpha=3)) == pytest.approx(np.log((p**3).sum()) / (1 - 3), rel=1e-12)


def test_canonicalize_keeps_report_and_is_immutable():
    mps = tnlib.MPS.from_dense(random_array((2,) * 5), truncation=tnlib.Truncation(max_bond=2))
    before = [c.copy() for c in mps.cores]
    canon = mps.canonicalize(0)
    assert canon is not mps and canon.report is mps.report
    for a, b in zip(before, mps.cores):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AttributeError):
        mps.cores = ()  # type: ignore[misc]


def test_truncate_report_equals_true_error():
    mps = random_mps((2, 3, 4, 3, 2), 6)
    dense = host(mps.to_dense())
    t = mps.truncate(tnlib.Truncation(max_bond=3))
    assert max(t.bond_dims) <= 3 and t.center == 4
    err = np.linalg.norm(host(t.to_dense()) - dense)
    assert err == pytest.approx(t.report.error_bound, rel=1e-8)
    assert t.report.norm == pytest.approx(np.linalg.norm(dense), rel=1e-12)


def test_truncate_by_entropy_loss():
    mps = tnlib.MPS.from_dense(random_array((2,) * 10, seed=3))
    t = mps.truncate(tnlib.Truncation(max_entropy_loss=0.05))
    full = host(mps.entropies())
    kept = host(t.entropies())
    assert max(t.bond_dims) < max(mps.bond_dims)
    # each bond's kept spectrum keeps >= 95 % of the entropy it had when the sweep reached it;
    # compared with the untruncated chain the loss stays near 5 %
    assert np.all(kept >= 0.85 * full)


@pytest.mark.parametrize("algorithm", ["svd", "variational"])
def test_compression_chooses_the_canonical_form(algorithm):
    mps = tnlib.MPS.from_dense(random_array((2, 3, 4, 3, 2), seed=5))
    t = tnlib.Truncation(max_bond=3)
    for center in (0, 2, -1):
        out = mps.compress(t, algorithm, center=center, sweeps=10)
        assert out.center == center % 5 and out.report is not None
        sites = [c for c in out.cores]
        for k, core in enumerate(sites):
            left, phys, right = core.shape
            if k < out.center:
                m = core.reshape(left * phys, right)
                assert np.allclose(m.T @ m, np.eye(right), atol=1e-10)
            elif k > out.center:
                m = core.reshape(left, phys * right)
                assert np.allclose(m @ m.T, np.eye(left), atol=1e-10)
        np.testing.assert_allclose(out.to_dense(), mps.compress(t, algorithm, sweeps=10).to_dense(), atol=1e-10)
    with pytest.raises(ValueError, match=r"center=5 is out of range"):
        mps.truncate(t, center=5)
