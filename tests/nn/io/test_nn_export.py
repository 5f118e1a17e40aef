"""ONNX export: onnxruntime runs the file with torch's outputs, and the file stores cores, not dense weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


def flat(args):
    out = []
    for a in args:
        out.extend(flat(a) if isinstance(a, (tuple, list)) else [a])
    return out


def run_onnx(path, args):
    session = ort.InferenceSession(str(path))
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), flat(args))}
    return session.run(None, feeds)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def stored_elements(path):
    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)


MODELS = [
    ("MPOLinear", lambda: tn.MPOLinear(64, 48, bond_dim=6), lambda: (torch.randn(5, 64),)),
    ("MPOLinear 3-d input", lambda: tn.MPOLinear(64, 48, bond_dim=6), lambda: (torch.randn(2, 5, 64),)),
    ("MPOLSTMCell", lambda: tn.MPOLSTMCell(16, 32, bond_dim=4),
     lambda: (torch.randn(2, 16), (torch.randn(2, 32), torch.randn(2, 32)))),
    ("MPOGRUCell", lambda: tn.MPOGRUCell(16, 32, bond_dim=4), lambda: (torch.randn(2, 16), torch.randn(2, 32))),
    ("MPOLSTM", lambda: tn.MPOLSTM(16, 32, bond_dim=4, num_layers=2), lambda: (torch.randn(6, 2, 16),)),
    ("MPOGRU bidirectional", lambda: tn.MPOGRU(16, 32, bond_dim=4, bidirectional=True),
     lambda: (torch.randn(6, 2, 16),)),
    ("Sequential", lambda: nn.Sequential(tn.MPOLinear(64, 64, bond_dim=4), nn.ReLU(), nn.Linear(64, 10)),
     lambda: (torch.randn(3, 64),)),
]


@pytest.mark.parametrize("name, make, args", MODELS, ids=[m[0] for m in MODELS])
def test_onnxruntime_matches_torch_and_the_file_stores_no_more_than_the_parameters(name, make, args, tmp_path):
    torch.manual_seed(0)
    model, inputs = make().eval(), args()
    path = tn.export_onnx(model, inputs, tmp_path / "model.onnx")
    got = run_onnx(path, inputs)
    with torch.no_grad():
        want = model(*inputs)
    want = flat([want]) if isinstance(want, torch.Tensor) else flat(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5)
    # cores (and biases) are stored as they are: never merged into larger tensors, never the dense matrix
    assert stored_elements(path) <= num_params(model) + 64


def test_file_size_is_the_dense_size_over_the_compression_ratio(tmp_path):
    torch.manual_seed(0)
    cell = nn.LSTMCell(256, 256).eval()
    mpo_cell = tn.MPOLSTMCell.from_lstm_cell(cell, tnlib.Truncation(max_bond=16)).eval()
    ratio = num_params(cell) / num_params(mpo_cell)
    x, h, c = torch.randn(1, 256), torch.randn(1, 256), torch.randn(1, 256)
    dense = tn.export_onnx(cell, (x, (h, c)), tmp_path / "dense.onnx").stat().st_size
    small = tn.export_onnx(mpo_cell, (x, (h, c)), tmp_path / "mpo.onnx").stat().st_size
    assert ratio > 10
    assert small <= 1.10 * dense / ratio


def test_training_mode_and_bad_arguments_are_refused(tmp_path):
    layer = tn.MPOLinear(16, 16, bond_dim=2)
    with pytest.raises(ValueError, match="training mode.*eval"):
        tn.export_onnx(layer, (torch.randn(1, 16),), tmp_path / "x.onnx")
    layer.eval()
    with pytest.raises(TypeError, match="args must be a tuple"):
        tn.export_onnx(layer, torch.randn(1, 16), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        tn.export_onnx(lambda x: x, (torch.randn(1, 16),), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="args must hold torch tensors"):
        tn.export_onnx(layer, ("text",), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_a_wrong_example_input_fails_in_the_models_words(tmp_path):
    layer = tn.MPOLinear(16, 8, bond_dim=2).eval()
    message = r"args \(\(2, 12\)\) do not run through MPOLinear: ValueError: input has 12 features"
    with pytest.raises(ValueError, match=message):
        tn.export_onnx(layer, (torch.randn(2, 12),), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


DYNAMIC = [
    ("MPOLinear", lambda: tn.MPOLinear(64, 48, bond_dim=6), lambda b: (torch.randn(b, 64),)),
    ("MPOLinear 3-d", lambda: tn.MPOLinear(64, 48, bond_dim=6), lambda b: (torch.randn(b, 5, 64),)),
    ("MPOLSTMCell", lambda: tn.MPOLSTMCell(16, 32, bond_dim=4),
     lambda b: (torch.randn(b, 16), (torch.randn(b, 32), torch.randn(b, 32)))),
    ("MPOGRUCell", lambda: tn.MPOGRUCell(16, 32, bond_dim=4), lambda b: (torch.randn(b, 16), torch.randn(b, 32))),
    ("MPOLSTM", lambda: tn.MPOLSTM(16, 32, bond_dim=4, num_layers=2), lambda b: (torch.randn(6, b, 16),)),
    ("MPOGRU batch_first bidirectional", lambda: tn.MPOGRU(16, 32, bond_dim=4, bidirectional=True, batch_first=True),
     lambda b: (torch.randn(b, 6, 16),)),
    ("MPOConv2d", lambda: tn.MPOConv2d.from_conv2d(nn.Conv2d(8, 16, 3, padding=1), tnlib.Truncation(max_bond=4)),
     lambda b: (torch.randn(b, 8, 10, 10),)),
    ("MPOEmbedding", lambda: tn.MPOEmbedding.from_embedding(nn.Embedding(100, 32), tnlib.Truncation(max_bond=4)),
     lambda b: (torch.randint(0, 100, (b, 5)),)),
    ("QuantizedLinear low rank", lambda: tn.QuantizedLinear(64, 48, tnlib.Quantization(4, 16), rank=16),
     lambda b: (torch.randn(b, 64),)),
    ("compressed Sequential", lambda: tn.compress(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
                                                  compression=4)[0], lambda b: (torch.randn(b, 64),)),
]


EXPORTED = DYNAMIC + [
    ("TuckerConv2d", lambda: tn.TuckerConv2d.from_conv2d(nn.Conv2d(8, 16, 3, padding=1), ranks=(6, 4)),
     lambda b: (torch.randn(b, 8, 10, 10),)),
    ("TuckerConv1d", lambda: tn.TuckerConv1d.from_conv1d(nn.Conv1d(8, 16, 3, padding=1), ranks=(6, 4)),
     lambda b: (torch.randn(b, 8, 20),)),
    ("MPOMultiheadAttention", lambda: tn.MPOMultiheadAttention.from_mha(nn.MultiheadAttention(16, 2, batch_first=True),
                                                                       tnlib.Truncation(max_bond=2)),
     lambda b: (torch.randn(b, 5, 16),)),
]


@pytest.mark.parametrize("name, make, args", EXPORTED, ids=[m[0] for m in EXPORTED])
def test_torch_export_with_a_batch_dim(name, make, args):
    """torch.export.export with one Dim("batch") on every input's batch axis: the program runs at other batches."""
    torch.manual_seed(0)
    model = make().eval()
    example = args(2)
    batch = torch.export.Dim("batch", min=1, max=1024)
    axis = 1 if name == "MPOLSTM" else 0  # nn.LSTM's default layout: (time, batch, features)

    def dims(a):
        return tuple(dims(x) for x in a) if isinstance(a, (tuple, list)) else {axis: batch}

    program = torch.export.export(model, example, dynamic_shapes=dims(example))
    for b in (1, 5, 9):
        inputs = args(b)
        with torch.no_grad():
            got, want = program.module()(*inputs), model(*inputs)
        got = flat([got]) if isinstance(got, torch.Tensor) else flat(got)
        want = flat([want]) if isinstance(want, torch.Tensor) else flat(want)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, make, args", DYNAMIC, ids=[m[0] for m in DYNAMIC])
