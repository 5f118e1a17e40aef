"""Sweeps that make and truncate chains: TT-SVD of a tensor, SVD sweeps over a chain.

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
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import array_api_compat
import numpy as np

from . import _linalg as linalg
from . import _sketched
from ._backend import frobenius_norm, is_single, namespace, scalar
from ._canonical import orthonormalize
from .budget import allocation_candidates, bonds_for_error, pair_moves
from .svd import truncate_left
from .truncation import BudgetTooSmallError, Truncation, TruncationReport, select_rank, with_error_check

__all__ = ["SweepResult", "svd_sweep", "tt_decompose", "truncate_chain"]


@dataclass(frozen=True)
class SweepResult:
    """The chain a sweep left and what it kept, per bond ``0 .. n-2``.

    Attributes
    ----------
    cores : tuple of arrays
        Site cores ``(left, phys, right)``.
    spectra : tuple of arrays
        Kept singular values of every bond.
    kept, full : tuple of int
        Kept and full (before truncation) bond dimensions.
    discarded : tuple of float
        Discarded weight of every bond (absolute, squared).
    """

    cores: tuple[Any, ...]
    spectra: tuple[Any, ...]
    kept: tuple[int, ...]
    full: tuple[int, ...]
    discarded: tuple[float, ...]

    def report(self, norm: float, truncation: Truncation | None) -> TruncationReport:
        """The :class:`~tnlib.TruncationReport` of this sweep for a tensor of Frobenius norm ``norm``."""
        return TruncationReport(self.kept, self.full, self.discarded, norm, truncation)


def exact_report(cores: Sequence[Any], norm: float, truncation: Truncation | None) -> TruncationReport:
    """The report of an exact chain: every bond kept at its full dimension."""
    bonds = tuple(int(c.shape[2]) for c in cores[:-1])
    return TruncationReport(bonds, bonds, (0.0,) * len(bonds), norm, truncation)


def _qr_chain(xp: Any, tensor: Any, dims: Sequence[int], owned: bool = False) -> list[Any]:
    """Exact left-canonical chain. Where an unfolding has no more rows than
    columns its orthonormal factor can be the identity (the bond is at full
    rank ``rows`` either way), so nothing is computed; taller unfoldings are
    factored by QR. An ``owned`` tensor (a copy made here) may receive a
    ``Q`` factor in place."""
    cores = []
    rest = tensor
    r = 1
    aliased = not owned  # rest is still (a view of) the caller's array
    for d in dims[:-1]:
        unfolding = xp.reshape(rest, (r * d, -1))
        rows, cols = unfolding.shape
        if rows <= cols:
            eye = xp.eye(rows, dtype=tensor.dtype, device=array_api_compat.device(tensor))
            cores.append(xp.reshape(eye, (r, d, rows)))
            rest, r = unfolding, rows
            continue
        q, rest = linalg.qr(unfolding, overwrite=owned)
        owned = aliased = False  # rest is a new (small) array; q may share the tensor's memory
        cores.append(xp.reshape(q, (r, d, q.shape[1])))
        r = q.shape[1]
    cores.append(_last_core(xp, rest, (r, dims[-1], 1), aliased))
    return cores


def _last_core(xp: Any, rest: Any, shape: tuple[int, int, int], aliased: bool) -> Any:
    """The chain's last core from the rest of a sweep; a copy when the rest is still the caller's array (a
    sweep that kept every row of every unfolding), so that the chain never shares the input's memory."""
    core = xp.reshape(rest, shape)
    if not aliased:
        return core
    if array_api_compat.is_torch_array(core):
        return core.clone()  # stays in the autograd graph (torch.asarray's copy would not say so)
    return xp.asarray(core, copy=True)


