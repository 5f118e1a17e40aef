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


def _rows(method, ratio, values):
    return [dict(method=method, ratio=ratio, seed=k, acc=v) for k, v in enumerate(values)]


def test_paired_interval_is_the_t_interval_of_the_seed_differences():
    import scipy.stats

    a, b = [0.90, 0.93, 0.91, 0.95], [0.85, 0.86, 0.88, 0.87]
    p = _common.paired(_rows("a", 2.0, a) + _rows("b", 2.0, b), "acc", "a", "b", 2.0, higher_is_better=True)
    d = np.subtract(a, b)
    half = scipy.stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert p.n == 4 and p.diff == pytest.approx(d.mean())
    assert (p.lo, p.hi) == pytest.approx((d.mean() - half, d.mean() + half))
    assert p.outcome == "better"
    # lower is better flips the sign; pairing is by seed, so a seed missing on one side is dropped
    q = _common.paired(_rows("a", 2.0, a) + _rows("b", 2.0, b[:3]), "acc", "a", "b", 2.0, higher_is_better=False)
    assert q.n == 3 and q.outcome == "worse" and q.diff == pytest.approx(-d[:3].mean())


def test_verdicts_are_inconclusive_unless_the_interval_excludes_zero():
    rows = (_rows("a", 2.0, [0.9, 0.8, 0.95]) + _rows("b", 2.0, [0.85, 0.85, 0.85])  # noisy: inconclusive
            + _rows("a", 8.0, [0.7, 0.71, 0.72]) + _rows("b", 8.0, [0.6, 0.6, 0.61])  # clear: better
            + _rows("a", 32.0, [0.5, 0.5, 0.5]) + _rows("b", 32.0, [0.5, 0.5, 0.5]))  # a tie: inconclusive
    results = _common.compare(rows, "acc", "a", "b", [2.0, 8.0, 32.0, 100.0], higher_is_better=True)
    assert [p.outcome for p in results] == ["inconclusive", "better", "inconclusive"]
    assert _common.verdict(results) == "held at 8x; inconclusive at 2x, 32x"
    assert _common.verdict(results[1:2]) == "held"
    assert _common.verdict(results[2:]) == "inconclusive"
    flipped = _common.compare(rows, "acc", "b", "a", [8.0], higher_is_better=True)
    assert _common.verdict(flipped) == "did not hold (reversed)"
    one_seed = _common.compare(_rows("a", 2.0, [0.9]) + _rows("b", 2.0, [0.1]), "acc", "a", "b", [2.0],
                               higher_is_better=True)
    assert one_seed[0].outcome == "inconclusive"  # no interval from one seed
    line = _common.claim_line("task: a vs b", results, "a beats b")
    assert "paired over 3 seed(s)" in line and line.endswith("the claim that a beats b: held at 8x; "
                                                             "inconclusive at 2x, 32x.")


def test_seasonal_naive_repeats_last_week():
    from pmdarima.datasets import load_taylor

    values = np.asarray(load_taylor(), dtype=float)
    cut = int(len(values) * 0.8)
    t = np.arange(cut, len(values))
    expected = np.sqrt(np.mean((values[t] - values[t - 336]) ** 2))
    assert _data.taylor_seasonal_naive() == pytest.approx(expected)
    assert 600 < expected < 800  # the published figure: 718 MW


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


def test_verdict_table_parses_the_paired_claim_lines():
    rows = (_rows("a", 2.0, [0.9, 0.91, 0.92]) + _rows("b", 2.0, [0.8, 0.8, 0.81])
            + _rows("a", 8.0, [0.5, 0.6, 0.4]) + _rows("b", 8.0, [0.5, 0.5, 0.5]))
    results = _common.compare(rows, "acc", "a", "b", [2.0, 8.0], higher_is_better=True)
    line = "- (4) " + _common.claim_line("FC2: a vs b", results, "a beats b")
    table = run_all.verdict_table([line])
    row = table.splitlines()[-1]
    assert row.startswith("| 4 | FC2: a vs b | a beats b | 3 | 2x: **held**, +0.11 [")
    assert "8x: inconclusive, 0 [" in row


def test_japanese_vowels_split_redrawn_per_seed_keeps_sizes_and_class_shares():
    X, y, Xt, yt = _data.japanese_vowels()
    pooled = torch.cat([X, Xt]).reshape(len(X) + len(Xt), -1)
    counts = np.bincount(torch.cat([y, yt]).numpy(), minlength=9)
    draws = [_data.japanese_vowels(split_seed=s) for s in (0, 1)]
    for A, a, B, b in draws:
        assert A.shape == X.shape and B.shape == Xt.shape
        # each speaker's share of the test set is its share of the pool, to one series
        assert np.all(np.abs(np.bincount(b.numpy(), minlength=9) - counts * len(Xt) / counts.sum()) < 1)
    A0, _, B0, _ = draws[0]
    A1, _, B1, _ = draws[1]
    assert not torch.equal(B0, B1)  # another draw
    assert torch.equal(_data.japanese_vowels(split_seed=1)[2], B1)  # reproducible
    assert len(A0) + len(B0) == len(pooled)  # every series in exactly one part


