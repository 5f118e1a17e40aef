"""CPConv1d / CPConv2d: a convolution as a CP network (1 x 1, depthwise, 1 x 1), fitted by alternating least
squares, saved, loaded and exported."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402
from tnlib.nn._layers._cp_conv import cancellation, cp_kernel  # noqa: E402


def _rebuilt(factors):
    a, b, k = factors
    return np.einsum("or,ir,tr->oit", a, b, k)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), out=st.integers(1, 10), n=st.integers(1, 8), taps=st.sampled_from([1, 3, 9]),
       rank=st.integers(1, 12))
def test_every_sweep_lowers_the_error_and_the_fit_is_deterministic(seed, out, n, taps, rank):
    """Property: alternating least squares never raises the error from one sweep to the next (each solve is
    exact up to its 1e-12 relative ridge), from the same start; two fits of the same kernel are equal."""
    w = np.random.default_rng(seed).standard_normal((out, n, taps))
    errors = [np.linalg.norm(_rebuilt(cp_kernel(w, rank, iterations=i)) - w) / np.linalg.norm(w) for i in (1, 3, 10)]
    assert errors[2] <= errors[1] + 1e-6 and errors[1] <= errors[0] + 1e-6, errors  # up to the solves' ridge
    assert all(np.array_equal(x, y) for x, y in zip(cp_kernel(w, rank), cp_kernel(w, rank)))


@pytest.mark.parametrize("seed", range(5))
def test_a_kernel_of_few_terms_is_recovered(seed):
    """A kernel that is a sum of 6 generic terms, in a convolution's shape, is fitted to 1e-8 at rank 6."""
    rng = np.random.default_rng(seed)
    w = _rebuilt((rng.standard_normal((32, 6)), rng.standard_normal((24, 6)), rng.standard_normal((9, 6))))
    assert np.linalg.norm(_rebuilt(cp_kernel(w, 6)) - w) <= 1e-8 * np.linalg.norm(w)


def test_it_matches_tensorly_and_errors_fall_with_the_rank():
    """Against tensorly's parafac (SVD start, same sweeps) on a random kernel: within 1 % of its error."""
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac

    rng = np.random.default_rng(0)
    w = rng.standard_normal((24, 20, 9))
    errors = []
    for rank in (4, 16, 48):
        mine = np.linalg.norm(_rebuilt(cp_kernel(w, rank)) - w) / np.linalg.norm(w)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = parafac(tl.tensor(w), rank, init="svd", n_iter_max=100, tol=1e-6)
        reference = np.linalg.norm(tl.cp_to_tensor(theirs) - w) / np.linalg.norm(w)
        assert mine <= 1.01 * reference, (rank, mine, reference)
        errors.append(mine)
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("kind, kwargs", [(nn.Conv2d, dict(kernel_size=3, padding=1)),
                                          (nn.Conv2d, dict(kernel_size=(3, 5), stride=2, padding=(1, 2))),
                                          (nn.Conv2d, dict(kernel_size=3, dilation=2, padding="same")),
                                          (nn.Conv1d, dict(kernel_size=5, stride=2, padding=2, bias=False)),
                                          (nn.Conv1d, dict(kernel_size=3, padding="valid"))])
def test_the_network_is_the_convolution_of_its_kernel(kind, kwargs):
    """The three convolutions compute the convolution by the kernel the factors stand for (float64, 1e-10), and
    a kernel of exactly that form is the original convolution."""
    torch.manual_seed(0)
    conv = kind(6, 10, **kwargs).double()
    cls = tn.CPConv1d if kind is nn.Conv1d else tn.CPConv2d
    layer = cls.from_conv1d(conv, rank=5) if kind is nn.Conv1d else cls.from_conv2d(conv, rank=5)
    x = torch.randn(2, 6, *((17,) if kind is nn.Conv1d else (13, 11)), dtype=torch.float64)
    same = kind(6, 10, **kwargs).double()
    with torch.no_grad():
        same.weight.copy_(layer.dense_weight())
        if conv.bias is not None:
            same.bias.copy_(conv.bias)
        torch.testing.assert_close(layer(x), same(x), rtol=1e-10, atol=1e-10)
    assert layer.num_weights == layer.macs_per_pixel == 5 * (6 + 10 + int(np.prod(conv.kernel_size)))


def test_save_load_and_export_keep_the_network(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()).eval()
    model[0] = tn.CPConv2d.from_conv2d(model[0], rank=6)
    tn.save(model, tmp_path / "m.safetensors")
    back = tn.load(tmp_path / "m.safetensors", model=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()))
    x = torch.randn(1, 8, 9, 9)
    assert isinstance(back[0], tn.CPConv2d) and back[0].rank == 6 and torch.equal(back(x), model(x))
    with pytest.raises(ValueError, match="other sizes"):
        tn.load(tmp_path / "m.safetensors", model=nn.Sequential(nn.Conv2d(8, 16, 5, padding=2), nn.ReLU()))
    path = tn.export_onnx(model, (x,), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path))
    for batch in (1, 3):
        xb = torch.randn(batch, 8, 9, 9)
        (y,) = session.run(None, {session.get_inputs()[0].name: xb.numpy()})
        np.testing.assert_allclose(y, model(xb).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv, rank, error, match", [
    (nn.Linear(4, 4), 2, TypeError, "conv must be a torch.nn.Conv2d, got Linear"),
    (nn.Conv2d(4, 4, 3, groups=2), 2, ValueError, "groups=2"),
    (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), 2, ValueError, "padding_mode='reflect'"),
    (nn.Conv2d(4, 4, 3), 0, ValueError, "rank"),
    (nn.Conv2d(4, 4, 3), 2.5, TypeError, "rank"),
    (nn.Conv2d(4, 4, 3), 10**6, ValueError, r"rank=1000000 exceeds 16, a rank at which CP already holds"),
])
def test_bad_arguments_are_refused(conv, rank, error, match):
    with pytest.raises(error, match=match):
        tn.CPConv2d.from_conv2d(conv, rank=rank)


