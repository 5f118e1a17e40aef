"""How much a model's outputs move per unit of error in each weight: the sensitivities of one global budget.

A weight ``W`` (as the matrix of ``x W^T``) fitted in the metric ``C = L L^T``
of its inputs loses ``||(W - W_hat) L||_F^2`` per calibration row. What that
costs downstream is, to first order, ``<G, W - W_hat>`` for a random
projection ``u`` of the model's outputs, with ``G = d(u . y) / dW`` - one
backward pass gives ``G`` for every weight at once. For an error that is
isotropic in the metric (``(W - W_hat) L`` with i.i.d. entries), the expected
squared change of the outputs per unit of that error is
``||G L^{-T}||_F^2 / (M N)`` (the same for every factor ``L``), averaged over the calibration batches (one
Gaussian ``u`` each, seeded). :func:`tnlib.budget.allocate_ranks` then spends
one budget where it removes the most output change per stored weight instead
of the most relative error per matrix, which weighs a matrix by how much the
model listens to it (an attention query against a feed-forward output in a
transformer, say). The estimate is Hutchinson's trace estimator applied to the
layer's Jacobian; it is noisy per batch but its average over the calibration
batches is what the allocation needs: a ratio between matrices.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from tnlib.nn._convert._calibration import run_batch

__all__ = ["output_change_per_error", "MAX_BATCHES"]

MAX_BATCHES = 8
"""Calibration batches used for the sensitivities (each one forward and one backward pass)."""


def _floating(out: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors of a model's output (a tensor, tuples, lists, dicts, ``ModelOutput``)."""
    if isinstance(out, torch.Tensor):
        if out.is_floating_point() and out.requires_grad:
            yield out
    elif isinstance(out, Mapping):
        for v in out.values():
            yield from _floating(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _floating(v)


@contextlib.contextmanager
def _only_grads_of(model: nn.Module, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Gradients for ``params`` only, the model in ``eval()``; flags and mode restored afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        for p in flags:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        model.eval()
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)


def output_change_per_error(
    model: nn.Module,
    weights: Mapping[Any, nn.Parameter],
    as_matrix: Mapping[Any, Callable[[torch.Tensor], torch.Tensor]],
    factors: Mapping[Any, torch.Tensor | None],
    batches: Sequence[Any],
) -> dict[Any, float] | None:
    """Per weight, the expected squared change of the model's outputs per unit of its error in its metric.

    ``weights`` are the model's own parameters; ``as_matrix`` maps each one's gradient to the
    ``(M, N)`` matrix of ``x W^T``; ``factors`` gives ``L^{-1}`` for a factor ``C = L L^T`` of the
    weight's metric (``None``: the identity). ``None`` when the outputs hold no floating-point tensor
    that depends on the weights (nothing to measure).
    """
    keys = list(weights)
    params = [weights[k] for k in keys]
    sums = dict.fromkeys(keys, 0.0)
    gen = torch.Generator().manual_seed(0)
    used = 0
    with _only_grads_of(model, params):
        for batch in list(batches)[:MAX_BATCHES]:
            outs = list(_floating(run_batch(model, batch)))
            if not outs:
                return None
            probe = torch.stack([(t * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)).sum()
                                 for t in outs]).sum()
            grads = torch.autograd.grad(probe, params, allow_unused=True)
            for key, g in zip(keys, grads):
                if g is not None:
                    sums[key] += _per_unit_error(as_matrix[key](g.detach().to(torch.float64).cpu()), factors[key])
            used += 1
    return {k: v / max(used, 1) for k, v in sums.items()}


def _per_unit_error(g: torch.Tensor, inverse: torch.Tensor | None) -> float:
    """``||G L^{-T}||_F^2 / (M N)`` from ``inverse = L^{-1}`` (any factor ``C = L L^T``: the norm does not depend
    on which); a pseudo-inverse counts directions of ``C`` without energy (no inputs there) as zero."""
    m, n = g.shape
    if inverse is None:
        return float((g**2).sum()) / (m * n)
    return float(((g @ inverse.T) ** 2).sum()) / (m * n)
