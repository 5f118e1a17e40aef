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
