import math

import matplotlib
import numpy as np
import pytest

import tnlib
from conftest import random_array

matplotlib.use("Agg")


def test_spectrum_of_matrix_mpo_and_mps_agree():
    W = random_array((64, 64), seed=3)
    spec = tnlib.spectrum(W, (4, 4, 4), (4, 4, 4))
    mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (4, 4, 4))
    again = tnlib.spectrum(mpo)
    for a, b in zip(spec.singular_values, again.singular_values):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    t = W.reshape(4, 4, 4, 4, 4, 4).transpose(0, 3, 1, 4, 2, 5).reshape(16, 256)
    np.testing.assert_allclose(spec.singular_values[0], np.linalg.svd(t, compute_uv=False), rtol=1e-12)
    np.testing.assert_allclose(spec.entropies(), mpo.entropies(), rtol=1e-12)
    np.testing.assert_allclose(spec.entropies(3.0), mpo.entropies(alpha=3.0), rtol=1e-12)
    np.testing.assert_allclose(spec.effective_ranks(), np.exp(spec.entropies()))
    assert spec.kind == "MPO" and spec.phys_dims == (16, 16, 16)


def test_error_curve_and_rank_for_error():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    spec = tnlib.Spectrum((s,), (4, 4))
    total = np.sum(s**2)
    expected = [math.sqrt(np.sum(s[k:] ** 2) / total) for k in range(1, 5)]
    np.testing.assert_allclose(spec.error_curve(0), expected)
    assert spec.rank_for_error(0, 0.25) == 2
    assert spec.rank_for_error(0, 0.0) == 4
    with pytest.raises(ValueError, match="bond=1 is out of range"):
        spec.error_curve(1)


def test_spectrum_is_immutable_and_prints_a_table():
    spec = tnlib.spectrum(tnlib.MPS.from_dense(random_array((2,) * 6)))
    with pytest.raises(ValueError):
        spec.singular_values[0][0] = 1.0
    with pytest.raises(AttributeError):
        spec.kind = "x"  # type: ignore[misc]
    text = str(spec)
    assert text.count("\n") == 1 + 5 and "entropy" in text and "chi@1%" in text


def test_spectrum_from_torch_is_host_numpy():
    torch = pytest.importorskip("torch")
    W = torch.asarray(random_array((16, 16)))
    spec = tnlib.spectrum(W, (4, 4), (4, 4))
    assert isinstance(spec.singular_values[0], np.ndarray)


def test_tradeoff_curve_is_exact_and_monotone():
    x = np.linspace(0, 1, 64)
    W = np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.05)
    curve = tnlib.tradeoff(W, (4, 4, 4), (4, 4, 4))
    assert curve.max_bonds == (1, 2, 4, 8, 16)
    errs = np.array(curve.relative_errors)
    assert np.all(np.diff(errs) <= 1e-12)
    for chi, err in zip(curve.max_bonds, errs):
        mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (4, 4, 4), truncation=tnlib.Truncation(max_bond=chi))
        true = np.linalg.norm(mpo.to_matrix() - W) / np.linalg.norm(W)
        assert err == pytest.approx(true, rel=1e-6, abs=1e-14)
    bond, ratio, err = curve.max_compression(0.01)
    assert err <= 0.01 and ratio == max(r for r, e in zip(curve.compression_ratios, errs) if e <= 0.01)
    assert curve.max_compression(-1.0) is None
    assert "ratio" in str(curve)


def test_plots_return_figures(tmp_path):
    spec = tnlib.spectrum(random_array((64, 64)), (4, 4, 4), (4, 4, 4))
    fig = spec.plot()
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    fig2, ax = plt.subplots()
    assert spec.plot(ax=ax) is fig2
    curve = tnlib.tradeoff(random_array((16, 16)), (4, 4), (4, 4))
    assert len(curve.plot().axes) == 1
    plt.close("all")


def test_spectrum_and_tradeoff_take_explicit_keywords_only():
    W = np.random.default_rng(0).standard_normal((16, 16))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'truncation'"):
        tnlib.tradeoff(W, (4, 4), (4, 4), truncation=tnlib.Truncation(max_bond=2))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'truncation'"):
        tnlib.spectrum(W, (4, 4), (4, 4), truncation=tnlib.Truncation(max_bond=2))
    curve = tnlib.tradeoff(W, (4, 4), (4, 4), max_bonds=[2, 16])
    assert curve.relative_errors[0] > 0.1 and curve.relative_errors[-1] < 1e-12
    assert tnlib.spectrum(W, num_cores=2).num_bonds == 1