def test_the_batch_stays_free_in_the_file(name, make, args, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    path = tn.export_onnx(model, args(1), tmp_path / "model.onnx")  # an example batch of 1
    for b in (1, 3, 7):
        inputs = args(b)
        got = run_onnx(path, inputs)
        with torch.no_grad():
            want = model(*inputs)
        want = flat([want]) if isinstance(want, torch.Tensor) else flat(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4)


def test_a_fixed_batch_on_request_and_bad_batch_axes(tmp_path):
    layer = tn.MPOLinear(16, 8, bond_dim=2).eval()
    path = tn.export_onnx(layer, (torch.randn(2, 16),), tmp_path / "fixed.onnx", dynamic_batch=False)
    session = ort.InferenceSession(str(path))
    assert session.get_inputs()[0].shape == [2, 16]
    with pytest.raises(ValueError, match=r"batch_axes\[0\]=3 is not an axis of input 0"):
        tn.export_onnx(layer, (torch.randn(2, 16),), tmp_path / "x.onnx", batch_axes=[3])
    with pytest.raises(ValueError, match="batch_axes has 2 entries for 1 input tensors"):
        tn.export_onnx(layer, (torch.randn(2, 16),), tmp_path / "x.onnx", batch_axes=[0, 0])


def test_a_model_that_fixes_its_batch_is_named(tmp_path):
    class Fixed(nn.Module):
        def forward(self, x):
            return x.reshape(2, -1).sum(0)  # the batch of 2 written into the model

    with pytest.raises(ValueError, match="Fixed fixes the batch size.*dynamic_batch=False"):
        tn.export_onnx(Fixed().eval(), (torch.randn(2, 4),), tmp_path / "x.onnx")


def test_a_small_bert_exports_at_a_free_batch(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()
    small, reports = tn.compress(bert, compression=2)
    assert len(reports) == 7  # query, key, value, attention output, intermediate, output and the pooler

    class Encoder(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(input_ids=ids).last_hidden_state

    model = Encoder(small).eval()
    path = tn.export_onnx(model, (torch.randint(0, 50, (2, 8)),), tmp_path / "bert.onnx")
    for b in (1, 5):
        ids = torch.randint(0, 50, (b, 8))
        (got,) = run_onnx(path, (ids,))
        with torch.no_grad():
            np.testing.assert_allclose(got, model(ids).numpy(), atol=1e-4)


@pytest.mark.parametrize("bits, group_size, rank", [(8, None, None), (4, 16, None), (3, 16, None), (2, 32, None),
                                                    (4, 16, 16), (8, 16, 32)])
def test_quantized_layers_export_their_codes_as_dequantize_nodes(bits, group_size, rank, tmp_path):
    """The file holds the codes (uint8, or uint4 two to a byte for 2-4 bits) and DequantizeLinear nodes with
    group-wise scales, not the float weight; onnxruntime gives torch's outputs at any batch."""
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(256, 384), nn.ReLU(), nn.Linear(384, 64)).eval()
    q = tnlib.Quantization(bits, group_size)
    model = nn.Sequential(tn.QuantizedLinear.from_linear(dense[0], q, rank=rank), nn.ReLU(),
                          tn.QuantizedLinear.from_linear(dense[2], q, rank=rank)).eval()
    path = tn.export_onnx(model, (torch.randn(2, 256),), tmp_path / "q.onnx")
    proto = onnx.load(str(path))
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) == (2 if rank is None else 4)
    kind = onnx.TensorProto.UINT8 if bits == 8 else onnx.TensorProto.UINT4  # codes of <= 4 bits: two to a byte
    codes = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type == kind)
    weights = sum(a * b for m in model if isinstance(m, tn.QuantizedLinear) for a, b in m.factor_shapes)
    assert codes >= weights and not any(t.data_type == onnx.TensorProto.FLOAT and int(np.prod(t.dims)) >= 384 * 64 // 2
                                        for t in proto.graph.initializer)
    if rank is None:
        float_file = tn.export_onnx(dense, (torch.randn(2, 256),), tmp_path / "d.onnx").stat().st_size
        per_code = 1.0 if bits == 8 else 0.5
        scales = 4.0 / (group_size or 64)  # float32 scales per weight
        assert path.stat().st_size < (per_code + scales + 0.1) / 4 * float_file  # + zero points, biases, graph
    assert not any(k.startswith("onnx_") for m in model.modules() for k in m._buffers)  # removed after export
    for batch in (1, 7):
        x = torch.randn(batch, 256)
        with torch.no_grad():
            np.testing.assert_allclose(run_onnx(path, (x,))[0], model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_quantized_export_needs_opset_21_and_scales_beyond_float32_export_the_weight(tmp_path):
    layer = tn.QuantizedLinear.from_linear(nn.Linear(32, 16), tnlib.Quantization(4, 16)).eval()
    with pytest.raises(ValueError, match="opset_version=18: quantized layers export as DequantizeLinear.*opset 21"):
        tn.export_onnx(layer, (torch.randn(2, 32),), tmp_path / "q.onnx", opset_version=18)
    huge = nn.Linear(32, 16).double()
    with torch.no_grad():
        huge.weight.mul_(1e200)
        huge.bias.zero_()
    big = tn.QuantizedLinear.from_linear(huge, tnlib.Quantization(8, 16)).eval()
    path = tn.export_onnx(big, (torch.randn(2, 32, dtype=torch.float64),), tmp_path / "big.onnx")
    assert not any(n.op_type == "DequantizeLinear" for n in onnx.load(str(path)).graph.node)
    x = torch.randn(3, 32, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(path, (x,))[0], big(x).numpy(), rtol=1e-12)
