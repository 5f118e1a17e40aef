"""Kernels for graph capture: ``torch.compile(fullgraph=True)``, ``torch.export`` and ONNX export.

The eager kernels (:func:`tnlib._apply.apply_cores` and the cached forms of
:mod:`tnlib.nn._layers._inference`) plan contractions with opt_einsum and cache
results in Python dictionaries keyed by parameter versions; a graph tracer
can follow neither. While a graph is being captured the layers call these
instead: the same exact products written with a fixed sequence of torch
operations whose shapes are plain integers, so the tracer folds the plan to
constants. The weight's cheapest form (two merged halves of the chain, or
the dense matrix when it is no larger; :func:`tnlib._apply.inference_split`)
is built inside the graph from the cores, once per forward call, so an
exported file stores the cores, never the dense matrix, and a compiled
module can never see a stale form.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from tnlib._apply import merge_halves, merge_left
from tnlib._cost import split_cost

__all__ = ["WeightForm", "weight_form", "apply_form", "operator", "apply_input_first_traced"]


class WeightForm(NamedTuple):
    """``x @ W^T`` as two matrix products (``right (N_R, r M_R)``, ``left (N_L r, M_L)``) or one (``dense_t``)."""

    right: torch.Tensor | None
    left: torch.Tensor | None
    dense_t: torch.Tensor | None
    dims: tuple[int, int, int, int, int]  # ml, nl, r, mr, nr


def form_split(shapes: Sequence[Sequence[int]], rows: int | None) -> int | None:
    """The cut of the merged halves for ``rows`` products in one forward pass, or ``None`` for the
    dense matrix: the fewest multiply-adds counting the building of the form, which a captured graph
    pays on every call (``rows=None``: per row only, as :func:`tnlib._apply.inference_split`)."""
    return split_cost(shapes, rows, build=True).split


def weight_form(cores: Sequence[torch.Tensor], rows: int | None = None) -> WeightForm:
    """The cheapest exact form of the MPO weight held by ``cores`` for ``rows`` products (traceable;
    differentiable)."""
    cores = list(cores)
    split = form_split([tuple(c.shape) for c in cores], rows)
    if split is None:
        left = merge_left(cores)  # (M, N, 1)
        m, n = left.shape[0], left.shape[1]
        return WeightForm(None, None, left.reshape(m, n).transpose(0, 1), (m, n, 1, 1, 1))
    merged = merge_halves(cores, split)
    return WeightForm(merged.right, merged.left, None, (merged.ml, merged.nl, merged.r, merged.mr, merged.nr))


def apply_form(form: WeightForm, flat: torch.Tensor) -> torch.Tensor:
    """``flat (B, N) @ W^T`` through a :class:`WeightForm`."""
    if form.dense_t is not None:
        return flat @ form.dense_t
    assert form.right is not None and form.left is not None
    ml, nl, r, mr, nr = form.dims
    batch = flat.shape[0]
    t = flat.reshape(batch * nl, nr) @ form.right
    t = t.reshape(batch, nl, r, mr).permute(0, 3, 1, 2).reshape(batch * mr, nl * r)
    y = t @ form.left
    return y.reshape(batch, mr, ml).permute(0, 2, 1).reshape(batch, ml * mr)


def operator(cores: Sequence[torch.Tensor], rows: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ W^T`` with the form built once (outside a recurrence's time loop) for ``rows`` products."""
    form = weight_form(cores, rows)
    return lambda x: apply_form(form, x)


def apply_input_first_traced(cores: Sequence[torch.Tensor], num_in: int, flat: torch.Tensor) -> torch.Tensor:
    """:func:`tnlib._apply.apply_input_first` in fixed torch operations (the MPS tensor-train weight)."""
    batch = flat.shape[0]
    acc = flat.reshape(batch, 1, -1)
    for core in cores[:num_in]:
        r, j, q = core.shape[0], core.shape[1], core.shape[2]
        acc = torch.einsum("brjs,rjq->bqs", acc.reshape(batch, r, j, -1), core)
    acc = acc.reshape(batch, -1)
    for core in cores[num_in:]:
        r, i, q = core.shape[0], core.shape[1], core.shape[2]
        acc = (acc.reshape(-1, r) @ core.reshape(r, i * q)).reshape(batch, -1, q)
    return acc.reshape(batch, -1)
