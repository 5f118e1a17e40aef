"""QuantizedMultiheadAttention: the four projections of an attention as codes, torch's attention on what they stand
for; and compress(bytes=) on torch's transformer layers."""

import warnings

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


def _mha(embed, heads, kdim, vdim, batch_first, bias, seed):
    torch.manual_seed(seed)
    return nn.MultiheadAttention(embed, heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first).double()


@settings(max_examples=25, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), other=st.booleans(), batch_first=st.booleans(), bias=st.booleans(),
       bits=st.sampled_from([8, 4, 3, 2]), rank=st.sampled_from([None, 8]), need_weights=st.booleans(),
       masks=st.booleans(), unbatched=st.booleans(), seed=st.integers(0, 2**16))
def test_the_layer_is_torch_attention_on_the_stored_matrices(heads, other, batch_first, bias, bits, rank,
                                                             need_weights, masks, unbatched, seed):
    """Whatever the form of each projection, the layer computes torch's attention with the matrices its codes stand
    for (its to_dense), masks, layouts and returned weights included."""
    kdim, vdim = (24, 40) if other else (None, None)
    mha = _mha(32, heads, kdim, vdim, batch_first, bias, seed)
    layer = tn.QuantizedMultiheadAttention.from_mha(mha, Quantization(bits, 8), rank=rank).eval()
    dense = layer.to_dense().eval()
    assert type(dense) is nn.MultiheadAttention and layer.ranks == (rank,) * 4 and layer.bits == (bits,) * 4
    gen = torch.Generator().manual_seed(seed)
    lead = () if unbatched else (3,)

    def shape(n, f):
        return (n, f) if unbatched else ((3, n, f) if batch_first else (n, 3, f))

    q = torch.randn(*shape(5, 32), generator=gen, dtype=torch.float64)
    k = torch.randn(*shape(6, kdim or 32), generator=gen, dtype=torch.float64)
    v = torch.randn(*shape(6, vdim or 32), generator=gen, dtype=torch.float64)
    kwargs = {}
    if masks:
        padding = torch.zeros(*lead, 6, dtype=torch.float64)  # additive, as the attn_mask (torch wants one type)
        padding[..., -2:] = -1e9
        kwargs = dict(key_padding_mask=padding, attn_mask=torch.randn(5, 6, generator=gen, dtype=torch.float64))
    with torch.no_grad():
        got = layer(q, k, v, need_weights=need_weights, **kwargs)
        want = dense(q, k, v, need_weights=need_weights, **kwargs)
    torch.testing.assert_close(got[0], want[0], atol=1e-10, rtol=1e-10)
    if need_weights:
        torch.testing.assert_close(got[1], want[1], atol=1e-10, rtol=1e-10)
    else:
        assert got[1] is None


def test_eight_bits_stay_close_to_the_dense_attention_and_store_a_quarter():
    mha = _mha(64, 4, None, None, True, True, 0).float().eval()
    layer = tn.QuantizedMultiheadAttention.from_mha(mha, Quantization(8, None)).eval()
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        want, got = mha(x, x, x)[0], layer(x, x, x)[0]
    assert float((got - want).norm() / want.norm()) < 0.01
    weights = 4 * 64 * 64
    assert weights + 4 * 64 * 6 >= tn.stored_bytes(layer) - 4 * (3 * 64 + 64) >= weights  # codes, row scales, biases


def test_gptq_in_the_recorded_grams_fits_the_outputs_better():
    """The rows each projection multiplies (recorded by record_grams: query, key, value and the heads' output)
    are the metric GPTQ compensates its rounding in."""
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(64, 4, batch_first=True).double().eval()

    class Self(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x)[0]

    model = Self()
    mix = torch.randn(64, 64, dtype=torch.float64) * torch.logspace(0, -2, 64, dtype=torch.float64)
    batches = [torch.randn(8, 12, 64, dtype=torch.float64) @ mix for _ in range(6)]
    grams = tn.record_grams(model, ["attn"], batches)["attn"]
    assert sorted(grams) == ["weight_k", "weight_out", "weight_q", "weight_v"]
    q = Quantization(3, 32)
    plain = tn.QuantizedMultiheadAttention.from_mha(mha, q)
    aware = tn.QuantizedMultiheadAttention.from_mha(mha, q, metrics={k: tnlib.Metric(g) for k, g in grams.items()})
    test = torch.randn(8, 12, 64, dtype=torch.float64) @ mix
    with torch.no_grad():
        ref = mha(test, test, test)[0]
        assert (aware(test, test, test)[0] - ref).norm() < 0.9 * (plain(test, test, test)[0] - ref).norm()


