"""Helpers shared by the tnlib.nn tests: seeded training loops, a teacher LSTM, the check of a quantized export."""

import numpy as np
import pytest
import torch
from torch import nn


def assert_linear_trains(layer: nn.Module, in_features: int = 24, out_features: int = 18, steps: int = 30) -> None:
    """A few Adam steps on random regression data lower the loss of ``layer``."""
    torch.manual_seed(1)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x, y = torch.randn(64, in_features), torch.randn(64, out_features)
    first = None
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(layer(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


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


def lstm_teacher_batches():
    """Batches ``(x, y)`` labelled by a fixed random LSTM (6 -> 8, batch first)."""
    teacher = nn.LSTM(6, 8, batch_first=True)

    def batch():
        x = torch.randn(16, 5, 6)
        return x, teacher(x)[0].detach()

    return batch


def assert_exports_codes(model: nn.Module, layer: nn.Module, example: torch.Tensor, path, make_input, nodes: int,
                         largest: int) -> None:
    """``model`` (one tensor in, one out, around the quantized ``layer``) exported to ONNX at ``path``: at least
    ``nodes`` ``DequantizeLinear`` nodes, no float initializer of ``largest`` entries or more (no float weight in the
    file), onnxruntime's outputs torch's for ``make_input(batch)`` at batch 1 and 5, and no export buffer left on
    ``layer``."""
    import tnlib.nn as tn

    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tn.export_onnx(model.eval(), (example,), path)
    proto = onnx.load(str(path))
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) >= nodes
    assert not any(t.data_type == onnx.TensorProto.FLOAT and int(np.prod(t.dims)) >= largest
                   for t in proto.graph.initializer)
    session = ort.InferenceSession(str(path))
    for batch in (1, 5):
        xb = make_input(batch)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: xb.numpy()})[0],
                                       model(xb).numpy(), atol=1e-5)
    assert not any(k.startswith("onnx_") for k in layer._buffers)


class FirstOutput(nn.Module):
    """The first output of ``inner`` called on one tensor (self-attention when ``attention``): one tensor in, one
    out, for ``torch.compile`` and ONNX export."""

    def __init__(self, inner: nn.Module, attention: bool = False) -> None:
        super().__init__()
        self.inner, self.attention = inner, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x, x, x, need_weights=False)[0] if self.attention else self.inner(x)[0]


def assert_saves_loads_and_compiles(layer: nn.Module, x: torch.Tensor, path, attention: bool = False) -> nn.Module:
    """``layer`` saved to ``path`` and loaded back: the same class and outputs on ``x``, and within 1e-5 of them under
    ``torch.compile(fullgraph=True)``; the loaded layer."""
    import tnlib.nn as tn

    with torch.no_grad():
        want = FirstOutput(layer, attention)(x)
    tn.save(layer, path)
    back = tn.load(path)
    assert type(back) is type(layer)
    with torch.no_grad():
        assert torch.equal(FirstOutput(back, attention)(x), want)
        torch.testing.assert_close(torch.compile(FirstOutput(back, attention), fullgraph=True)(x), want, atol=1e-5,
                                   rtol=0)
    return back
