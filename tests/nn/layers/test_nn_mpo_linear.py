"""MPOLinear: exact conversion, truncation, initialisation, training, bad input."""

import pytest

torch = pytest.importorskip("torch")
from nn_helpers import train_steps  # noqa: E402
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


def test_mpolinear_exact_conversion_and_back():
    lin = nn.Linear(96, 64)
    layer = tn.MPOLinear.from_linear(lin)
    x = torch.randn(10, 96)
    assert torch.allclose(layer(x), lin(x), atol=1e-5)
    back = layer.to_linear()
    assert torch.allclose(back.weight, lin.weight, atol=1e-5) and torch.equal(back.bias, lin.bias)
    mpo = layer.mpo
    assert isinstance(mpo, tnlib.MPO) and mpo.shape == (64, 96)
    assert torch.allclose(mpo.to_matrix(), lin.weight, atol=1e-5)


def test_mpolinear_truncated_matches_core_mpo():
    lin = nn.Linear(64, 64)
    t = tnlib.Truncation(max_bond=4)
    layer = tn.MPOLinear.from_linear(lin, t, out_dims=(4, 4, 4), in_dims=(4, 4, 4))
    ref = tnlib.MPO.from_matrix(lin.weight.detach().double(), (4, 4, 4), (4, 4, 4), truncation=t)
    x = torch.randn(3, 64)
    expected = x.double() @ ref.to_matrix().T + lin.bias.double()
    assert torch.allclose(layer(x).double(), expected, atol=1e-5)
    assert layer.bond_dims == (4, 4)


def test_mpolinear_init_variance_matches_linear():
    layer = tn.MPOLinear(256, 256, bond_dim=16, bias=False)
    w = layer.dense_weight().detach()
    target = 1.0 / (3 * 256)
    assert float(w.var()) == pytest.approx(target, rel=0.25)
    x = torch.randn(512, 256)
    ref = nn.Linear(256, 256, bias=False)
    with torch.no_grad():
        assert float(layer(x).std()) == pytest.approx(float(ref(x).std()), rel=0.25)


def test_mpolinear_gradients_reach_every_core_and_it_trains():
    layer = tn.MPOLinear(32, 16, bond_dim=4)
    teacher = nn.Linear(32, 16)
    layer(torch.randn(4, 32)).sum().backward()
    assert all(c.grad is not None and float(c.grad.abs().sum()) > 0 for c in layer.cores)
    layer.zero_grad()

    def batch():
        x = torch.randn(64, 32)
        return x, teacher(x).detach()

    losses = train_steps(layer, batch, steps=80)
    assert losses[-1] < 0.5 * losses[0]


def test_mpolinear_bad_input():
    with pytest.raises(ValueError, match=r"in_dims=\(4, 4\) multiply to 16 but matrix has 20 columns"):
        tn.MPOLinear(20, 16, in_dims=(4, 4), bond_dim=2)
    with pytest.raises(
        ValueError,
        match=r"bond_dim=300 cannot be reached: with out_dims=\(4, 4\) and in_dims=\(4, 4\) the largest bond is 16",
    ):
        tn.MPOLinear(16, 16, bond_dim=300, num_cores=2)
    with pytest.raises(ValueError, match=r"bond_dim=0 is invalid"):
        tn.MPOLinear(16, 16, bond_dim=0)
    with pytest.raises(TypeError, match=r"linear must be a torch.nn.Linear, got Conv1d"):
        tn.MPOLinear.from_linear(nn.Conv1d(2, 2, 1))
    layer = tn.MPOLinear(16, 16, bond_dim=2)
    with pytest.raises(ValueError, match=r"input has 15 features; this MPOLinear expects 16"):
        layer(torch.randn(2, 15))
    with pytest.raises(ValueError, match=r"which='x' is invalid"):
        layer.set_trainable("x")


def test_counts_follow_one_convention_in_nn():
    import numpy as np

    with pytest.raises(TypeError, match="bond_dim must be an int"):
        tn.MPOLinear(16, 16, bond_dim="4")
    with pytest.raises(ValueError, match=r"bond_dim=0 is invalid"):
        tn.MPOLinear(16, 16, bond_dim=0)
    layer = tn.MPOLinear(16, 16, bond_dim=np.int64(2), num_cores=np.int64(2))
    assert layer.bond_dims == (2,)
