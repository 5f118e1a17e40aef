"""The inference fast path: equal to the core-wise path, never stale, absent while training."""

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib._apply  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib.nn._layers import _inference as inference  # noqa: E402


def both_paths(module, *args):
    with torch.no_grad():
        fast = module(*args)
    slow = module(*args)  # gradients enabled: the core-wise contraction
    return fast, slow


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize(
    "make, args",
    [
        (lambda: tn.MPOLinear(64, 48, bond_dim=6), lambda: (torch.randn(5, 64),)),
        (lambda: tn.MPOLinear(16, 16, bond_dim=16, num_cores=2), lambda: (torch.randn(3, 16),)),  # dense is cheaper
        (lambda: tn.MPOLSTM(12, 16, bond_dim=4, num_cores=2, num_layers=2, bidirectional=True),
         lambda: (torch.randn(7, 3, 12),)),
        (lambda: tn.MPOGRU(12, 16, bond_dim=4, num_cores=2), lambda: (torch.randn(7, 3, 12),)),
        (lambda: tn.MPOLSTMCell(12, 16, bond_dim=4, num_cores=2), lambda: (torch.randn(3, 12),)),
        (lambda: tn.MPOGRUCell(12, 16, bond_dim=4, num_cores=2), lambda: (torch.randn(3, 12),)),
    ],
)
def test_fast_path_equals_core_wise_path_and_is_never_stale(make, args):
    module = make().double()
    inputs = tuple(a.double() for a in args())
    fast, slow = both_paths(module, *inputs)
    assert torch.allclose(first(fast), first(slow), atol=1e-12)
    # an in-place update of one core (an optimizer step does the same) must show at once
    core = next(p for n, p in module.named_parameters() if "cores" in n)
    with torch.no_grad():
        core.mul_(1.5)
    fast, slow = both_paths(module, *inputs)
    assert torch.allclose(first(fast), first(slow), atol=1e-12)
    # so must a replaced parameter
    name = next(n for n, _ in module.named_parameters() if "cores" in n)
    owner_name, _, index = name.rpartition(".")
    owner = module.get_submodule(owner_name)
    owner[int(index)] = nn.Parameter(owner[int(index)].detach() * -1.0)
    fast, slow = both_paths(module, *inputs)
    assert torch.allclose(first(fast), first(slow), atol=1e-12)


def test_training_steps_invalidate_and_training_builds_no_form():
    layer = tn.MPOLinear(32, 32, bond_dim=4).double()
    x = torch.randn(8, 32, dtype=torch.float64)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        with torch.no_grad():
            before = layer(x)
        loss = (layer(x) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            after = layer(x)
        assert not torch.allclose(before, after)
        assert torch.allclose(after, layer(x), atol=1e-12)
    fresh = tn.MPOLinear(32, 32, bond_dim=4)
    fresh(torch.randn(2, 32)).sum().backward()
    assert "_inference_forms" not in fresh.__dict__
    assert set(fresh.state_dict()) == {f"cores.{k}" for k in range(len(fresh.cores))} | {"bias"}


def test_squeezing_masks_invalidate_the_form_and_copies_are_independent():
    layer = tn.MPOLinear(64, 64, bond_dim=8, num_cores=3).double()
    x = torch.randn(4, 64, dtype=torch.float64)
    with torch.no_grad():
        layer(x)
    tn.DimensionSqueezer(layer, {0: 2}).step()
    fast, slow = both_paths(layer, x)
    assert torch.allclose(fast, slow, atol=1e-12)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        twin.cores[0].zero_()
        assert torch.allclose(layer(x), slow, atol=1e-12) and not torch.allclose(twin(x), slow)


def test_compressed_model_runs_the_fast_path_on_every_layer():
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8))
    small, _ = tn.compress(model, compression=4, num_cores=2)
    x = torch.randn(3, 64)
    fast, slow = both_paths(small, x)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert all("_inference_forms" in m.__dict__ for m in small if isinstance(m, tn.MPOLinear))


