"""Hypothesis properties: round trips, isometries, error bounds, optimality."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tnlib

SETTINGS = settings(max_examples=60, deadline=None)

# the properties below hold whether or not a max_bond caps a guarantee away; that it warns (and says so in the
# report) is tested in tests/test_truncation.py
pytestmark = pytest.mark.filterwarnings("ignore:max_(discarded|relative_error)=.* is not met:UserWarning")

dims_st = st.lists(st.integers(1, 4), min_size=1, max_size=5).filter(lambda d: math.prod(d) <= 1024)
dtype_st = st.sampled_from(["float32", "float64", "complex128"])


@st.composite
def truncations(draw):
    kw = {}
    if draw(st.booleans()):
        kw["max_bond"] = draw(st.integers(1, 8))
    if draw(st.booleans()):
        kw["cutoff"] = draw(st.floats(0, 0.9))
    if draw(st.booleans()):
        kw["max_discarded"] = draw(st.floats(0, 0.5))
    if draw(st.booleans()):
        kw["max_entropy_loss"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        kw["min_bond"] = draw(st.integers(1, kw.get("max_bond", 3)))
    return tnlib.Truncation(**kw)


def tensor(dims, dtype, seed, decay):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(dims)
    if dtype.startswith("complex"):
        t = t + 1j * rng.standard_normal(dims)
    # optionally impose a decaying spectrum so truncations are meaningful
    scale = np.exp(-decay * np.arange(t.size) / max(t.size, 1)).reshape(dims)
    return (t * scale).astype(dtype)


def tol(dtype):
    return 1e-4 if dtype == "float32" else 1e-10


@SETTINGS
@given(dims_st, dtype_st, st.integers(0, 2**16), st.floats(0, 8), truncations())
def test_error_bound_holds_and_is_sharp(dims, dtype, seed, decay, truncation):
    t = tensor(dims, dtype, seed, decay)
    assume(np.linalg.norm(t) > 0)
    mps = tnlib.MPS.from_dense(t, truncation=truncation)
    err = float(np.linalg.norm(mps.to_dense() - t))
    bound = mps.report.error_bound
    norm = float(np.linalg.norm(t))
    assert err <= bound + tol(dtype) * norm
    assert abs(err - bound) <= tol(dtype) * norm * 10  # left-orthonormal sweep: equality
    if truncation.max_bond is not None:
        assert max(mps.bond_dims, default=1) <= truncation.max_bond
    assert mps.report.bond_dims == mps.bond_dims


@SETTINGS
@given(dims_st, dtype_st, st.integers(0, 2**16))
def test_exact_round_trip_and_entropy_bounds(dims, dtype, seed):
    t = tensor(dims, dtype, seed, 0.0)
    mps = tnlib.MPS.from_dense(t)
    norm = np.linalg.norm(t)
    assert np.linalg.norm(mps.to_dense() - t) <= tol(dtype) * norm
    ent = np.asarray(mps.entropies())
    assert ent.shape == (len(dims) - 1,)
    assert np.all(ent >= 0)
    assert np.all(ent <= np.log(np.array(mps.bond_dims, dtype=float)) + tol(dtype) * 10)
    renyi2 = np.asarray(mps.entropies(alpha=2.0))
    assert np.all(renyi2 <= ent + tol(dtype) * 10)  # Renyi entropies decrease with alpha


@SETTINGS
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**16), st.floats(0, 6))
def test_two_cores_give_the_eckart_young_optimum(m, n, chi, seed, decay):
    a = tensor((m, n), "float64", seed, decay)
    mps = tnlib.MPS.from_dense(a, truncation=tnlib.Truncation(max_bond=chi))
    s = np.linalg.svd(a, compute_uv=False)
    optimum = math.sqrt(float(np.sum(s[chi:] ** 2)))
    assert abs(np.linalg.norm(mps.to_dense() - a) - optimum) <= 1e-10 * max(np.linalg.norm(a), 1e-300)


@SETTINGS
@given(dims_st, dtype_st, st.integers(0, 2**16), st.integers(0, 4), st.integers(1, 6))
def test_canonicalize_keeps_the_tensor_and_makes_isometries(dims, dtype, seed, center, bond):
    rng = np.random.default_rng(seed)
    n = len(dims)
    bonds = [1] + [bond] * (n - 1) + [1]
    cores = []
    for k, d in enumerate(dims):
        c = rng.standard_normal((bonds[k], d, bonds[k + 1]))
        if dtype.startswith("complex"):
            c = c + 1j * rng.standard_normal(c.shape)
        cores.append(c.astype(dtype))
    mps = tnlib.MPS(cores)
    center = center % n
    canon = mps.canonicalize(center)
    ref = mps.to_dense()
    assert np.linalg.norm(canon.to_dense() - ref) <= tol(dtype) * np.linalg.norm(ref) * 10
    for k, c in enumerate(canon.cores):
        left, phys, right = c.shape
        if k < center:
            m = c.reshape(left * phys, right)
            assert np.allclose(m.conj().T @ m, np.eye(right), atol=tol(dtype) * 10)
        elif k > center:
            m = c.reshape(left, phys * right)
            assert np.allclose(m @ m.conj().T, np.eye(left), atol=tol(dtype) * 10)


@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=1, max_size=4), st.data(), st.integers(0, 2**16), truncations())
def test_mpo_round_trip_and_truncate_bound(out_dims, data, seed, truncation):
    in_dims = data.draw(st.lists(st.integers(1, 3), min_size=len(out_dims), max_size=len(out_dims)))
    m, n = math.prod(out_dims), math.prod(in_dims)
    w = tensor((m, n), "float64", seed, 3.0)
    mpo = tnlib.MPO.from_matrix(w, out_dims, in_dims)
    assert np.linalg.norm(mpo.to_matrix() - w) <= 1e-12 * max(np.linalg.norm(w), 1e-300)
    t = mpo.truncate(truncation)
    err = np.linalg.norm(t.to_matrix() - w)
    assert err <= t.report.error_bound + 1e-10 * np.linalg.norm(w)
    assert abs(err - t.report.error_bound) <= 1e-9 * np.linalg.norm(w)


@SETTINGS
@given(dims_st, st.integers(0, 2**16), st.integers(1, 4000))
def test_budget_is_always_met(dims, seed, budget):
    t = tensor(dims, "float64", seed, 2.0)
    smallest = sum(dims)
    if budget < smallest:
        try:
            tnlib.MPS.from_dense(t, truncation=tnlib.Truncation(max_params=budget))
        except ValueError as exc:
            assert "max_params" in str(exc)
        else:
            raise AssertionError("a budget below the smallest chain must raise")
        return
    mps = tnlib.MPS.from_dense(t, truncation=tnlib.Truncation(max_params=budget))
    assert mps.num_params <= budget
    err = np.linalg.norm(mps.to_dense() - t)
    assert abs(err - mps.report.error_bound) <= 1e-9 * max(np.linalg.norm(t), 1e-300)


@SETTINGS
@given(
    st.integers(2, 4), st.integers(2, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 6),
    st.integers(0, 2**31 - 1),
)
def test_a_padded_mpo_means_the_matrix_of_its_shape(d1, d2, cut_rows, cut_cols, bond, seed):
    """trace, norm, log_norm, inner and products of padded MPOs are those of the matrices of ``shape``
    (a truncated MPO of a zero-padded matrix is not zero in the padding)."""
    dims = (d1, d2, 2)
    full = math.prod(dims)
    m, n = max(1, full - cut_rows), max(1, full - cut_cols)
    rng = np.random.default_rng(seed)
    t = tnlib.Truncation(max_bond=bond)
    a = tnlib.MPO.from_matrix(rng.standard_normal((m, n)), dims, dims, pad=True, truncation=t)
    b = tnlib.MPO.from_matrix(rng.standard_normal((m, n)), dims, dims, pad=True, truncation=t)
    c = tnlib.MPO.from_matrix(rng.standard_normal((n, m)), dims, dims, pad=True, truncation=t)
    A, B, C = a.to_matrix(), b.to_matrix(), c.to_matrix()
    scale = max(1.0, np.linalg.norm(A) * max(np.linalg.norm(B), np.linalg.norm(C)))
    assert math.isclose(a.norm(), np.linalg.norm(A), rel_tol=1e-10, abs_tol=1e-12)
    assert abs(float(a.inner(b)) - float(np.sum(A * B))) <= 1e-10 * scale
    np.testing.assert_allclose((a @ c).to_matrix(), A @ C, atol=1e-10 * scale)
    if m == n:
        assert abs(float(a.trace()) - np.trace(A)) <= 1e-10 * max(1.0, np.abs(A).sum())


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.1, 0.2, 0.3, 0.5]), st.sampled_from([1e-3, 0.05, 0.3]))
def test_max_relative_error_holds_with_degeneracy_tol(seed, eps, tol):
    """Moving cuts out of multiplets never breaks the global error guarantee (multiplets are common:
    symmetric states, paired singular values)."""
    rng = np.random.default_rng(seed)
    s = np.sort(np.repeat(rng.uniform(0.05, 1.0, 8), 2))[::-1]
    u, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    v, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    a = (u * s) @ v.T
    t = tnlib.Truncation(max_relative_error=eps, degeneracy_tol=tol)
    for chain in (tnlib.MPO.from_matrix(a, (4, 4), (4, 4), truncation=t),
                  tnlib.MPS.from_dense(a.reshape(4, 4, 4, 4), truncation=t)):
        dense = chain.to_matrix() if isinstance(chain, tnlib.MPO) else chain.to_dense().reshape(16, 16)
        assert np.linalg.norm(a - dense) <= eps * np.linalg.norm(a) * (1 + 1e-9)


@SETTINGS
@given(st.integers(2, 24), st.integers(2, 24), st.integers(1, 400), st.integers(0, 2**31 - 1))
def test_a_two_core_budget_is_the_truncated_svd_at_the_largest_rank_it_holds(m, n, budget, seed):
    """max_params on one bond is a cap chi (m + n) <= max_params (the fast route equals the allocation)."""
    a = np.random.default_rng(seed).standard_normal((m, n))
    assume(budget >= m + n)
    mpo = tnlib.MPO.from_matrix(a, (m, 1), (1, n), truncation=tnlib.Truncation(max_params=budget))
    chi = min(budget // (m + n), m, n)
    s = np.linalg.svd(a, compute_uv=False)
    assert mpo.bond_dims == (chi,) and mpo.num_params <= budget
    assert math.isclose(np.linalg.norm(a - mpo.to_matrix()), math.sqrt(np.sum(s[chi:] ** 2)), rel_tol=1e-8,
                        abs_tol=1e-10 * np.linalg.norm(a))
    assert math.isclose(mpo.report.error_bound, np.linalg.norm(a - mpo.to_matrix()), rel_tol=1e-7, abs_tol=1e-9)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([1e-150, 1e-100, 1e-30, 1.0, 1e30, 1e100, 1e150]))
def test_norms_entropies_and_truncation_do_not_depend_on_the_scale_of_the_cores(seed, scale):
    """Cores each scaled by 1e+-100 (a chain of norm 1e+-400): entropies and truncated bonds as at scale 1,
    log_norm shifted by exactly the logarithm of the scale."""
    rng = np.random.default_rng(seed)
    base = tnlib.MPS.from_dense(rng.standard_normal((3, 4, 4, 3)))
    scaled = tnlib.MPS([c * scale for c in base.cores])
    np.testing.assert_allclose(scaled.entropies(), base.entropies(), rtol=1e-9, atol=1e-12)
    assert math.isclose(scaled.log_norm(), base.log_norm() + 4 * math.log(scale), rel_tol=1e-12, abs_tol=1e-9)
    t = tnlib.Truncation(max_bond=2)
    small, ref = scaled.truncate(t), base.truncate(t)
    assert small.bond_dims == ref.bond_dims
    assert math.isclose(small.report.relative_error_bound, ref.report.relative_error_bound, rel_tol=1e-9)


def test_log_norm_of_a_long_product_state_and_norm_beyond_range():
    psi = tnlib.MPS.product_state([np.array([1.0, 1.0])] * 3000)  # norm 2**1500
    assert math.isclose(psi.log_norm(), 1500 * math.log(2), rel_tol=1e-12)
    assert psi.norm() == math.inf
    tiny = tnlib.MPS.product_state([np.array([0.25, 0.0])] * 3000)  # norm 2**-6000
    assert math.isclose(tiny.log_norm(), -6000 * math.log(2), rel_tol=1e-12) and tiny.norm() == 0.0


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.sampled_from([1e-170, 1e-60, 1e60, 1e155, 1e300]))
def test_decomposition_search_and_data_aware_fits_do_not_depend_on_scale(seed, scale):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((32, 32)) @ np.diag(0.85 ** np.arange(32))
    x = rng.standard_normal((200, 32)) * np.linspace(3, 0.05, 32)
    gram = x.T @ x / 200
    budget = tnlib.Truncation(max_params=300)
    for make in (lambda a, c: tnlib.MPO.from_matrix(a, truncation=budget),
                 lambda a, c: tnlib.MPO.from_matrix(a, (4, 8), (8, 4), truncation=tnlib.Truncation(max_bond=3)),
                 lambda a, c: tnlib.MPO.from_matrix(a, (4, 8), (8, 4), truncation=tnlib.Truncation(max_bond=3),
                                                    input_gram=c)):
        ref, big = make(w, gram), make(w * scale, gram * (1e200 if scale > 1 else 1e-200))
        assert (big.out_dims, big.in_dims, big.bond_dims) == (ref.out_dims, ref.in_dims, ref.bond_dims)
        assert math.isclose(big.report.relative_error_bound, ref.report.relative_error_bound, rel_tol=1e-6)
        if ref.report.output_error is not None:
            assert math.isclose(big.report.output_error, ref.report.output_error, rel_tol=1e-6)


@pytest.mark.parametrize("scale", [1e-25, 1e20])
def test_float32_matrices_far_from_unit_scale_truncate_as_at_scale_1(scale):
    w = (np.random.default_rng(0).standard_normal((64, 64)) @ np.diag(0.9 ** np.arange(64))).astype(np.float32)
    t = tnlib.Truncation(max_bond=6)
    ref = tnlib.MPO.from_matrix(w, (8, 8), (8, 8), truncation=t)
    far = tnlib.MPO.from_matrix((w * np.float32(scale)), (8, 8), (8, 8), truncation=t)
    assert far.bond_dims == ref.bond_dims
    assert math.isclose(far.report.relative_error_bound, ref.report.relative_error_bound, rel_tol=1e-4)
