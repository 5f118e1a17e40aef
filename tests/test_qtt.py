"""QTT: exact shift and Laplacian against dense, grid functions by cross, integration and evaluation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host

SETTINGS = settings(max_examples=30, deadline=None)


def dense_laplacian(n, periodic):
    lap = -2 * np.eye(n) + np.eye(n, k=1) + np.eye(n, k=-1)
    if periodic:
        lap[0, -1] += 1.0
        lap[-1, 0] += 1.0
    return lap


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 3, 6])
def test_shift_and_laplacian_match_dense(bits, periodic):
    n = 2**bits
    shift = np.eye(n, k=1)
    if periodic:
        shift[-1, 0] = 1.0
    S = tnlib.qtt.shift(bits, periodic=periodic)
    np.testing.assert_array_equal(S.to_matrix(), shift)
    L = tnlib.qtt.laplacian(bits, periodic=periodic)
    np.testing.assert_array_equal(L.to_matrix(), dense_laplacian(n, periodic))
    assert all(b == 3 for b in L.bond_dims) and all(b == 2 for b in S.bond_dims)
    np.testing.assert_array_equal(tnlib.qtt.identity(bits).to_matrix(), np.eye(n))


@pytest.mark.parametrize("periodic", [False, True])
def test_laplacian_rank_three_is_minimal(periodic):
    L = tnlib.qtt.laplacian(10, periodic=periodic)
    rounded = L.truncate(tnlib.Truncation(cutoff=1e-13))
    # no bond of the exact MPO is redundant (periodic: the most significant bit's bond has rank 2)
    assert rounded.bond_dims == ((2,) if periodic else (3,)) + (3,) * 8
    assert L.truncate(tnlib.Truncation(max_bond=2)).report.error_bound > 1e-3


def test_laplacian_scaled_by_the_grid_step_acts_on_a_qtt_vector():
    bits, domain = 12, (0.0, 2 * np.pi)
    q = tnlib.qtt.grid(np.sin, bits, domain, tnlib.Truncation(cutoff=1e-13))
    lap = tnlib.qtt.laplacian(bits, domain, periodic=True)
    second = (lap @ q).truncate(tnlib.Truncation(cutoff=1e-8))  # 1/h^2 ~ 4e5 amplifies rounding
    assert max(second.bond_dims) <= 2
    x = tnlib.qtt.points(bits, domain)
    np.testing.assert_allclose(second.to_dense().reshape(-1), -np.sin(x), atol=1e-5)  # O(h^2)


@SETTINGS
@given(bits=st.integers(2, 9), a=st.floats(-3, 0), width=st.floats(0.5, 4), seed=st.integers(0, 100))
def test_grid_integrate_and_evaluate(bits, a, width, seed):
    b = a + width
    f = lambda x: np.exp(0.3 * x) + x**2  # noqa: E731 - QTT rank 3 at most
    q = tnlib.qtt.grid(f, bits, (a, b), seed=seed, tol=1e-14)
    x = tnlib.qtt.points(bits, (a, b))
    np.testing.assert_allclose(q.to_dense().reshape(-1), f(x), rtol=1e-11, atol=1e-11)
    h = width / 2**bits
    np.testing.assert_allclose(float(tnlib.qtt.integrate(q, (a, b))), h * f(x).sum(), rtol=1e-11)
    pts = np.random.default_rng(seed).uniform(a, x[-1], size=50)
    expected = np.interp(pts, x, f(x))
    np.testing.assert_allclose(tnlib.qtt.evaluate(q, pts, (a, b)), expected, rtol=1e-10, atol=1e-10)


def test_a_function_on_two_to_the_forty_points():
    f = lambda x: 1.0 / (1.0 + 25.0 * x**2)  # noqa: E731 - Runge's function
    q = tnlib.qtt.grid(f, 40, (-1.0, 1.0), tnlib.Truncation(cutoff=1e-12), tol=1e-9)
    assert q.num_sites == 40 and q.report.cross.converged and q.report.cross.evals < 10**6
    pts = np.random.default_rng(0).uniform(-1, 1, size=200)
    np.testing.assert_allclose(tnlib.qtt.evaluate(q, pts, (-1.0, 1.0)), f(pts), rtol=1e-8)
    exact = 2 * np.arctan(5.0) / 5.0
    assert abs(float(tnlib.qtt.integrate(q, (-1.0, 1.0))) - exact) < 1e-9


def test_operators_in_another_library():
    torch = pytest.importorskip("torch")
    like = torch.zeros(0, dtype=torch.float32)
    L = tnlib.qtt.laplacian(4, like=like)
    assert L.cores[0].dtype == torch.float32
    np.testing.assert_array_equal(host(L.to_matrix()), dense_laplacian(16, False))
    assert isinstance(tnlib.qtt.shift(3, like=like).cores[0], torch.Tensor)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="num_bits=0 is invalid"):
        tnlib.qtt.laplacian(0)
    with pytest.raises(ValueError, match="at most 62 bits"):
        tnlib.qtt.shift(63)
    with pytest.raises(ValueError, match=r"domain=\(1.0, 0.0\) is invalid"):
        tnlib.qtt.grid(np.sin, 4, (1.0, 0.0))
    with pytest.raises(ValueError, match="too large to list"):
        tnlib.qtt.points(40)
    q = tnlib.qtt.grid(np.sin, 4)
    with pytest.raises(ValueError, match="points in the domain"):
        tnlib.qtt.evaluate(q, [1.5])
    with pytest.raises(ValueError, match="a QTT has sites of size 2"):
        tnlib.qtt.integrate(tnlib.MPS.from_dense(np.ones((3, 2))))
    with pytest.raises(TypeError, match="expected a QTT"):
        tnlib.qtt.integrate(np.ones(4))


def test_flags_and_points_of_the_wrong_kind_are_refused():
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match="periodic must be True or False"):
            tnlib.qtt.laplacian(3, periodic=bad)
        with pytest.raises(TypeError, match="periodic must be True or False"):
            tnlib.qtt.shift(3, periodic=bad)
    q = tnlib.qtt.grid(lambda x: x, 4)
    with pytest.raises(TypeError, match="x must hold real points"):
        tnlib.qtt.evaluate(q, np.array([0.5 + 0.1j]))
    with pytest.raises(TypeError, match="like must be an array"):
        tnlib.MPO.identity((2, 2), like="cpu")
