"""MPOConv2d and MPOEmbedding: exact conversions, truncation, compress (with calibration for convolutions),
save/load, torch.compile and ONNX export, and bad input."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn  # noqa: E402
from tnlib.nn._layers._mpo_conv import conv_form  # noqa: E402


class Net(nn.Module):
    """Token embedding + a small convolutional head, as a model with both kinds of layer."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(96, 16, padding_idx=0)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.head = nn.Linear(16 * 8 * 8, 10)

    def forward(self, tokens):
        x = self.emb(tokens).unsqueeze(1)  # (batch, 1, 16 tokens, 16 features)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(x.flatten(1))


def tokens(seed, batch=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 96, (batch, 16), generator=g)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=(3, 5), stride=2, padding=(1, 2)),
                                    dict(kernel_size=1), dict(kernel_size=3, dilation=2, padding="same"),
                                    dict(kernel_size=3, padding="valid", bias=False)])
def test_conv2d_is_exact_without_truncation_and_round_trips(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 12, **kwargs).double()
    layer = tnlib.nn.MPOConv2d.from_conv2d(conv)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), atol=1e-12)
    back = layer.to_conv2d()
    assert isinstance(back, nn.Conv2d) and torch.allclose(back(x), conv(x), atol=1e-12)
    assert layer.kernel().shape == conv.weight.shape


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=5, stride=2, dilation=2),
                                    dict(kernel_size=1, bias=False), dict(kernel_size=3, padding="same")])
def test_conv1d_is_exact_without_truncation_and_round_trips(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 10, **kwargs).double()
    layer = tnlib.nn.MPOConv1d.from_conv1d(conv)
    x = torch.randn(3, 6, 40, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), atol=1e-12)
    assert torch.allclose(layer.to_conv1d()(x), conv(x), atol=1e-12)


def test_calibration_records_the_unfolded_patches_of_convolutions():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(5, 3, 12)
    grams = tnlib.nn.record_grams(nn.Sequential(net[0]), ["0"], [x])
    patches = nn.functional.unfold(x.unsqueeze(2).double(), (1, 3), padding=(0, 1), stride=(1, 2))
    rows = patches.transpose(1, 2).reshape(-1, 9)
    assert torch.allclose(grams["0"]["weight"], rows.T @ rows / rows.shape[0])


def test_conv2d_truncation_trades_weights_for_error_and_trains():
    torch.manual_seed(1)
    conv = nn.Conv2d(32, 64, 3, padding=1)
    layer = tnlib.nn.MPOConv2d.from_conv2d(conv, tnlib.Truncation(max_bond=8))
    assert layer.num_weights < conv.weight.numel() / 2
    x = torch.randn(2, 32, 6, 6)
    err = (layer(x) - conv(x)).norm() / conv(x).norm()
    assert 0 < err < 1
    loss = layer(x).pow(2).mean()
    loss.backward()
    assert all(c.grad is not None for c in layer.cores)


def test_embedding_is_exact_without_truncation_and_never_forms_the_table():
    torch.manual_seed(2)
    emb = nn.Embedding(1000, 48, padding_idx=5).double()
    with torch.no_grad():
        emb.weight[5] = 0.0
    layer = tnlib.nn.MPOEmbedding.from_embedding(emb)
    idx = torch.tensor([[0, 5, 999], [17, 500, 5]])
    assert torch.allclose(layer(idx), emb(idx), atol=1e-12)
    assert layer(idx).shape == (2, 3, 48)
    assert torch.allclose(layer(torch.tensor([5])), torch.zeros(1, 48, dtype=torch.float64), atol=1e-12)  # the row held
    small = tnlib.nn.MPOEmbedding.from_embedding(emb, tnlib.Truncation(max_bond=4))
    assert small.num_weights < emb.weight.numel() / 10
    assert torch.allclose(small.to_embedding().weight, small(torch.arange(1000)))
    assert torch.allclose(layer.to_embedding()(idx), emb(idx), atol=1e-12)


