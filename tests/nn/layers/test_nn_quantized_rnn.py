"""QuantizedLSTM / QuantizedGRU: every recurrent weight as codes, the recurrence of torch on what they stand for."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from nn_helpers import FirstOutput, assert_exports_codes, assert_saves_loads_and_compiles  # noqa: E402
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.quantization import Quantization  # noqa: E402


def _rnn(kind, input_size, hidden, layers, bidirectional, batch_first, bias, seed):
    torch.manual_seed(seed)
    make = nn.LSTM if kind == "lstm" else nn.GRU
    return make(input_size, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                bias=bias).double()


def _quantized(rnn, q, rank=None, metrics=None):
    if isinstance(rnn, nn.LSTM):
        return tn.QuantizedLSTM.from_lstm(rnn, q, rank=rank, metrics=metrics)
    return tn.QuantizedGRU.from_gru(rnn, q, rank=rank, metrics=metrics)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["lstm", "gru"]), layers=st.integers(1, 2), bidirectional=st.booleans(),
       batch_first=st.booleans(), bias=st.booleans(), bits=st.sampled_from([8, 4, 3, 2]),
       rank=st.sampled_from([None, 16]), seed=st.integers(0, 2**16))
def test_the_layer_is_torch_recurrence_on_the_stored_matrices(kind, layers, bidirectional, batch_first, bias, bits,
                                                              rank, seed):
    """Each weight dequantizes to what tnlib.quantize / quantize_low_rank give, and the layer's outputs and states
    are those of the dense nn.LSTM / nn.GRU holding those matrices, for any layers, directions and layout."""
    rnn = _rnn(kind, 32, 16, layers, bidirectional, batch_first, bias, seed)
    q = Quantization(bits, 16)
    layer = _quantized(rnn, q, rank)
    dense = layer.to_dense()
    for name, w in rnn.named_parameters():
        if name.startswith("weight"):
            m = w.detach().numpy()
            fs = [tnlib.quantize(m, q)] if rank is None else list(tnlib.quantize_low_rank(m, rank, q))
            expected = fs[0].dequantize() if rank is None else fs[0].dequantize() @ fs[1].dequantize()
            np.testing.assert_allclose(getattr(dense, name).detach().numpy(), expected, atol=1e-12)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 3, 32, generator=gen, dtype=torch.float64)
    x = x.transpose(0, 1) if batch_first else x
    with torch.no_grad():
        got, want = layer(x), dense(x)
    torch.testing.assert_close(got[0], want[0], atol=1e-10, rtol=0)
    for a, b in zip(got[1] if kind == "lstm" else (got[1],), want[1] if kind == "lstm" else (want[1],)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_eight_bits_stay_close_to_the_dense_layer_and_store_a_quarter():
    rnn = nn.LSTM(64, 128, num_layers=2).eval()
    layer = tn.QuantizedLSTM.from_lstm(rnn, Quantization(8, None))
    x = torch.randn(20, 4, 64)
    with torch.no_grad():
        assert (layer(x)[0] - rnn(x)[0]).abs().max() < 5e-3
    codes = sum(int(np.prod(p.shape)) for n, p in rnn.named_parameters() if n.startswith("weight"))
    biases = sum(p.numel() * 4 for n, p in rnn.named_parameters() if n.startswith("bias"))
    scales = 4 * 512 * (2 + 1)  # four matrices of 512 rows, one float16 scale and one 8-bit zero point per row
    assert tn.stored_bytes(layer) == codes + scales + 4 * 2 + biases  # + each matrix's int16 exponent
    assert [p for p in layer.parameters()] == [p for n, p in layer.named_parameters() if n.startswith("bias")]


def test_unbatched_input_initial_states_and_gradients_to_the_biases():
    rnn = nn.GRU(16, 32, num_layers=2)
    layer = tn.QuantizedGRU.from_gru(rnn, Quantization(4, 16))
    dense = layer.to_dense()
    x, h0 = torch.randn(6, 16), torch.randn(2, 32)
    out, h = layer(x, h0)
    ref, ref_h = dense(x, h0)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, ref_h, atol=1e-6, rtol=0)
    out.sum().backward()
    assert layer.bias_ih_l0.grad is not None and layer.bias_hh_l1.grad is not None


def test_gptq_in_the_recorded_grams_fits_the_outputs_better():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 64), nn.LSTM(64, 64)).double()
    mix = torch.randn(8, 8, dtype=torch.float64)
    batches = [torch.randn(20, 16, 8, dtype=torch.float64) @ mix for _ in range(6)]
    grams = tn.record_grams(model, ["1"], batches)["1"]
    rnn = model[1]
    q = Quantization(3, 32)
    plain = tn.QuantizedLSTM.from_lstm(rnn, q)
    aware = tn.QuantizedLSTM.from_lstm(rnn, q, metrics={k: tnlib.Metric(g) for k, g in grams.items()})
    test = model[0](torch.randn(20, 16, 8, dtype=torch.float64) @ mix)
    with torch.no_grad():
        ref = rnn(test)[0]
        assert (aware(test)[0] - ref).norm() < 0.9 * (plain(test)[0] - ref).norm()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_save_load_compile_and_onnx_keep_the_codes(kind, tmp_path):
    torch.manual_seed(4)
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(32, 64, num_layers=2, batch_first=True)
    layer = _quantized(rnn, Quantization(4, 32), rank=32).eval()
    x = torch.randn(2, 7, 32)
    back = assert_saves_loads_and_compiles(layer, x, tmp_path / "q.safetensors")
    assert back.ranks == (32,) * 4 and back.bits == (4,) * 4
    assert_exports_codes(FirstOutput(layer), layer, x, tmp_path / "q.onnx", lambda b: torch.randn(b, 7, 32),
                         nodes=8, largest=64 * 32)  # U and V of four matrices


def test_bad_input_is_refused_in_words():
    lstm = nn.LSTM(8, 16)
    with pytest.raises(TypeError, match="lstm must be a torch.nn.LSTM, got GRU"):
        tn.QuantizedLSTM.from_lstm(nn.GRU(8, 16))
    with pytest.raises(ValueError, match="proj_size"):
        tn.QuantizedLSTM.from_lstm(nn.LSTM(8, 16, proj_size=4))
    with pytest.raises(ValueError, match=r"rank=9 exceeds min\(64, 8\) of weight_ih_l0"):
        tn.QuantizedLSTM.from_lstm(lstm, rank=9)
    with pytest.raises(ValueError, match="lstm.weight_ih_l0: group_size=32 does not divide"):
        tn.QuantizedLSTM.from_lstm(lstm, Quantization(4, 32))
    with pytest.raises(ValueError, match=r"metrics names \['weight_ih_l1'\]"):
        tn.QuantizedLSTM.from_lstm(lstm, metrics={"weight_ih_l1": tnlib.Metric(np.eye(8))})
    with pytest.raises(TypeError, match="quantization must be a tnlib.Quantization"):
        tn.QuantizedLSTM.from_lstm(lstm, 8)
    with torch.no_grad():
        lstm.weight_hh_l0[2, 3] = float("nan")
    with pytest.raises(ValueError, match="lstm.weight_hh_l0"):
        tn.QuantizedLSTM.from_lstm(lstm)
    layer = tn.QuantizedGRU.from_gru(nn.GRU(8, 16), Quantization(8, None))
    with pytest.raises(TypeError, match="input has dtype torch.float64"):
        layer(torch.randn(3, 2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="input has 4 features; this GRU expects 8"):
        layer(torch.randn(3, 2, 4))


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["lstm", "gru"]), bias=st.booleans(), bits=st.sampled_from([8, 4, 2]),
       rank=st.sampled_from([None, 16]), unbatched=st.booleans(), with_state=st.booleans(),
       seed=st.integers(0, 2**16))
def test_a_cell_is_torch_cell_on_the_stored_matrices(kind, bias, bits, rank, unbatched, with_state, seed):
    torch.manual_seed(seed)
    cell = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(32, 16, bias=bias).double()
    q = Quantization(bits, 16)
    layer = (tn.QuantizedLSTMCell.from_lstm_cell(cell, q, rank=rank) if kind == "lstm"
             else tn.QuantizedGRUCell.from_gru_cell(cell, q, rank=rank))
    dense = layer.to_dense()
    for name in ("weight_ih", "weight_hh"):
        m = getattr(cell, name).detach().numpy()
        fs = [tnlib.quantize(m, q)] if rank is None else list(tnlib.quantize_low_rank(m, rank, q))
        expected = fs[0].dequantize() if rank is None else fs[0].dequantize() @ fs[1].dequantize()
        np.testing.assert_allclose(getattr(dense, name).detach().numpy(), expected, atol=1e-12)
    shape = (32,) if unbatched else (3, 32)
    x = torch.randn(*shape, dtype=torch.float64)
    state = None
    if with_state:
        h = torch.randn(*shape[:-1], 16, dtype=torch.float64)
        state = (h, torch.randn_like(h)) if kind == "lstm" else h
    with torch.no_grad():
        got, want = layer(x, state), dense(x, state)
    for a, b in zip(got if kind == "lstm" else (got,), want if kind == "lstm" else (want,)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_cell_saves_compiles_and_exports_its_codes(kind, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(9)
    cell = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(32, 64)
    layer = (tn.QuantizedLSTMCell.from_lstm_cell(cell, Quantization(4, 32)) if kind == "lstm"
             else tn.QuantizedGRUCell.from_gru_cell(cell, Quantization(4, 32))).eval()

    class Step(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, h):
            out = self.inner(x, (h, h) if kind == "lstm" else h)
            return out[0] if kind == "lstm" else out

    model = Step(layer).eval()
    x, h = torch.randn(2, 32), torch.randn(2, 64)
    with torch.no_grad():
        want = model(x, h)
    tn.save(layer, tmp_path / "c.safetensors")
    back = tn.load(tmp_path / "c.safetensors")
    assert type(back) is type(layer) and back.bits == (4, 4)
    with torch.no_grad():
        assert torch.equal(Step(back)(x, h), want)
        torch.testing.assert_close(torch.compile(Step(back), fullgraph=True)(x, h), want, atol=1e-5, rtol=0)
    path = tn.export_onnx(model, (x, h), tmp_path / "c.onnx")
    assert sum(n.op_type == "DequantizeLinear" for n in onnx.load(str(path)).graph.node) == 2
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    for batch in (1, 4):
        xb, hb = torch.randn(batch, 32), torch.randn(batch, 64)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, dict(zip(names, (xb.numpy(), hb.numpy()))))[0],
                                       model(xb, hb).numpy(), atol=1e-5)


def test_a_cell_refuses_bad_input_in_words():
    with pytest.raises(TypeError, match="cell must be a torch.nn.LSTMCell, got GRUCell"):
        tn.QuantizedLSTMCell.from_lstm_cell(nn.GRUCell(4, 8))
    with pytest.raises(ValueError, match=r"cell.weight_hh: group_size=64 does not divide"):
        tn.QuantizedGRUCell.from_gru_cell(nn.GRUCell(64, 8), Quantization(4, 64))
    layer = tn.QuantizedGRUCell.from_gru_cell(nn.GRUCell(8, 16), Quantization(8, None))
    with pytest.raises(ValueError, match="input has 4 features; this cell expects 8"):
        layer(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"hx has shape \(2, 8\); expected \(2, 16\)"):
        layer(torch.randn(2, 8), torch.randn(2, 8))
    with pytest.raises(TypeError, match="input has dtype torch.float64"):
        layer(torch.randn(2, 8, dtype=torch.float64))
