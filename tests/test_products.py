"""Elementwise and product algebra: Hadamard, Kronecker and outer products, sums of entries, dot with a
dense array; exact against dense (hypothesis) and on every backend."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host, random_array, rel_err

SETTINGS = settings(max_examples=40, deadline=None)
dims_st = st.lists(st.integers(1, 4), min_size=1, max_size=4)


def random_mps(dims, seed, complex_=False, rank=2):
    rng = np.random.default_rng(seed)
    bonds = [1] + [rank] * (len(dims) - 1) + [1]
    cores = []
    for k, n in enumerate(dims):
        c = rng.standard_normal((bonds[k], n, bonds[k + 1]))
        cores.append(c + 1j * rng.standard_normal(c.shape) if complex_ else c)
    return tnlib.MPS(cores)


@SETTINGS
@given(dims=dims_st, seed=st.integers(0, 10**6), complex_=st.booleans())
def test_hadamard_of_mps_is_exact(dims, seed, complex_):
    a, b = random_mps(dims, seed, complex_), random_mps(dims, seed + 1, complex_, rank=3)
    p = a * b
    assert p.bond_dims == tuple(x * y for x, y in zip(a.bond_dims, b.bond_dims))
    ref = a.to_dense() * b.to_dense()
    assert np.abs(p.to_dense() - ref).max() <= 1e-12 * max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(p.sum(), ref.sum(), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(out_dims=dims_st, seed=st.integers(0, 10**6))
def test_hadamard_of_mpo_kron_and_sum_are_exact(out_dims, seed):
    rng = np.random.default_rng(seed)
    in_dims = [int(rng.integers(1, 4)) for _ in out_dims]
    A = rng.standard_normal((int(np.prod(out_dims)), int(np.prod(in_dims))))
    B = rng.standard_normal(A.shape)
    a = tnlib.MPO.from_matrix(A, out_dims, in_dims)
    b = tnlib.MPO.from_matrix(B, out_dims, in_dims)
    np.testing.assert_allclose(a.hadamard(b).to_matrix(), A * B, atol=1e-12)
    np.testing.assert_allclose(float(a.sum()), A.sum(), rtol=1e-10, atol=1e-10)
    k = a.kron(b)
    assert k.num_sites == 2 * len(out_dims) and k.shape == (A.shape[0] ** 2, A.shape[1] ** 2)
    np.testing.assert_allclose(k.to_matrix(), np.kron(A, B), atol=1e-12)


@SETTINGS
@given(dims_a=dims_st, dims_b=dims_st, seed=st.integers(0, 10**6))
def test_outer_and_dense_dot_are_exact(dims_a, dims_b, seed):
    a, b = random_mps(dims_a, seed), random_mps(dims_b, seed + 1, complex_=True)
    o = a.outer(b)
    assert o.phys_dims == (*dims_a, *dims_b)
    np.testing.assert_allclose(o.to_dense(), np.multiply.outer(a.to_dense(), b.to_dense()), atol=1e-12)
    x = random_array(tuple(dims_a), "complex128", seed=seed)
    np.testing.assert_allclose(a.dot(x), np.sum(a.to_dense() * x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.dot(x.reshape(-1)), np.sum(a.to_dense() * x), rtol=1e-12, atol=1e-12)


def test_hadamard_with_truncation_compresses():
    x = np.linspace(-1, 1, 2**8)
    exact = tnlib.Truncation(cutoff=1e-12)
    a = tnlib.MPS.from_dense(np.sin(3 * x).reshape((2,) * 8), exact)
    assert max((a * a).bond_dims) == 4
    p = a.hadamard(a, tnlib.Truncation(cutoff=1e-12))
    assert max(p.bond_dims) == 3  # sin(3x)^2 = (1 - cos 6x) / 2: ranks 1 + 2
    np.testing.assert_allclose(p.to_dense().reshape(-1), np.sin(3 * x) ** 2, atol=1e-12)
    assert p.report is not None and p.center == 7


def test_products_on_every_backend(backend):
    A, B = random_array((6, 8), seed=1), random_array((6, 8), seed=2)
    a = tnlib.MPO.from_matrix(backend.asarray(A), (2, 3), (2, 4))
    b = tnlib.MPO.from_matrix(backend.asarray(B), (2, 3), (2, 4))
    h = a * b
    assert backend.is_mine(h.cores[0]) and rel_err(h.to_matrix(), A * B) < 1e-12
    k = a.kron(b)
    assert backend.is_mine(k.cores[0]) and rel_err(k.to_matrix(), np.kron(A, B)) < 1e-12
    assert abs(float(host(a.sum())) - A.sum()) < 1e-10
    t = random_array((2, 3, 4), seed=3)
    s = tnlib.MPS.from_dense(backend.asarray(t))
    x = random_array((2, 3, 4), seed=4)
    assert abs(float(host(s.dot(backend.asarray(x)))) - np.sum(t * x)) < 1e-10
    assert rel_err(s.outer(s).to_dense(), np.multiply.outer(t, t)) < 1e-12


def test_padded_mpo_sum_and_kron():
    W = random_array((5, 7), seed=0)
    padded = tnlib.MPO.from_matrix(W, (2, 3), (2, 4), pad=True, truncation=tnlib.Truncation(max_bond=1))
    np.testing.assert_allclose(float(padded.sum()), padded.to_matrix().sum(), rtol=1e-12)
    plain = tnlib.MPO.from_matrix(random_array((2, 3), seed=1), (2,), (3,))
    k = padded.kron(plain)
    assert k.shape == (10, 21)
    np.testing.assert_allclose(k.to_matrix(), np.kron(padded.to_matrix(), plain.to_matrix()), atol=1e-12)
    with pytest.raises(ValueError, match="kron needs an unpadded second MPO"):
        plain.kron(padded)


def test_bad_operands_get_clear_errors():
    a = random_mps((2, 3), 0)
    with pytest.raises(ValueError, match="hadamard needs matching legs"):
        a * random_mps((2, 4), 1)
    mpo = tnlib.MPO.from_matrix(np.eye(6), (2, 3), (2, 3))
    with pytest.raises(TypeError, match="hadamard needs two MPSs"):
        a * mpo
    with pytest.raises(TypeError, match="outer needs two MPSs"):
        a.outer(mpo)
    with pytest.raises(TypeError, match="kron needs two MPOs"):
        mpo.kron(a)
    with pytest.raises(ValueError, match=r"other has shape \(5,\); expected \(2, 3\) or \(6,\)"):
        a.dot(np.ones(5))
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="convert one first"):
        a.dot(torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="in one array library"):
        a * tnlib.MPS([torch.ones(1, 2, 1, dtype=torch.float64), torch.ones(1, 3, 1, dtype=torch.float64)])


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_products_beyond_float_range_keep_their_log_norm(scale):
    """The product's scale is spread over its cores: log_norm exact, norm and trace saturate (inf or 0), no NaN."""
    a = tnlib.MPS.from_dense(np.full((2, 2, 2), scale))
    p = a * a
    assert p.log_norm() == pytest.approx(np.log(np.sqrt(8) * scale) * 2 - np.log(np.sqrt(8)), rel=1e-12)
    assert p.norm() == (np.inf if scale > 1 else 0.0)
    m = tnlib.MPO.from_matrix(np.full((4, 4), scale), (2, 2), (2, 2))
    for product in (m * m, m.kron(m), m.kron(-1.0 * m)):
        assert np.isfinite(product.log_norm())
        t = float(product.trace())
        assert not np.isnan(t) and (np.isinf(t) if scale > 1 else t == 0.0)
    x, y = np.random.default_rng(0).standard_normal((2, 3, 4)), np.random.default_rng(1).standard_normal((2, 3, 4))
    mixed = tnlib.MPS.from_dense(x * scale) * tnlib.MPS.from_dense(y / scale)
    assert np.allclose(mixed.to_dense(), x * y)
