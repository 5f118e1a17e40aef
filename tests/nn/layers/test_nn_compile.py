"""Graph capture: every tnlib module compiles with ``fullgraph=True`` (no graph break) and matches eager."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402

MODULES = [
    ("MPOLinear", lambda: tn.MPOLinear(64, 48, bond_dim=6), lambda: (torch.randn(5, 64),)),
    ("MPOLinear dense form", lambda: tn.MPOLinear(16, 16, bond_dim=16, num_cores=2), lambda: (torch.randn(3, 16),)),
    ("MPOLSTM", lambda: tn.MPOLSTM(12, 16, bond_dim=4, num_cores=2, num_layers=2, bidirectional=True),
     lambda: (torch.randn(4, 3, 12),)),
    ("MPOGRU", lambda: tn.MPOGRU(12, 16, bond_dim=4, num_cores=2), lambda: (torch.randn(4, 3, 12),)),
    ("MPOLSTMCell", lambda: tn.MPOLSTMCell(12, 16, bond_dim=4, num_cores=2),
     lambda: (torch.randn(3, 12), (torch.randn(3, 16), torch.randn(3, 16)))),
    ("MPOGRUCell", lambda: tn.MPOGRUCell(12, 16, bond_dim=4, num_cores=2), lambda: (torch.randn(3, 12),)),
    ("TTLinear", lambda: tn.TTLinear(64, 32, bond_dim=4), lambda: (torch.randn(2, 64),)),
    ("TTLSTM", lambda: tn.TTLSTM.from_lstm(nn.LSTM(8, 16), bond_dim=4), lambda: (torch.randn(4, 2, 8),)),
    ("LowRankLinear", lambda: tn.LowRankLinear(64, 32, rank=4), lambda: (torch.randn(2, 64),)),
    ("LowRankLSTM", lambda: tn.LowRankLSTM.from_lstm(nn.LSTM(8, 16), rank=4), lambda: (torch.randn(4, 2, 8),)),
]


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("grad", [True, False], ids=["train", "no_grad"])
@pytest.mark.parametrize("name, make, args", MODULES, ids=[m[0] for m in MODULES])
def test_compiles_without_graph_breaks_and_matches_eager(name, make, args, grad):
    torch.manual_seed(0)
    module, inputs = make().double(), args()
    inputs = tuple(a.double() if isinstance(a, torch.Tensor) else tuple(t.double() for t in a) for a in inputs)
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="eager")  # fullgraph: a graph break is an error
    with torch.set_grad_enabled(grad):
        got, want = first(compiled(*inputs)), first(module(*inputs))
    assert torch.allclose(got, want, atol=1e-12)
    if grad:  # gradients through the compiled graph equal the eager ones, for every parameter
        params = list(module.parameters())
        compiled_grads = torch.autograd.grad(got.sum(), params)
        eager_grads = torch.autograd.grad(want.sum(), params)
        for g, e in zip(compiled_grads, eager_grads):
            assert torch.allclose(g, e, atol=1e-10)


def test_inductor_compiled_mpo_lstm_matches_eager_and_sees_updated_cores():
    torch.manual_seed(0)
    lstm = tn.MPOLSTM.from_lstm(nn.LSTM(16, 16), tnlib.Truncation(max_bond=4), num_cores=2).eval()
    x = torch.randn(3, 1, 16)
    compiled = torch.compile(lstm, fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x)[0], lstm(x)[0], atol=1e-5)
        lstm.cores_hh_l0[0].mul_(0.5)  # the compiled graph builds its form from the cores: never stale
        assert torch.allclose(compiled(x)[0], lstm(x)[0], atol=1e-5)


def test_stacked_lstm_trains_its_first_layer_and_passes_gradients_to_its_input():
    lstm = tn.MPOLSTM(8, 16, num_layers=2, bond_dim=4, num_cores=2)
    x = torch.randn(5, 2, 8, requires_grad=True)
    lstm(x)[0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in lstm.cores_ih_l0)


def test_lstm_forward_is_differentiable_in_its_input_and_dense_weights():
    w_ih = torch.randn(16, 3, requires_grad=True)
    w_hh = torch.randn(16, 4, requires_grad=True)
    x = torch.randn(5, 2, 3, requires_grad=True)
    out, _ = tnlib.lstm_forward(x, w_ih, w_hh)
    out.sum().backward()
    assert all(t.grad is not None for t in (x, w_ih, w_hh))


@pytest.mark.parametrize("rows", [None, 1, 10**6])
@pytest.mark.parametrize("num_cores", [2, 3, 4])
def test_every_traced_form_is_the_exact_product(rows, num_cores):
    from tnlib.nn._layers._traced import apply_form, form_split, weight_form

    torch.manual_seed(num_cores)
    layer = tn.MPOLinear(48, 40, bond_dim=5, num_cores=num_cores, bias=False).double()
    x = torch.randn(3, 48, dtype=torch.float64)
    with torch.no_grad():
        want = x @ layer.dense_weight().T
        form = weight_form(list(layer.cores), rows)
        assert torch.allclose(apply_form(form, x), want, atol=1e-12)
    shapes = [tuple(c.shape) for c in layer.cores]
    # with many rows the building is negligible: the choice is the per-row one
    assert form_split(shapes, 10**12) == form_split(shapes, None)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:FutureWarning")  # torch >= 2.14
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_one_capture_test_for_the_core_and_the_layers():
    """tnlib._backend.capturing is the one test: torch.compile, torch.export and torch.jit.trace all count."""
    import numpy as np

    from tnlib._backend import capturing

    seen = []

    def f(x):
        seen.append((capturing(), capturing(x), capturing(np.ones(2))))
        return x * 2

    assert (capturing(), capturing(torch.ones(2))) == (False, False)
    torch.jit.trace(f, torch.ones(2))
    assert seen[0] == (True, True, False)  # the traced call (trace may rerun f eagerly to check it)
    layer = tnlib.nn.MPOLinear(16, 16, bond_dim=2)
    traced = torch.jit.trace(layer, torch.ones(3, 16))
    with torch.no_grad():
        assert torch.allclose(traced(torch.ones(5, 16)), layer(torch.ones(5, 16)), atol=1e-6)
