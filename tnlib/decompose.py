"""TT-SVD: a tensor into a chain of site cores by sequential factorizations.

The tensor arrives already arranged so that its sites are its axes in C order
(for an MPO the row and column legs of each site have been interleaved by
the caller). Three routes, chosen from the :class:`~tnlib.Truncation`:

* exact (``truncation`` is ``None`` or drops nothing): a left-to-right sweep
  in which every unfolding with more rows than columns is factored by QR,
  and every other one keeps the identity as its (orthonormal) core. It gives
  the same chain as TT-SVD with every singular value kept, up to a gauge, at
  a fraction of the cost; Schmidt values are computed on demand from the
  canonical form.
* per-bond criteria: the sequential truncated TT-SVD of Oseledets (SIAM J.
  Sci. Comput. 33, 2011, Alg. 1). Every core it leaves is left-orthonormal,
  so the squared error equals the sum of the discarded weights.
* ``max_params``: the exact chain's Schmidt spectra drive a global allocation
  of bond dimensions (:func:`~tnlib.allocate_bonds`); each candidate
  allocation is applied by a truncating SVD sweep from the right-canonical
  form, and the one with the least true error is kept.

Every route returns cores in left-canonical form (centre ``n-1``) and a
:class:`~tnlib.TruncationReport`; none rebuilds the dense tensor.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import array_api_compat

from . import linalg
from ._backend import namespace
from .canonical import orthonormalize, svd_sweep
from .budget import allocation_candidates
from .truncation import Truncation, TruncationReport, select_rank, svd_truncate

__all__ = ["tt_decompose", "truncate_chain"]


def _qr_chain(xp: Any, tensor: Any, dims: Sequence[int]) -> list[Any]:
    """Exact left-canonical chain. Where an unfolding has no more rows than
    columns its orthonormal factor can be the identity (the bond is at full
    rank ``rows`` either way), so nothing is computed; taller unfoldings are
    factored by QR."""
    cores = []
    rest = tensor
    r = 1
    for d in dims[:-1]:
        unfolding = xp.reshape(rest, (r * d, -1))
        rows, cols = unfolding.shape
        if rows <= cols:
            eye = xp.eye(rows, dtype=tensor.dtype, device=array_api_compat.device(tensor))
            cores.append(xp.reshape(eye, (r, d, rows)))
            rest, r = unfolding, rows
            continue
        q, rest = linalg.qr(unfolding)
        cores.append(xp.reshape(q, (r, d, q.shape[1])))
        r = q.shape[1]
    cores.append(xp.reshape(rest, (r, dims[-1], 1)))
    return cores


def _svd_chain(
    xp: Any, tensor: Any, dims: Sequence[int], truncation: Truncation, method: str
) -> tuple[list[Any], list[int], list[int], list[float], float]:
    """Sequential truncated TT-SVD; also returns the Frobenius norm of ``tensor``
    (from the first, complete, spectrum: ``sum S^2`` plus what it discarded)."""
    cores = []
    norm = None
    kept, full, discarded = [], [], []
    rest = tensor
    r = 1
    for d in dims[:-1]:
        unfolding = xp.reshape(rest, (r * d, -1))
        res, rank = svd_truncate(unfolding, truncation, method, side="left")
        chi = res.S.shape[0]
        if norm is None:
            norm = (float(xp.sum(res.S * res.S)) + res.discarded) ** 0.5
        cores.append(xp.reshape(res.U, (r, d, chi)))
        rest = linalg.adjoint(res.U) @ unfolding  # = diag(S) Vh, the exact projection
        kept.append(chi)
        full.append(rank)
        discarded.append(res.discarded)
        r = chi
    cores.append(xp.reshape(rest, (r, dims[-1], 1)))
    if norm is None:  # a single site: nothing to truncate
        norm = float(xp.linalg.vector_norm(rest))
    return cores, kept, full, discarded, norm


def tt_decompose(
    tensor: Any, dims: Sequence[int], truncation: Truncation | None, method: str
) -> tuple[list[Any], TruncationReport]:
    """Decompose a validated ``tensor`` with ``prod(dims)`` entries into site cores."""
    xp = namespace(tensor)
    tensor = xp.reshape(tensor, (dims[0], -1))  # the one copy of a permuted input
    if truncation is None or truncation.is_exact:
        norm = float(xp.linalg.vector_norm(tensor))
        cores = _qr_chain(xp, tensor, dims)
        bonds = tuple(c.shape[2] for c in cores[:-1])
        report = TruncationReport(bonds, bonds, (0.0,) * len(bonds), norm, truncation)
        return cores, report
    if truncation.max_params is None:
        cores, kept, full, discarded, norm = _svd_chain(xp, tensor, dims, truncation, method)
        return cores, TruncationReport(tuple(kept), tuple(full), tuple(discarded), norm, truncation)
    norm = float(xp.linalg.vector_norm(tensor))
    exact = _qr_chain(xp, tensor, dims)
    return truncate_chain(exact, len(dims) - 1, truncation, method, norm)


def truncate_chain(
    cores: Sequence[Any],
    center: int | None,
    truncation: Truncation,
    method: str,
    norm: float | None = None,
) -> tuple[list[Any], TruncationReport]:
    """Truncate a chain by one SVD sweep from its right-canonical form.

    With ``max_params`` set, a first (untruncated) sweep gets every bond's
    Schmidt spectrum, :func:`~tnlib.budget.allocation_candidates` proposes
    allocations that meet the budget, a truncating sweep applies each, and
    the one whose discarded weights (= squared error) sum to least wins. Returns cores
    in left-canonical form and the report of the truncating sweep.
    """
    xp = namespace(*cores)
    n = len(cores)
    per_bond = dataclasses.replace(truncation, max_params=None)
    allocations: list[Sequence[int | None]] = [[per_bond.max_bond] * max(n - 1, 0)]
    if truncation.max_params is not None:
        # A leftward sweep from centre n-1 gives the exact spectra and ends right-canonical.
        left = orthonormalize(cores, n - 1, center)
        canon, spectra, _, _, _ = svd_sweep(left, -1, lambda bond: None, "auto")
        upper = [select_rank(s, per_bond) for s in spectra]
        phys = [c.shape[1] for c in canon]
        allocations = list(allocation_candidates(
            spectra, phys, truncation.max_params, upper=upper, min_bond=truncation.min_bond
        ))
    else:
        canon = orthonormalize(cores, 0, center)
    if norm is None:
        norm = float(xp.linalg.vector_norm(canon[0]))
    if n == 1:
        return canon, TruncationReport((), (), (), norm, truncation)
    best = None
    for caps in allocations:
        per_cap = [
            per_bond if cap is None
            else dataclasses.replace(per_bond, max_bond=cap, min_bond=min(per_bond.min_bond, cap))
            for cap in caps
        ]
        out, _, kept, full, discarded = svd_sweep(canon, 1, per_cap.__getitem__, method)
        if best is None or sum(discarded) < sum(best[3]):
            best = (out, kept, full, discarded)
    out, kept, full, discarded = best
    return out, TruncationReport(tuple(kept), tuple(full), tuple(discarded), norm, truncation)
