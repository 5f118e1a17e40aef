"""LowRankLinear and TTLinear: exact at full rank, optimal truncation, clear errors."""

import pytest

torch = pytest.importorskip("torch")
import tnlib.nn as tn  # noqa: E402


@pytest.fixture
def dense():
    torch.manual_seed(0)
    return torch.nn.Linear(24, 18).double()


def test_low_rank_is_eckart_young(dense):
    x = torch.randn(7, 24, dtype=torch.float64)
    assert torch.allclose(tn.LowRankLinear.from_linear(dense, 18)(x), dense(x), atol=1e-12)
    s = torch.linalg.svdvals(dense.weight.detach())
    for r in (1, 5, 11):
        low = tn.LowRankLinear.from_linear(dense, r)
        err = torch.linalg.norm(low.U @ low.V - dense.weight.detach())
        assert torch.isclose(err, torch.linalg.norm(s[r:]), rtol=1e-10)
        assert tn.count_parameters(low) == r * (24 + 18)


def test_tt_linear_exact_and_truncated(dense):
    x = torch.randn(7, 24, dtype=torch.float64)
    full = tn.TTLinear.from_linear(dense, bond_dim=1000, num_cores=3)
    assert torch.allclose(full(x), dense(x), atol=1e-12)
    small = tn.TTLinear.from_linear(dense, bond_dim=2, num_cores=3)
    assert tn.count_parameters(small) < tn.count_parameters(full)
    # The middle bond separates input from output: rank <= bond, so the error is at least the SVD tail.
    w = small(torch.eye(24, dtype=torch.float64)) - small.bias
    assert torch.linalg.matrix_rank(w) <= 2
    tail = torch.linalg.norm(torch.linalg.svdvals(dense.weight.detach())[2:])
    assert torch.linalg.norm(w.T - dense.weight.detach()) >= tail * (1 - 1e-10)


def test_trains(dense):
    torch.manual_seed(1)
    for layer in (tn.LowRankLinear(24, 18, 3), tn.TTLinear(24, 18, 3)):
        opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
        x, y = torch.randn(64, 24), torch.randn(64, 18)
        first = None
        for _ in range(30):
            loss = torch.nn.functional.mse_loss(layer(x), y)
            first = first if first is not None else loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < first


def test_errors(dense):
    with pytest.raises(ValueError, match="rank=19 exceeds"):
        tn.LowRankLinear.from_linear(dense, 19)
    with pytest.raises(ValueError, match="rank=0"):
        tn.LowRankLinear(4, 4, 0)
    with pytest.raises(TypeError, match="torch.nn.Linear"):
        tn.TTLinear.from_linear(torch.nn.LSTM(3, 3), 2)
    with pytest.raises(ValueError, match="bond_dim"):
        tn.TTLinear(4, 4, bond_dim=0)
    with pytest.raises(ValueError, match="expects 24"):
        tn.TTLinear.from_linear(dense, 4)(torch.ones(2, 5, dtype=torch.float64))
