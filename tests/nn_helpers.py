"""Helpers shared by the tnlib.nn tests: seeded training loops and a teacher LSTM."""

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
