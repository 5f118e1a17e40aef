"""TuckerConv2d: a convolution as a Tucker-2 network, three small convolutions, saved and loaded."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.metric import shrunk  # noqa: E402
from tnlib.nn._layers._tucker_conv import tucker2  # noqa: E402
from tnlib.quantization import relative_error  # noqa: E402


@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 0, 1), (1, "same", 2), (2, 3, 1)])
def test_full_ranks_are_the_same_convolution(stride, padding, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, (3, 5), stride=stride, padding=padding, dilation=dilation).double()
    layer = tn.TuckerConv2d.from_conv2d(conv, ranks=(10, 6))
    x = torch.randn(2, 6, 13, 11, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), atol=1e-10)
    assert torch.allclose(layer.dense_weight(), conv.weight, atol=1e-12)


def test_a_tucker_rank_kernel_is_recovered_and_errors_fall_with_the_ranks():
    rng = np.random.default_rng(1)
    core = rng.standard_normal((4, 3, 3, 3))
    u_out, u_in = np.linalg.qr(rng.standard_normal((16, 4)))[0], np.linalg.qr(rng.standard_normal((12, 3)))[0]
    w = np.einsum("rskl,or,is->oikl", core, u_out, u_in)
    a, g, b = tucker2(w, 4, 3)
    assert np.allclose(np.einsum("rskl,or,is->oikl", g, a, b), w, atol=1e-12)
    conv = nn.Conv2d(32, 48, 3, bias=False).double()
    errors = []
    for r in (4, 8, 16, 32):
        layer = tn.TuckerConv2d.from_conv2d(conv, ranks=(min(48, r * 3 // 2), r))
        errors.append(float((layer.dense_weight() - conv.weight).norm().detach() / conv.weight.norm().detach()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-12


def test_it_runs_fewer_multiply_adds_and_stores_fewer_weights():
    conv = nn.Conv2d(128, 128, 3, padding=1)
    layer = tn.TuckerConv2d.from_conv2d(conv, ranks=(32, 32))
    assert layer.macs_per_pixel == 128 * 32 + 32 * 32 * 9 + 32 * 128
    assert layer.macs_per_pixel < conv.weight.numel() / 8
    assert layer.num_weights < conv.weight.numel() / 8


def test_save_and_load_into_the_original_architecture(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
    model[0] = tn.TuckerConv2d.from_conv2d(model[0], ranks=(6, 4))
    tn.save(model, tmp_path / "m.safetensors")
    back = tn.load(tmp_path / "m.safetensors", model=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()))
    x = torch.randn(1, 8, 9, 9)
    assert isinstance(back[0], tn.TuckerConv2d) and torch.equal(back(x), model(x))
    with pytest.raises(ValueError, match="other sizes"):
        tn.load(tmp_path / "m.safetensors", model=nn.Sequential(nn.Conv2d(8, 16, 5, padding=2), nn.ReLU()))


def test_export_with_a_free_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    layer = tn.TuckerConv2d.from_conv2d(nn.Conv2d(8, 16, 3, padding=1), ranks=(6, 4)).eval()
    path = tn.export_onnx(layer, (torch.randn(1, 8, 10, 10),), tmp_path / "t.onnx")
    session = ort.InferenceSession(str(path))
    x = torch.randn(5, 8, 10, 10)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.allclose(got, layer(x).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("conv, ranks, error, match", [
    (nn.Conv2d(8, 16, 3, groups=2), (4, 4), ValueError, "groups=2"),
    (nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect"), (4, 4), ValueError, "padding_mode='reflect'"),
    (nn.Conv2d(8, 16, 3), (17, 4), ValueError, "exceed the channels"),
    (nn.Conv2d(8, 16, 3), (0, 4), ValueError, "ranks"),
    (nn.Conv2d(8, 16, 3), 4, ValueError, "ranks must be"),
    (nn.Conv1d(8, 16, 3), (4, 4), TypeError, "torch.nn.Conv2d"),
])
def test_bad_arguments_are_refused(conv, ranks, error, match):
    with pytest.raises(error, match=match):
        tn.TuckerConv2d.from_conv2d(conv, ranks=ranks)
    with pytest.raises(TypeError, match="from_conv2d"):
        tn.TuckerConv2d()


def test_a_complex_kernel_is_kept():
    conv = nn.Conv2d(4, 6, 3, dtype=torch.complex64)
    layer = tn.TuckerConv2d.from_conv2d(conv, ranks=(6, 4))
    x = torch.randn(1, 4, 7, 7, dtype=torch.complex64)
    assert torch.allclose(layer(x), conv(x), atol=1e-4)
    assert tnlib.nn.count_parameters(layer) == layer.num_weights


@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 0, 1), (1, "same", 2), (3, 2, 1)])
def test_a_one_dimensional_convolution_at_full_ranks_is_the_same(stride, padding, dilation):
    torch.manual_seed(3)
    conv = nn.Conv1d(6, 10, 5, stride=stride, padding=padding, dilation=dilation).double()
    layer = tn.TuckerConv1d.from_conv1d(conv, ranks=(10, 6))
    x = torch.randn(2, 6, 23, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), atol=1e-10)
    assert torch.allclose(layer.dense_weight(), conv.weight, atol=1e-12)
    assert tn.TuckerConv1d.from_conv1d(conv, ranks=(4, 2)).macs_per_pixel == 6 * 2 + 2 * 4 * 5 + 4 * 10


def test_a_one_dimensional_tucker_network_compresses_saves_and_exports(tmp_path):
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv1d(64, 64, 3, padding=1), nn.ReLU())
    with torch.no_grad():  # channel ranks (8, 8) plus noise
        w = torch.einsum("or,rsk,is->oik", torch.randn(64, 8), torch.randn(8, 8, 3), torch.randn(64, 8)) / 30
        net[0].weight.copy_(w + 0.01 * torch.randn_like(w))
    for calibration in (None, [torch.randn(4, 64, 40) for _ in range(8)]):
        small, reports = tn.compress(net, compression=8, calibration=calibration)
        assert isinstance(small[0], tn.TuckerConv1d) and reports[0].kind == "Conv1d"
        assert reports[0].layouts[0].startswith("tucker-2") and reports[0].relative_error < 0.05
        assert reports[0].macs < reports[0].dense_macs / 8
    tn.save(small, tmp_path / "m.safetensors")
    back = tn.load(tmp_path / "m.safetensors", model=nn.Sequential(nn.Conv1d(64, 64, 3, padding=1), nn.ReLU()))
    x = torch.randn(2, 64, 30)
    assert isinstance(back[0], tn.TuckerConv1d) and torch.equal(back(x), small(x))
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tn.export_onnx(small.eval(), (torch.randn(1, 64, 30),), tmp_path / "t.onnx")
    session = ort.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.allclose(got, small(x).detach().numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="torch.nn.Conv1d"):
        tn.TuckerConv1d.from_conv1d(nn.Conv2d(8, 16, 3), ranks=(4, 4))
    with pytest.raises(TypeError, match="from_conv1d"):
        tn.TuckerConv1d()


def test_a_leg_with_fewer_directions_than_asked_keeps_what_it_has():
    """A kernel of 16 outputs x 3 taps has at most 48 input-channel directions: asking 64 gives 48 (compress hit this
    on the packaged Silero VAD's conv1)."""
    torch.manual_seed(5)
    conv = nn.Conv1d(64, 16, 3, padding=1).double()
    layer = tn.TuckerConv1d.from_conv1d(conv, ranks=(16, 64))
    assert layer.ranks == (16, 48) and layer.first.shape == (48, 64, 1)
    x = torch.randn(2, 64, 12, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), atol=1e-10)
    small, reports = tn.compress(nn.Sequential(conv), compression=1.2)
    assert reports[0].params_after <= reports[0].budget