def test_a_non_finite_kernel_and_direct_construction_are_refused():
    conv = nn.Conv1d(3, 4, 3)
    with torch.no_grad():
        conv.weight[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        tn.CPConv1d.from_conv1d(conv, rank=2)
    with pytest.raises(TypeError, match="from_conv1d"):
        tn.CPConv1d()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), rank=st.integers(1, 6))
def test_orthogonal_terms_do_not_cancel_and_cancelling_ones_do(seed, rank):
    """Property: terms with orthogonal factors have ``cancellation <= 1`` (Cauchy-Schwarz, equality at equal
    norms); adding a large term and its near negative leaves the fit almost unchanged but the measure far
    above 1."""
    rng = np.random.default_rng(seed)
    a, b, k = (np.linalg.qr(rng.standard_normal((8, rank)))[0] * rng.uniform(0.5, 2, rank) for _ in range(3))
    assert cancellation((a, b, k)) <= 1 + 1e-12
    big = 1e3
    a2 = np.concatenate([a, big * a[:, :1], -big * a[:, :1] * (1 + 1e-6)], axis=1)
    b2, k2 = (np.concatenate([f, f[:, :1], f[:, :1]], axis=1) for f in (b, k))
    assert cancellation((a2, b2, k2)) > 10


def _no_best_rank_six():
    """A 16 x 16 x 9 kernel: three copies, in orthogonal directions, of the rank-3 tensor with no best rank-2
    approximation (De Silva and Lim 2008)."""
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((16, 6)))[0].T
    z = np.linalg.qr(rng.standard_normal((9, 6)))[0].T
    return sum(np.einsum("o,i,t->oit", q[2 * j], q[2 * j], z[2 * j + 1])
               + np.einsum("o,i,t->oit", q[2 * j], q[2 * j + 1], z[2 * j])
               + np.einsum("o,i,t->oit", q[2 * j + 1], q[2 * j], z[2 * j]) for j in range(3))


def test_a_degenerate_fit_is_not_a_candidate():
    """Three copies, in orthogonal directions, of the classic tensor of rank 3 with no best rank-2
    approximation (De Silva and Lim 2008): rank-6 ALS reaches a small error only through large, cancelling
    terms. Compress at the budget of CP rank 6 does not choose it, though it errs far less on the kernel than the
    Tucker-2 network it keeps (Tucker-2 would need ranks (6, 6), twice the budget)."""
    w = _no_best_rank_six()
    fit = cp_kernel(w, 6)
    assert cancellation(fit) > 2 and np.linalg.norm(_rebuilt(fit) - w) < 0.01 * np.linalg.norm(w)
    conv = nn.Conv2d(16, 16, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w.reshape(16, 16, 3, 3)))
    small, reports = tn.compress(nn.Sequential(conv), compression=16 * 16 * 9 / (6 * (16 + 16 + 9)))
    assert not isinstance(small[0], tn.CPConv2d) and reports[0].relative_error > 0.5, reports[0].layouts


def test_with_calibration_a_cancelling_fit_is_judged_on_held_out_rows():
    """With calibration the same cancelling fit is a candidate: the held-out patch rows measure whether the
    inputs excite its large terms (refusing it by its weights alone cost CREPE's convolutions most of their
    pitch accuracy, ``benchmarks/bench_crepe.py``). On inputs spread in every direction they do not, so it is
    chosen, and its error on fresh inputs is the held-out one, far below the Tucker-2 network's > 0.5."""
    w = _no_best_rank_six()
    assert cancellation(cp_kernel(w, 6)) > 2
    conv = nn.Conv2d(16, 16, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w.reshape(16, 16, 3, 3)))
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 16, 10, 10, generator=gen, dtype=torch.float64) for _ in range(4)]
    small, reports = tn.compress(nn.Sequential(conv), compression=16 * 16 * 9 / (6 * (16 + 16 + 9)),
                                 calibration=batches)
    assert isinstance(small[0], tn.CPConv2d), reports[0].layouts
    assert reports[0].held_out_error < 0.05, reports[0]
    fresh = torch.randn(8, 16, 10, 10, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        error = float(torch.linalg.norm(small(fresh) - conv(fresh)) / torch.linalg.norm(conv(fresh)))
    assert error < 0.05


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_hostile_scales_fit_as_unit_scale_does(scale):
    """The fit is scale-free: a kernel at 1e-200 or 1e200 gets the unit-scale factors times the scale (exactly,
    powers of two aside), finite, with the same relative error."""
    w = np.random.default_rng(0).standard_normal((12, 8, 9))
    unit = cp_kernel(w, 6)
    scaled = cp_kernel(w * scale, 6)
    assert all(np.isfinite(f).all() for f in scaled)
    error = np.linalg.norm(_rebuilt(unit) - w) / np.linalg.norm(w)
    rebuilt = np.einsum("or,ir,tr->oit", scaled[0] / scale, scaled[1], scaled[2])
    assert np.linalg.norm(rebuilt - w) / np.linalg.norm(w) == pytest.approx(error, rel=1e-6)
