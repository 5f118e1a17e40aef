"""MPOGRU, MPOLSTMCell, MPOGRUCell: exact without truncation, torch's interfaces, NumPy inference, errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


@pytest.mark.parametrize("layers, bidirectional, batch_first", [(1, False, False), (2, True, True)])
def test_mpogru_exact_conversion_and_back(layers, bidirectional, batch_first):
    gru = nn.GRU(6, 12, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    mpo = tn.MPOGRU.from_gru(gru, num_cores=2)
    x = torch.randn(3, 5, 6)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 3 if batch_first else 5, 12)
    ref, h_ref = gru(x, h0)
    out, h = mpo(x, h0)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(h, h_ref, atol=1e-5)
    back = mpo.to_gru()
    assert torch.allclose(back(x, h0)[0], ref, atol=1e-5)
    assert mpo.gate_dims[0] % 3 == 0  # the factor 3 of the stacked gates sits in the first leg


def test_mpogru_unbatched_and_truncated_trains():
    gru = nn.GRU(8, 16)
    small = tn.MPOGRU.from_gru(gru, tnlib.Truncation(max_bond=4), num_cores=2)
    x = torch.randn(7, 8)
    out, h = small(x)
    assert out.shape == (7, 16) and h.shape == (1, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in small.parameters())


def test_gru_forward_in_numpy_equals_torch():
    gru = nn.GRU(8, 16).double()
    x = torch.randn(6, 2, 8, dtype=torch.float64)
    ref, h = gru(x)
    w_ih = tnlib.MPO.from_matrix(gru.weight_ih_l0.detach().numpy(), (6, 8), (2, 4))
    out, h2 = tnlib.gru_forward(x.numpy(), w_ih, gru.weight_hh_l0.detach().numpy(),
                                gru.bias_ih_l0.detach().numpy(), gru.bias_hh_l0.detach().numpy())
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(h2, h[0].detach().numpy(), atol=1e-12)
    with pytest.raises(ValueError, match=r"w_hh has shape \(48, 8\); expected \(3H, H\)"):
        tnlib.gru_forward(x.numpy(), w_ih, np.ones((48, 8)))


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_exact_in_a_loop(bias):
    cell = nn.LSTMCell(10, 12, bias=bias)
    mpo = tn.MPOLSTMCell.from_lstm_cell(cell, num_cores=2)
    h = c = torch.zeros(4, 12)
    h2 = c2 = torch.zeros(4, 12)
    for _ in range(5):
        x = torch.randn(4, 10)
        h, c = cell(x, (h, c))
        h2, c2 = mpo(x, (h2, c2))
    assert torch.allclose(h, h2, atol=1e-5) and torch.allclose(c, c2, atol=1e-5)
    x = torch.randn(10)
    assert torch.allclose(mpo(x)[0], cell(x)[0], atol=1e-5)  # unbatched, zero state
    dense = mpo.to_dense()
    assert isinstance(dense, nn.LSTMCell) and torch.allclose(dense(x)[1], cell(x)[1], atol=1e-5)


def test_gru_cell_exact_and_truncated():
    cell = nn.GRUCell(10, 12)
    x, h = torch.randn(4, 10), torch.randn(4, 12)
    assert torch.allclose(tn.MPOGRUCell.from_gru_cell(cell)(x, h), cell(x, h), atol=1e-5)
    small = tn.MPOGRUCell.from_gru_cell(cell, tnlib.Truncation(max_bond=2), num_cores=2)
    assert sum(p.numel() for p in small.cores_hh) < cell.weight_hh.numel()
    assert small.mpo("cores_hh").shape == (36, 12)


def test_cells_from_scratch_train():
    for cell in (tn.MPOLSTMCell(6, 8, bond_dim=3, num_cores=2), tn.MPOGRUCell(6, 8, bond_dim=3, num_cores=2)):
        opt = torch.optim.Adam(cell.parameters(), lr=1e-2)
        x, y = torch.randn(32, 6), torch.randn(32, 8) * 0.3
        first = None
        for _ in range(60):
            out = cell(x)
            out = out[0] if isinstance(out, tuple) else out
            loss = ((out - y) ** 2).mean()
            first = first if first is not None else loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < 0.7 * first


def test_cell_and_rnn_errors():
    with pytest.raises(TypeError, match=r"cell must be a torch.nn.LSTMCell, got GRUCell"):
        tn.MPOLSTMCell.from_lstm_cell(nn.GRUCell(4, 4))
    with pytest.raises(TypeError, match=r"gru must be a torch.nn.GRU, got LSTM"):
        tn.MPOGRU.from_gru(nn.LSTM(4, 4))
    cell = tn.MPOGRUCell(4, 8, num_cores=2)
    with pytest.raises(ValueError, match=r"input has 5 features; this cell expects 4"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"hx has shape \(3, 8\); expected \(2, 8\)"):
        cell(torch.randn(2, 4), torch.randn(3, 8))
    lstm = tn.MPOLSTM(4, 8, num_cores=2)
    with pytest.raises(ValueError, match=r"hx has shape \(1, 2, 7\); expected \(1, 2, 8\)"):
        lstm(torch.randn(3, 2, 4), (torch.randn(1, 2, 7), torch.randn(1, 2, 7)))
    with pytest.raises(ValueError, match=r"bond_dim=0 is invalid"):
        tn.MPOLSTMCell(4, 8, bond_dim=0)
    with pytest.raises(ValueError, match=r"num_cores=0 is invalid"):
        tn.MPOLSTM.from_lstm(nn.LSTM(4, 8), num_cores=0)
    with pytest.raises(ValueError, match=r"mpos names \['cores_xx'\]"):
        tn.MPOLSTMCell.from_lstm_cell(nn.LSTMCell(4, 8), mpos={"cores_xx": None})
    with pytest.raises(ValueError, match=r"expected an unpadded MPO of the weight's shape \(32, 4\)"):
        tn.MPOLSTMCell.from_lstm_cell(nn.LSTMCell(4, 8), mpos={"cores_ih": tnlib.MPO.from_matrix(np.ones((32, 8)))})