def patch_gram(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """The Gram ``P^T P / n`` of the unfolded input patches of a 2-d ``conv`` (what ``record_grams`` records)."""
    p = nn.functional.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    p = p.transpose(1, 2).reshape(-1, p.shape[1]).double()
    return p.T @ p / p.shape[0]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), r_out=st.integers(1, 10), r_in=st.integers(1, 6),
       latent=st.integers(1, 40), shrinkage=st.sampled_from([1e-6, 0.01, 0.3]))
def test_a_fit_in_the_patch_metric_is_never_worse_there_than_the_weight_space_fit(seed, r_out, r_in, latent,
                                                                                 shrinkage):
    """Property: in the metric it was fitted in, the data-aware fit errs no more than the HOOI fit (it starts
    from HOOI's input factor and its other factors are then exact); at full ranks it is the kernel."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((10, 6, 3, 3))
    mix = rng.standard_normal((latent, 54))
    x = rng.standard_normal((300, latent)) @ mix + 1e-3 * rng.standard_normal((300, 54))
    c = shrunk(x.T @ x / 300, shrinkage)
    matrix = w.reshape(10, -1)

    def err(factors):
        u_out, g, u_in = factors
        return relative_error(matrix, np.einsum("or,rskl,is->oikl", u_out, g, u_in).reshape(10, -1), c)

    plain, fitted = err(tucker2(w, r_out, r_in)), err(tucker2(w, r_out, r_in, gram=c))
    assert fitted <= plain * (1 + 1e-9) + 1e-12
    assert err(tucker2(w, 10, 6, gram=c)) < 1e-9


def test_with_calibration_the_outputs_move_less_on_patches_of_the_same_kind():
    """Correlated images (a few smooth channels): fitted in their patch metric, the layer's outputs on new images
    of the same kind move several times less than with the weight-space fit at the same ranks."""
    torch.manual_seed(3)
    conv = nn.Conv2d(16, 32, 3, padding=1).double()
    mixing = torch.randn(3, 16, dtype=torch.float64)

    def images(n):
        return torch.einsum("bchw,cd->bdhw", torch.randn(n, 3, 12, 12, dtype=torch.float64), mixing)

    seen, unseen = images(64), images(64)
    metric = tnlib.Metric(patch_gram(seen, conv))
    plain = tn.TuckerConv2d.from_conv2d(conv, ranks=(8, 4))
    fitted = tn.TuckerConv2d.from_conv2d(conv, ranks=(8, 4), metric=metric)
    with torch.no_grad():
        y = conv(unseen)
        moved = [float((m(unseen) - y).norm() / y.norm()) for m in (plain, fitted)]
    assert moved[1] < 0.7 * moved[0], moved
    # the images span 3 of 16 channels, so rank_in = 4 binds nothing: the fit reaches the rank-8 whitened SVD
    c = shrunk(metric.gram.numpy())
    w = conv.weight.detach().numpy().reshape(32, -1)
    sv = np.linalg.svd(w @ np.linalg.cholesky(c), compute_uv=False)
    optimum = np.sqrt(np.sum(sv[8:] ** 2) / np.sum(sv**2))
    assert relative_error(w, fitted.dense_weight().detach().numpy().reshape(32, -1), c) < 1.01 * optimum
    one_d = nn.Conv1d(4, 6, 3).double()
    gram = tnlib.Metric(torch.eye(12, dtype=torch.float64))  # white patches: a fit in weight space, refined
    errors = [float((m.dense_weight() - one_d.weight).norm().detach() / one_d.weight.norm().detach()) for m in (
        tn.TuckerConv1d.from_conv1d(one_d, (3, 2), metric=gram), tn.TuckerConv1d.from_conv1d(one_d, (3, 2)))]
    assert errors[1] * 0.9 < errors[0] <= errors[1] * (1 + 1e-9), errors


@pytest.mark.parametrize("metric, error, match", [
    (torch.eye(54), TypeError, "metric must be a tnlib.Metric"),
    (tnlib.Metric(torch.eye(9)), ValueError, r"metric.gram has shape \(9, 9\); expected \(54, 54\)"),
    (tnlib.Metric(-torch.eye(54)), ValueError, "metric.gram"),
    (tnlib.Metric(torch.zeros(54, 54)), ValueError, "metric.gram is zero"),
])
def test_a_wrong_metric_is_refused_in_words(metric, error, match):
    with pytest.raises(error, match=match):
        tn.TuckerConv2d.from_conv2d(nn.Conv2d(6, 8, 3), ranks=(4, 3), metric=metric)
