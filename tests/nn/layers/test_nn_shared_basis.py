"""SharedBasisLinear: same-role layers on one basis (Basis Sharing), fitted, saved, loaded, exported, compiled;
and compress(share=...), which keeps a group only where it errs less than the per-matrix forms."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.nn._layers._shared_basis import shared_basis  # noqa: E402


def _gram(rng, n, latent):
    x = rng.standard_normal((200, latent)) @ rng.standard_normal((latent, n)) + 0.05 * rng.standard_normal((200, n))
    return x.T @ x / 200


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), outs=st.lists(st.integers(1, 9), min_size=2, max_size=4), n=st.integers(2, 10),
       rank=st.integers(1, 10), aware=st.booleans())
def test_the_basis_is_the_best_for_the_stack_and_each_coefficient_the_best_given_it(seed, outs, n, rank, aware):
    """Property: without Grams the error is the stack's discarded singular values (the truncated SVD of
    ``[W_1; ...]``); with Grams each layer's coefficients are the least squares in its own metric (the residual
    is orthogonal to the basis there), and in the pooled metric the basis is the best of its rank."""
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, n)) for o in outs]
    grams = [_gram(rng, n, int(rng.integers(1, n + 1))) + 1e-3 * np.eye(n) for _ in ws] if aware else None
    basis, coefficients = shared_basis(ws, grams, rank)
    r = min(rank, n, sum(outs))
    assert basis.shape == (r, n) and [c.shape for c in coefficients] == [(o, r) for o in outs]
    stacked = np.concatenate(ws)
    if grams is None:
        s = np.linalg.svd(stacked, compute_uv=False)
        error = np.linalg.norm(np.concatenate([c @ basis for c in coefficients]) - stacked)
        assert error == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-8, abs=1e-10)
        return
    for w, c, g in zip(ws, coefficients, grams):
        np.testing.assert_allclose((w - c @ basis) @ g @ basis.T, 0, atol=1e-8 * max(1.0, np.abs(w @ g).max()))
    pooled = sum(grams) / len(grams)
    factor = np.linalg.cholesky(pooled)
    s = np.linalg.svd(stacked @ factor, compute_uv=False)
    projected = np.concatenate([w @ pooled @ basis.T @ np.linalg.solve(basis @ pooled @ basis.T, basis) for w in ws])
    error = np.linalg.norm((projected - stacked) @ factor)  # the best coefficients for this basis in the pooled metric
    assert error == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-6, abs=1e-8)


def test_layers_run_the_shared_product_and_full_rank_is_exact():
    torch.manual_seed(0)
    linears = [nn.Linear(12, o).double() for o in (5, 7, 3)]
    shared = tn.SharedBasisLinear.from_linears(linears, rank=12)
    x = torch.randn(4, 2, 12, dtype=torch.float64)
    for layer, linear in zip(shared, linears):
        assert layer.basis is shared[0].basis
        torch.testing.assert_close(layer(x), linear(x), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(layer.dense_weight(), linear.weight, rtol=1e-10, atol=1e-10)
    (shared[0](x).sum() + shared[1](x).sum()).backward()  # both layers' gradients reach the one basis
    assert shared[0].basis.grad is not None and shared[2].coefficients.grad is None


class Blocks(nn.Module):
    """Residual blocks whose first matrices are one matrix plus noise: a basis shared by them loses little."""

    def __init__(self, width=48, depth=4):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range(depth))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


def _blocks(seed=0):
    torch.manual_seed(seed)
    model = Blocks()
    common = torch.randn(48, 48) / 7
    with torch.no_grad():
        for block in model.blocks:
            block[0].weight.copy_(common + 0.02 * torch.randn(48, 48))
    return model


def test_compress_keeps_a_shared_basis_where_it_errs_less_and_reports_both():
    model = _blocks()
    mix = torch.randn(10, 48)
    calibration = [torch.randn(32, 10) @ mix for _ in range(8)]
    alone, alone_reports = tn.compress(model, compression=4, calibration=calibration)
    small, reports = tn.compress(model, compression=4, calibration=calibration, share="role")
    first = [r for r in reports if r.name.endswith(".0")]
    assert all(isinstance(small.get_submodule(r.name), tn.SharedBasisLinear) for r in first)
    assert small.blocks[0][0].basis is small.blocks[3][0].basis
    assert all("shared basis of 4 layers" in r.note and "pooled error" in r.note for r in first)
    # a group kept by its layers' errors stands only if the whole model's outputs move less on held-out batches
    assert all("sharing shared bases: the model's outputs moved" in r.note and "held-out" in r.note for r in reports)
    assert sum(r.params_after for r in reports) <= sum(r.params_before for r in reports) / 4
    stored = {id(p): p.numel() for m in small.modules() if isinstance(m, (tn.SharedBasisLinear, tn.MPOLinear))
              for n, p in m.named_parameters(recurse=False) if n != "bias"}
    assert sum(stored.values()) == sum(r.params_after for r in reports)  # the basis counted once
    unseen = torch.randn(64, 10) @ mix
    with torch.no_grad():
        y = model(unseen)
        moved = [float((m(unseen) - y).norm() / y.norm()) for m in (alone, small)]
    assert moved[1] < moved[0], moved


def test_a_group_that_errs_more_is_not_kept_and_says_so():
    """Unrelated random matrices fed white inputs: one basis for all serves each worse than its own factors."""
    torch.manual_seed(1)
    model = nn.ModuleDict({str(k): nn.Linear(32, 32) for k in range(3)})

    class Parallel(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = model

        def forward(self, x):
            return torch.cat([self.layers[str(k)](x[:, k]) for k in range(3)], dim=-1)

    net = Parallel()
    calibration = [torch.randn(16, 3, 32) for _ in range(8)]
    small, reports = tn.compress(net, compression=4, calibration=calibration, share="role")
    assert not any(isinstance(m, tn.SharedBasisLinear) for m in small.modules())
    assert all(r.note.startswith("not shared basis of 3 layers") for r in reports), [r.note for r in reports]
    # the batches held out to judge a group are fitted on too once none is kept: the per-matrix forms of every row
    mixes = [torch.randn(32, 32) * torch.logspace(0, -0.4, 32) for _ in range(3)]  # each branch its own

    def inputs(rows):
        return torch.stack([torch.randn(rows, 32) @ m for m in mixes], dim=1)

    calibration = [inputs(16) for _ in range(8)]
    small, reports = tn.compress(net, compression=4, calibration=calibration, share="role")
    assert not any(isinstance(m, tn.SharedBasisLinear) for m in small.modules())
    alone, _ = tn.compress(net, compression=4, calibration=calibration)
    x = inputs(5)
    with torch.no_grad():
        assert torch.allclose(small(x), alone(x), atol=1e-6)


def test_without_calibration_the_weights_decide():
    small, reports = tn.compress(_blocks(), compression=4, share="role")
    assert isinstance(small.blocks[1][0], tn.SharedBasisLinear)
    assert "on the weights" in reports[0].note


def test_save_load_export_and_compile_keep_one_basis(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    small, _ = tn.compress(_blocks(), compression=4, share=[["blocks.0.0", "blocks.1.0", "blocks.2.0", "blocks.3.0"]])
    small.eval()
    tn.save(small, tmp_path / "m.safetensors")
    back = tn.load(tmp_path / "m.safetensors", model=Blocks())
    assert back.blocks[0][0].basis is back.blocks[2][0].basis
    x = torch.randn(3, 48)
    with torch.no_grad():
        assert torch.equal(back(x), small(x))
        compiled = torch.compile(small, fullgraph=True)
        torch.testing.assert_close(compiled(x), small(x))
    path = tn.export_onnx(small, (x,), tmp_path / "m.onnx")
    import onnx

    graph = onnx.load(str(path)).graph
    basis = small.blocks[0][0].basis
    same = [i for i in graph.initializer if tuple(i.dims) == tuple(basis.shape)]
    assert len(same) == 1  # one initializer for the four layers' basis
    session = ort.InferenceSession(str(path))
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(y, small(x).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(compression=4, share="layers"), ValueError, "share must be 'role'"),
    (dict(compression=4, share=3), TypeError, "share must be 'role'"),
    (dict(compression=4, share=[["blocks.0.0"]]), ValueError, r"share\[0\] has 1 layer"),
    (dict(compression=4, share=[["blocks.0.0", "blocks.9.0"]]), ValueError,
     "'blocks.9.0', which is not a real nn.Linear"),
    (dict(compression=4, share=[["blocks.0.0", "blocks.1.0"], ["blocks.1.0", "blocks.2.0"]]), ValueError,
     "already in another group"),
    (dict(truncation=tnlib.Truncation(max_bond=4), share="role"), ValueError, "share= needs compression="),
    (dict(compression=4, allocation="global", share="role"), ValueError, "allocation='uniform'"),
    (dict(bytes=4000, share="role"), ValueError, "share= needs compression="),
])
def test_bad_sharing_is_refused_in_words(kwargs, error, match):
    with pytest.raises(error, match=match):
        tn.compress(_blocks(), **kwargs)


def test_mixed_input_sizes_and_bad_layers_are_refused():
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"mixes in_features \[4, 8\]"):
        tn.compress(net, compression=2, share=[["0", "2"]])
    with pytest.raises(TypeError, match="two or more torch.nn.Linear"):
        tn.SharedBasisLinear.from_linears([nn.Linear(4, 4)], rank=2)
    with pytest.raises(ValueError, match="share in_features"):
        tn.SharedBasisLinear.from_linears([nn.Linear(4, 4), nn.Linear(3, 4)], rank=2)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        tn.SharedBasisLinear.from_linears([nn.Linear(4, 4), nn.Linear(4, 4)], rank=0)
    with pytest.raises(ValueError, match=r"grams must be one \(4, 4\) Gram per layer"):
        tn.SharedBasisLinear.from_linears([nn.Linear(4, 4), nn.Linear(4, 4)], rank=2, grams=[torch.eye(4)])
    with pytest.raises(TypeError, match="from_linears"):
        tn.SharedBasisLinear()
    pair = [nn.Linear(4, 3), nn.Linear(4, 5)]
    with pytest.raises(ValueError, match="grams must be finite"):
        tn.SharedBasisLinear.from_linears(pair, rank=2, grams=[torch.eye(4), torch.full((4, 4), float("nan"))])
    with pytest.raises(ValueError, match="grams must be positive definite"):
        tn.SharedBasisLinear.from_linears(pair, rank=2, grams=[torch.zeros(4, 4), torch.zeros(4, 4)])
    with pytest.raises(ValueError, match="real weights"):
        tn.SharedBasisLinear.from_linears([nn.Linear(4, 4, dtype=torch.complex64)] * 2, rank=2)
    bad = nn.Linear(4, 3)
    with torch.no_grad():
        bad.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite weights"):
        tn.SharedBasisLinear.from_linears([bad, nn.Linear(4, 3)], rank=2)