def _svd_chain(
    xp: Any, tensor: Any, dims: Sequence[int], truncation: Truncation, svd: str, owned: bool = False
) -> tuple[SweepResult, float]:
    """Sequential truncated TT-SVD; also returns the Frobenius norm of ``tensor``
    (from the first, complete, spectrum: ``sum S^2`` plus what it discarded)."""
    cores, spectra = [], []
    norm = None
    kept, full, discarded = [], [], []
    rest = tensor
    r = 1
    aliased = not owned  # rest is still (a view of) the caller's array
    for k, d in enumerate(dims[:-1]):
        unfolding = xp.reshape(rest, (r * d, -1))
        res = truncate_left(unfolding, truncation.for_bond(k, len(dims) - 1), svd)
        chi = res.S.shape[0]
        if norm is None:
            norm = (scalar(xp.sum(res.S * res.S)) + res.discarded) ** 0.5
        if chi == unfolding.shape[0]:
            # Every row kept: the identity is an orthonormal core too, and the rest stays the unfolding
            # itself (no product, no copy); the later spectra do not depend on this gauge.
            eye = xp.eye(chi, dtype=unfolding.dtype, device=array_api_compat.device(unfolding))
            cores.append(xp.reshape(eye, (r, d, chi)))
            rest = unfolding
        else:
            cores.append(xp.reshape(res.U, (r, d, chi)))
            rest = linalg.adjoint(res.U) @ unfolding  # = diag(S) Vh, the exact projection
            aliased = False
        spectra.append(res.S)
        kept.append(chi)
        full.append(res.full_rank)
        discarded.append(res.discarded)
        r = chi
    cores.append(_last_core(xp, rest, (r, dims[-1], 1), aliased))
    if norm is None:  # a single site: nothing to truncate
        norm = frobenius_norm(rest)
    return SweepResult(tuple(cores), tuple(spectra), tuple(kept), tuple(full), tuple(discarded)), norm


def unit_scale(norm: float, like: Any = None) -> float:
    """A power of two near ``norm`` when it is far from 1 (so that squares of entries neither under- nor
    overflow in ``like``'s precision: float32 squares leave its range beyond about 1e+-19), else 1:
    dividing and multiplying back by it is exact."""
    limit = 2.0**30 if like is not None and is_single(like) else 2.0**200
    if norm == 0.0 or not math.isfinite(norm) or 1.0 / limit < norm < limit:
        return 1.0
    return 2.0 ** round(math.log2(norm))


def tt_decompose(
    tensor: Any, dims: Sequence[int], truncation: Truncation | None, svd: str
) -> tuple[list[Any], TruncationReport]:
    """Decompose a validated ``tensor`` with ``prod(dims)`` entries into site cores.

    A tensor far from unit scale is decomposed divided by a power of two and
    the last core (the centre) multiplied back: the rank rule sees squared
    singular values that neither underflow nor overflow. A permuted input is
    copied once (its first unfolding); that copy is owned here, so it is
    scaled and factored in place rather than copied again.
    """
    xp = namespace(tensor)
    flat = xp.reshape(tensor, (dims[0], -1))  # the one copy of a permuted input
    owned = isinstance(flat, np.ndarray) and not np.may_share_memory(flat, tensor)
    del tensor
    norm = frobenius_norm(flat)
    scale = unit_scale(norm, flat)
    if scale == 1.0:
        cores, report = _decompose(xp, flat, dims, truncation, svd, owned, norm)
        return cores, with_error_check(report)
    if owned:
        flat /= scale  # a power of two: exact
    else:
        flat, owned = flat / scale, isinstance(flat, np.ndarray)
    cores, report = _decompose(xp, flat, dims, truncation, svd, owned, norm / scale)
    cores[-1] = cores[-1] * scale
    return cores, with_error_check(report.scaled(scale))


def _needs_graph(x: Any) -> bool:
    """A torch tensor in an autograd graph: the sweep's SVDs carry the gradient, a sketch's would not."""
    return bool(getattr(x, "requires_grad", False))


