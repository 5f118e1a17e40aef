"""Helpers shared by the tnlib.nn tests: seeded training loops and a teacher LSTM."""

import torch
from torch import nn


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
