"""Layout search: never worse than the truncated SVD at the same budget; a printable table; clear errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
from conftest import host


def svd_error(W, budget):
    """Relative error of the truncated SVD with rank(M + N) <= budget (float64 reference)."""
    m, n = W.shape
    r = min(budget // (m + n), m, n)
    s = np.linalg.svd(W, compute_uv=False)
    return float(np.sqrt(np.sum(s[r:] ** 2)) / np.linalg.norm(W))


SIZES = [4, 6, 8, 9, 12, 16, 18, 24]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(SIZES), st.sampled_from(SIZES), st.floats(0.15, 0.9), st.floats(0.0, 1.5), st.integers(0, 10**6)
)
def test_search_is_never_worse_than_the_truncated_svd(m, n, fraction, decay, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n)) @ np.diag(np.exp(-decay * np.arange(n)))
    budget = max(m + n, int(fraction * m * n))
    found = tnlib.layouts(W, budget, max_cores=3)
    mpo = found.mpo
    true = float(np.linalg.norm(mpo.to_matrix() - W) / np.linalg.norm(W))
    assert mpo.num_params <= budget
    assert true <= svd_error(W, budget) + 1e-10
    assert found.best.error == pytest.approx(true, abs=1e-10)
    assert found.svd.error == pytest.approx(svd_error(W, budget), abs=1e-10)
    via = tnlib.MPO.from_matrix(W, truncation=tnlib.Truncation(max_params=budget))
    assert via.num_params <= budget
    assert float(np.linalg.norm(via.to_matrix() - W) / np.linalg.norm(W)) <= svd_error(W, budget) + 1e-10


def test_search_finds_structure_the_svd_cannot():
    # A Kronecker product is rank 1 in the right two-core layout and full rank as a matrix.
    rng = np.random.default_rng(0)
    W = np.kron(rng.standard_normal((8, 4)), rng.standard_normal((8, 8)))
    found = tnlib.layouts(W, max_params=200)
    assert found.svd.error > 0.5
    assert found.best.error < 1e-12 and found.best.layout.num_cores == 2
    assert found.mpo.num_params <= 200


def test_table_prints_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    W = tnlib.load_example_mlp().weights[1][:64, :64].astype(np.float64)
    found = tnlib.layouts(W, max_params=W.size // 4)
    text = str(found)
    assert "truncated SVD" in text and "<- best" in text and "max_params=1024" in text
    statuses = {r.status for r in found.rows}
    assert "fitted" in statuses and statuses <= {"fitted", "pruned", "screened", "not fitted"}
    fig = found.plot()
    fig.savefig(tmp_path / "layouts.png")
    assert (tmp_path / "layouts.png").stat().st_size > 5000


def test_auto_dims_search_and_explicit_dims_do_not(backend):
    W = np.kron(np.random.default_rng(1).standard_normal((4, 4)), np.random.default_rng(2).standard_normal((4, 4)))
    a = backend.asarray(W)
    t = tnlib.Truncation(max_params=40)
    auto = tnlib.MPO.from_matrix(a, "auto", "auto", truncation=t)
    assert backend.is_mine(auto.cores[0])
    assert float(np.linalg.norm(host(auto.to_matrix()) - W)) < 1e-10 * np.linalg.norm(W)
    fixed = tnlib.MPO.from_matrix(a, (4, 4), (4, 4), truncation=t)
    assert fixed.out_dims == (4, 4)


def test_layout_search_errors():
    W = np.ones((8, 8))
    with pytest.raises(ValueError, match=r"Truncation.max_params=10 is too small for a 8 x 8 matrix"):
        tnlib.layouts(W, 10)
    with pytest.raises(ValueError, match=r"out_dims='auto' searches layouts at a parameter budget"):
        tnlib.MPO.from_matrix(W, "auto", "auto", truncation=tnlib.Truncation(max_bond=2))
    with pytest.raises(TypeError, match=r"out_dims must be a sequence of positive ints, got 'best'"):
        tnlib.MPO.from_matrix(W, "best", None)
    with pytest.raises(ValueError, match=r"go together"):
        tnlib.MPO.from_matrix(W, "auto", (2, 4), truncation=tnlib.Truncation(max_params=30))
    with pytest.raises(TypeError, match=r"max_params must be an int"):
        tnlib.layouts(W, 10.5)
    with pytest.raises(ValueError, match=r"max_cores=1 is invalid"):
        tnlib.layouts(W, 30, max_cores=1)


def test_auto_dims_with_num_cores_searches_only_that_many_cores():
    W = np.random.default_rng(4).standard_normal((64, 64))
    mpo = tnlib.MPO.from_matrix(W, "auto", "auto", num_cores=3, truncation=tnlib.Truncation(max_params=W.size // 4))
    assert mpo.num_sites == 3 and mpo.num_params <= W.size // 4
    with pytest.raises(ValueError, match=r"no layout of a 8 x 8 matrix has num_cores=4 cores"):
        tnlib.MPO.from_matrix(np.ones((8, 8)), "auto", "auto", num_cores=4, truncation=tnlib.Truncation(max_params=60))


def _kronecker_plus_noise(noise, seed=0):
    rng = np.random.default_rng(seed)
    return np.kron(rng.standard_normal((8, 8)), rng.standard_normal((8, 8))) + noise * rng.standard_normal((64, 64))


def test_in_weight_space_the_svd_is_replaced_only_by_a_clear_gain():
    """A layout a few per cent better in weight error than the truncated SVD does not replace it without an input
    Gram (the pitch CNN lost its task to a 0.70-vs-0.75 trade); one 10 % better does, and with a Gram the
    output-space errors decide alone."""
    from tnlib._search import SVD_MARGIN

    W = _kronecker_plus_noise(2.4)
    found = tnlib.layouts(W, max_params=W.size // 8)
    closest = min((r for r in found.rows if r.status == "fitted" and not r.layout.is_svd), key=lambda r: r.score)
    assert (1 - SVD_MARGIN) * found.svd.score < closest.score < found.svd.score  # better, but not by the margin
    assert found.best.layout.is_svd
    mpo = tnlib.MPO.from_matrix(W, truncation=tnlib.Truncation(max_params=W.size // 8))
    assert (mpo.out_dims, mpo.in_dims) == ((64, 1), (1, 64))
    clear = _kronecker_plus_noise(0.5)
    assert not tnlib.layouts(clear, max_params=clear.size // 8).best.layout.is_svd
    with_gram = tnlib.layouts(W, max_params=W.size // 8, metric=tnlib.Metric(np.eye(64)))
    assert with_gram.best.score == min(r.score for r in with_gram.rows if r.status == "fitted")
