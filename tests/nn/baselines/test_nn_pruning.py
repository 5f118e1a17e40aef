"""Magnitude pruning, one-shot and gradual."""

import pytest

torch = pytest.importorskip("torch")
from nn_helpers import lstm_teacher_batches, train_steps  # noqa: E402
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402


def test_one_shot_and_gradual_pruning():
    lstm = nn.LSTM(16, 16)
    dense = tn.count_parameters(lstm)
    tn.prune_magnitude(lstm, 0.75)
    assert tn.count_parameters(lstm) == pytest.approx(dense * 0.25, abs=2)
    assert hasattr(lstm, "weight_ih_l0_mask")  # torch.nn.utils.prune masks
    lin = nn.Linear(40, 40)
    pruner = tn.GradualPruner(lin, 0.8, end_step=20, frequency=5)
    seen = [pruner.step() for _ in range(21)]
    assert seen[0] == 0.0 and seen[-1] == pytest.approx(0.8)
    assert all(a <= b + 1e-12 for a, b in zip(seen, seen[1:]))
    assert float((lin.weight == 0).float().mean()) == pytest.approx(0.8, abs=1e-3)
    with pytest.raises(ValueError, match=r"sparsity=1.0 is invalid"):
        tn.prune_magnitude(nn.Linear(2, 2), 1.0)
    with pytest.raises(TypeError, match=r"module must be a torch.nn.Linear or torch.nn.LSTM, got ReLU"):
        tn.prune_magnitude(nn.ReLU(), 0.5)


def test_pruned_lstm_trains_and_stays_sparse():
    lstm = nn.LSTM(6, 8, batch_first=True)
    tn.prune_magnitude(lstm, 0.8)
    losses = train_steps(lstm, lstm_teacher_batches(), steps=60)
    assert losses[-1] < 0.8 * losses[0]
    assert float((lstm.weight_hh_l0 == 0).float().mean()) == pytest.approx(0.8, abs=0.01)


def test_stored_bytes_counts_the_whole_model_and_sparse_weights():
    lin = torch.nn.Linear(30, 20)
    assert tn.stored_bytes(lin) == (600 + 20) * 4
    assert tn.stored_bytes(lin.double()) == (600 + 20) * 8
    dense_lstm = torch.nn.LSTM(8, 16)
    assert tn.stored_bytes(dense_lstm) == (64 * 8 + 64 * 16 + 2 * 64) * 4
    low = tn.prune_magnitude(torch.nn.LSTM(8, 16), 0.5)
    kept = [int(torch.count_nonzero(getattr(low, f"weight_{k}_l0"))) for k in ("ih", "hh")]
    bitmask = (512 + 7) // 8 + (1024 + 7) // 8
    assert tn.stored_bytes(low) == 4 * sum(kept) + bitmask + 2 * 64 * 4
    very = tn.prune_magnitude(torch.nn.Linear(1000, 100), 0.999)  # 100 kept: indices beat a bitmask
    assert tn.stored_bytes(very) == 100 * 4 + 100 * 4 + 100 * 4
    mpo = tn.MPOLinear(64, 64, bond_dim=4, num_cores=2)
    assert tn.stored_bytes(mpo) == 4 * (sum(c.numel() for c in mpo.cores) + 64)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    assert tn.stored_bytes(model) == (16 + 4) * 4 + (4 + 4) * 4 + (4 + 4) * 4 + 8  # buffers too
