"""The experiments' own pieces: data readers, noise mixing, SI-SDR, summaries, matching, report assembly."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "experiments"))
import _common  # noqa: E402
import _data  # noqa: E402
import run_all  # noqa: E402


def test_read_ts_parses_and_rejects_corrupt_files(tmp_path):
    X, y, Xt, yt = _data.japanese_vowels()
    assert X.shape == (270, 29, 12) and Xt.shape == (370, 29, 12)
    assert sorted(set(y.tolist())) == list(range(9))
    # Front padding: every series ends at the last step, and padded frames are exactly zero.
    assert bool((X[:, -1].abs().sum(1) > 0).all())
    assert float(X[:, :, :].reshape(-1, 12)[X.reshape(-1, 12).abs().sum(1) > 0].mean()) == pytest.approx(0, abs=0.05)
    bad = tmp_path / "bad.ts"
    bad.write_text("@problemName x\n@data\n")
    with pytest.raises(ValueError, match="holds no series"):
        _data._read_ts(bad)


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_mix_hits_the_snr_exactly(kind):
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 200, 16000))
    for snr in (0.0, 5.0, 10.0):
        noisy, v = _data.mix(clean, snr, kind, rng)
        assert np.allclose(noisy, clean + v)
        assert 10 * np.log10(np.sum(clean**2) / np.sum(v**2)) == pytest.approx(snr, abs=1e-9)
    if kind == "pink":  # 1/f power: more energy below 1 kHz than above 4 kHz per bin
        p = np.abs(np.fft.rfft(_data.noise("pink", 1 << 15, rng))) ** 2
        assert p[1:2000].mean() > 4 * p[8000:].mean()


def test_si_sdr_is_scale_invariant_and_matches_the_snr():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(8000)
    s -= s.mean()
    e = 0.1 * rng.standard_normal(8000)
    e -= e.mean()
    e -= np.dot(e, s) / np.dot(s, s) * s  # orthogonal distortion: SI-SDR is exactly the energy ratio
    expected = 10 * np.log10(np.sum(s**2) / np.sum(e**2))
    assert _data.si_sdr(s, s + e) == pytest.approx(expected, abs=1e-6)
    assert _data.si_sdr(s, 3.0 * (s + e)) == pytest.approx(expected, abs=1e-6)


def test_stft_round_trip():
    x = np.random.default_rng(2).standard_normal(4000)
    assert np.allclose(_data.istft(_data.stft(x), len(x)), x, atol=1e-10)


def test_summarize_and_tables():
    rows = [dict(method="m", ratio=2.0, params=10, acc=a) for a in (0.5, 0.7)]
    (s,) = _common.summarize(rows, ["method", "ratio"], ["acc"])
    assert s["acc"] == pytest.approx(0.6) and s["acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    text = _common.sweep_table([s], "acc", ["m", "absent"], [2.0])
    assert "0.6 ± 0.14 (10)" in text and "not reachable" in text


def test_compare_counts_wins_in_the_right_direction():
    summary = [dict(method="a", ratio=r, acc=x) for r, x in ((2, 0.9), (8, 0.5))] + \
              [dict(method="b", ratio=r, acc=x) for r, x in ((2, 0.8), (8, 0.6))]
    assert _common.compare(summary, "acc", "a", "b", [2, 8], higher_is_better=True)[:2] == (1, 2)
    assert _common.compare(summary, "acc", "a", "b", [2, 8, 32], higher_is_better=False)[:2] == (1, 2)


def test_assemble_rebases_image_links(tmp_path):
    out = tmp_path / "experiments"
    out.mkdir()
    (out / "fc.md").write_text("## 4. FC\n\n![x](fc-entropy.png)\n")
    target = tmp_path / "experiments.md"
    run_all.assemble(out, target, names=("fc", "mpop"))
    text = target.read_text()
    assert "](experiments/fc-entropy.png)" in text and "Not run yet" in text


def test_experiment_lstm_matching_never_exceeds_the_budget():
    import tnlib.nn as tn

    lstm = torch.nn.LSTM(28, 128)
    dense = tn.count_parameters(lstm)
    for ratio in (2, 8, 32, 100):
        for name, chosen in tn.match_compression(lstm, ratio, num_cores=3).items():
            if chosen is not None:
                assert chosen["params"] <= dense / ratio + 1, (name, ratio)