def test_mnist_split_seed_draws_disjoint_splits():
    X0, y0, T0, _ = _data.mnist()
    Xs, ys, Ts, _ = _data.mnist(split_seed=0)
    assert torch.equal(X0, Xs) and torch.equal(T0, Ts)  # seed 0 is the earlier fixed split
    X1, _, T1, _ = _data.mnist(split_seed=1)
    assert not torch.equal(T0, T1)
    train = {bytes(x.numpy().tobytes()) for x in X1}
    assert not any(bytes(t.numpy().tobytes()) in train for t in T1[:200])


def test_sweep_redraws_the_task_per_seed_and_chooses_each_rate_once():
    import _lstm_sweep

    draws = []

    def task(seed: int) -> "_lstm_sweep.Task":
        draws.append(seed)
        g = torch.Generator().manual_seed(seed)
        X, y = torch.randn(40, 5, 6, generator=g), torch.randn(40, 1, generator=g)
        return _lstm_sweep.Task(name="toy", X_train=X, Y_train=y, hidden_size=16,
                                make_head=lambda h: torch.nn.Linear(h, 1), loss=torch.nn.functional.mse_loss,
                                evaluate=lambda m: {"rmse": 0.0}, redraw=task)

    cfg = dict(epochs=1, finetune_epochs=1, lr=1e-2, finetune_lr=1e-2, batch_size=20, lr_grid=(1e-3, 1e-1),
               lr_at=2, val_fraction=0.25)
    methods = ("MPO (scratch)", "low-rank")
    rows = _lstm_sweep.run(task(0), (8, 2), [0, 1], cfg, methods=methods)
    assert draws == [0, 0, 1]  # the first task, then every seed's own draw
    for method in methods:
        rates = {r["lr"] for r in rows if r["method"] == method}
        assert len(rates) == 1 and rates <= set(cfg["lr_grid"])  # one rate per method, at every ratio and seed
    assert [r["ratio"] for r in rows if r["seed"] == 0 and r["method"] != "dense"][:2] == [2.0, 2.0]  # lr_at first
    with pytest.raises(ValueError, match="lr_at"):
        _lstm_sweep.run(task(0), (8,), [0], dict(cfg, lr_at=4), methods=methods)


def test_fc_small_dense_is_the_widest_net_within_the_budget():
    import fc

    for arch in (fc.FC2, fc.LENET):
        dense = sum(i * o for i, o in fc.sizes(arch))
        for ratio in (2, 8, 32, 100):
            layers = fc.small_dense(arch, dense / ratio)
            assert layers is not None
            weights = sum(m.weight.numel() for m in layers)
            assert weights <= dense / ratio
            assert layers[0].in_features == fc.sizes(arch)[0][0] and layers[-1].out_features == 10
            if arch == fc.FC2:  # one more hidden unit would not fit
                assert (layers[0].out_features + 1) * (784 + 10) > dense / ratio
    assert fc.small_dense(fc.FC2, 10) is None  # not even one hidden unit


def test_inference_speedup_is_the_paired_time_ratio():
    import inference

    rows = []
    for r in range(6):
        noise = 0.01 * (r % 3)
        rows += [dict(task="t", method=inference.DENSE, ratio=1.0, seed=r, log_ms=np.log(2.0) + noise),
                 dict(task="t", method="MPO", ratio=8.0, seed=r, log_ms=np.log(1.0) + 0.02 * ((3 * r) % 5 - 2)),
                 dict(task="t", method="MPS-TT", ratio=8.0, seed=r, log_ms=np.log(4.0) - noise)]
    s = inference.speedup(rows, "MPO", inference.DENSE, 8.0)
    assert s[0] == pytest.approx(2.0, rel=0.02) and s[3] == "faster" and 1 < s[1] < s[0] < s[2]
    assert inference.speedup(rows, "MPS-TT", inference.DENSE, 8.0)[3] == "slower"
    assert inference.speedup(rows, "MPS-TT", "MPO", 8.0, b_ratio=None)[0] == pytest.approx(0.25, rel=0.06)
    assert inference.speedup(rows, "low-rank", inference.DENSE, 8.0) is None


@pytest.mark.parametrize("layers", [1, 2])
def test_sweep_small_dense_counts_every_layer(layers):
    import _lstm_sweep

    import tnlib.nn as tn

    dense = tn.count_parameters(torch.nn.LSTM(12, 64, num_layers=layers))
    for ratio in (2, 8, 32, 100):
        chosen = _lstm_sweep.small_dense(12, 64, ratio, layers)
        assert chosen["params"] == tn.count_parameters(torch.nn.LSTM(12, chosen["hidden"], num_layers=layers))
        assert chosen["params"] <= dense / ratio
        wider = tn.count_parameters(torch.nn.LSTM(12, chosen["hidden"] + 1, num_layers=layers))
        assert wider > dense / ratio


