"""MPOLSTM: exact conversion, gate layout, NumPy inference, training, errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from nn_helpers import lstm_teacher_batches, train_steps  # noqa: E402
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


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


@pytest.mark.parametrize("kind", ["lstm", "cell", "attention"])
def test_a_budget_without_a_layout_searches_each_weight_as_from_matrix_does(kind):
    """With a max_params budget and no num_cores, each weight's layout is searched (as MPO.from_matrix and compress
    do: the fast truncated-SVD layout when nothing beats it); num_cores keeps the gate layout."""
    torch.manual_seed(0)
    t = tnlib.Truncation(max_params=2048)
    if kind == "lstm":
        layer = nn.LSTM(32, 64, num_layers=2)
        searched, gate = tn.MPOLSTM.from_lstm(layer, t), tn.MPOLSTM.from_lstm(layer, t, num_cores=3)
        dense = {f"cores_{k}": getattr(layer, f"weight_{k}") for k in ("ih_l0", "hh_l0", "ih_l1", "hh_l1")}
    elif kind == "cell":
        layer = nn.LSTMCell(32, 64)
        searched, gate = tn.MPOLSTMCell.from_lstm_cell(layer, t), tn.MPOLSTMCell.from_lstm_cell(layer, t, num_cores=3)
        dense = {f"cores_{k}": getattr(layer, f"weight_{k}") for k in ("ih", "hh")}
    else:
        layer = nn.MultiheadAttention(64, 4)
        searched, gate = tn.MPOMultiheadAttention.from_mha(layer, t), tn.MPOMultiheadAttention.from_mha(layer, t,
                                                                                                         num_cores=3)
        q, k, v = layer.in_proj_weight.chunk(3)
        dense = {"cores_q": q, "cores_k": k, "cores_v": v, "cores_out": layer.out_proj.weight}
    assert sorted(searched.mpo_names()) == sorted(dense)
    for name, w in dense.items():
        mpo, fixed = searched.mpo(name), gate.mpo(name)
        assert len(fixed.cores) == 3 and mpo.num_params <= 2048
        want = tnlib.MPO.from_matrix(w.detach().double(), truncation=t)
        assert [tuple(c.shape) for c in mpo.cores] == [tuple(c.shape) for c in want.cores], name
        torch.testing.assert_close(mpo.to_matrix().double(), want.to_matrix(), atol=1e-5, rtol=0)


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


@pytest.mark.parametrize("kind", ["MPOLSTM", "MPOGRU"])
def test_recurrent_layers_refuse_what_torch_refuses(kind):
    layer = getattr(tn, kind)(8, 16, bond_dim=2, num_cores=2)
    x = torch.randn(5, 3, 8)
    states = 1
    h = torch.zeros(states, 3, 16, dtype=torch.float64)
    hx = (h, h) if kind == "MPOLSTM" else h
    with pytest.raises(TypeError, match=r"hx has dtype torch.float64 but this .*'s weights are torch.float32"):
        layer(x, hx)
    with pytest.raises(ValueError, match=r"input has no time steps"):
        layer(torch.randn(0, 3, 8))
    packed = nn.utils.rnn.pack_padded_sequence(x, [5, 4, 2])
    with pytest.raises(TypeError, match=r"takes padded tensors, not a PackedSequence"):
        layer(packed)
    with pytest.raises(TypeError, match=r"batch_first must be True or False, got 'yes'"):
        getattr(tn, kind)(8, 16, bond_dim=2, batch_first="yes")
    with pytest.raises(ValueError, match=r"dropout=1.5 is invalid"):
        getattr(tn, kind)(8, 16, bond_dim=2, dropout=1.5)


@pytest.mark.parametrize("kind", ["MPOLSTMCell", "MPOGRUCell"])
def test_cells_refuse_a_hidden_state_of_another_dtype(kind):
    cell = getattr(tn, kind)(8, 16, bond_dim=2, num_cores=2)
    h = torch.zeros(3, 16, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"hx has dtype torch.float64"):
        cell(torch.randn(3, 8), (h, h) if kind == "MPOLSTMCell" else h)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["MPOLSTM", "MPOGRU", "MPOLSTMCell", "MPOGRUCell"])
def test_recurrent_layers_train_in_half_precision(kind, dtype):
    """A half-precision recurrent layer runs forward and backward with grad (it raised on the dtype of x),
    in its own dtype, and agrees with the same layer in float32 to that dtype's precision."""
    torch.manual_seed(0)
    layer = getattr(tn, kind)(8, 16, bond_dim=4, num_cores=2)
    x32 = torch.randn(5, 3, 8) if "Cell" not in kind else torch.randn(3, 8)
    ref = layer(x32)
    ref = (ref[0] if isinstance(ref, tuple) else ref).detach()
    half = layer.to(dtype)
    x = x32.to(dtype).requires_grad_()
    out = half(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.dtype == dtype
    out.float().square().sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    grads = [p.grad for p in half.parameters()]
    assert all(g is not None and g.dtype == dtype and torch.isfinite(g).all() for g in grads)
    tol = 2e-2 if dtype == torch.bfloat16 else 3e-3
    assert (out.detach().float() - ref).abs().max().item() < tol
