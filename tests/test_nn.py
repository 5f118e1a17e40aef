"""PyTorch adapters: MPO layers, baselines, MPOP, whole-model compression."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def train_steps(module, make_batch, steps=60, lr=1e-2):
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        x, y = make_batch()
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = ((out - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# -- MPOLinear ---------------------------------------------------------------


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


# -- MPOLSTM -------------------------------------------------------------------


@pytest.mark.parametrize("layers, bidirectional, batch_first", [(1, False, False), (2, True, True)])
def test_mpolstm_exact_conversion(layers, bidirectional, batch_first):
    lstm = nn.LSTM(12, 16, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    mpo = tn.MPOLSTM.from_lstm(lstm, num_cores=2)
    x = torch.randn(3, 7, 12)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 3 if batch_first else 7, 16)
    c0 = torch.randn_like(h0)
    x_in = x if batch_first else x.transpose(0, 1).contiguous()
    for hx in (None, (h0, c0)):
        if hx is not None and not batch_first:
            hx = (torch.randn(layers, 3, 16), torch.randn(layers, 3, 16))
            x_in = x.transpose(0, 1).contiguous()
        (a, (h, c)), (b, (h2, c2)) = lstm(x_in, hx), mpo(x_in, hx)
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(h, h2, atol=1e-5) and torch.allclose(c, c2, atol=1e-5)
    back = mpo.to_lstm()
    assert torch.allclose(back(x_in)[0], lstm(x_in)[0], atol=1e-5)


def test_mpolstm_gate_layout_and_unbatched_input():
    lstm = nn.LSTM(8, 12)
    mpo = tn.MPOLSTM.from_lstm(lstm, num_cores=2)
    assert mpo.gate_dims[0] % 4 == 0 and np.prod(mpo.gate_dims) == 48  # factor 4 in the first leg
    x = torch.randn(5, 8)
    assert torch.allclose(mpo(x)[0], lstm(x)[0], atol=1e-5)


def test_lstm_forward_in_numpy_equals_the_torch_module():
    lstm = nn.LSTM(8, 16)
    mpo_lstm = tn.MPOLSTM.from_lstm(lstm, tnlib.Truncation(max_bond=6), num_cores=2)
    x = torch.randn(6, 2, 8)
    ref, (h, c) = mpo_lstm(x)
    to_np = lambda m: tnlib.MPO([c.numpy() for c in m.cores])  # noqa: E731
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    out, (h2, c2) = tnlib.lstm_forward(
        x.numpy(), to_np(mpo_lstm.mpo("cores_ih_l0")), to_np(mpo_lstm.mpo("cores_hh_l0")), bias
    )
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(h2, h[0].detach().numpy(), atol=1e-5)


def test_mpolstm_errors():
    with pytest.raises(TypeError, match=r"lstm must be a torch.nn.LSTM, got GRU"):
        tn.MPOLSTM.from_lstm(nn.GRU(4, 4))
    with pytest.raises(ValueError, match=r"hidden_dims=\(3, 3\) multiply to 9 but hidden_size is 8"):
        tn.MPOLSTM(4, 8, hidden_dims=(3, 3))
    model = tn.MPOLSTM(4, 8, num_cores=2)
    with pytest.raises(ValueError, match=r"input has 5 features; this LSTM expects 4"):
        model(torch.randn(3, 2, 5))
    with pytest.raises(ValueError, match=r"'cores_xx' is not one of"):
        model.mpo("cores_xx")


# -- baselines -------------------------------------------------------------------


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


def test_low_rank_and_tensor_train_lstms():
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
    assert torch.allclose(tn.TTLSTM.from_lstm(lstm, 1000)(x)[0], ref, atol=1e-5)
    assert torch.allclose(tn.TTLSTM.from_lstm(lstm, 64).to_lstm()(x)[0], ref, atol=1e-5)
    with pytest.raises(ValueError, match=r"rank=20 exceeds"):
        tn.LowRankLSTM.from_lstm(lstm, 20)
    with pytest.raises(ValueError, match=r"which='xh' is invalid"):
        tn.LowRankLSTM(8, 8, 2, which="xh")


def test_match_compression_meets_the_ratio_with_measured_counts():
    lstm = nn.LSTM(32, 64)
    dense = tn.count_parameters(lstm)
    settings = tn.match_compression(lstm, 10)
    for method, s in settings.items():
        assert s["params"] <= dense / 10, method
    b = settings["mpo"]["bond_dim"]
    assert tn.count_parameters(tn.MPOLSTM(32, 64, bond_dim=b + 1, num_cores=3)) > dense / 10
    assert settings["low_rank"]["params"] == tn.count_parameters(tn.LowRankLSTM(32, 64, settings["low_rank"]["rank"]))


# -- MPOP -----------------------------------------------------------------------


def test_frozen_central_tensor_does_not_move():
    layer = tn.MPOLinear(64, 64, bond_dim=8, out_dims=(4, 4, 4), in_dims=(4, 4, 4))
    c = tn.central_index(layer)
    assert c == 1
    total = sum(p.numel() for p in layer.parameters())
    left = tn.freeze_central(layer)
    assert left == total - layer.cores[1].numel()
    before = [p.detach().clone() for p in layer.cores]
    teacher = nn.Linear(64, 64)

    def batch():
        x = torch.randn(32, 64)
        return x, teacher(x).detach()

    train_steps(layer, batch, steps=5)
    assert torch.equal(layer.cores[1], before[1])
    assert not torch.equal(layer.cores[0], before[0]) and not torch.equal(layer.cores[2], before[2])
    lstm = tn.MPOLSTM(8, 8, num_cores=3, bond_dim=4)
    tn.freeze_central(lstm)
    assert [p.requires_grad for p in lstm.cores_ih_l0] == [True, False, True]
    with pytest.raises(ValueError, match=r"holds no MPOLinear or MPOLSTM layer"):
        tn.freeze_central(nn.Linear(2, 2))


def test_dimension_squeezing_keeps_training():
    lin = nn.Linear(64, 64)
    layer = tn.MPOLinear.from_linear(lin, out_dims=(4, 4, 4), in_dims=(4, 4, 4))
    tn.freeze_central(layer)
    squeezer = tn.DimensionSqueezer(layer, {0: 12, 3: 8})
    teacher = nn.Linear(64, 64)
    opt = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=1e-3)
    for step in range(6):
        bond = squeezer.step()
        x = torch.randn(16, 64)
        loss = ((layer(x) - teacher(x).detach()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bond == 8 and max(layer.mpo.canonicalize(0).truncate(tnlib.Truncation(cutoff=1e-6)).bond_dims) <= 8
    eff = [c.detach() for c in layer.effective_cores()]
    assert float(eff[0][..., 8:].abs().sum()) == 0.0 and float(eff[1][8:].abs().sum()) == 0.0


# -- whole models -------------------------------------------------------------


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


def lstm_teacher_batches():
    """Batches ``(x, y)`` labelled by a fixed random LSTM (6 -> 8, batch first)."""
    teacher = nn.LSTM(6, 8, batch_first=True)

    def batch():
        x = torch.randn(16, 5, 6)
        return x, teacher(x)[0].detach()

    return batch


@pytest.mark.parametrize(
    "make",
    [
        lambda: tn.MPOLSTM(6, 8, bond_dim=3, num_cores=2, batch_first=True),
        lambda: tn.LowRankLSTM(6, 8, 3, batch_first=True),
        lambda: tn.LowRankLSTM(6, 8, 3, which="ih", batch_first=True),
        lambda: tn.TTLSTM(6, 8, 4, batch_first=True),
    ],
)
def test_every_lstm_trains_from_scratch(make):
    model = make()
    out, _ = model(torch.randn(2, 4, 6))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    losses = train_steps(model, lstm_teacher_batches(), steps=80)
    assert losses[-1] < 0.7 * losses[0]


def test_pruned_lstm_trains_and_stays_sparse():
    lstm = nn.LSTM(6, 8, batch_first=True)
    tn.prune_magnitude(lstm, 0.8)
    losses = train_steps(lstm, lstm_teacher_batches(), steps=60)
    assert losses[-1] < 0.8 * losses[0]
    assert float((lstm.weight_hh_l0 == 0).float().mean()) == pytest.approx(0.8, abs=0.01)
