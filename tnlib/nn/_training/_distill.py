"""Short distillation of a compressed model against the dense one, on unlabelled inputs."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

import torch
from torch import nn

from tnlib._checks import check_int, check_positive
from tnlib.nn._convert._calibration import run_batch

__all__ = ["distill", "first_tensor"]


def first_tensor(output: Any) -> torch.Tensor:
    """The tensor a model's output leads with: itself, ``.logits``, the first of a tuple or dict."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict):
        return first_tensor(next(iter(output.values())))
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    raise TypeError(f"cannot find a tensor in a model output of type {type(output).__name__}")


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Iterable[Any],
    steps: int,
    *,
    lr: float = 1e-3,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Train ``student`` to reproduce ``teacher``'s outputs on ``batches`` for ``steps`` Adam steps.

    Parameters
    ----------
    student, teacher
        The compressed model and the dense one (the teacher is not trained).
    batches
        Unlabelled model inputs (tensors, argument tuples or keyword dicts),
        cycled through until ``steps`` steps are done; at most ``steps`` of
        them are read, so an endless iterator is fine.
    steps
        Optimiser steps.
    lr
        Adam learning rate.
    loss
        ``loss(student_out, teacher_out)``; default mean squared error of
        the outputs' leading tensors (:func:`first_tensor`).

    Returns
    -------
    list of float
        The loss at every step.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> teacher = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    >>> student, _ = tnlib.nn.compress(teacher, compression=4)
    >>> losses = tnlib.nn.distill(student, teacher, [torch.randn(64, 32) for _ in range(4)], steps=40, lr=1e-2)
    >>> losses[-1] < losses[0]
    True
    """
    steps = check_int("steps", steps, 1)
    lr = check_positive("lr", lr)
    data = list(itertools.islice(iter(batches), steps))  # at most one pass of what the steps use: an endless
    if not data:  # iterator (a generator of fresh batches) is read only that far
        raise ValueError("batches holds no inputs; pass an iterable of model inputs")
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise ValueError("student has no trainable parameters")
    criterion = loss or _mse
    opt = torch.optim.Adam(params, lr=lr)
    teacher_mode = teacher.training
    teacher.eval()
    student.train()
    history = []
    try:
        for k, batch in enumerate(itertools.islice(itertools.cycle(data), steps)):
            with torch.no_grad():
                target = first_tensor(run_batch(teacher, batch))
            out = first_tensor(run_batch(student, batch))
            if loss is None and tuple(out.shape) != tuple(target.shape):
                raise ValueError(
                    f"student and teacher outputs differ in shape on batch {k % len(data)}: {tuple(out.shape)} vs "
                    f"{tuple(target.shape)}; the default loss compares them entry by entry (pass loss= otherwise)"
                )
            value = criterion(out, target)
            if not bool(torch.isfinite(value)):
                raise ValueError(f"the distillation loss is {float(value)} at step {k}; lower lr (now {lr})")
            opt.zero_grad()
            value.backward()
            opt.step()
            history.append(float(value.detach()))
    finally:
        teacher.train(teacher_mode)
    return history


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mean((a - b) ** 2)
