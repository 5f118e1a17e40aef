"""MPOMultiheadAttention: nn.MultiheadAttention's function with MPO projections; compress of transformers."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


def _inputs(rng, batch_first, length, source, batch, dims, batched=True):
    def draw(n, e):
        shape = ((batch, n, e) if batch_first else (n, batch, e)) if batched else (n, e)
        return torch.from_numpy(rng.standard_normal(shape)).double()

    return draw(length, dims[0]), draw(source, dims[1]), draw(source, dims[2])


@settings(max_examples=30, deadline=None)
@given(
    batch_first=st.booleans(),
    separate=st.booleans(),
    bias=st.booleans(),
    heads=st.sampled_from([1, 2, 4]),
    mask=st.sampled_from(["none", "padding", "causal", "float3d", "both"]),
    need_weights=st.booleans(),
    average=st.booleans(),
    batched=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_exact_conversion_computes_what_torch_computes(batch_first, separate, bias, heads, mask, need_weights,
                                                       average, batched, seed):
    torch.manual_seed(seed % 1000)
    rng = np.random.default_rng(seed)
    kdim, vdim = (12, 20) if separate else (None, None)
    mha = nn.MultiheadAttention(16, heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first).double().eval()
    layer = tn.MPOMultiheadAttention.from_mha(mha).eval()
    batch, length, source = 3, 5, 5 if mask in ("causal", "both") else 7
    q, k, v = _inputs(rng, batch_first, length, source, batch, (16, kdim or 16, vdim or 16), batched)
    kwargs = {"need_weights": need_weights, "average_attn_weights": average}
    padding = torch.from_numpy(rng.random((batch, source)) < 0.3)
    padding[:, 0] = False  # every query attends to something
    if not batched:
        padding = padding[0]
    if mask == "padding":
        kwargs["key_padding_mask"] = padding
    if mask == "both":  # torch wants both masks of one type
        kwargs["key_padding_mask"] = torch.zeros(padding.shape, dtype=torch.float64).masked_fill(padding, -np.inf)
    if mask in ("causal", "both"):
        kwargs["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(length, dtype=torch.float64)
        kwargs["is_causal"] = True
    if mask == "float3d" and batched:
        kwargs["attn_mask"] = torch.from_numpy(rng.standard_normal((batch * heads, length, source)))
    want, want_w = mha(q, k, v, **kwargs)
    got, got_w = layer(q, k, v, **kwargs)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    assert (got_w is None) == (want_w is None)
    if want_w is not None:
        torch.testing.assert_close(got_w, want_w, atol=1e-12, rtol=1e-10)


def test_gradients_reach_every_core_and_bias():
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    layer = tn.MPOMultiheadAttention.from_mha(mha, tnlib.Truncation(max_bond=2))
    x = torch.randn(2, 4, 16)
    layer(x, x, x)[0].square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    fresh = tn.MPOMultiheadAttention(16, 2, bond_dim=3, batch_first=True)
    assert fresh(x)[0].shape == (2, 4, 16) and fresh.to_dense()(x, x, x)[0].shape == (2, 4, 16)


def _encoder(batch_first=True, layers=2):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=batch_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=True).eval()


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")  # the dense encoder's fast path
def test_compress_converts_attention_whole_and_the_encoder_keeps_working():
    """The issue's case: a TransformerEncoderLayer used to break on its first forward after compress."""
    model = _encoder()
    x = torch.randn(3, 6, 32)
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[1, 4:] = True
    with torch.no_grad():
        want = model(x, src_key_padding_mask=padding)
    with pytest.warns(UserWarning, match="an exact conversion is larger"):
        exact, _ = tn.compress(model, truncation=tnlib.Truncation())
    with torch.no_grad():  # the nested-tensor fast path of the dense encoder zeroes padded rows; compare the rest
        got = exact(x, src_key_padding_mask=padding)
    torch.testing.assert_close(got[~padding], want[~padding], atol=1e-5, rtol=1e-5)
    small, reports = tn.compress(model, compression=2)
    assert [r.name for r in reports] == ["layers.0.self_attn", "layers.0.linear1", "layers.0.linear2",
                                         "layers.1.self_attn", "layers.1.linear1", "layers.1.linear2"]
    assert {r.kind for r in reports} == {"MultiheadAttention", "Linear"}
    assert isinstance(small.layers[0].self_attn, tn.MPOMultiheadAttention) and not small.layers[0].training
    assert sum(p.numel() for p in small.parameters()) < 0.6 * sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        out = small(x, src_key_padding_mask=padding)
        unmasked = small(x)
    assert torch.isfinite(out).all() and torch.isfinite(unmasked).all()
    rel = (out - want)[~padding].norm() / want[~padding].norm()
    assert rel < 0.8


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_calibrated_compress_with_attention(allocation):
    """Each projection is fitted to its own inputs (query, key, value, the heads' output); a global budget
    measures their sensitivities through the packed in_proj_weight. On correlated tokens calibration lowers the
    model's output error on tokens it did not see."""
    model = _encoder()
    basis = torch.randn(6, 32)

    def tokens(n):
        return torch.randn(n, 6, 6) @ basis + 0.05 * torch.randn(n, 6, 32)

    batches = [tokens(8) for _ in range(16)]
    small, reports = tn.compress(model, compression=4, calibration=batches, allocation=allocation)
    attention = [r for r in reports if r.kind == "MultiheadAttention"]
    assert len(attention) == 2 and all(r.held_out_error is not None for r in reports)
    assert sum(r.params_after for r in reports) <= sum(r.params_before for r in reports) / 4 + 64
    plain, _ = tn.compress(model, compression=4)
    x = tokens(16)
    with torch.no_grad():
        want = model(x)
        aware = float((small(x) - want).norm() / want.norm())
        blind = float((plain(x) - want).norm() / want.norm())
    assert aware < 0.8 * blind


