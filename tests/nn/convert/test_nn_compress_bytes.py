"""compress(bytes=...): budgets in stored bytes, quantized forms chosen per weight."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.quantization import Quantization, relative_error  # noqa: E402


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def _weights(net):
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))


def _batches(seed=0, n=16):
    """Correlated inputs: one fixed mixing matrix, fresh samples per seed."""
    mix = torch.randn(128, 128, generator=torch.Generator().manual_seed(0)) / 8
    g = torch.Generator().manual_seed(1000 + seed)
    return [torch.randn(32, 128, generator=g) @ mix for _ in range(n)]


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("bits", [4.5, 3.5, 2.5])
def test_the_budget_holds_and_the_model_runs(allocation, bits):
    net = _net()
    budget = int(_weights(net) * bits / 8)
    small, reports = tn.compress(net, bytes=budget, allocation=allocation)
    assert all(isinstance(small[i], tn.QuantizedLinear) for i in (0, 2, 4))
    assert sum(r.bytes_after for r in reports) <= budget
    bias_bytes = sum(m.bias.numel() * 4 for m in net.modules() if isinstance(m, nn.Linear))
    assert tn.stored_bytes(small) == sum(r.bytes_after for r in reports) + bias_bytes
    assert all(r.bytes_before == r.params_before * 4 for r in reports)
    assert abs(sum(r.share for r in reports) - 1) < 1e-9
    x = torch.randn(3, 128)
    assert small(x).shape == (3, 10) and "bits per weight" in str(reports[0])


def test_never_worse_than_round_to_nearest_at_its_bytes():
    net = _net(1)
    q = Quantization(4, 64)
    rtn_bytes = sum(q.stored_bytes(tuple(m.weight.shape)) for m in net.modules() if isinstance(m, nn.Linear))
    _, reports = tn.compress(net, bytes=rtn_bytes)
    for r, m in zip(reports, [net[0], net[2], net[4]]):
        w = m.weight.detach().double().numpy()
        assert r.relative_error <= relative_error(w, tnlib.quantize(w, q).dequantize()) + 1e-12


def test_calibrated_forms_are_judged_on_held_out_rows():
    net = _net(2)
    budget = int(_weights(net) * 3 / 8)
    small, reports = tn.compress(net, bytes=budget, calibration=_batches())
    assert all(r.output_error is not None and r.held_out_error is not None for r in reports)
    assert sum(r.bytes_after for r in reports) <= budget
    plain, _ = tn.compress(net, bytes=budget)
    test = _batches(seed=9, n=4)
    with torch.no_grad():
        ref = torch.cat([net(x) for x in test])
        aware = (torch.cat([small(x) for x in test]) - ref).norm()
        blind = (torch.cat([plain(x) for x in test]) - ref).norm()
    assert aware < blind


def test_a_low_rank_weight_is_stored_as_a_quantized_split():
    torch.manual_seed(3)
    lin = nn.Linear(256, 256)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(256, 8) @ torch.randn(8, 256) / 16)
    model = nn.Sequential(lin)
    small, reports = tn.compress(model, bytes=int(256 * 256 * 1.2 / 8))  # 1.2 bits per weight: below any plain width
    assert small[0].rank is not None and reports[0].layouts[0].startswith("rank")
    assert reports[0].relative_error < 0.15


def test_global_spends_bytes_where_they_remove_most_error():
    torch.manual_seed(4)
    easy, hard = nn.Linear(128, 128), nn.Linear(128, 128)
    with torch.no_grad():
        easy.weight.copy_(torch.randn(128, 4) @ torch.randn(4, 128) / 8)  # rank 4: cheap to hold
    model = nn.Sequential(easy, hard)
    budget = 2 * 128 * 128 * 3 // 8
    _, uniform = tn.compress(model, bytes=budget)
    _, joint = tn.compress(model, bytes=budget, allocation="global")
    assert sum(r.relative_error**2 for r in joint) <= sum(r.relative_error**2 for r in uniform) + 1e-12
    assert joint[1].byte_budget > joint[0].byte_budget


def test_a_shared_module_is_replaced_at_every_use():
    lin = nn.Linear(64, 64)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    small, reports = tn.compress(model, bytes=64 * 64 // 2)
    assert len(reports) == 1 and small[0] is small[2] and isinstance(small[0], tn.QuantizedLinear)


def test_other_kinds_stay_dense_with_a_warning_and_are_refused_by_name(monkeypatch):
    """Every registered kind a model holds unnamed takes a byte budget today (an embedding is a target only when
    named, and bytes= refuses it by name); a kind it could not convert would stay dense with a warning."""
    import tnlib.nn._convert._bytes as bytes_module

    model = nn.Sequential(nn.MultiheadAttention(64, 4), nn.Linear(64, 32))
    small, reports = tn.compress(model, bytes=(4 * 64 * 64 + 64 * 32) // 2)
    assert isinstance(small[0], tn.QuantizedMultiheadAttention) and [r.name for r in reports] == ["0", "1"]
    table = nn.Sequential(nn.Embedding(100, 64), nn.Linear(64, 32))
    with pytest.raises(ValueError, match=r"'0' is an nn.Embedding: leave it out of layers"):
        tn.compress(table, bytes=10_000, layers=["0", "1"])
    monkeypatch.setattr(bytes_module, "BYTE_KINDS", tuple(k for k in bytes_module.BYTE_KINDS
                                                          if k != "MultiheadAttention"))
    with pytest.warns(UserWarning, match=r"bytes= converts nn.Linear, nn.Conv1d/2d, nn.LSTM, nn.GRU, their cells and "
                                         r"nn.MultiheadAttention; 1 other layer\(s\) stay dense: 0"):
        small, reports = tn.compress(model, bytes=64 * 32 // 2)
    assert isinstance(small[0], nn.MultiheadAttention) and [r.name for r in reports] == ["1"]


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100", float("nan")])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError, match=r"bytes=.*expected a positive int"):
        tn.compress(_net(), bytes=bad)


def test_a_budget_below_the_smallest_forms_is_refused_in_words():
    with pytest.raises(ValueError, match=r"bytes=100 is below what the smallest forms of these weights take"):
        tn.compress(_net(), bytes=100)
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(16, 8))  # never run: the 16 inputs cost more per weight
    least = Quantization(2, 128).stored_bytes((256, 256)) + Quantization(2, 16).stored_bytes((8, 16))
    with pytest.raises(ValueError, match=r"weight '1' gets .* bytes .* below its smallest form"):
        tn.compress(model, bytes=least)
    _, reports = tn.compress(model, bytes=least, allocation="global")
    assert sum(r.bytes_after for r in reports) <= least


@pytest.mark.parametrize("kwargs, match", [
    (dict(compression=4), "drop compression"),
    (dict(truncation=tnlib.Truncation(max_bond=4)), "drop truncation"),
    (dict(num_cores=2), "drop num_cores"),
    (dict(objective="latency"), "objective='latency' is not available"),
    (dict(allocation="best"), "allocation must be"),
])
def test_options_of_the_mpo_route_are_refused_beside_bytes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tn.compress(_net(), bytes=10_000, **kwargs)


def test_a_complex_weight_is_refused():
    model = nn.Sequential(nn.Linear(64, 64, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex weight"):
        tn.compress(model, bytes=4000)


def test_the_compressed_model_saves_and_loads_exactly(tmp_path):
    net = _net(5)
    small, _ = tn.compress(net, bytes=int(_weights(net) * 2.5 / 8), calibration=_batches())
    tn.save(small, tmp_path / "small.safetensors")
    back = tn.load(tmp_path / "small.safetensors", model=_net(6))
    x = torch.randn(4, 128)
    assert torch.equal(back(x), small(x))
    assert tn.stored_bytes(back) == tn.stored_bytes(small)


def test_gpt2_conv1d_is_quantized_as_its_transpose():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50, n_positions=16,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(7)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 50, (2, 8))
    weights = sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "Conv1D")
    with pytest.warns(UserWarning):
        small, reports = tn.compress(model, bytes=int(weights * 8.4 / 8), calibration=[{"input_ids": ids}])
    assert {r.kind for r in reports} == {"Conv1D"} and all(r.relative_error < 0.02 for r in reports)
    assert all("too few to judge the forms" in r.note for r in reports)  # 16 calibration rows for 64 inputs
    with torch.no_grad():
        a, b = model(ids).logits, small(ids).logits
    assert (a - b).norm() / a.norm() < 0.05
    assert np.isfinite(b.numpy()).all()


@pytest.mark.parametrize("kwargs", [dict(compression=4), dict(bytes=128 * 128)])
def test_progress_shows_the_layers_on_stderr(capsys, kwargs):
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128))
    _, reports = tn.compress(model, progress=True, **kwargs)
    err = capsys.readouterr().err
    assert "compress" in err and "2/2" in err and len(reports) == 2
    _, _ = tn.compress(model, **kwargs)
    assert capsys.readouterr().err == ""  # off by default
    with pytest.raises(TypeError, match="progress must be True or False"):
        tn.compress(model, progress="yes", **kwargs)


@pytest.mark.parametrize(
    "kwargs", [dict(compression=4), dict(bytes=128 * 128), dict(compression=4, allocation="global")]
)
def test_verbose_logs_each_phase_and_layer(capsys, caplog, kwargs):
    import logging

    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128))
    batches = [torch.randn(256, 128) for _ in range(2)]
    logger = logging.getLogger("tnlib.nn")
    handlers, level = list(logger.handlers), logger.level
    _, reports = tn.compress(model, verbose=True, calibration=batches, **kwargs)
    err = capsys.readouterr().err
    assert "tnlib.nn: compress: 2 layer(s) to convert: 0, 2" in err and "recording the input Grams" in err
    assert err.count("layer 0") >= 1 and "layer 2" in err and "compress converted 2 layer(s)" in err
    assert "held_out_error=" in err  # each layer's report, one line
    assert logger.handlers == handlers and logger.level == level  # the handler lived for the call only
    with caplog.at_level(logging.INFO, logger="tnlib.nn"):  # an application's own logging sees the records
        tn.compress(model, **kwargs)
    assert capsys.readouterr().err == "" and any("compress converted" in r.message for r in caplog.records)
    with pytest.raises(TypeError, match="verbose must be True or False"):
        tn.compress(model, verbose=1, **kwargs)


def test_a_calibrated_global_byte_budget_weighs_matrices_by_the_outputs():
    net = _net(8)
    budget = int(_weights(net) * 3 / 8)
    small, reports = tn.compress(net, bytes=budget, calibration=_batches(), allocation="global")
    assert sum(r.bytes_after for r in reports) <= budget and all(r.held_out_error is not None for r in reports)
    from tnlib.nn._convert._bytes import choose_forms, forms_of

    candidates = {"a": forms_of(net[0].weight, None), "b": forms_of(net[2].weight, None)}
    sizes = {"a": net[0].weight.numel(), "b": net[2].weight.numel()}
    total = sum(min(f.stored_bytes for f in fs) for fs in candidates.values()) + 6000
    heavy_a, _ = choose_forms(candidates, sizes, total, "global", {"a": 100.0, "b": 1.0})
    heavy_b, _ = choose_forms(candidates, sizes, total, "global", {"a": 1.0, "b": 100.0})
    assert heavy_a["a"].error < heavy_b["a"].error and heavy_b["b"].error < heavy_a["b"].error


class _Tagger(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM -> GRU -> Linear: recurrent weights of several shapes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.emb = nn.Embedding(40, 32)
        self.lstm = nn.LSTM(32, 32, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(64, 32, batch_first=True)
        self.head = nn.Linear(32, 40)

    def forward(self, tokens):
        return self.head(self.gru(self.lstm(self.emb(tokens))[0])[0])


def _recurrent_weights(model):
    return sum(p.numel() for n, p in model.named_parameters() if ".weight" in n and not n.startswith("emb"))


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("calibrated", [False, True])
def test_recurrent_layers_take_a_form_per_weight_matrix(allocation, calibrated):
    """Every weight of every layer and direction of nn.LSTM / nn.GRU gets its own quantized form within the
    bytes; the layer becomes a QuantizedLSTM / QuantizedGRU whose stored bytes are what the reports count."""
    model = _Tagger().eval()
    batches = [torch.randint(0, 40, (16, 12), generator=torch.Generator().manual_seed(k)) for k in range(8)]
    budget = int(_recurrent_weights(model) * 3 / 8)
    small, reports = tn.compress(model, bytes=budget, allocation=allocation,
                                 calibration=batches if calibrated else None)
    assert isinstance(small.lstm, tn.QuantizedLSTM) and isinstance(small.gru, tn.QuantizedGRU)
    assert isinstance(small.head, tn.QuantizedLinear) and isinstance(small.emb, nn.Embedding)
    by_name = {r.name: r for r in reports}
    assert [len(by_name[n].layouts) for n in ("lstm", "gru", "head")] == [8, 2, 1]  # one form per matrix
    assert by_name["lstm"].kind == "LSTM" and by_name["gru"].kind == "GRU"
    assert sum(r.bytes_after for r in reports) <= budget
    biases = sum(p.numel() * 4 for n, p in model.named_parameters() if ".bias" in n)
    assert tn.stored_bytes(small) == sum(r.bytes_after for r in reports) + biases + model.emb.weight.numel() * 4
    assert all((r.held_out_error is not None) == calibrated for r in reports)
    x = batches[0]
    with torch.no_grad():
        error = float((small(x) - model(x)).norm() / model(x).norm())
    assert error < 0.5


def test_a_recurrent_layers_pooled_error_is_its_matrices():
    """The report's relative error is that of all the layer's matrices together: ``||W - Q||_F / ||W||_F`` over
    the stack, from the weights the built layer stores."""
    model = _Tagger().eval()
    small, reports = tn.compress(model, bytes=int(_recurrent_weights(model) * 3 / 8), layers=["gru"])
    (report,) = reports
    stored = small.gru.to_dense()
    num = den = 0.0
    for name in ("weight_ih_l0", "weight_hh_l0"):
        w = getattr(model.gru, name).detach().double()
        num += float((w - getattr(stored, name).detach().double()).norm() ** 2)
        den += float(w.norm() ** 2)
    assert report.relative_error == pytest.approx((num / den) ** 0.5, rel=1e-6)
    assert report.params_before == 96 * 64 + 96 * 32 and report.bytes_before == 4 * report.params_before


def test_the_chosen_form_is_refitted_on_every_calibration_row():
    """The choice is made on a held-out fold; what is stored is then the chosen width, group and rank fitted by GPTQ
    in the Gram of all the calibration rows, exactly as tnlib.quantize / quantize_low_rank give it."""
    net = _net(4).double()
    batches = [b.double() for b in _batches(4)]
    budget = int(_weights(net) * 3 / 8)
    small, reports = tn.compress(net, bytes=budget, calibration=batches)
    grams = tn.record_grams(net, ["0", "2", "4"], batches)
    for name in ("0", "2", "4"):
        layer, w = small.get_submodule(name), net.get_submodule(name).weight.detach().numpy()
        q, c = Quantization(layer.bits, layer.group_size), grams[name]["weight"].numpy()
        if layer.rank is None:
            expected = tnlib.quantize(w, q, gram=c).dequantize()
        else:
            u, v = tnlib.quantize_low_rank(w, layer.rank, q, gram=c)
            expected = u.dequantize() @ v.dequantize()
        np.testing.assert_allclose(layer.dense_weight(torch.float64).numpy(), expected, atol=1e-12)
        report = next(r for r in reports if r.name == name)
        assert report.output_error == pytest.approx(relative_error(w, expected, c), rel=1e-9)


class _Streaming(nn.Module):
    """Conv1d features, an LSTMCell run in the model's own loop, a Linear head (a voice-activity detector's
    shape)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.conv = nn.Conv1d(3, 32, 3, padding=1)
        self.cell = nn.LSTMCell(32, 32)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        feats = torch.relu(self.conv(x))
        h = c = feats.new_zeros(x.shape[0], 32)
        outs = []
        for t in range(feats.shape[-1]):
            h, c = self.cell(feats[..., t], (h, c))
            outs.append(self.head(h))
        return torch.stack(outs, 1)


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_convolutions_and_cells_take_byte_budgets(allocation):
    model = _Streaming().eval()
    batches = [torch.randn(4, 3, 20, generator=torch.Generator().manual_seed(k)) for k in range(8)]
    weights = sum(p.numel() for n, p in model.named_parameters() if "weight" in n)
    budget = weights * 4 // 8
    small, reports = tn.compress(model, bytes=budget, calibration=batches, allocation=allocation)
    assert isinstance(small.conv, tn.QuantizedConv1d) and isinstance(small.cell, tn.QuantizedLSTMCell)
    assert [len(r.layouts) for r in reports] == [1, 2, 1] and [r.kind for r in reports] == ["Conv1d", "LSTMCell",
                                                                                             "Linear"]
    assert sum(r.bytes_after for r in reports) <= budget
    assert all(r.held_out_error is not None for r in reports)
    biases = sum(p.numel() * 4 for n, p in model.named_parameters() if "bias" in n)
    assert tn.stored_bytes(small) == sum(r.bytes_after for r in reports) + biases
    with torch.no_grad():
        x = batches[0]
        assert float((small(x) - model(x)).norm() / model(x).norm()) < 0.3


def test_a_weight_whose_calibration_inputs_are_all_zero_is_chosen_by_weight_error():
    """A cell called from a zero state once per batch never multiplies its recurrent weight by anything: that
    weight's Gram is zero, so its form is chosen by weight error (said in the report), not refused."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Linear(64, 32), nn.LSTMCell(32, 32))
    batches = [torch.randn(16, 64) for _ in range(8)]
    small, reports = tn.compress(model, bytes=(32 * 64 + 2 * 128 * 32) * 5 // 8, calibration=batches)
    cell = next(r for r in reports if r.name == "1")
    assert isinstance(small[1], tn.QuantizedLSTMCell) and "all zero" in cell.note
    assert "all zero" not in next(r for r in reports if r.name == "0").note