def test_g2p_port_matches_a_numpy_gru_on_the_packaged_checkpoint():
    """The torch port of g2p-en's model against the GRU update written out in NumPy on the same checkpoint:
    the gate order and the weight names are what the checkpoint holds."""
    import _g2p

    z = np.load(_g2p.checkpoint())
    model = _g2p.G2P.pretrained()

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    def step(x, h, prefix):
        gi = x @ z[f"{prefix}_w_ih"].T.astype(np.float64) + z[f"{prefix}_b_ih"]
        gh = h @ z[f"{prefix}_w_hh"].T.astype(np.float64) + z[f"{prefix}_b_hh"]
        r, u = np.split(sigmoid(gi[:256 * 2] + gh[:256 * 2]), 2)
        n = np.tanh(gi[512:] + r * gh[512:])
        return (1.0 - u) * n + u * h

    word = "compression"
    h = np.zeros(256)
    for code in [_g2p.GRAPHEMES.index(c) for c in word] + [_g2p.GRAPHEMES.index("</s>")]:
        h = step(z["enc_emb"][code].astype(np.float64), h, "enc")
    token, expected = _g2p.START, []
    for _ in range(_g2p.STEPS):
        h = step(z["dec_emb"][token].astype(np.float64), h, "dec")
        logits = z["fc_w"].astype(np.float64) @ h + z["fc_b"]
        expected.append(logits)
        token = int(logits.argmax())
    (idx, letters), = _g2p.batches([word])
    got = model.double()(letters)[0].detach().numpy()
    np.testing.assert_allclose(got, np.array(expected), atol=1e-8)
    assert _g2p.transcribe(model.float(), _g2p.batches([word]))[0][:3] == ["K", "AH0", "M"]


def test_phoneme_error_rate_counts_edits_to_the_nearest_pronunciation():
    import _g2p

    assert _g2p.edit_distance(["A", "B", "C"], ["A", "C"]) == 1
    assert _g2p.edit_distance([], ["A", "B"]) == 2
    assert _g2p.edit_distance(["K", "AE1", "T"], ["K", "AE1", "T"]) == 0
    refs = [[["K", "AE1", "T"]], [["T", "AH0", "M", "EY1", "T", "OW2"], ["T", "AH0", "M", "AA1", "T", "OW2"]]]
    # one substitution against the 3 phonemes of "cat"; the second word matches its second pronunciation
    assert _g2p.phoneme_error_rate([["K", "AA1", "T"], ["T", "AH0", "M", "AA1", "T", "OW2"]], refs) == 1 / 9


def test_baselines_store_the_budget_and_whitening_lowers_the_output_error():
    import _baselines

    import tnlib.nn as tn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.Tanh(), torch.nn.GRU(48, 16))
    layers = ["0", "2"]
    weights = _baselines.stored(net, layers)
    assert weights == 48 * 32 + 3 * 16 * 48 + 3 * 16 * 16
    pruned, nonzeros = _baselines.pruned(net, layers, 4)
    assert nonzeros <= weights // 4 + 3 and int(torch.count_nonzero(pruned[0].weight)) == 48 * 32 // 4
    mix = torch.randn(32, 32) * torch.logspace(0, -2, 32)  # correlated inputs of decaying variance
    batches = [torch.randn(20, 8, 32) @ mix for _ in range(4)]
    grams = tn.record_grams(net, layers, batches)
    plain, stored = _baselines.svd(net, layers, 4)
    whitened, stored_w = _baselines.svd(net, layers, 4, grams)
    assert stored == stored_w <= weights / 4
    w, c = net[0].weight.detach().double(), grams["0"]["weight"]

    def output_error(model):
        d = model[0].weight.detach().double() - w
        return float(torch.trace(d @ c @ d.T))

    assert output_error(whitened) < output_error(plain)


def test_crepe_decoding_and_tones():
    """CREPE's bins decode to their frequencies (a peak at bin b: 10 * 2^((1997.38 + 20 b) / 1200) Hz), a peak
    between two bins to the cents between them; the synthetic tones are normalized frames with fundamentals in
    range, the same for the same seed and different for another."""
    import _crepe

    salience = np.zeros((3, _crepe.BINS))
    salience[0, 100] = 1.0
    salience[1, 200], salience[1, 201] = 0.5, 0.5
    salience[2, 0] = 1.0
    cents = 1200 * np.log2(_crepe.pitch(salience) / 10.0)
    np.testing.assert_allclose(cents, _crepe.FIRST_BIN_CENTS + 20.0 * np.array([100, 200.5, 0]), atol=1e-9)
    frames, f0 = _crepe.tones(16, seed=3)
    assert frames.shape == (16, _crepe.WINDOW) and frames.dtype == torch.float32
    np.testing.assert_allclose(frames.mean(1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(frames.std(1, unbiased=False).numpy(), 1.0, atol=1e-4)
    assert np.all((f0 >= _crepe.FMIN) & (f0 <= _crepe.FMAX))
    again, f0_again = _crepe.tones(16, seed=3)
    assert torch.equal(frames, again) and np.array_equal(f0, f0_again)
    assert not np.allclose(_crepe.tones(16, seed=4)[1], f0)
    net = _crepe.Crepe("tiny").eval()
    assert net(frames).shape == (16, _crepe.BINS)