class _SelfAttention(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, padding=None):
        return self.inner(x, x, x, key_padding_mask=padding, need_weights=False)[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_recorded_attention_inputs_are_what_the_projections_multiply(batch_first):
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
    model = _SelfAttention(mha)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1)
    grams = tn.record_grams(model, ["inner"], [x])["inner"]
    rows = x.reshape(-1, 8)
    for part in ("weight_q", "weight_k", "weight_v"):
        torch.testing.assert_close(grams[part], rows.T @ rows / rows.shape[0])
    with torch.no_grad():  # the heads' output, from the module's own result: out = heads W_o^T + b_o
        heads = torch.linalg.solve(mha.out_proj.weight, (model(x) - mha.out_proj.bias).reshape(-1, 8).T).T
    torch.testing.assert_close(grams["weight_out"], heads.T @ heads / heads.shape[0], atol=1e-10, rtol=1e-8)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")  # torch's, for batch_first=False
def test_a_decoder_and_seq_first_layers_convert():
    torch.manual_seed(1)
    model = nn.Transformer(32, 4, 1, 1, 64).eval()
    src, tgt = torch.randn(7, 2, 32), torch.randn(5, 2, 32)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        want = model(src, tgt, tgt_mask=causal, tgt_is_causal=True)
    with pytest.warns(UserWarning, match="an exact conversion is larger"):
        exact, reports = tn.compress(model, truncation=tnlib.Truncation())
    assert sum(r.kind == "MultiheadAttention" for r in reports) == 3  # encoder self, decoder self and cross
    with torch.no_grad():
        got = exact(src, tgt, tgt_mask=causal, tgt_is_causal=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_named_layers_follow_what_the_parents_read():
    model = _encoder(layers=1)
    with pytest.raises(ValueError, match="convert its self_attn too"):
        tn.compress(model, compression=2, layers=["layers.0.linear1"])
    small, reports = tn.compress(model, compression=2, layers=["layers.0.self_attn", "layers.0.linear1"])
    assert [r.name for r in reports] == ["layers.0.self_attn", "layers.0.linear1"]
    with pytest.raises(ValueError, match="only the whole attention can be converted"):
        tn.compress(model, compression=2, layers=["layers.0.self_attn.out_proj"])
    with pytest.raises(ValueError, match="which holds it and is converted as a whole"):
        tn.compress(model, compression=2, layers=["layers.0.self_attn", "layers.0.self_attn.out_proj"])
    odd = nn.Sequential(nn.MultiheadAttention(16, 2, add_bias_kv=True))
    with pytest.warns(UserWarning) as caught:
        tn.compress(odd, compression=2)
    said = " ".join(str(w.message) for w in caught)
    assert "'0' (add_bias_kv or add_zero_attn" in said and "'0.out_proj' (MultiheadAttention reads" in said
    assert "compress found no layer to convert" in said


def test_save_load_export_round_trip(tmp_path):
    model = _encoder(layers=1)
    small, _ = tn.compress(model, compression=2)
    path = tmp_path / "encoder.safetensors"
    tn.save(small, path)
    back = tn.load(path, model=_encoder(layers=1))
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        assert torch.equal(back(x), small(x))
    assert not back.layers[0].self_attn.training and back.use_nested_tensor is False
    alone = tmp_path / "attention.safetensors"
    tn.save(small.layers[0].self_attn, alone)
    attention = tn.load(alone).eval()
    with torch.no_grad():
        torch.testing.assert_close(attention(x, x, x)[0], small.layers[0].self_attn(x, x, x)[0])
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["tnlib.nn"])
    header["layers"]["layers.0.self_attn"]["attrs"]["num_heads"] = 8
    save_file(load_file(str(path)), str(path), metadata={"tnlib.nn": json.dumps(header)})
    with pytest.raises(ValueError, match=r"other sizes than model's \(num_heads=8 vs 4\)"):
        tn.load(path, model=_encoder(layers=1))


