"""Reports print one short line in a REPL (the tables come with print()), and a table in a notebook."""

import numpy as np
import pytest

import tnlib


def _matrix():
    return np.random.default_rng(0).standard_normal((256, 256))


def test_report_reprs_are_one_short_line_and_str_keeps_the_table():
    w = _matrix()
    spec = tnlib.spectrum(w, (4, 4, 4, 4), (4, 4, 4, 4))
    curve = tnlib.tradeoff(w, (16, 16), (16, 16), max_bonds=(2, 8, 32, 128))
    report = tnlib.MPO.from_matrix(w, (16, 16), (16, 16), truncation=tnlib.Truncation(max_bond=8)).report
    for obj, head in ((spec, "Spectrum(MPO, 4 sites"), (curve, "Tradeoff(4 points"),
                      (report, "TruncationReport(bond_dims=(8,)")):
        text = repr(obj)
        assert text.startswith(head) and "\n" not in text and len(text) < 200
        assert len(str(obj).splitlines()) > 1  # print() still gives the table
        assert obj._repr_html_().startswith("<pre>") and "&" not in repr(obj)


def test_layer_report_repr():
    torch = pytest.importorskip("torch")
    import tnlib.nn

    _, (r,) = tnlib.nn.compress(torch.nn.Sequential(torch.nn.Linear(64, 64)), compression=4)
    assert repr(r).startswith("LayerReport('0', Linear, 4096 -> ") and "\n" not in repr(r)
    _, (q,) = tnlib.nn.compress(torch.nn.Sequential(torch.nn.Linear(64, 64)), bytes=64 * 64 // 2)
    assert "bytes" in repr(q) and "<pre>" in q._repr_html_()


def test_plot_compression_draws_every_layer():
    torch = pytest.importorskip("torch")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import tnlib.nn

    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
    batches = [torch.randn(32, 64) for _ in range(8)]
    _, reports = tnlib.nn.compress(net, compression=4, calibration=batches)
    fig = tnlib.nn.plot_compression(reports)
    size, error, flops = fig.axes
    assert [t.get_text() for t in size.get_yticklabels()] == ["0", "2"]
    assert len(error.patches) == 4  # weight and held-out output error of both layers
    assert "2 layers" in fig._suptitle.get_text()
    _, by_bytes = tnlib.nn.compress(net, bytes=64 * 64)
    assert tnlib.nn.plot_compression(by_bytes).axes[0].get_xlabel() == "stored bytes (log)"
    with pytest.raises(ValueError, match="reports is empty"):
        tnlib.nn.plot_compression([])
    with pytest.raises(TypeError, match="LayerReports"):
        tnlib.nn.plot_compression([1])
    with pytest.raises(ValueError, match="three Axes"):
        tnlib.nn.plot_compression(reports, ax=[fig.axes[0]])


def test_spectrum_plot_stops_at_the_noise_floor():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 3)) @ rng.standard_normal((3, 64))  # rank 3: the rest is rounding noise
    fig = tnlib.spectrum(w, (8, 8), (8, 8)).plot()
    bottom = fig.axes[0].get_ylim()[0]
    assert bottom > 1e-16 * np.linalg.norm(w, 2) / 10
    assert "site dims" in fig.axes[0].get_title()


def test_one_name_for_the_relative_error():
    w = _matrix()
    report = tnlib.MPO.from_matrix(w, (16, 16), (16, 16), truncation=tnlib.Truncation(max_bond=8)).report
    exact = np.linalg.norm(tnlib.MPO.from_matrix(w, (16, 16), (16, 16), truncation=tnlib.Truncation(max_bond=8))
                           .to_matrix() - w) / np.linalg.norm(w)
    assert report.relative_error == report.relative_error_bound == pytest.approx(exact, rel=1e-10)