def _decompose(
    xp: Any, tensor: Any, dims: Sequence[int], truncation: Truncation | None, svd: str, owned: bool, norm: float
) -> tuple[list[Any], TruncationReport]:
    """``tt_decompose`` of a tensor near unit scale whose Frobenius norm ``norm`` is known."""
    if truncation is None or truncation.is_exact:
        cores = _qr_chain(xp, tensor, dims, owned)
        return cores, exact_report(cores, norm, truncation)
    if svd in ("auto", "randomized") and _sketched.applies(truncation) and not _needs_graph(tensor):
        sketched = _sketched.sketch_chain(tensor, dims, truncation, norm, optimal=svd == "auto")
        if sketched is not None:
            cores, spectra, kept, full, discarded, certificate = sketched
            report = TruncationReport(tuple(kept), tuple(full), tuple(discarded), norm, truncation,
                                      certificate=certificate)
            return cores, report
    if truncation.max_params is None and truncation.max_relative_error is None:
        sweep, norm = _svd_chain(xp, tensor, dims, truncation, svd, owned)
        return list(sweep.cores), sweep.report(norm, truncation)
    if len(dims) == 2 and truncation.max_params is not None:
        # one bond: the budget is a cap, chi (d_0 + d_1) <= max_params; the per-bond route gives the
        # allocation's result (the most values the other criteria keep, within the cap) from one truncated SVD
        sweep, norm = _svd_chain(xp, tensor, dims, _one_bond_budget(truncation, dims), svd, owned)
        return list(sweep.cores), sweep.report(norm, truncation)
    exact = _qr_chain(xp, tensor, dims, owned)
    return truncate_chain(exact, len(dims) - 1, truncation, svd, norm)


# entries of core work (sum over sites of the cores' sizes, times sweeps) the local search may spend
_SEARCH_WORK = 2**23
_SEARCH_SWEEPS = 256