def test_save_load_compile_and_onnx_keep_the_codes(tmp_path):
    torch.manual_seed(4)
    mha = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    layer = tn.QuantizedMultiheadAttention.from_mha(mha, Quantization(4, 32), rank=32).eval()
    x = torch.randn(2, 7, 64)
    back = assert_saves_loads_and_compiles(layer, x, tmp_path / "q.safetensors", attention=True)
    assert back.ranks == (32,) * 4 and back.bits == (4,) * 4
    assert_exports_codes(FirstOutput(layer, attention=True), layer, x, tmp_path / "q.onnx",
                         lambda b: torch.randn(b, 7, 64),
                         nodes=8, largest=64 * 32)  # U and V of four projections


def test_bad_input_is_refused_in_words():
    mha = nn.MultiheadAttention(16, 2)
    with pytest.raises(TypeError, match="mha must be a torch.nn.MultiheadAttention, got Linear"):
        tn.QuantizedMultiheadAttention.from_mha(nn.Linear(16, 16))
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn"):
        tn.QuantizedMultiheadAttention.from_mha(nn.MultiheadAttention(16, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match=r"rank=17 exceeds min\(16, 16\) of weight_q"):
        tn.QuantizedMultiheadAttention.from_mha(mha, rank=17)
    with pytest.raises(ValueError, match="mha.weight_q: group_size=32 does not divide"):
        tn.QuantizedMultiheadAttention.from_mha(mha, Quantization(4, 32))
    with pytest.raises(ValueError, match=r"metrics names \['in_proj_weight'\]"):
        tn.QuantizedMultiheadAttention.from_mha(mha, metrics={"in_proj_weight": tnlib.Metric(np.eye(16))})
    with pytest.raises(TypeError, match=r"metrics must map weight names \(weight_q, weight_k, \.\.\.\)"):
        tn.QuantizedMultiheadAttention.from_mha(mha, metrics=[np.eye(16)])
    with pytest.raises(TypeError, match="quantization must be a tnlib.Quantization"):
        tn.QuantizedMultiheadAttention.from_mha(mha, 8)
    with torch.no_grad():
        mha.out_proj.weight[2, 3] = float("nan")
    with pytest.raises(ValueError, match="weight_out"):
        tn.QuantizedMultiheadAttention.from_mha(mha)
    layer = tn.QuantizedMultiheadAttention.from_mha(nn.MultiheadAttention(16, 2), Quantization(8, None))
    x = torch.randn(3, 2, 16)
    with pytest.raises(TypeError, match="query has dtype torch.float64"):
        layer(x.double(), x, x)
    with pytest.raises(ValueError, match=r"key has shape \(3, 2, 4\); expected \(\.\.\., 16\)"):
        layer(x, torch.randn(3, 2, 4), x)


def test_compress_by_bytes_converts_torch_transformer_layers_and_keeps_their_masks():
    """A TransformerEncoder's attentions take their share of a byte budget (they stayed dense before), each
    projection its own form; the result runs with a padding mask, off torch's fused paths, within the budget."""
    torch.manual_seed(5)
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    mix = torch.randn(64, 64) * torch.logspace(0, -1, 64)
    batches = [torch.randn(8, 10, 64) @ mix for _ in range(8)]
    weights = 2 * (4 * 64 * 64 + 2 * 64 * 128)
    budget = weights // 2  # 4 bits a weight with room for the scales
    small, reports = tn.compress(model, bytes=budget, calibration=batches)
    attention = [r for r in reports if r.kind == "MultiheadAttention"]
    assert len(attention) == 2 and all(len(r.layouts) == 4 for r in attention)
    assert all(isinstance(small.layers[k].self_attn, tn.QuantizedMultiheadAttention) for k in range(2))
    assert sum(r.bytes_after for r in reports) <= budget
    x = torch.randn(3, 10, 64) @ mix
    padding = torch.zeros(3, 10, dtype=torch.bool)
    padding[1, 6:] = True
    with torch.no_grad():
        with warnings.catch_warnings():  # torch's own model takes its nested-tensor path and says it is a prototype
            warnings.simplefilter("ignore", UserWarning)
            want = model(x, src_key_padding_mask=padding)
        got = small(x, src_key_padding_mask=padding)  # off that path: no warning
    assert small.use_nested_tensor is False
    keep = ~padding
    assert float((got[keep] - want[keep]).norm() / want[keep].norm()) < 0.1
