"""TT-cross: exact recovery of low-rank tensors, caps, reports, backends and bad input."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host, rel_err

SETTINGS = settings(max_examples=40, deadline=None)


def random_tt(dims, rank, seed, complex_=False):
    rng = np.random.default_rng(seed)
    bonds = [1] + [rank] * (len(dims) - 1) + [1]
    cores = []
    for k, n in enumerate(dims):
        c = rng.standard_normal((bonds[k], n, bonds[k + 1]))
        if complex_:
            c = c + 1j * rng.standard_normal(c.shape)
        cores.append(c)
    return tnlib.MPS(cores)


def entries_of(mps):
    return lambda idx: np.asarray(mps.entries(idx))


@SETTINGS
@given(
    dims=st.lists(st.integers(2, 6), min_size=2, max_size=6),
    rank=st.integers(1, 3),
    seed=st.integers(0, 10**6),
    complex_=st.booleans(),
)
def test_recovers_a_tensor_of_known_low_rank_to_machine_precision(dims, rank, seed, complex_):
    ref = random_tt(tuple(dims), rank, seed, complex_)
    mps = tnlib.cross(entries_of(ref), tuple(dims), seed=seed)
    dense = ref.to_dense()
    assert rel_err(mps.to_dense(), dense) < 1e-12
    assert all(b <= r for b, r in zip(mps.bond_dims, ref.bond_dims))
    assert mps.report.cross.converged and mps.report.cross.stopped == "tol"
    assert mps.report.held_out_error < 1e-12
    assert np.iscomplexobj(host(mps.cores[0])) == complex_
    assert mps.center == mps.num_sites - 1


def test_evaluations_grow_linearly_with_the_number_of_sites():
    evals = {}
    for d in (10, 20, 40):
        ref = random_tt((4,) * d, 3, seed=d)
        mps = tnlib.cross(entries_of(ref), (4,) * d, check_size=200)
        assert mps.report.held_out_error < 1e-12
        evals[d] = mps.report.cross.evals - 204  # the check sample and its determinism check
    assert evals[40] < 2.5 * evals[20] < 6.25 * evals[10]
    assert evals[40] < 4**40 / 1e18


def test_smooth_function_to_the_requested_accuracy_and_report_fields():
    f = lambda idx: np.exp(-0.1 * np.sum((idx / 7.0) ** 2, axis=1)) * np.cos(idx[:, 0] / 5.0)  # noqa: E731
    dims = (16,) * 6
    mps = tnlib.cross(f, dims, tnlib.Truncation(cutoff=1e-12), tol=1e-9, seed=3)
    rep = mps.report.cross
    assert isinstance(rep, tnlib.CrossReport)
    assert rep.converged and rep.error <= 1e-9 and rep.error == mps.report.held_out_error
    assert rep.evals >= rep.check_size == 1000 and rep.calls >= rep.sweeps >= 1
    assert len(rep.history) == rep.sweeps
    rng = np.random.default_rng(7)
    idx = np.stack([rng.integers(16, size=5000) for _ in dims], axis=1)
    assert rel_err(mps.entries(idx), f(idx)) < 1e-8


def test_max_evals_caps_the_run_and_the_report_says_so():
    f = lambda idx: 1.0 / (1.0 + np.sum(idx, axis=1))  # noqa: E731
    mps = tnlib.cross(f, (16,) * 8, max_evals=6000, tol=0.0, seed=0)
    rep = mps.report.cross
    assert rep.evals <= 6000
    assert rep.stopped == "max_evals" and not rep.converged
    with pytest.raises(ValueError, match="max_evals=50 is too small"):
        tnlib.cross(f, (16,) * 8, max_evals=50)


@settings(max_examples=40, deadline=None)
@given(
    dims=st.lists(st.integers(2, 9), min_size=1, max_size=8).map(tuple),
    rank=st.integers(1, 6),
    kick=st.integers(0, 3),
    max_evals=st.integers(1, 5000),
    check_size=st.sampled_from([0, 10, 200]),
)
def test_max_evals_is_never_passed_and_a_refusal_evaluates_nothing(dims, rank, kick, max_evals, check_size):
    evaluated = []

    def f(idx):
        evaluated.append(len(idx))
        return np.cos(0.3 * idx.sum(axis=1)) + 0.1 * np.sin(idx.prod(axis=1))

    try:
        mps = tnlib.cross(f, dims, max_evals=max_evals, rank=rank, kick=kick, check_size=check_size, tol=0.0)
    except ValueError as exc:
        assert "is too small" in str(exc) and "nothing was evaluated" in str(exc)
        assert not evaluated
    else:
        assert sum(evaluated) == mps.report.cross.evals <= max_evals


def test_a_rank_too_large_to_run_is_refused_at_once():
    evaluated = []

    def f(idx):
        evaluated.append(len(idx))
        return np.ones(len(idx))

    with pytest.raises(ValueError, match=r"rank=10000000 is too large for dims of 20 sites.*smaller rank"):
        tnlib.cross(f, (10,) * 20, rank=10**7)
    with pytest.raises(ValueError, match=r"rank=2 is too large for dims of 2 sites.*fibre has 2199023255552 entries"):
        tnlib.cross(f, (2**40, 2))
    assert not evaluated


def test_never_loops_on_a_function_of_high_rank():
    weights = np.array([7, 13, 29, 31, 37, 41])
    f = lambda idx: ((idx @ weights) ** 2 * 2654435761 % 1000) / 1000.0  # noqa: E731 - a hash: full rank
    mps = tnlib.cross(f, (8,) * 6, max_sweeps=5, tol=1e-14)
    rep = mps.report.cross
    assert rep.sweeps <= 5 and rep.stopped in ("max_sweeps", "stagnated") and not rep.converged
    assert rep.error > 1e-3  # honest: the error on held-out entries is large


def test_without_a_check_sample_the_fibres_decide():
    ref = random_tt((5,) * 6, 2, seed=11)
    mps = tnlib.cross(entries_of(ref), (5,) * 6, check_size=0)
    rep = mps.report.cross
    assert rep.error is None and rep.history == () and rep.check_size == 0
    assert rep.stopped == "ranks" and rep.converged
    assert rel_err(mps.to_dense(), ref.to_dense()) < 1e-12


def test_max_bond_caps_the_result():
    f = lambda idx: 1.0 / (1.0 + np.sum(idx, axis=1))  # noqa: E731
    mps = tnlib.cross(f, (10,) * 6, tnlib.Truncation(max_bond=3))
    assert max(mps.bond_dims) <= 3 and mps.report.truncation == tnlib.Truncation(max_bond=3)


def test_one_site_and_sites_of_size_one():
    f = lambda idx: idx[:, 0] + 1.0  # noqa: E731
    mps = tnlib.cross(f, (7,))
    np.testing.assert_allclose(mps.to_dense(), np.arange(1.0, 8.0))
    ref = random_tt((3, 1, 4, 1), 2, seed=1)
    assert rel_err(tnlib.cross(entries_of(ref), (3, 1, 4, 1)).to_dense(), ref.to_dense()) < 1e-12


def test_dense_and_dask_arrays_are_read_by_index():
    ref = random_tt((5, 6, 7, 4), 2, seed=4)
    dense = ref.to_dense()
    assert rel_err(tnlib.cross(dense).to_dense(), dense) < 1e-12
    lazy = da.from_array(dense, chunks=(2, 3, 7, 4))
    out = tnlib.cross(lazy, truncation=tnlib.Truncation(cutoff=1e-13))
    assert rel_err(out.to_dense(), dense) < 1e-12 and out.bond_dims == (2, 2, 2)
    with pytest.raises(ValueError, match="dims=.* but the array fn has shape"):
        tnlib.cross(dense, (5, 6, 7, 5))


def test_result_in_the_library_and_dtype_of_the_function(backend):
    ref = random_tt((4, 5, 6), 2, seed=2)
    dense = ref.to_dense()
    x = backend.asarray(dense, "float32")
    mps = tnlib.cross(x)  # a dense array of that library, read by index
    assert backend.is_mine(mps.cores[0]) and "float32" in str(mps.cores[0].dtype)
    assert rel_err(mps.to_dense(), dense) < 1e-5
    f = lambda idx: backend.asarray(dense[tuple(idx.T)])  # noqa: E731
    mps = tnlib.cross(f, (4, 5, 6))
    assert backend.is_mine(mps.cores[0]) and rel_err(mps.to_dense(), dense) < 1e-12


def test_bad_functions_get_clear_errors():
    dims = (4, 4, 4)
    with pytest.raises(ValueError, match=r"returned shape \(\d+, 2\) for \d+ index tuples"):
        tnlib.cross(lambda idx: np.ones((idx.shape[0], 2)), dims)
    with pytest.raises(ValueError, match="NaN or infinite value"):
        tnlib.cross(lambda idx: np.where(idx[:, 0] == 3, np.nan, 1.0), dims, check_size=2000)
    with pytest.raises(RuntimeError, match="raised ZeroDivisionError on a batch") as info:
        tnlib.cross(lambda idx: 1 / 0, dims)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="not deterministic"):
        tnlib.cross(lambda idx: rng.standard_normal(idx.shape[0]), dims)
    with pytest.raises(TypeError, match="expected real or complex numbers"):
        tnlib.cross(lambda idx: np.array(["a"] * idx.shape[0]), dims)


def test_bad_arguments_get_clear_errors():
    f = lambda idx: np.ones(idx.shape[0])  # noqa: E731
    with pytest.raises(ValueError, match=r"dims\[1\]=0 is invalid"):
        tnlib.cross(f, (3, 0, 2))
    with pytest.raises(TypeError, match="needs dims"):
        tnlib.cross(f)
    with pytest.raises(TypeError, match="dims must be a non-empty sequence"):
        tnlib.cross(f, ())
    with pytest.raises(TypeError, match="truncation must be a tnlib.Truncation"):
        tnlib.cross(f, (2, 2), 4)
    with pytest.raises(ValueError, match="tol=2 is invalid"):
        tnlib.cross(f, (2, 2), tol=2)
    with pytest.raises(ValueError, match="max_evals=0 is invalid"):
        tnlib.cross(f, (2, 2), max_evals=0)
    with pytest.raises(TypeError, match="kick must be an int"):
        tnlib.cross(f, (2, 2), kick=1.5)


def test_entries_validates_indices():
    mps = random_tt((3, 4), 2, seed=0)
    np.testing.assert_allclose(mps.entries(np.array([[2, 3]])), mps.to_dense()[2:3, 3])
    with pytest.raises(IndexError, match=r"indices\[0, 1\] = 4 is out of range for a leg of size 4"):
        mps.entries([[0, 4]])
    with pytest.raises(ValueError, match=r"expected \(batch, 2\)"):
        mps.entries([1, 2, 3])
    with pytest.raises(TypeError, match="must hold integers"):
        mps.entries([[0.5, 1.0]])


def test_cross_apply_of_functions_of_chains():
    x = np.linspace(0.0, 1.0, 2**8)
    mps = tnlib.MPS.from_dense(x.reshape((2,) * 8))
    e = tnlib.cross_apply(np.exp, mps)
    np.testing.assert_allclose(host(e.to_dense()).reshape(-1), np.exp(x), rtol=1e-12)
    a, b = random_tt((3, 4, 5), 2, seed=1), random_tt((3, 4, 5), 2, seed=2)
    prod = tnlib.cross_apply(lambda u, v: u * v, a, b)
    assert rel_err(prod.to_dense(), (a * b).to_dense()) < 1e-12
    inv = tnlib.cross_apply(lambda u: 1.0 / (2.0 + np.tanh(u)), a, tol=1e-9)
    assert rel_err(inv.to_dense(), 1.0 / (2.0 + np.tanh(a.to_dense()))) < 1e-8
    W = np.random.default_rng(0).standard_normal((12, 10))
    mpo = tnlib.MPO.from_matrix(W, (3, 4), (2, 5))
    sq = tnlib.cross_apply(np.square, mpo)
    assert isinstance(sq, tnlib.MPO) and sq.shape == (12, 10)
    assert rel_err(sq.to_matrix(), W**2) < 1e-12
    with pytest.raises(TypeError, match="needs at least one chain"):
        tnlib.cross_apply(np.exp)
    with pytest.raises(ValueError, match="matching legs"):
        tnlib.cross_apply(np.add, a, random_tt((3, 4, 6), 2, seed=3))
    with pytest.raises(TypeError, match="chains must be MPSs or MPOs"):
        tnlib.cross_apply(np.exp, np.ones(3))


def test_mpo_from_function_recovers_a_low_rank_operator():
    rng = np.random.default_rng(5)
    W = tnlib.MPO([rng.standard_normal(s) for s in [(1, 2, 3, 2), (2, 4, 2, 2), (2, 3, 2, 1)]]).to_matrix()
    mpo = tnlib.MPO.from_function(lambda i, j: W[i, j], (2, 4, 3), (3, 2, 2))
    assert mpo.shape == (24, 12) and rel_err(mpo.to_matrix(), W) < 1e-12
    assert mpo.report.cross.converged
    same = tnlib.MPO.cross(W, (2, 4, 3), (3, 2, 2))  # a dense matrix, read by index
    assert rel_err(same.to_matrix(), W) < 1e-12
    lazy = tnlib.MPO.from_function(da.from_array(W, chunks=(5, 5)), (2, 4, 3), (3, 2, 2))
    assert rel_err(lazy.to_matrix(), W) < 1e-12
    with pytest.raises(ValueError, match="the matrix fn has shape"):
        tnlib.MPO.from_function(W, (2, 4, 3), (3, 2, 3))
    with pytest.raises(ValueError, match="one pair per core"):
        tnlib.MPO.from_function(lambda i, j: W[i, j], (2, 4, 3), (12,))


def test_kernel_matrix_of_size_two_to_the_twenty():
    kernel = lambda i, j: 1.0 / (1.0 + np.abs(i - j) / 2**10)  # noqa: E731
    mpo = tnlib.MPO.from_function(kernel, (2,) * 20, (2,) * 20, tnlib.Truncation(cutoff=1e-12), tol=1e-7)
    assert mpo.report.cross.converged and mpo.num_params < 10**5
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(2**20, size=300), rng.integers(2**20, size=300)
    x = np.zeros((2**20,))
    x[cols[0]] = 1.0
    column = mpo.apply(x)
    np.testing.assert_allclose(column[rows], kernel(rows, cols[0]), rtol=1e-6)


def test_cross_report_survives_save_and_load(tmp_path):
    ref = random_tt((3, 4, 5), 2, seed=9)
    mps = tnlib.cross(entries_of(ref), (3, 4, 5))
    tnlib.save(tmp_path / "c.npz", mps)
    back = tnlib.load(tmp_path / "c.npz")
    assert back.report.cross == mps.report.cross
    assert back.report.held_out_error == mps.report.held_out_error


@SETTINGS
@given(n=st.integers(1, 40), r=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_maxvol_rows_dominate(n, r, seed):
    from tnlib import _maxvol

    rows_total = n + r
    a = np.linalg.qr(np.random.default_rng(seed).standard_normal((rows_total, r)))[0]
    rows = _maxvol.maxvol(a)
    assert len(set(rows.tolist())) == r
    assert np.abs(a @ np.linalg.inv(a[rows])).max() <= 1.05 + 1e-9
    more = _maxvol.rect_maxvol(a, r + 3)
    assert len(set(more.tolist())) == more.size <= min(r + 3, rows_total) and set(rows.tolist()) <= set(more.tolist())


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_cross_of_an_array_far_from_unit_scale_is_as_good_as_at_unit_scale(scale):
    rng = np.random.default_rng(3)
    t = np.einsum("ia,ja,ka->ijk", *(rng.standard_normal((n, 3)) for n in (6, 7, 8)))  # rank 3
    plain = tnlib.cross(t, truncation=tnlib.Truncation(max_bond=4))
    far = tnlib.cross(t * scale, truncation=tnlib.Truncation(max_bond=4))
    err = np.linalg.norm(far.to_dense() / scale - t) / np.linalg.norm(t)
    assert err < 1e-8 and far.report.error == pytest.approx(plain.report.error, abs=1e-12)
    assert far.log_norm() == pytest.approx(plain.log_norm() + np.log(scale), rel=1e-12)


def test_inputs_in_an_autograd_graph_are_refused_not_detached():
    torch = pytest.importorskip("torch")
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    f = lambda idx: torch.cos(w * torch.as_tensor(idx).sum(1).double())  # noqa: E731
    message = "requires grad or is being traced; cross approximation is not differentiable"
    with pytest.raises(ValueError, match=r"the value of <lambda>\(indices\) " + message):
        tnlib.cross(f, (4, 4, 4))
    W = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"chains\[0\] " + message):
        tnlib.cross_apply(torch.exp, tnlib.MPO.from_matrix(W, (4, 4), (4, 4)))
    with pytest.raises(ValueError, match="fn " + message):
        tnlib.cross(torch.randn(4, 4, 4, dtype=torch.float64, requires_grad=True))
    with torch.no_grad():  # what the message says to do
        assert tnlib.cross(f, (4, 4, 4)).report.cross.converged
    assert tnlib.cross_apply(torch.exp, tnlib.MPO.from_matrix(W.detach(), (4, 4), (4, 4))).shape == (16, 16)


def test_a_jax_trace_is_refused():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def loss(x):
        return tnlib.cross_apply(jnp.exp, tnlib.MPS.from_dense(x.reshape(4, 4, 4))).cores[0].sum()

    with pytest.raises(ValueError, match=r"chains\[0\] requires grad or is being traced"):
        jax.grad(loss)(jnp.ones(64))