def _local_search(
    best: SweepResult, sweep: Callable[[Sequence[int]], SweepResult], phys: Sequence[int],
    upper: Sequence[int], truncation: Truncation, canon: Sequence[Any],
) -> SweepResult:
    """Improve a budget allocation on true errors: from the best candidate, move parameters between bonds
    (:func:`~tnlib.budget.pair_moves`) while a move lowers the swept error (the exact squared error of the
    truncated chain), best move first. Bounded: at most ``_SEARCH_SWEEPS`` sweeps and ``_SEARCH_WORK`` entries
    of core work; pairs of bonds at most two apart once a round of all pairs would exceed that."""
    assert truncation.max_params is not None
    low = [min(truncation.min_bond, u) for u in upper]
    size = sum(int(np.prod(c.shape)) for c in canon)
    allowed = min(_SEARCH_SWEEPS, _SEARCH_WORK // max(size, 1))
    n = len(upper)
    reach = None if n * (n - 1) <= allowed // 2 else 2
    seen = {tuple(best.kept)}
    spent = 0
    while spent < allowed:
        improved = None
        for chi in pair_moves(best.kept, phys, low, upper, truncation.max_params, reach):
            if chi in seen or spent >= allowed:
                continue
            seen.add(chi)
            spent += 1
            result = sweep(chi)
            if sum(result.discarded) < sum((improved or best).discarded) * (1 - 1e-12):
                improved = result
        if improved is None:
            return best
        best = improved
    return best


def _one_bond_budget(truncation: Truncation, dims: Sequence[int]) -> Truncation:
    """``max_params`` of a two-site chain as the per-bond cap it amounts to (refused when even ``min_bond``,
    or the full rank when smaller, does not fit, as :func:`tnlib.allocate_bonds` refuses it)."""
    assert truncation.max_params is not None
    per_unit = int(dims[0]) + int(dims[1])
    low = min(truncation.min_bond, int(dims[0]), int(dims[1]))
    if low * per_unit > truncation.max_params:
        raise BudgetTooSmallError(
            f"Truncation.max_params={truncation.max_params} is below the smallest network "
            f"with min_bond={truncation.min_bond}: {low * per_unit} parameters"
        )
    cap = truncation.max_params // per_unit
    caps = truncation.bond_caps(1)[0]
    cap = cap if caps is None else min(cap, caps)
    return dataclasses.replace(truncation, max_params=None, max_bond=cap, min_bond=min(truncation.min_bond, cap))


def truncate_chain(
    cores: Sequence[Any],
    center: int | None,
    truncation: Truncation,
    svd: str,
    norm: float | None = None,
) -> tuple[list[Any], TruncationReport]:
    """Truncate a chain by one SVD sweep from its right-canonical form.

    With ``max_params`` set, a first (untruncated) sweep gets every bond's
    Schmidt spectrum, :func:`~tnlib.budget.allocation_candidates` proposes
    allocations that meet the budget, a truncating sweep applies each, and
    the one whose discarded weights (= squared error) sum to least wins. Returns cores
    in left-canonical form and the report of the truncating sweep. A chain
    far from unit scale is truncated divided by a power of two.
    """
    n = len(cores)
    if norm is None:
        if center is None:  # a known centre holds the norm; otherwise one QR sweep finds it
            cores = orthonormalize(cores, n - 1, None)
            center = n - 1
        norm = frobenius_norm(cores[center])
    scale = unit_scale(norm, cores[0])
    if scale != 1.0:
        scaled = list(cores)
        scaled[-1 if center is None else center] = scaled[-1 if center is None else center] / scale
        out, report = truncate_chain(scaled, center, truncation, svd, norm / scale)
        out[-1] = out[-1] * scale
        return out, report.scaled(scale)
    per_bond = dataclasses.replace(truncation, max_params=None, max_relative_error=None)
    caps = per_bond.bond_caps(max(n - 1, 0))
    per_bond = dataclasses.replace(per_bond, max_bond=None)
    allocations: list[Sequence[int | None]] = [list(caps)]
    phys: list[int] = []
    upper: list[int] = []
    if truncation.max_params is not None or truncation.max_relative_error is not None:
        canon, phys, upper, allocations = _plan_allocations(cores, center, truncation, per_bond, caps)
    else:
        canon = orthonormalize(cores, 0, center)
    if norm is None:
        norm = frobenius_norm(canon[0])
    if n == 1:
        return canon, exact_report(canon, norm, truncation)
    def sweep(allocation: Sequence[int | None]) -> SweepResult:
        per_cap = [
            per_bond
            if cap is None
            else dataclasses.replace(per_bond, max_bond=cap, min_bond=min(per_bond.min_bond, cap))
            for cap in allocation
        ]
        return svd_sweep(canon, 1, per_cap.__getitem__, svd)

    best: SweepResult | None = None
    for allocation in allocations:
        result = sweep(allocation)
        if best is None or sum(result.discarded) < sum(best.discarded):
            best = result
    assert best is not None  # allocations is never empty
    if truncation.max_params is not None:
        best = _local_search(best, sweep, phys, upper, truncation, canon)
    if truncation.max_relative_error is not None and truncation.degeneracy_tol is not None:
        best = _keep_error_guarantee(best, canon, truncation, per_bond, allocations[0], norm, svd)
    return list(best.cores), with_error_check(best.report(norm, truncation))


def _plan_allocations(
    cores: Sequence[Any],
    center: int | None,
    truncation: Truncation,
    per_bond: Truncation,
    caps: Sequence[int | None],
) -> tuple[list[Any], list[int], list[int], list[Sequence[int | None]]]:
    """Right-canonical cores, physical dims, per-bond upper ranks and the candidate allocations of a global rule."""
    n = len(cores)
    # A leftward sweep from centre n-1 gives the exact spectra and ends right-canonical.
    left = orthonormalize(cores, n - 1, center)
    exact = svd_sweep(left, -1, lambda bond: None, "auto")
    canon = list(exact.cores)
    upper = [select_rank(s, per_bond if cap is None else dataclasses.replace(per_bond, max_bond=cap))
             for s, cap in zip(exact.spectra, caps)]
    phys = [c.shape[1] for c in canon]
    allocations: list[Sequence[int | None]]
    if truncation.max_params is not None:
        allocations = list(allocation_candidates(
            exact.spectra, phys, truncation.max_params, upper=upper, min_bond=truncation.min_bond
        ))
    else:
        assert truncation.max_relative_error is not None
        weight = (truncation.max_relative_error * frobenius_norm(canon[0])) ** 2
        allocations = [bonds_for_error(exact.spectra, phys, weight, upper=upper, min_bond=truncation.min_bond)]
    return canon, phys, upper, allocations


def _keep_error_guarantee(
    best: SweepResult,
    canon: Sequence[Any],
    truncation: Truncation,
    per_bond: Truncation,
    planned: Sequence[int | None],
    norm: float,
    svd: str,
) -> SweepResult:
    """A cut moved below a multiplet discards more than the allocation planned: the error guarantee wins."""
    assert truncation.max_relative_error is not None
    limit = (truncation.max_relative_error * norm) ** 2
    if sum(best.discarded) <= limit:
        return best
    plain = dataclasses.replace(per_bond, degeneracy_tol=None)
    caps_of = [plain if cap is None else dataclasses.replace(plain, max_bond=cap, min_bond=min(plain.min_bond, cap))
               for cap in planned]
    return svd_sweep(canon, 1, caps_of.__getitem__, svd)


def svd_sweep(
    cores: Sequence[Any],
    direction: int,
    truncation_of_bond: Callable[[int], Truncation | None],
    svd: str,
) -> SweepResult:
    """One SVD sweep over a canonical chain, truncating bond by bond.

    ``direction=+1`` needs the centre at core 0 and leaves it at ``n-1``;
    ``direction=-1`` the reverse. Because the sweep runs from a canonical
    form, the singular values at every step are the Schmidt values of the
    chain truncated so far, and the discarded weights add up to the squared
    error exactly.

    Returns
    -------
    SweepResult
        The new cores and, per bond, the kept spectrum, kept and full
        dimensions and discarded weight.
    """
    xp = namespace(*cores)
    out = list(cores)
    n = len(out)
    nb = n - 1
    spectra: list[Any] = [None] * nb
    kept, full, discarded = [0] * nb, [0] * nb, [0.0] * nb
    sites = range(nb) if direction > 0 else range(n - 1, 0, -1)
    for k in sites:
        bond = k if direction > 0 else k - 1
        left, phys, right = out[k].shape
        if direction > 0:
            mat = xp.reshape(out[k], (left * phys, right))
            res = truncate_left(mat, truncation_of_bond(bond), svd)
            chi = res.S.shape[0]
            out[k] = xp.reshape(res.U, (left, phys, chi))
            nxt = out[k + 1]
            nl, np_, nr = nxt.shape
            carry = linalg.adjoint(res.U) @ mat  # = diag(S) Vh
            out[k + 1] = xp.reshape(carry @ xp.reshape(nxt, (nl, np_ * nr)), (chi, np_, nr))
        else:
            mat = xp.reshape(out[k], (left, phys * right))
            res = truncate_left(linalg.adjoint(mat), truncation_of_bond(bond), svd)
            chi = res.S.shape[0]
            vh = linalg.adjoint(res.U)
            out[k] = xp.reshape(vh, (chi, phys, right))
            prev = out[k - 1]
            pl, pp, pr = prev.shape
            carry = mat @ res.U  # = U diag(S)
            out[k - 1] = xp.reshape(xp.reshape(prev, (pl * pp, pr)) @ carry, (pl, pp, chi))
        spectra[bond], kept[bond], full[bond], discarded[bond] = res.S, chi, res.full_rank, res.discarded
    return SweepResult(tuple(out), tuple(spectra), tuple(kept), tuple(full), tuple(discarded))
