"""compress never returns a broken or larger model: what it cannot convert safely stays dense, in words."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402


def test_a_transformer_layer_is_converted_whole_and_the_model_runs():
    """It used to break on its first forward ('MPOLinear' object has no attribute 'weight')."""
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.Sequential(block, nn.Linear(32, 32))
    x = torch.randn(3, 5, 32)
    small, reports = tn.compress(model, compression=2)
    assert [r.name for r in reports] == ["0.self_attn", "0.linear1", "0.linear2", "1"]
    assert isinstance(small[0].self_attn, tn.MPOMultiheadAttention) and isinstance(small[0].linear1, tn.MPOLinear)
    small.eval()
    with torch.no_grad():  # eval and no_grad: where the dense layer takes its fused kernel
        assert small(x).shape == (3, 5, 32) and torch.isfinite(small(x)).all()
    with pytest.raises(ValueError, match=r"layer '0.self_attn.out_proj' cannot be converted: MultiheadAttention"):
        tn.compress(model, compression=2, layers=["0.self_attn.out_proj"])
    with pytest.raises(ValueError, match=r"layer '0.linear1' cannot be converted: TransformerEncoderLayer's fused"):
        tn.compress(model, compression=2, layers=["0.linear1"])


def test_a_module_used_twice_is_converted_once_and_stays_shared():
    torch.manual_seed(1)
    lin = nn.Linear(32, 32)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    small, reports = tn.compress(model, compression=4)
    assert [r.name for r in reports] == ["0"]
    assert isinstance(small[0], tn.MPOLinear) and small[0] is small[2]
    params = sum(p.numel() for p in small.parameters())
    assert params < sum(p.numel() for p in model.parameters())
    by_second_name, reports = tn.compress(model, compression=4, layers=["2"])
    assert by_second_name[0] is by_second_name[2] and isinstance(by_second_name[2], tn.MPOLinear)
    x = torch.randn(4, 32)
    assert torch.equal(by_second_name(x), by_second_name[2](torch.relu(by_second_name[0](x))))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(64, 16)
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 64, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.relu(self.mid(self.emb(idx))))


def test_tied_weights_stay_tied_and_save_and_load(tmp_path):
    torch.manual_seed(2)
    model = Tied()
    with pytest.warns(UserWarning, match=r"'head' \(its weight is tied to emb.weight"):
        small, reports = tn.compress(model, compression=2)
    assert [r.name for r in reports] == ["mid"] and small.head.weight is small.emb.weight
    with pytest.raises(ValueError, match=r"layer 'head' cannot be converted: its weight is tied to emb.weight"):
        tn.compress(model, compression=2, layers=["head"])
    tn.save(small, tmp_path / "tied.safetensors")
    back = tn.load(tmp_path / "tied.safetensors", model=Tied())
    idx = torch.randint(0, 64, (3, 7))
    assert torch.equal(back(idx), small(idx)) and back.head.weight is back.emb.weight


def test_nothing_to_convert_and_unsupported_settings_warn():
    with pytest.warns(UserWarning, match=r"compress found no layer to convert in this Sequential"):
        _, reports = tn.compress(nn.Sequential(nn.ReLU()), compression=2)
    assert reports == []
    with pytest.warns(UserWarning, match=r"leaves 1 layer\(s\) dense: '0' \(groups=4, padding_mode='zeros'"):
        _, reports = tn.compress(nn.Sequential(nn.Conv2d(8, 8, 3, groups=4), nn.Flatten(), nn.Linear(8, 4)),
                                 compression=2, layers=None)
    with pytest.raises(TypeError, match=r"layer '0' is a Conv2d with groups=4"):
        tn.compress(nn.Sequential(nn.Conv2d(8, 8, 3, groups=4)), compression=2, layers=["0"])


class ReadsWeight(nn.Module):
    """A parent that reads its child's weight itself: converting the child breaks it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)

    def forward(self, x):
        return self.lin(x) + x @ self.lin.weight.T


def test_a_model_the_conversion_breaks_is_restored_and_the_error_names_the_cause():
    torch.manual_seed(3)
    model = ReadsWeight()
    batches = [torch.randn(32, 16) for _ in range(4)]
    with pytest.raises(ValueError, match=r"does not run on the first calibration batch \(AttributeError: "
                                         r".*'weight'.*the model was left as it was"):
        tn.compress(model, compression=2, calibration=batches, inplace=True)
    assert isinstance(model.lin, nn.Linear)  # in place, and put back
    x = batches[0]
    assert torch.equal(model(x), model.lin(x) + x @ model.lin.weight.T)
    with pytest.raises(ValueError, match=r"does not run on the example \(AttributeError: "):  # no calibration needed
        tn.compress(model, compression=2, example=x, inplace=True)
    assert isinstance(model.lin, nn.Linear)
    small, _ = tn.compress(nn.Sequential(nn.Linear(16, 16)), compression=2, example=(x,))  # a model that runs
    assert isinstance(small[0], tn.MPOLinear)
    with pytest.raises(ValueError, match=r"example does not fit the model: the dense model fails on it \(Runtime"):
        tn.compress(nn.Sequential(nn.Linear(16, 16)), compression=2, example=torch.randn(2, 3))


class Cancelling(nn.Module):
    """Two nearly equal layers whose outputs cancel: compressing them apart moves the difference far."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight + 1e-3 * torch.randn(64, 64))
            self.b.bias.copy_(self.a.bias)

    def forward(self, x):
        return self.a(x) - self.b(x)


def test_the_check_compares_with_the_dense_model(capsys):
    torch.manual_seed(5)
    x = torch.randn(32, 64)
    dense = nn.Sequential(nn.Linear(64, 64), nn.Tanh())
    small, _ = tn.compress(dense, compression=4, example=x, verbose=True)
    said = capsys.readouterr().err
    change = float(said.split("differ from the dense model's by ")[1].split()[0])
    with torch.no_grad():
        want = float((small(x) - dense(x)).norm() / dense(x).norm())
    assert 0 < change < 1 and change == pytest.approx(want, rel=1e-3)
    model = Cancelling()
    with pytest.warns(UserWarning, match=r"outputs differ from the dense model's by .* \(relative\) on the example: "
                                         r"more than the outputs themselves"):
        tn.compress(model, compression=4, example=x)
