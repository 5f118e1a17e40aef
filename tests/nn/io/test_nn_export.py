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
