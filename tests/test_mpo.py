import numpy as np
import pytest

import tnlib
from conftest import RTOL, host, random_array, rel_err


def test_issue_example_shapes_and_report():
    W = np.random.default_rng(0).standard_normal((1024, 512))
    mpo = tnlib.MPO.from_matrix(
        W, out_dims=(4, 8, 8, 4), in_dims=(4, 4, 8, 4), truncation=tnlib.Truncation(max_bond=32)
    )
    assert mpo.cores[1].shape == (16, 8, 4, 32)
    assert mpo.bond_dims == (16, 32, 16)
    assert mpo.num_params == sum(c.size for c in mpo.cores)
    assert mpo.compression_ratio == pytest.approx(1024 * 512 / mpo.num_params)
    assert mpo.shape == (1024, 512) and mpo.out_dims == (4, 8, 8, 4) and mpo.in_dims == (4, 4, 8, 4)
    err = np.linalg.norm(mpo.to_matrix() - W)
    # a sequential sweep with left-orthonormal cores: the bound is sharp
    assert err == pytest.approx(mpo.report.error_bound, rel=1e-9)
    assert mpo.report.bond_dims == mpo.bond_dims
    assert mpo.report.full_bond_dims == (16, 512, 16)
    assert mpo.center == 3
    assert mpo.canonicalize(2).entropies().shape == (3,)


def test_exact_roundtrip_every_backend_and_dtype(backend, dtype):
    W = random_array((24, 30), dtype, seed=1)
    a = backend.asarray(W)
    mpo = tnlib.MPO.from_matrix(a, out_dims=(2, 3, 4), in_dims=(5, 3, 2))
    assert all(backend.is_mine(c) for c in mpo.cores)
    assert mpo.dtype == a.dtype
    back = mpo.to_matrix()
    assert backend.is_mine(back)
    assert tuple(back.shape) == (24, 30)
    assert rel_err(back, W) <= RTOL[dtype]
    assert mpo.report.error_bound == 0.0


def test_truncated_matches_report_every_backend(backend, dtype):
    W = random_array((64, 64), dtype, seed=2)
    mpo = tnlib.MPO.from_matrix(
        backend.asarray(W), (4, 4, 4), (4, 4, 4), truncation=tnlib.Truncation(max_bond=6)
    )
    assert max(mpo.bond_dims) <= 6
    err = np.linalg.norm(host(mpo.to_matrix()) - W)
    tol = 1e-4 if dtype in ("float32", "complex64") else 1e-10
    assert err == pytest.approx(mpo.report.error_bound, rel=tol)


def test_row_and_column_index_convention():
    # W[i, j] = prod_k G_k[i_k, j_k] for a product operator (all bonds 1)
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((o, i)) for o, i in [(2, 3), (4, 2), (3, 3)]]
    W = np.kron(np.kron(mats[0], mats[1]), mats[2])
    mpo = tnlib.MPO([m[None, :, :, None] for m in mats])
    np.testing.assert_allclose(mpo.to_matrix(), W, rtol=1e-13, atol=1e-13)
    again = tnlib.MPO.from_matrix(W, (2, 4, 3), (3, 2, 3), truncation=tnlib.Truncation(cutoff=1e-12))
    assert again.bond_dims == (1, 1)


def test_automatic_dims_and_num_cores():
    W = random_array((256, 64))
    mpo = tnlib.MPO.from_matrix(W)
    assert mpo.num_sites == tnlib.default_num_cores(256, 64) == 3
    assert mpo.out_dims == tnlib.factorize(256, 3) and mpo.in_dims == tnlib.factorize(64, 3)
    assert rel_err(mpo.to_matrix(), W) < 1e-12
    assert tnlib.MPO.from_matrix(W, num_cores=2).out_dims == (16, 16)
    assert tnlib.MPO.from_matrix(W, out_dims=(4, 8, 8)).in_dims == (4, 4, 4)
    assert tnlib.MPO.from_matrix(W, in_dims=(8, 8)).out_dims == (16, 16)


def test_prime_dimension_needs_pad():
    W = random_array((1021, 16))
    with pytest.raises(ValueError, match=r"1021 rows.*pad=True.*1024"):
        tnlib.MPO.from_matrix(W)
    mpo = tnlib.MPO.from_matrix(W, pad=True)
    assert mpo.shape == (1021, 16)
    assert tnlib.factorize(1024, mpo.num_sites) == mpo.out_dims
    back = mpo.to_matrix()
    assert back.shape == (1021, 16)
    assert rel_err(back, W) < 1e-12
    assert mpo.compression_ratio == pytest.approx(1021 * 16 / mpo.num_params)
    # truncation keeps the padded shape and the logical one
    t = mpo.truncate(tnlib.Truncation(max_bond=4))
    assert t.shape == (1021, 16) and t.to_matrix().shape == (1021, 16)


def test_pad_with_explicit_dims():
    W = random_array((30, 7))
    mpo = tnlib.MPO.from_matrix(W, (2, 4, 4), (2, 2, 2), pad=True)
    assert mpo.shape == (30, 7)
    assert rel_err(mpo.to_matrix(), W) < 1e-12
    assert host(mpo.to_dense()).shape == (2, 4, 4, 2, 2, 2)


def test_single_core_mpo():
    W = random_array((6, 5))
    mpo = tnlib.MPO.from_matrix(W, (6,), (5,))
    assert mpo.bond_dims == () and mpo.center == 0
    assert rel_err(mpo.to_matrix(), W) < 1e-14
    assert mpo.entropies().shape == (0,)


def test_to_matrix_refuses_large_output():
    W = random_array((64, 64))
    mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (4, 4, 4))
    with pytest.raises(ValueError, match=r"4096 entries.*above max_size=100; pass max_size=4096"):
        mpo.to_matrix(max_size=100)
    assert mpo.to_matrix(max_size=4096).shape == (64, 64)
    with pytest.raises(ValueError, match=r"max_size=0 is invalid; expected an int >= 1"):
        mpo.to_matrix(max_size=0)
    with pytest.raises(TypeError, match="max_size must be an int"):
        mpo.to_matrix(max_size=1e9)
    assert mpo.to_matrix(max_size=np.int64(4096)).shape == (64, 64)  # NumPy integers are ints


def test_mpo_constructor_with_shape():
    cores = [np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1))]
    mpo = tnlib.MPO(cores, shape=(3, 4))
    assert mpo.shape == (3, 4) and mpo.to_matrix().shape == (3, 4)
    with pytest.raises(ValueError, match=r"shape=\(5, 4\) is invalid.*1 <= M <= 4"):
        tnlib.MPO(cores, shape=(5, 4))


def test_repr_mentions_dims():
    mpo = tnlib.MPO.from_matrix(random_array((16, 16)), (4, 4), (4, 4))
    text = repr(mpo)
    assert "MPO(shape=(16, 16)" in text and "bond_dims=(16,)" in text