def test_compress_handles_conv2d_and_embedding_with_calibration():
    torch.manual_seed(3)
    net = Net()
    batches = [tokens(k, batch=8) for k in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few calibration rows for conv2's 72 patch features
        small, reports = tnlib.nn.compress(net, compression=2, layers=["emb", "conv1", "conv2"], calibration=batches)
    assert isinstance(small.emb, tnlib.nn.MPOEmbedding)
    assert isinstance(small.conv1, tnlib.nn.MPOConv2d) and isinstance(small.conv2, tnlib.nn.MPOConv2d)
    kinds = {r.name: r.kind for r in reports}
    assert kinds == {"emb": "Embedding", "conv1": "Conv2d", "conv2": "Conv2d"}
    conv2 = next(r for r in reports if r.name == "conv2")
    assert conv2.output_error is not None and conv2.compression_ratio >= 1.9
    emb = next(r for r in reports if r.name == "emb")
    assert emb.output_error is None  # a lookup has no input Gram
    out = small(tokens(99))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert isinstance(net.conv1, nn.Conv2d)  # the original model is untouched


def test_embeddings_are_converted_only_when_named():
    _, reports = tnlib.nn.compress(Net(), compression=2)
    assert {r.kind for r in reports} == {"Conv2d", "Linear"}


def test_compress_exact_conversion_keeps_the_function():
    torch.manual_seed(4)
    net = Net().double()
    with pytest.warns(UserWarning, match=r"an exact conversion is larger"):
        exact, _ = tnlib.nn.compress(net, tnlib.Truncation(), layers=["emb", "conv1", "conv2"])
    t = tokens(5)
    assert torch.allclose(exact(t), net(t), atol=1e-10)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(5)
    small, _ = tnlib.nn.compress(Net(), compression=2, layers=["emb", "conv1", "conv2"])
    path = tmp_path / "net.safetensors"
    tnlib.nn.save(small, path)
    back = tnlib.nn.load(path, model=Net())
    t = tokens(6)
    assert torch.equal(back(t), small(t))
    for layer in (small.conv2, small.emb):  # one layer alone is rebuilt from its file
        tnlib.nn.save(layer, tmp_path / "layer.safetensors")
        alone = tnlib.nn.load(tmp_path / "layer.safetensors")
        assert type(alone) is type(layer) and all(torch.equal(a, b) for a, b in zip(alone.cores, layer.cores))
    with pytest.raises(ValueError, match="Conv2d at 'conv1', but model has a Linear"):
        wrong = Net()
        wrong.conv1 = nn.Linear(3, 3)
        tnlib.nn.load(path, model=wrong)


def test_compiles_with_fullgraph_and_matches_eager():
    torch.manual_seed(6)
    small, _ = tnlib.nn.compress(Net(), compression=2, layers=["emb", "conv1", "conv2"])
    t = tokens(7)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.compile(small, fullgraph=True, backend="aot_eager")
        got = compiled(t)
    assert torch.allclose(got, small(t), atol=1e-5)


def test_onnx_export_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(8)
    small, _ = tnlib.nn.compress(Net(), compression=2, layers=["emb", "conv1", "conv2"])
    small.eval()
    t = tokens(9)
    import tempfile

    path = tempfile.mkdtemp() + "/net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tnlib.nn.export_onnx(small, (t,), path)
    session = ort.InferenceSession(path)
    (got,) = session.run(None, {session.get_inputs()[0].name: t.numpy()})
    with torch.no_grad():
        want = small(t).numpy()
    assert np.allclose(got, want, atol=1e-4)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="groups=2"):
        tnlib.nn.MPOConv2d.from_conv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        tnlib.nn.MPOConv2d.from_conv2d(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv2d"):
        tnlib.nn.MPOConv2d.from_conv2d(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="max_norm"):
        tnlib.nn.MPOEmbedding.from_embedding(nn.Embedding(10, 4, max_norm=1.0))
    with pytest.raises(TypeError, match="from_conv2d"):
        tnlib.nn.MPOConv2d()
    layer = tnlib.nn.MPOEmbedding.from_embedding(nn.Embedding(10, 4))
    with pytest.raises(TypeError, match="indices must be int64 or int32"):
        layer(torch.tensor([1.0]))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")  # silero-vad's loader, torch >= 2.14
def test_the_whole_pretrained_silero_vad_compresses():
    """Every weight of the packaged Silero VAD but its 1 x 128 output (the STFT basis, four Conv1d and the
    LSTMCell) becomes an MPO layer; at 2x the speech probabilities stay close to the original's on held-out
    noise-like audio."""
    pytest.importorskip("silero_vad")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks" / "experiments"))
    import _silero

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load of the package's file
        model = _silero.SileroVAD.pretrained()
    g = torch.Generator().manual_seed(0)
    calibration = [torch.randn(2, 16000, generator=g) * 0.1 for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        layers = ["stft_conv", "conv1", "conv2", "conv3", "conv4", "lstm_cell"]  # final_conv is 1 x 128: too small
        small, reports = tnlib.nn.compress(model, compression=2, layers=layers, calibration=calibration)
    assert {r.kind for r in reports} == {"Conv1d", "LSTMCell"} and len(reports) == 6
    stored = sum(r.params_after for r in reports)
    assert stored <= sum(r.params_before for r in reports) / 1.9
    audio = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        assert (small(audio) - model(audio)).abs().max() < 0.2


def test_embedding_refuses_indices_out_of_range_and_keeps_the_padding_row():
    emb = nn.Embedding(100, 16, padding_idx=3)
    with torch.no_grad():
        emb.weight[3] = 1.0  # a trained padding row need not be zero
    small = tnlib.nn.MPOEmbedding.from_embedding(emb, tnlib.Truncation())
    for bad in (100, -1, 10**6):
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            small(torch.tensor([1, bad]))
        with pytest.raises(IndexError):
            emb(torch.tensor([1, bad]))
    idx = torch.tensor([[3, 5], [99, 0]])
    assert torch.allclose(small(idx), emb(idx), atol=1e-6)
    small(idx).sum().backward()
    dense = nn.Embedding(100, 16)
    dense_small = tnlib.nn.MPOEmbedding.from_embedding(dense, tnlib.Truncation(max_bond=2))
    before = [c.grad for c in small.cores]
    assert all(g is not None for g in before)
    for c in small.cores:
        c.grad = None
    small(torch.tensor([3, 3])).sum().backward()  # only the padding row: no gradient, as nn.Embedding
    assert all(c.grad is None or bool((c.grad == 0).all()) for c in small.cores)
    assert dense_small(torch.tensor([0])).shape == (1, 16)


def test_an_embedding_report_claims_no_flop_ratio():
    net = nn.Sequential(nn.Embedding(1000, 32))
    _, (report,) = tnlib.nn.compress(net, compression=4, layers=["0"])
    assert report.dense_macs is None and report.flop_ratio is None and report.macs > 0


@settings(max_examples=25, deadline=None)
@given(spatial=st.sampled_from([1, 2]), layout=st.sampled_from(["rows first", "columns first", "searched"]),
       rank=st.integers(1, 12), stride=st.integers(1, 2), dilation=st.integers(1, 2), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_inference_runs_the_same_function_without_forming_a_low_rank_kernel(spatial, layout, rank, stride, dilation,
                                                                            bias, seed):
    """An MPO convolution of the truncated SVD's layout runs as two convolutions (``k x k`` to ``rank`` channels,
    then ``1 x 1``) when that costs fewer multiply-adds, else on the kernel (formed once without gradients); either
    gives the outputs and core gradients of the kernel formed from the cores, up to rounding."""
    torch.manual_seed(seed)
    kind, cls = (nn.Conv1d, tnlib.nn.MPOConv1d) if spatial == 1 else (nn.Conv2d, tnlib.nn.MPOConv2d)
    conv = kind(12, 20, 3, stride=stride, dilation=dilation, padding=dilation, bias=bias).double()
    cols = 12 * 3**spatial
    dims = {"rows first": dict(out_dims=(20, 1), in_dims=(1, cols)),
            "columns first": dict(out_dims=(1, 20), in_dims=(cols, 1)), "searched": {}}[layout]
    layer = cls.from_mpo(tnlib.MPO.from_matrix(conv.weight.detach().reshape(20, -1), truncation=tnlib.Truncation(
        max_bond=rank), **dims), conv) if dims else cls._from_conv(conv, tnlib.Truncation(max_bond=rank), None, None,
                                                                  None, None, None)
    x = torch.randn(2, 12, *(9,) * spatial, dtype=torch.float64)
    conv_fn = nn.functional.conv1d if spatial == 1 else nn.functional.conv2d

    def formed():  # the kernel formed from the cores, run as one convolution
        return conv_fn(x, layer.kernel(), layer.bias, layer.stride, layer.padding, layer.dilation)

    with torch.no_grad():
        cached = layer(x)
        first, last = conv_form(layer)
        torch.testing.assert_close(cached, formed(), rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(cached)
    grads = [torch.autograd.grad((f() * probe).sum(), list(layer.cores)) for f in (lambda: layer(x), formed)]
    for g_layer, g_formed in zip(*grads):  # with gradients too: the same function and the same core gradients
        torch.testing.assert_close(g_layer, g_formed, rtol=1e-10, atol=1e-10)
    low_rank = dims and rank * (20 + cols) < 20 * cols
    assert (last is not None) == bool(low_rank)
    if last is not None:
        assert first.shape == (rank, 12, *(3,) * spatial) and last.shape == (20, rank, *(1,) * spatial)
    else:
        assert first.shape == (20, 12, *(3,) * spatial)


def test_the_inference_form_follows_the_cores():
    """An optimizer step, a loaded state or a change of dtype rebuilds the cached form: never a stale kernel."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    layer = tnlib.nn.MPOConv2d.from_mpo(tnlib.MPO.from_matrix(
        conv.weight.detach().reshape(16, -1), out_dims=(16, 1), in_dims=(1, 72),
        truncation=tnlib.Truncation(max_bond=4)), conv)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        before = layer(x)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    layer(x).square().sum().backward()
    opt.step()
    with torch.no_grad():
        after = layer(x)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, nn.functional.conv2d(x, layer.kernel(), layer.bias, padding=1), rtol=1e-4,
                                   atol=1e-5)
        layer.double()
        assert layer(x.double()).dtype == torch.float64
        torch.testing.assert_close(layer(x.double()), nn.functional.conv2d(x.double(), layer.kernel(), layer.bias,
                                                                           padding=1))
