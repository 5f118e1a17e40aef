"""Measured parameter counts and matched compression settings."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402


def test_match_compression_meets_the_ratio_with_measured_counts():
    lstm = nn.LSTM(32, 64)
    dense = tn.count_parameters(lstm)
    settings = tn.match_compression(lstm, 10)
    for method, s in settings.items():
        assert s["params"] <= dense / 10, method
    b = settings["mpo"]["bond_dim"]
    assert tn.count_parameters(tn.MPOLSTM(32, 64, bond_dim=b + 1, num_cores=3)) > dense / 10
    assert settings["low_rank"]["params"] == tn.count_parameters(tn.LowRankLSTM(32, 64, settings["low_rank"]["rank"]))


def test_stored_bytes_of_a_tensor_is_refused_with_the_formula():
    with pytest.raises(TypeError, match=r"module must be a torch.nn.Module, got Tensor"):
        tn.stored_bytes(torch.zeros(3))
