"""JAX: chains are pytrees; jit and grad of the operations whose shapes and ranks do not depend on values."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import tnlib  # noqa: E402

jax.config.update("jax_enable_x64", True)


def chains():
    rng = np.random.default_rng(0)
    m = tnlib.MPO.from_matrix(jnp.asarray(rng.standard_normal((16, 16))), (4, 4), (4, 4),
                              truncation=tnlib.Truncation(max_bond=3))
    s = tnlib.MPS.from_dense(jnp.asarray(rng.standard_normal((2, 2, 2, 2))), tnlib.Truncation(max_bond=2))
    return m, s, jnp.asarray(rng.standard_normal((3, 16)))


def dense_of(out):
    if isinstance(out, tnlib.MPS):
        return out.to_dense()
    return out.to_matrix() if isinstance(out, tnlib.MPO) else out


OPERATIONS = {
    "MPO.apply": lambda m, s, x: m.apply(x),
    "MPO @ vectors": lambda m, s, x: m @ x.T,
    "MPO.to_matrix": lambda m, s, x: m.to_matrix(),
    "MPO.trace": lambda m, s, x: m.trace(),
    "MPS.to_dense": lambda m, s, x: s.to_dense(),
    "MPS.canonicalize": lambda m, s, x: s.canonicalize(1).to_dense(),
    "MPS.inner": lambda m, s, x: s.inner(s),
    "MPS + MPS": lambda m, s, x: (s + s).to_dense(),
    "a chain as the result": lambda m, s, x: 0.5 * m,
    "MPS.entropies": lambda m, s, x: s.entropies(),
    "MPS.singular_values": lambda m, s, x: s.singular_values(1),
    "MPS.truncate (max_bond)": lambda m, s, x: s.truncate(tnlib.Truncation(max_bond=1)).to_dense(),
    "MPO.compress (max_bond)": lambda m, s, x: m.compress(tnlib.Truncation(max_bond=2)).to_matrix(),
    "MPS.from_dense (max_bond)": lambda m, s, x: tnlib.MPS.from_dense(s.to_dense(), tnlib.Truncation(max_bond=1)),
    "MPS.from_dense (exact)": lambda m, s, x: tnlib.MPS.from_dense(s.to_dense()).to_dense(),
    "MPO.from_matrix (max_bond)": lambda m, s, x: tnlib.MPO.from_matrix(m.to_matrix(), (4, 4), (4, 4),
                                                                         truncation=tnlib.Truncation(max_bond=2)),
    "MPS * MPS (Hadamard) and sum": lambda m, s, x: (s * s).sum(),
    "MPO.kron": lambda m, s, x: m.kron(m).trace(),
    "MPS.norm": lambda m, s, x: s.norm(),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_jit_matches_eager(name):
    fn = OPERATIONS[name]
    args = chains()
    got, want = jax.jit(fn)(*args), fn(*args)
    if isinstance(want, tnlib.MPO):
        assert isinstance(got, tnlib.MPO) and got.shape == want.shape  # rebuilt from its leaves
    assert np.allclose(np.asarray(dense_of(got)), np.asarray(dense_of(want)), atol=1e-12)


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_grad_matches_finite_differences(name):
    fn = OPERATIONS[name]
    m, s, x = chains()

    def loss(cores_m, cores_s, xx):
        out = fn(tnlib.MPO(cores_m), tnlib.MPS(cores_s), xx)
        return jnp.sum(jnp.asarray(dense_of(out)) ** 2)

    args = (list(m.cores), list(s.cores), x)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    # a directional derivative against a central difference
    rng = np.random.default_rng(1)
    direction = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), args)
    eps = 1e-6
    plus = jax.tree_util.tree_map(lambda a, d: a + eps * d, args, direction)
    minus = jax.tree_util.tree_map(lambda a, d: a - eps * d, args, direction)
    numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
    analytic = sum(float(jnp.sum(g * d)) for g, d in zip(jax.tree_util.tree_leaves(grads),
                                                         jax.tree_util.tree_leaves(direction)))
    assert analytic == pytest.approx(float(numeric), rel=1e-5, abs=1e-8)


def test_chains_are_pytrees_with_static_structure():
    m, s, _ = chains()
    leaves, tree = jax.tree_util.tree_flatten(m)
    assert len(leaves) == m.num_sites and all(a is b for a, b in zip(leaves, m.cores))
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert back.shape == m.shape and back.center == m.center and back.report == m.report
    doubled = jax.tree_util.tree_map(lambda c: 2 * c, s)
    assert isinstance(doubled, tnlib.MPS) and np.allclose(doubled.to_dense(), 2 ** s.num_sites * s.to_dense())


@pytest.mark.parametrize("fn", [
    lambda s: s.log_norm(),
    lambda s: s.compress(tnlib.Truncation(max_bond=1), algorithm="variational").to_dense(),
])
def test_data_dependent_operations_under_jit_are_refused_clearly(fn):
    _, s, _ = chains()
    with pytest.raises(TypeError, match=r"reads a value of its input .* cannot run on traced JAX values"):
        jax.jit(fn)(s)


@pytest.mark.parametrize("fn, what", [
    (lambda s: tnlib.spectrum(s).singular_values[0], "spectrum"),
    (lambda s: tnlib.spectrum(s.to_dense().reshape(4, 4), (2, 2), (2, 2)).singular_values[0], "spectrum"),
    (lambda s: tnlib.tradeoff(s.to_dense().reshape(4, 4), (2, 2), (2, 2)).relative_errors, "tradeoff"),
])
def test_spectra_under_jit_are_refused_clearly(fn, what):
    _, s, _ = chains()
    with pytest.raises(TypeError, match=rf"{what} reads the singular values onto the host .*chain.singular_values"):
        jax.jit(fn)(s)
    assert jax.jit(lambda c: c.singular_values(0))(s).shape[0] >= 1  # what the message offers traces


@pytest.mark.parametrize("fn", [
    lambda s: s.truncate(tnlib.Truncation(cutoff=0.1)).to_dense(),
    lambda s: tnlib.MPS.from_dense(s.to_dense(), tnlib.Truncation(max_bond=2, max_discarded=0.01)).to_dense(),
    lambda s: tnlib.MPO.from_matrix(s.to_dense().reshape(4, 4), (2, 2), (2, 2),
                                    truncation=tnlib.Truncation(max_params=10)).to_matrix(),
])
def test_ranks_read_from_values_under_jit_are_refused_clearly(fn):
    _, s, _ = chains()
    with pytest.raises(TypeError, match=r"on traced values .* needs ranks fixed by shapes: Truncation\(max_bond"):
        jax.jit(fn)(s)


def test_degenerate_spectra_under_grad():
    """jnp.linalg.svd's own backward gives NaN for any degenerate spectrum; multiplets kept whole get the
    exact gradient, and a cut inside one (no gradient exists; JAX cannot raise on values) gives NaN."""
    weights = jnp.arange(64.0).reshape(8, 8)
    whole = jax.grad(lambda w: jnp.sum(tnlib.MPO.from_matrix(w, (2, 4), (4, 2), truncation=tnlib.Truncation(
        max_bond=8)).to_matrix() * weights))(jnp.eye(8))
    assert np.allclose(whole, weights)
    swap = jnp.eye(4).reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)  # its unfolding: four equal values
    cut = jax.jit(jax.grad(lambda w: jnp.sum(tnlib.MPO.from_matrix(w, (2, 2), (2, 2), truncation=tnlib.Truncation(
        max_bond=2)).to_matrix() * jnp.arange(16.0).reshape(4, 4))))(swap)
    assert bool(jnp.isnan(cut).all())
