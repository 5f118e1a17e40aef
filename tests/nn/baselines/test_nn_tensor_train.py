"""TTLinear and TTLSTM: exact at full bond, the middle bond bounds the rank, clear errors."""

import pytest

torch = pytest.importorskip("torch")
from nn_helpers import assert_linear_trains  # noqa: E402
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402


@pytest.fixture
def dense():
    torch.manual_seed(0)
    return torch.nn.Linear(24, 18).double()


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


def test_tt_linear_trains():
    assert_linear_trains(tn.TTLinear(24, 18, 3))


def test_tt_linear_errors():
    with pytest.raises(TypeError, match="torch.nn.Linear"):
        tn.TTLinear.from_linear(torch.nn.LSTM(3, 3), 2)


def test_tt_lstm_exact_at_full_bond():
    lstm = nn.LSTM(8, 8)
    x = torch.randn(5, 2, 8)
    ref = lstm(x)[0]
    assert torch.allclose(tn.TTLSTM.from_lstm(lstm, 1000)(x)[0], ref, atol=1e-5)
    assert torch.allclose(tn.TTLSTM.from_lstm(lstm, 64).to_lstm()(x)[0], ref, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: tn.TTLSTM(28, 128, bond_dim=2, num_cores=2),
    lambda: tn.LowRankLSTM(28, 128, rank=2),
])
def test_new_low_rank_layers_keep_the_default_weight_variance(make):
    # variance-matched like an MPO layer: 1 / (3 hidden) for nn.LSTM's default U(-1/sqrt(H), 1/sqrt(H))
    torch.manual_seed(3)
    layer = make()
    for w in layer.dense_weights(0, 0):
        var = float(w.detach().double().pow(2).mean())
        assert var == pytest.approx(1.0 / (3 * 128), rel=0.05)
    torch.manual_seed(3)
    ref = nn.LSTM(28, 128)
    plain = (tn.TTLSTM.from_lstm(ref, 2) if isinstance(layer, tn.TTLSTM) else tn.LowRankLSTM.from_lstm(ref, 2))
    w_hh = plain.dense_weights(0, 0)[1].detach()
    assert float(w_hh.pow(2).mean()) < 0.2 / (3 * 128)  # a plain truncation of the same weights shrinks them


def test_new_low_rank_linear_layers_keep_the_default_weight_variance():
    torch.manual_seed(4)
    for layer in (tn.TTLinear(256, 64, bond_dim=2), tn.LowRankLinear(256, 64, rank=2)):
        w = (layer(torch.eye(256)) - layer.bias).detach()
        assert float(w.pow(2).mean()) == pytest.approx(1.0 / (3 * 256), rel=0.05)
