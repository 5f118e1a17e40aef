"""LowRankLinear and LowRankLSTM: Eckart-Young optimal, exact at full rank, clear errors."""

import pytest

torch = pytest.importorskip("torch")
from nn_helpers import assert_linear_trains  # noqa: E402
from torch import nn  # noqa: E402

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


def test_low_rank_linear_trains():
    assert_linear_trains(tn.LowRankLinear(24, 18, 3))


def test_low_rank_linear_errors(dense):
    with pytest.raises(ValueError, match="rank=19 exceeds"):
        tn.LowRankLinear.from_linear(dense, 19)
    with pytest.raises(ValueError, match="rank=0"):
        tn.LowRankLinear(4, 4, 0)


def test_low_rank_lstm_exact_at_full_rank_and_eckart_young():
    lstm = nn.LSTM(8, 8)
    x = torch.randn(5, 2, 8)
    ref = lstm(x)[0]
    assert torch.allclose(tn.LowRankLSTM.from_lstm(lstm, 8)(x)[0], ref, atol=1e-5)  # full rank: exact
    only_hh = tn.LowRankLSTM.from_lstm(lstm, 2, which="hh")
    assert torch.equal(only_hh.W_ih_l0, lstm.weight_ih_l0) and only_hh.U_hh_l0.shape == (32, 2)
    w_hh = lstm.weight_hh_l0.detach().double()
    s = torch.linalg.svdvals(w_hh)
    approx = (only_hh.U_hh_l0 @ only_hh.V_hh_l0).detach().double()
    assert float(torch.linalg.norm(approx - w_hh)) == pytest.approx(float(s[2:].norm()), rel=1e-4)  # Eckart-Young
    with pytest.raises(ValueError, match=r"rank=20 exceeds"):
        tn.LowRankLSTM.from_lstm(lstm, 20)
    with pytest.raises(ValueError, match=r"which='xh' is invalid"):
        tn.LowRankLSTM(8, 8, 2, which="xh")