def test_exports_at_a_free_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    layer = tn.MPOMultiheadAttention.from_mha(nn.MultiheadAttention(16, 2, batch_first=True),
                                              tnlib.Truncation(max_bond=2)).eval()

    class SelfAttention(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x, x, x, need_weights=False)[0]

    model = SelfAttention(layer).eval()
    path = tn.export_onnx(model, (torch.randn(1, 5, 16),), tmp_path / "attention.onnx")
    session = ort.InferenceSession(str(path))
    for batch in (1, 4):
        x = torch.randn(batch, 5, 16)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


def test_bad_input_is_named():
    layer = tn.MPOMultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(2, 4, 16)
    with pytest.raises(ValueError, match=r"query has shape \(2, 4, 8\); expected \(\.\.\., 16\)"):
        layer(torch.randn(2, 4, 8))
    with pytest.raises(TypeError, match="query has dtype torch.float64 but this MPOMultiheadAttention's weights"):
        layer(x.double())
    with pytest.raises(ValueError, match="is_causal=True is a hint"):
        layer(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(4,\); expected \(2, 4\)"):
        layer(x, x, x, key_padding_mask=torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 3\); expected \(4, 4\) or \(4, 4, 4\)"):
        layer(x, x, x, attn_mask=torch.zeros(3, 3))
    with pytest.raises(TypeError, match="attn_mask must be a bool or floating mask"):
        layer(x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn"):
        tn.MPOMultiheadAttention.from_mha(nn.MultiheadAttention(16, 2, add_zero_attn=True))


def test_compress_keeps_the_model_mode():
    """A converted layer takes the mode of the module it replaces: an eval model's LSTM dropout stays off."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(16, 16, num_layers=2, dropout=0.5)).eval()
    x = torch.randn(5, 2, 16)
    with pytest.warns(UserWarning, match="an exact conversion is larger"):
        exact, _ = tn.compress(model, truncation=tnlib.Truncation())
    assert not exact[0].training
    with torch.no_grad():
        torch.testing.assert_close(exact(x)[0], model(x)[0], atol=1e-5, rtol=1e-5)
    trained, _ = tn.compress(model.train(), compression=2)
    assert trained[0].training


def test_a_non_finite_attention_weight_is_named():
    mha = nn.MultiheadAttention(16, 2).eval()
    with torch.no_grad():
        mha.in_proj_weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="mha's weight_q has 1 NaN or infinite entry"):
        tn.MPOMultiheadAttention.from_mha(mha)
    with pytest.raises(ValueError, match="layer '0' in_proj_weight has 1 NaN or infinite entry"):
        tn.compress(nn.Sequential(mha), compression=2)
