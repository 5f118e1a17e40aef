"""Whole-model compression."""

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def test_compress_whole_model_from_state_dict(tmp_path):
    net = Net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    loaded = Net()
    loaded.load_state_dict(torch.load(tmp_path / "net.pt"))
    exact, reports = tn.compress(loaded, num_cores=2)
    x = torch.randn(3, 5, 8)
    assert torch.allclose(exact(x), net(x), atol=1e-5)
    assert isinstance(exact.rnn, tn.MPOLSTM) and isinstance(exact.head, tn.MPOLinear)
    assert isinstance(loaded.rnn, nn.LSTM)  # not in place
    assert [r.name for r in reports] == ["rnn", "head"] and all(r.relative_error < 1e-6 for r in reports)
    small, reports = tn.compress(loaded, compression=4, layers=["rnn"], num_cores=2)
    assert reports[0].compression_ratio >= 4 and isinstance(small.head, nn.Linear)
    same = copy.deepcopy(loaded)
    out, _ = tn.compress(same, inplace=True, layers=["head"])
    assert out is same and isinstance(same.head, tn.MPOLinear)


def test_compress_errors():
    with pytest.raises(ValueError, match=r"layers names 'nope', which is not a module"):
        tn.compress(Net(), layers=["nope"])
    with pytest.raises(TypeError, match=r"layer '' is a Net"):
        tn.compress(Net(), layers=[""])
    with pytest.raises(ValueError, match=r"compression=0.5 is invalid"):
        tn.compress(Net(), compression=0.5)
