"""tnlib.Metric: one frozen value for a data-aware fit, validated once, the older keywords its alias."""

import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib
import tnlib.mpo


def _problem(seed=0, m=32, n=16, rows=600):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n)) * np.geomspace(0.01, 3.0, n)
    return rng.standard_normal((m, n)), X


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.booleans(), st.integers(0, 10**6))
def test_from_rows_is_the_gram_of_the_rows(rows, n, complex_, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n)) + (1j * rng.standard_normal((rows, n)) if complex_ else 0)
    metric = tnlib.Metric.from_rows(X, held_out=X[: max(1, rows // 2)])
    np.testing.assert_allclose(metric.gram, X.conj().T @ X / rows, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(metric.gram, metric.gram.conj().T, rtol=0, atol=0)
    assert metric.num_features == n and metric.held_out.shape == (n, n)


def test_the_older_keywords_are_the_same_metric():
    W, X = _problem()
    C, H = X[:400].T @ X[:400] / 400, X[400:].T @ X[400:] / 200
    t = tnlib.Truncation(max_params=200)
    for loose, metric in [
        (dict(input_gram=C), tnlib.Metric(C)),
        (dict(input_gram=C, shrinkage=0.3), tnlib.Metric(C, shrinkage=0.3)),
        (dict(input_gram=C, held_out_gram=H), tnlib.Metric(C, H)),
    ]:
        a = tnlib.MPO.from_matrix(W, (8, 4), (4, 4), truncation=t, **loose)
        b = tnlib.MPO.from_matrix(W, (8, 4), (4, 4), truncation=t, metric=metric)
        np.testing.assert_array_equal(a.to_matrix(), b.to_matrix())
        assert a.report.output_error == b.report.output_error and a.report.shrinkage == b.report.shrinkage
    found = tnlib.layouts(W, 200, metric=tnlib.Metric(C, H), max_cores=3)
    assert found.best.held_out_error is not None
    assert found.best.held_out_error == tnlib.layouts(W, 200, input_gram=C, held_out_gram=H,
                                                      max_cores=3).best.held_out_error


def test_from_rows_with_held_out_rows_beats_the_plain_svd_on_them():
    W, X = _problem(1)
    t = tnlib.Truncation(max_bond=4)
    aware = tnlib.MPO.from_matrix(W, (32, 1), (1, 16), truncation=t,
                                  metric=tnlib.Metric.from_rows(X[:400], held_out=X[400:]))
    plain = tnlib.MPO.from_matrix(W, (32, 1), (1, 16), truncation=t)

    def err(mpo):
        return np.linalg.norm(X[400:] @ (W - mpo.to_matrix()).T) / np.linalg.norm(X[400:] @ W.T)

    assert err(aware) < 0.5 * err(plain)
    assert aware.report.held_out_error == pytest.approx(err(aware), rel=1e-8)


def test_a_wrong_metric_is_refused_before_any_decomposition(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the decomposition ran before the metric was validated")

    monkeypatch.setattr(tnlib.mpo, "decompose", never)
    monkeypatch.setattr(tnlib.mpo, "choose", never)
    W = np.random.default_rng(0).standard_normal((1024, 1024))
    t = tnlib.Truncation(max_bond=8)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"metric.gram has shape \(7, 7\); expected \(1024, 1024\)"):
        tnlib.MPO.from_matrix(W, truncation=t, metric=tnlib.Metric(np.eye(7)))
    with pytest.raises(ValueError, match=r"input_gram has shape \(7, 7\); expected \(1024, 1024\)"):
        tnlib.MPO.from_matrix(W, truncation=tnlib.Truncation(max_params=10**4), input_gram=np.eye(7))
    with pytest.raises(ValueError, match=r"metric.held_out is not positive semi-definite"):
        tnlib.MPO.from_matrix(W, truncation=t, metric=tnlib.Metric(np.eye(1024), -np.eye(1024)))
    assert time.perf_counter() - start < 60  # a bound against a hang, not a speed claim


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((None,), {}, TypeError, r"gram is needed.*got None"),
        (("C",), {}, TypeError, r"gram must be an array of shape \(N, N\).*got str"),
        ((np.ones((3, 4)),), {}, ValueError, r"gram must be a square array \(N, N\).*got shape \(3, 4\)"),
        ((np.eye(3), np.eye(4)), {}, ValueError, r"held_out has shape \(4, 4\); expected \(3, 3\)"),
        ((np.eye(3),), {"shrinkage": 0.0}, ValueError, r"shrinkage must be a number in \(0, 1\].*got 0.0"),
        ((np.eye(3),), {"shrinkage": float("nan")}, ValueError, r"shrinkage must be a number in \(0, 1\].*nan"),
        ((np.eye(3),), {"shrinkage": True}, ValueError, r"shrinkage must be a number in \(0, 1\].*got True"),
        ((np.eye(3),), {"shrinkage": "0.5"}, ValueError, r"shrinkage must be a number in \(0, 1\].*got '0.5'"),
    ],
)
def test_bad_metrics_are_refused_at_construction(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        tnlib.Metric(*args, **kwargs)


def test_metric_accepts_numpy_scalars_and_lists_and_is_frozen():
    metric = tnlib.Metric([[2.0, 0.0], [0.0, 1.0]], shrinkage=np.float32(0.5))
    assert metric.shrinkage == 0.5 and type(metric.shrinkage) is float
    assert isinstance(metric.gram, np.ndarray)
    with pytest.raises(AttributeError):
        metric.shrinkage = 0.1
    assert repr(metric) == "Metric(gram 2 x 2, shrinkage 0.5)"
    assert repr(tnlib.Metric(np.eye(3))) == "Metric(gram 3 x 3, shrinkage 0.01 (default))"


def test_metric_and_loose_keywords_together_are_refused():
    W, X = _problem()
    C = X.T @ X / len(X)
    t = tnlib.Truncation(max_bond=2)
    with pytest.raises(TypeError, match=r"pass metric= or the older keywords \(input_gram\), not both"):
        tnlib.MPO.from_matrix(W, truncation=t, metric=tnlib.Metric(C), input_gram=C)
    with pytest.raises(TypeError, match=r"metric must be a tnlib.Metric or None, got ndarray"):
        tnlib.MPO.from_matrix(W, truncation=t, metric=C)
    with pytest.raises(ValueError, match=r"metric needs a truncation"):
        tnlib.MPO.from_matrix(W, metric=tnlib.Metric(C))
    with pytest.raises(ValueError, match=r"shrinkage needs input_gram"):
        tnlib.layouts(W, 100, shrinkage=0.5)
    with pytest.raises(ValueError, match=r"needs at least two cores|without padding, layout search or metric"):
        import dask.array as da

        tnlib.MPO.from_matrix(da.from_array(W, chunks=8), (8, 4), (4, 4), truncation=t, metric=tnlib.Metric(C))


def test_from_rows_refuses_bad_rows():
    with pytest.raises(ValueError, match=r"rows must be 2-D \(M, N\), got shape \(5,\); expected rows \(n, N\)"):
        tnlib.Metric.from_rows(np.ones(5))
    with pytest.raises(ValueError, match=r"held_out has 3 NaN or infinite entries"):
        tnlib.Metric.from_rows(np.ones((4, 3)), held_out=np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match=r"held_out has 2 columns; expected 3"):
        tnlib.Metric.from_rows(np.ones((4, 3)), held_out=np.ones((5, 2)))


def test_torch_layers_take_a_metric():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 32).double()
    _, X = _problem(2)
    C = torch.as_tensor(X.T @ X / len(X), dtype=torch.float32)  # any dtype and device: fitted in float64
    t = tnlib.Truncation(max_bond=3)
    a = tnlib.nn.MPOLinear.from_linear(lin, t, out_dims=(8, 4), in_dims=(4, 4), metric=tnlib.Metric(C))
    b = tnlib.nn.MPOLinear.from_linear(lin, t, out_dims=(8, 4), in_dims=(4, 4), input_gram=C)
    assert torch.equal(a.to_linear().weight, b.to_linear().weight)
    with pytest.raises(TypeError, match=r"pass metric= or input_gram=, not both"):
        tnlib.nn.MPOLinear.from_linear(lin, t, metric=tnlib.Metric(C), input_gram=C)
    conv = torch.nn.Conv1d(4, 8, 3).double()
    patches = torch.randn(200, 12, dtype=torch.float64)
    made = tnlib.nn.MPOConv1d.from_conv1d(conv, t, metric=tnlib.Metric.from_rows(patches))
    alias = tnlib.nn.MPOConv1d.from_conv1d(conv, t, input_gram=patches.T @ patches / 200)
    plain = tnlib.nn.MPOConv1d.from_conv1d(conv, t)
    assert torch.allclose(made.to_conv1d().weight, alias.to_conv1d().weight, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(made.to_conv1d().weight, plain.to_conv1d().weight)


def _folds(X, k=4):
    parts = [X[j::k] for j in range(k)]
    return tnlib.Metric.from_folds([p.T @ p / len(p) for p in parts], [len(p) for p in parts])


def test_a_metric_of_folds_cross_validates_in_the_core():
    W, X = _problem(3, m=48, n=32, rows=800)
    metric = _folds(X)
    np.testing.assert_allclose(metric.gram, X.T @ X / len(X), rtol=1e-12)
    assert metric.usable_folds() == [0, 1, 2, 3]
    train, held, rows = metric.split(3)
    np.testing.assert_allclose(train, X[np.arange(800) % 4 != 3].T @ X[np.arange(800) % 4 != 3] / 600, rtol=1e-12)
    assert rows == 200 and repr(metric).endswith("4 folds, shrinkage chosen over the folds)")
    t = tnlib.Truncation(max_params=600)
    mpo = tnlib.MPO.from_matrix(W, truncation=t, metric=metric)
    assert mpo.num_params <= 600 and mpo.report.held_out_error is not None
    plain = tnlib.MPO.from_matrix(W, (48, 1), (1, 32), truncation=t)
    held = X[3::4]

    def err(m):
        return np.linalg.norm(held @ (W - m.to_matrix()).T) / np.linalg.norm(held @ W.T)

    assert mpo.report.held_out_error == pytest.approx(err(mpo), rel=1e-8)
    assert err(mpo) <= err(plain) * (1 + 1e-9)  # never worse than the plain truncated SVD on the held-out fold


def test_a_single_usable_fold_warns_and_fits_the_truncated_svd():
    W, X = _problem(4)
    metric = tnlib.Metric.from_folds([X.T @ X / len(X), np.zeros((16, 16))], [len(X), 0])
    t = tnlib.Truncation(max_bond=3)
    with pytest.warns(UserWarning, match="a single sample, so no rows can be held out") as caught:
        got = tnlib.MPO.from_matrix(W, (8, 4), (4, 4), truncation=t, metric=metric)
    assert {w.filename for w in caught} == {__file__}
    assert got.report.shrinkage == 1.0


@pytest.mark.parametrize("call, error, message", [
    (lambda: tnlib.Metric.from_folds([np.eye(2)], [1, 2]), ValueError, "sequences of one length"),
    (lambda: tnlib.Metric.from_folds([np.eye(2)], [-1]), ValueError, r"rows\[0\]=-1 is invalid"),
    (lambda: tnlib.Metric.from_folds([np.eye(2), np.eye(2)], [0, 0]), ValueError, "the folds hold no rows"),
    (lambda: tnlib.Metric(np.eye(2), np.eye(2), folds=((np.eye(2), 1),)), ValueError, "held_out or folds"),
    (lambda: tnlib.Metric(np.eye(2), folds=((np.eye(3), 1),)), ValueError, r"folds\[0\] has shape \(3, 3\)"),
    (lambda: tnlib.Metric(np.eye(2), folds=(np.eye(2),)), TypeError, r"folds\[0\] must be a \(Gram, rows\) pair"),
    (lambda: tnlib.Objective("speed"), ValueError, "Objective.kind='speed' is invalid"),
    (lambda: tnlib.Objective("latency", tolerance=1.5), ValueError, r"Objective.tolerance=1.5 is invalid"),
    (lambda: tnlib.Objective("latency", batch=0), ValueError, r"Objective.batch=0 is invalid"),
    (lambda: tnlib.MPO.from_matrix(np.eye(4), truncation=tnlib.Truncation(max_params=8), objective="latency"),
     TypeError, "objective must be a tnlib.Objective or None, got str"),
])
def test_bad_folds_and_objectives_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_latency_objective_picks_fewer_multiply_adds_within_its_tolerance():
    from tnlib._choose import macs

    rng = np.random.default_rng(5)
    W = np.kron(rng.standard_normal((16, 16)), rng.standard_normal((8, 8))) + 1e-3 * rng.standard_normal((128, 128))
    t = tnlib.Truncation(max_params=3000)
    best = tnlib.MPO.from_matrix(W, truncation=t)
    fast = tnlib.MPO.from_matrix(W, truncation=t, objective=tnlib.Objective("latency", tolerance=0.5))

    def cost(m):
        return macs([tuple(c.shape) for c in m.cores])

    def err(m):
        return np.linalg.norm(W - m.to_matrix()) / np.linalg.norm(W)

    assert cost(fast) <= cost(best)
    assert err(fast) <= 1.5 * err(best) + 1e-12


def test_a_single_precision_gram_of_correlated_inputs_is_accepted():
    """Rounding of a float32 Gram (rank 16 of 128) gives eigenvalues of -7e-8 |C|: zeros, not an indefinite C."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2000, 16)) @ rng.standard_normal((16, 128))).astype(np.float32) * 10
    c32 = x.T @ x / len(x)
    assert np.linalg.eigvalsh(c32.astype(np.float64))[0] < -1e-8 * np.linalg.eigvalsh(c32.astype(np.float64))[-1]
    w = rng.standard_normal((64, 128))
    budget = tnlib.Truncation(max_params=w.size // 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rank-deficiency advice
        for gram, matrix in ((c32, w.astype(np.float32)), (c32.astype(np.float64), w)):
            fit = tnlib.MPO.from_matrix(matrix, truncation=budget, metric=tnlib.Metric(gram))
            assert fit.report.output_error < 0.05
    indefinite = rng.standard_normal((128, 128))
    with pytest.raises(ValueError, match="metric.gram is not positive semi-definite"):
        tnlib.MPO.from_matrix(w, truncation=budget, metric=tnlib.Metric(indefinite + indefinite.T))


@settings(max_examples=12, deadline=None)
@given(exponent=st.sampled_from([-660, -300, -120, 0, 120, 300, 660]))
def test_a_data_aware_fit_with_held_out_rows_is_scale_free(exponent):
    """At 1e200 the shrinkage search's squares overflowed ('max() arg is an empty sequence'); at 1e-200 they
    underflowed and chose another shrinkage."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 8)) @ rng.standard_normal((8, 32)) + 0.05 * rng.standard_normal((600, 32))
    fit, held = x[:450].T @ x[:450] / 450, x[450:].T @ x[450:] / 150
    w = rng.standard_normal((16, 32))
    budget = tnlib.Truncation(max_params=w.size // 4)
    plain = tnlib.MPO.from_matrix(w, truncation=budget, metric=tnlib.Metric(fit, held_out=held))
    scaled = tnlib.MPO.from_matrix(np.ldexp(w, exponent), truncation=budget, metric=tnlib.Metric(fit, held_out=held))
    assert scaled.report.shrinkage == plain.report.shrinkage
    assert scaled.report.held_out_error == pytest.approx(plain.report.held_out_error, rel=1e-9)
    assert scaled.bond_dims == plain.bond_dims


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 16), st.integers(1, 40), st.sampled_from([0.0, 0.01, 0.3, 1.0]), st.integers(0, 10**6))
def test_the_gram_factor_factors_the_shrunk_metric_definite_or_not(n, rows, shrinkage, seed):
    """``L L^H = C_s`` and ``L_inv`` its (pseudo-)inverse, from Cholesky or, for a singular ``C_0``, the eigenvalues;
    the whitened SVD it gives is the same rank-r matrix as the one from the eigen-factor."""
    from tnlib import metric as gram_fit

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)) * np.geomspace(1.0, 0.01, n)
    c = x.T @ x / rows
    f = gram_fit.gram_factor(c, shrinkage)
    tau = np.trace(c) / n
    c_s = (1 - shrinkage) * c + shrinkage * tau * np.eye(n)
    assert np.allclose(f.L @ f.L.T, c_s, atol=1e-10 * np.abs(c).max())
    assert np.allclose(f.metric, c_s, atol=1e-12 * np.abs(c).max())
    definite = np.linalg.eigvalsh(c_s)[0] > 1e-9 * np.linalg.eigvalsh(c_s)[-1]
    if definite:
        assert np.allclose(f.L_inv @ f.L, np.eye(n), atol=1e-6)
        w = rng.standard_normal((5, n))
        u, s, vh = np.linalg.svd(w @ f.L)
        lam, q = np.linalg.eigh(c_s)
        root = q * np.sqrt(np.clip(lam, 0, None))
        u2, s2, vh2 = np.linalg.svd(w @ root)
        r = 2
        by_chol = (u[:, :r] * s[:r]) @ vh[:r] @ f.L_inv
        by_eig = (u2[:, :r] * s2[:r]) @ vh2[:r] @ np.linalg.pinv(root)
        assert np.allclose(by_chol, by_eig, atol=1e-6 * np.abs(w).max())
    assert np.isfinite(f.L_inv).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=9))
def test_the_paired_upper_bound_is_the_one_sided_t_interval(differences):
    from scipy import stats

    from tnlib._stats import CONFIDENCE, paired_upper_bound

    k = len(differences)
    mean = float(np.mean(differences))
    half = stats.t.ppf(CONFIDENCE, k - 1) * float(np.std(differences, ddof=1)) / np.sqrt(k)
    assert paired_upper_bound(differences) == pytest.approx(mean + half, rel=1e-9, abs=1e-9)