@pytest.mark.parametrize(
    "make, args",
    [
        (lambda: tn.MPOLinear(16, 8, bond_dim=2), lambda: (torch.randn(2, 16),)),
        (lambda: tn.MPOLSTM(8, 8, bond_dim=2), lambda: (torch.randn(3, 2, 8),)),
        (lambda: tn.MPOGRUCell(8, 8, bond_dim=2), lambda: (torch.randn(2, 8),)),
    ],
)
def test_an_input_of_another_dtype_is_refused_naming_both(make, args):
    module = make()
    (x,) = args()
    for grad in (True, False):
        with torch.set_grad_enabled(grad), pytest.raises(TypeError, match="float64.*float32"):
            module(x.double())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dense_forms_run_torchs_fused_recurrence_with_the_same_result(kind, monkeypatch):
    torch.manual_seed(0)
    cls, fused = (tn.MPOLSTM, "lstm") if kind == "lstm" else (tn.MPOGRU, "gru")
    # bond 16 on 2 cores of a 16-wide layer: the dense matrix is the form of both weights. Its FLOPs are
    # within 4x of the chain's, where the plan would time both: the choice is pinned so the test is not timing
    module = cls(16, 16, bond_dim=16, num_cores=2, num_layers=2, bidirectional=True).double().eval()
    x = torch.randn(6, 3, 16, dtype=torch.float64)
    monkeypatch.setattr(tnlib._apply.WeightPlan, "_chain_is_faster", lambda self, flat: False)
    calls = []
    original = getattr(torch, fused)
    monkeypatch.setattr(torch, fused, lambda *a: calls.append(1) or original(*a))
    fast, slow = both_paths(module, x)
    assert len(calls) == 4  # two layers, two directions
    assert torch.allclose(first(fast), first(slow), atol=1e-12)
    for f, s in zip(fast[1] if kind == "lstm" else (fast[1],), slow[1] if kind == "lstm" else (slow[1],)):
        assert torch.allclose(f, s, atol=1e-12)


def low_rank(dense, rank=3):
    """The MPO version of a torch recurrent layer or cell with every weight as its rank-``rank`` SVD split."""
    mpos = {"cores_" + name.removeprefix("weight_"): tnlib.MPO.from_matrix(
        w.detach().double(), (w.shape[0], 1), (1, w.shape[1]), truncation=tnlib.Truncation(max_bond=rank))
        for name, w in dense.named_parameters() if name.startswith("weight")}
    convert = {nn.LSTM: tn.MPOLSTM.from_lstm, nn.GRU: tn.MPOGRU.from_gru, nn.LSTMCell: tn.MPOLSTMCell.from_lstm_cell,
               nn.GRUCell: tn.MPOGRUCell.from_gru_cell}[type(dense)]
    return convert(dense, mpos=mpos)


@pytest.mark.parametrize("fused_wins", [True, False])
@pytest.mark.parametrize(
    "make, args, kernel",
    [
        (lambda: low_rank(nn.LSTM(16, 24, bidirectional=True)), lambda: (torch.randn(9, 1, 16),), "lstm"),
        (lambda: low_rank(nn.GRU(16, 24)), lambda: (torch.randn(9, 2, 16),), "gru"),
        (lambda: low_rank(nn.LSTMCell(16, 24)), lambda: (torch.randn(1, 16),), "lstm_cell"),
        (lambda: low_rank(nn.GRUCell(16, 24)), lambda: (torch.randn(2, 16),), "gru_cell"),
    ],
)
def test_factored_weights_choose_fused_kernel_or_python_recurrence_with_one_result(make, args, kernel, fused_wins,
                                                                                   monkeypatch):
    """At inference a factored recurrence runs as torch's fused kernel on the rebuilt matrices or in Python on
    the factored forms, whichever timed faster (pinned here): the same function either way, chosen once per
    batch size and again after a parameter changes; a matrix that is not used is not kept (a stacked layer's
    fused kernel takes a low-rank input weight as its two factors: never rebuilt)."""
    torch.manual_seed(0)
    module = make().double().eval()
    inputs = tuple(a.double() for a in args())
    timed = []
    monkeypatch.setattr(inference, "first_is_faster", lambda a, b, **kw: timed.append(1) or fused_wins)
    calls = []
    original = getattr(torch, kernel)
    monkeypatch.setattr(torch, kernel, lambda *a: calls.append(1) or original(*a))
    for _ in range(2):  # the second call reuses the choice
        fast, slow = both_paths(module, *inputs)
        assert torch.allclose(first(fast), first(slow), atol=1e-12)
    directions = 2 if getattr(module, "bidirectional", False) else 1
    assert len(timed) == directions
    assert (len(calls) > 0) == fused_wins
    forms = module.__dict__["_inference_forms"]
    plans = [v[1] for v in forms.values()]
    assert all(p.dense_t is None for p in plans)  # the factored form is what the plans hold
    stacked = kernel in ("lstm", "gru")  # the fused kernel runs on x B^T with A: the input weight is never rebuilt
    for name, (_, p) in forms.items():
        assert (p.full is not None) == (fused_wins and not (stacked and "_ih" in name)), name
    with torch.no_grad():
        next(p for n, p in module.named_parameters() if "cores" in n).mul_(-1.0)
    fast, slow = both_paths(module, *inputs)
    assert torch.allclose(first(fast), first(slow), atol=1e-12)
    assert len(timed) == directions + 1  # the changed weight chose again
