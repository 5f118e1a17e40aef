"""QuantizedLinear: packed codes as buffers, dequantized on the fly, saved and loaded exactly."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.nn._layers._quantized_store import unpack_codes  # noqa: E402
from tnlib.quantization import BITS, Quantization, pack, unpack  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from(BITS), count=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_torch_unpack_matches_numpy(bits, count, seed):
    codes = np.random.default_rng(seed).integers(0, 2**bits, size=count)
    packed = pack(codes, bits)
    assert np.array_equal(unpack_codes(torch.from_numpy(packed), bits, count).numpy(), unpack(packed, bits, count))


@pytest.mark.parametrize("rank", [None, 16])
@pytest.mark.parametrize("bits", BITS)
def test_forward_is_the_dequantized_matrix(bits, rank):
    torch.manual_seed(0)
    dense = nn.Linear(64, 48).double()
    q = Quantization(bits, 16)
    layer = tn.QuantizedLinear.from_linear(dense, q, rank=rank)
    w = dense.weight.detach().numpy()
    factors = [tnlib.quantize(w, q)] if rank is None else list(tnlib.quantize_low_rank(w, rank, q))
    expected = factors[0].dequantize() if rank is None else factors[0].dequantize() @ factors[1].dequantize()
    assert torch.allclose(layer.dense_weight(), torch.from_numpy(expected), atol=1e-12)
    x = torch.randn(5, 3, 64, dtype=torch.float64)
    assert torch.allclose(layer(x), x @ torch.from_numpy(expected).T + dense.bias, atol=1e-10)
    weights = sum(f.stored_bytes for f in factors)
    assert tn.stored_bytes(layer) == weights + 48 * 8  # the packed weight and a float64 bias
    assert list(layer.parameters()) == [layer.bias]  # codes and scales are buffers: never trained


def test_calibrated_layer_fits_the_outputs_better():
    torch.manual_seed(1)
    mix = torch.randn(64, 64, dtype=torch.float64)
    fit, test = torch.randn(4000, 64, dtype=torch.float64) @ mix, torch.randn(4000, 64, dtype=torch.float64) @ mix
    dense = nn.Linear(64, 32).double()
    q = Quantization(3, 32)
    plain = tn.QuantizedLinear.from_linear(dense, q)
    aware = tn.QuantizedLinear.from_linear(dense, q, metric=tnlib.Metric.from_rows(fit))
    with torch.no_grad():
        ref = dense(test)
        assert (aware(test) - ref).norm() < 0.8 * (plain(test) - ref).norm()


@pytest.mark.parametrize("rank", [None, 32])
def test_save_and_load_are_exact(tmp_path, rank):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    model[0] = tn.QuantizedLinear.from_linear(model[0], Quantization(4, 32), rank=rank)
    tn.save(model, tmp_path / "q.safetensors")
    back = tn.load(tmp_path / "q.safetensors", model=nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)))
    assert isinstance(back[0], tn.QuantizedLinear) and back[0].rank == rank
    for name, buf in model[0].named_buffers():
        assert torch.equal(buf, back[0].get_buffer(name)) and buf.dtype == back[0].get_buffer(name).dtype
    x = torch.randn(4, 64)
    assert torch.equal(back(x), model(x))
    tn.save(model[0], tmp_path / "layer.safetensors")
    alone = tn.load(tmp_path / "layer.safetensors")
    assert isinstance(alone, tn.QuantizedLinear) and torch.equal(alone(x), model[0](x))


def test_a_tampered_header_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = nn.Sequential(tn.QuantizedLinear.from_linear(nn.Linear(64, 16), Quantization(4, 32)))
    path = tmp_path / "q.safetensors"
    tn.save(model, path)
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    header = json.loads(meta["tnlib.nn"])
    header["layers"]["0"]["attrs"]["bits"] = 3
    save_file(load_file(str(path)), str(path), metadata={"tnlib.nn": json.dumps(header)})
    with pytest.raises(ValueError, match="does not run with the saved settings"):
        tn.load(path, model=nn.Sequential(nn.Linear(64, 16)))


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="torch.nn.Linear"):
        tn.QuantizedLinear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(TypeError, match="tnlib.Quantization"):
        tn.QuantizedLinear.from_linear(nn.Linear(8, 8), 4)
    with pytest.raises(ValueError, match="rank=9 exceeds"):
        tn.QuantizedLinear.from_linear(nn.Linear(8, 8), Quantization(8, None), rank=9)
    with pytest.raises(ValueError, match="group_size=64 does not divide the 8 columns"):
        tn.QuantizedLinear(8, 4)
    layer = tn.QuantizedLinear(64, 4)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 64\)"):
        layer(torch.randn(2, 63))
    complex_linear = nn.Linear(8, 4, dtype=torch.complex64)
    with pytest.raises(TypeError, match="real weights"):
        tn.QuantizedLinear.from_linear(complex_linear, Quantization(8, None))


def test_new_layer_trains_its_bias_and_repr_says_what_it_stores():
    layer = tn.QuantizedLinear(64, 32, Quantization(4, 16), rank=16)
    assert "bits=4, group_size=16, rank=16" in repr(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.bias.detach().clone()
    layer(torch.randn(3, 64)).sum().backward()
    opt.step()
    assert not torch.equal(before, layer.bias)
    assert layer(torch.randn(2, 64, dtype=torch.float64)).dtype == torch.float64
