"""QuantizedConv1d / QuantizedConv2d: the kernel matrix as codes, a low-rank pair run as two convolutions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.quantization import Quantization  # noqa: E402


def _quantized(conv, q, rank=None, metric=None):
    if isinstance(conv, nn.Conv2d):
        return tn.QuantizedConv2d.from_conv2d(conv, q, rank=rank, metric=metric)
    return tn.QuantizedConv1d.from_conv1d(conv, q, rank=rank, metric=metric)


@settings(max_examples=30, deadline=None)
@given(spatial=st.sampled_from([1, 2]), kernel=st.integers(1, 3), stride=st.integers(1, 2), dilation=st.integers(1, 2),
       padding=st.sampled_from([0, 1, "same"]), bias=st.booleans(), bits=st.sampled_from([8, 4, 3, 2]),
       rank=st.sampled_from([None, 16]), seed=st.integers(0, 2**16))
def test_the_layer_is_the_convolution_of_the_stored_kernel(spatial, kernel, stride, dilation, padding, bias, bits,
                                                           rank, seed):
    """The kernel dequantizes to what tnlib.quantize / quantize_low_rank give for the (out, in * taps) matrix, and the
    layer (one convolution, or two for a low-rank pair) computes the convolution with that kernel."""
    if padding == "same":
        stride = 1
    torch.manual_seed(seed)
    make = nn.Conv1d if spatial == 1 else nn.Conv2d
    conv = make(16, 24, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias).double()
    q = Quantization(bits, 16)
    layer = _quantized(conv, q, rank)
    m = conv.weight.detach().reshape(24, -1).numpy()
    fs = [tnlib.quantize(m, q)] if rank is None else list(tnlib.quantize_low_rank(m, rank, q))
    expected = fs[0].dequantize() if rank is None else fs[0].dequantize() @ fs[1].dequantize()
    np.testing.assert_allclose(layer.kernel().reshape(24, -1).numpy(), expected, atol=1e-12)
    x = torch.randn(2, 16, *(9,) * spatial, dtype=torch.float64)
    run = F.conv1d if spatial == 1 else F.conv2d
    with torch.no_grad():
        want = run(x, layer.kernel(), conv.bias, stride, padding, dilation)
        torch.testing.assert_close(layer(x), want, atol=1e-10, rtol=0)
    assert tn.stored_bytes(layer) == sum(f.stored_bytes for f in fs) + (24 * 8 if bias else 0)


def test_gptq_in_the_patch_gram_fits_the_outputs_better():
    torch.manual_seed(6)
    conv = nn.Conv1d(32, 32, 3).double()
    mix = torch.randn(32, 32, dtype=torch.float64)
    data = [torch.einsum("ij,bjt->bit", mix, torch.randn(8, 32, 40, dtype=torch.float64)) for _ in range(8)]
    gram = tn.record_grams(nn.Sequential(conv), ["0"], data)["0"]["weight"]
    q = Quantization(3, 32)
    plain = tn.QuantizedConv1d.from_conv1d(conv, q)
    aware = tn.QuantizedConv1d.from_conv1d(conv, q, metric=tnlib.Metric(gram))
    test = torch.einsum("ij,bjt->bit", mix, torch.randn(8, 32, 40, dtype=torch.float64))
    with torch.no_grad():
        ref = conv(test)
        assert (aware(test) - ref).norm() < 0.8 * (plain(test) - ref).norm()


@pytest.mark.parametrize("rank", [None, 16])
def test_save_load_compile_and_onnx_keep_the_codes(rank, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(7)
    dense = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 48, 3, stride=2)).eval()
    model = nn.Sequential(tn.QuantizedConv2d.from_conv2d(dense[0], Quantization(4, 16), rank=rank), nn.ReLU(),
                          tn.QuantizedConv2d.from_conv2d(dense[2], Quantization(4, 16), rank=rank)).eval()
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        want = model(x)
    tn.save(model, tmp_path / "q.safetensors")
    back = tn.load(tmp_path / "q.safetensors", model=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                                                   nn.Conv2d(32, 48, 3, stride=2)))
    assert isinstance(back[0], tn.QuantizedConv2d) and back[0].rank == rank
    with torch.no_grad():
        assert torch.equal(back(x), want)
        torch.testing.assert_close(torch.compile(back, fullgraph=True)(x), want, atol=1e-5, rtol=0)
    path = tn.export_onnx(model, (x,), tmp_path / "q.onnx")
    proto = onnx.load(str(path))
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) == (2 if rank is None else 4)
    assert not any(t.data_type == onnx.TensorProto.FLOAT and int(np.prod(t.dims)) >= 32 * 16 * 9 // 2
                   for t in proto.graph.initializer)
    session = ort.InferenceSession(str(path))
    for batch in (1, 3):
        xb = torch.randn(batch, 16, 12, 12)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: xb.numpy()})[0],
                                       model(xb).numpy(), atol=1e-5)


def test_bad_input_is_refused_in_words():
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv1d, got Conv2d"):
        tn.QuantizedConv1d.from_conv1d(nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match="groups=2"):
        tn.QuantizedConv2d.from_conv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match=r"conv.weight as a \(8, 36\) matrix: rank=9 exceeds"):
        tn.QuantizedConv2d.from_conv2d(nn.Conv2d(4, 8, 3), Quantization(8, None), rank=9)
    with pytest.raises(ValueError, match=r"conv.weight as a \(8, 36\) matrix: group_size=64 does not divide"):
        tn.QuantizedConv2d.from_conv2d(nn.Conv2d(4, 8, 3), Quantization(4, 64))
    bad = nn.Conv1d(4, 8, 3)
    with torch.no_grad():
        bad.weight[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="conv.weight"):
        tn.QuantizedConv1d.from_conv1d(bad, Quantization(8, None))


def test_compress_by_bytes_converts_convolutions_with_patch_calibration():
    """A CNN by bytes: every Conv2d and the head take a quantized form within the budget; with calibration each
    form is judged on held-out patches."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()
    weights = sum(m.weight.numel() for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    batches = [torch.randn(8, 3, 16, 16) for _ in range(8)]
    budget = weights * 4 // 8
    small, reports = tn.compress(model, bytes=budget, calibration=batches)
    assert [type(small[i]).__name__ for i in (0, 2, 6)] == ["QuantizedConv2d", "QuantizedConv2d", "QuantizedLinear"]
    assert sum(r.bytes_after for r in reports) <= budget
    assert all(r.held_out_error is not None for r in reports)
    biases = sum(m.bias.numel() * 4 for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert tn.stored_bytes(small) == sum(r.bytes_after for r in reports) + biases
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert float((small(x) - model(x)).norm() / model(x).norm()) < 0.2
