"""Decompositions and truncations whose ranks follow from shapes alone: what runs on traced values.

Under ``jax.jit`` / ``jax.grad`` (and while torch captures a graph) no value can be read, so nothing may
depend on one: no rank chosen from a spectrum, no rescaling by the size of an entry, no report of
discarded weights. With a :class:`~tnlib.Truncation` that sets only ``max_bond`` (and ``min_bond``), every
rank is ``min(cap, rows, cols)``, a function of the shapes, and the SVD sweeps below are the same
products as the eager ones without the bookkeeping: exact at those ranks, no report, no protection
against overflow beyond float range (the eager path rescales by powers of two; a traced one cannot).
"""

from __future__ import annotations

from typing import Any, Sequence

import array_api_compat

from ._backend import capturing, namespace
from ._canonical import orthonormalize
from ._jax import is_tracer
from ._svd_grad import differentiable_svd
from .truncation import Truncation

__all__ = ["traced", "fixed_caps", "tt_svd_fixed", "truncate_fixed"]


def traced(*arrays: Any) -> bool:
    """Whether any of ``arrays`` is a JAX tracer or a torch tensor in a graph being captured."""
    return any(is_tracer(a) for a in arrays) or capturing(*arrays)


def fixed_caps(truncation: Truncation | None, num_bonds: int, what: str) -> list[int | None]:
    """The per-bond caps of a truncation whose ranks depend on shapes only; a ``TypeError`` naming ``what``
    for any criterion that reads values."""
    if truncation is None:
        return [None] * num_bonds
    reading = truncation.value_criteria
    if reading:
        raise TypeError(
            f"{what} on traced values (inside jax.jit / jax.grad or torch.compile) needs ranks fixed by shapes: "
            f"Truncation(max_bond=...) alone; {', '.join(reading)} read(s) the singular values. Call it outside the "
            "transformed function, or give only max_bond"
        )
    return list(truncation.bond_caps(num_bonds))


def _svd(a: Any) -> tuple[Any, Any, Any]:
    """Thin SVD whose backward handles degenerate and zero singular values (:mod:`tnlib._svd_grad`)."""
    if array_api_compat.is_jax_array(a) or (array_api_compat.is_torch_array(a) and a.requires_grad):
        return differentiable_svd(a)
    xp = namespace(a)
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    return u, s, vh


def _project(xp: Any, u: Any, mat: Any) -> Any:
    """``U^H mat``: the rest of a sweep as the exact projection, so the gradient reaches ``mat`` directly and the
    SVD's backward sees only ``U`` (the directions of zero singular values are then never lost)."""
    return xp.conj(xp.matrix_transpose(u)) @ mat


def _rank(cap: int | None, rows: int, cols: int, floor: int) -> int:
    full = min(rows, cols)
    return full if cap is None else min(full, max(cap, floor))


def tt_svd_fixed(tensor: Any, dims: Sequence[int], caps: Sequence[int | None], floor: int = 1) -> list[Any]:
    """Site cores of ``tensor`` (shape ``dims``) by sequential SVD from the left at ranks ``min(cap, ...)``."""
    xp = namespace(tensor)
    n = len(dims)
    cores = []
    rest = xp.reshape(tensor, (1, -1))
    r = 1
    for k in range(n - 1):
        mat = xp.reshape(rest, (r * dims[k], -1))
        u, _, _ = _svd(mat)
        chi = _rank(caps[k], int(mat.shape[0]), int(mat.shape[1]), floor)
        cores.append(xp.reshape(u[:, :chi], (r, dims[k], chi)))
        rest = _project(xp, u[:, :chi], mat)
        r = chi
    cores.append(xp.reshape(rest, (r, dims[-1], 1)))
    return cores


def truncate_fixed(sites: Sequence[Any], center: int | None, caps: Sequence[int | None], floor: int = 1) -> list[Any]:
    """Site cores truncated at ranks ``min(cap, ...)`` by one SVD sweep from the right-canonical form;
    left-canonical (centre ``n - 1``)."""
    xp = namespace(*sites)
    n = len(sites)
    out = orthonormalize(sites, 0, center)
    for k in range(n - 1):
        left, phys, right = out[k].shape
        mat = xp.reshape(out[k], (left * phys, right))
        u, _, _ = _svd(mat)
        chi = _rank(caps[k], int(left * phys), int(right), floor)
        out[k] = xp.reshape(u[:, :chi], (left, phys, chi))
        carry = _project(xp, u[:, :chi], mat)
        nxt = out[k + 1]
        out[k + 1] = xp.reshape(carry @ xp.reshape(nxt, (nxt.shape[0], -1)), (chi, *nxt.shape[1:]))
    return out
