r"""A global parameter budget: choose all bond dimensions together.

Given the Schmidt spectra :math:`s^{(k)}` of every bond of a canonical chain
with physical dimensions :math:`d_0, \dots, d_{n-1}`, find bond dimensions
:math:`\chi_0, \dots, \chi_{n-2}` that minimise the total discarded weight
:math:`\sum_k \sum_{j > \chi_k} (s^{(k)}_j)^2` subject to
:math:`\sum_k \chi_{k-1} d_k \chi_k \le B` (with :math:`\chi_{-1} =
\chi_{n-1} = 1`). The weight is separable over bonds but the parameter count
couples neighbours, so this is an integer program on a chain.

tnlib solves its Lagrangian relaxation exactly by dynamic programming along
the chain (minimise weight + :math:`\lambda` * parameters, bisecting on
:math:`\lambda`), then spends what is left of the budget greedily. Two other
candidates, the best uniform cap and a greedy descent from the largest
dimensions, are computed the same way, and the one with the least discarded
weight wins, so the result is never worse than any of them.

The discarded weights of different bonds overlap when truncation is severe,
so their sum over-counts the true error; :func:`allocation_candidates` lets a
caller that can measure the true error of each candidate (a truncation sweep
does) choose among them by that instead.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable, Sequence

import numpy as np

from ._backend import to_host
from ._checks import check_int
from .truncation import BudgetTooSmallError

__all__ = [
    "allocate_bonds",
    "allocate_ranks",
    "allocation_candidates",
    "bonds_for_error",
    "chain_params",
    "pair_moves",
    "proportional_cap",
    "uniform_cap",
]

_MAX_CANDIDATES = 512


def chain_params(chi: Sequence[int], phys: Sequence[int]) -> int:
    """Parameters ``sum_k chi_{k-1} d_k chi_k`` of a chain with bonds ``chi`` and physical dimensions ``phys``."""
    full = [1, *chi, 1]
    return sum(full[k] * d * full[k + 1] for k, d in enumerate(phys))


def _saving(chi: Sequence[int], phys: Sequence[int], k: int) -> int:
    """Parameters saved by ``chi_k -> chi_k - 1`` (or spent by ``+1``)."""
    full = [1, *chi, 1]
    return full[k] * phys[k] + phys[k + 1] * full[k + 2]


def _grow(chi: list[int], tails: list[np.ndarray], phys: Sequence[int], upper: list[int], budget: int) -> list[int]:
    """Increase bonds while the budget allows, largest weight gain per parameter first."""
    chi = list(chi)
    used = chain_params(chi, phys)
    heap = [
        (-(tails[k][chi[k]] - tails[k][chi[k] + 1]) / _saving(chi, phys, k), k)
        for k in range(len(chi))
        if chi[k] < upper[k]
    ]
    heapq.heapify(heap)
    while heap:
        _, k = heapq.heappop(heap)
        cost = _saving(chi, phys, k)
        if used + cost <= budget:
            chi[k] += 1
            used += cost
            if chi[k] < upper[k]:
                gain = tails[k][chi[k]] - tails[k][chi[k] + 1]
                heapq.heappush(heap, (-gain / _saving(chi, phys, k), k))
    return chi


def _shrink(tails: list[np.ndarray], phys: Sequence[int], low: list[int], upper: list[int], budget: int) -> list[int]:
    """Greedy descent from the largest dimensions, cheapest weight per parameter first."""
    chi = list(upper)
    used = chain_params(chi, phys)
    while used > budget:
        best, best_cost = -1, np.inf
        for k in range(len(chi)):
            if chi[k] > low[k]:
                cost = (tails[k][chi[k] - 1] - tails[k][chi[k]]) / _saving(chi, phys, k)
                if cost < best_cost:
                    best, best_cost = k, cost
        used -= _saving(chi, phys, best)
        chi[best] -= 1
    return chi


def uniform_cap(phys: Sequence[int], low: Sequence[int], upper: Sequence[int], budget: int) -> list[int]:
    """The bonds ``min(max(c, low_k), upper_k)`` for the largest cap ``c`` within the budget (bisection;
    the parameter count grows with ``c``); ``low`` when even ``c = 1`` is over it."""
    def bonds(c: int) -> list[int]:
        return [min(max(c, lo), up) for lo, up in zip(low, upper)]

    lo, hi = 1, max(upper, default=1)
    if chain_params(bonds(lo), phys) > budget:
        return list(low)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if chain_params(bonds(mid), phys) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return bonds(lo)


_ROUNDINGS: dict[str, Callable[[float], int]] = {"round": round, "floor": math.floor, "ceil": math.ceil}


def proportional_cap(
    phys: Sequence[int], weights: Sequence[float], low: Sequence[int], upper: Sequence[int], budget: int,
    rounding: str = "round",
) -> list[int]:
    """The bonds ``min(max(rounding(c * w_k), low_k), upper_k)`` for the largest ``c`` within the budget
    (bisection on ``c``; the count grows with it): a rank rule proportional to per-bond weights ``w`` (all
    ones is the uniform rule; the mean of the two neighbouring physical dimensions is TensorLy's
    ``validate_tt_rank`` rule for a fraction), rounded by ``"round"``, ``"floor"`` or ``"ceil"``."""
    to_int = _ROUNDINGS[rounding]

    def bonds(c: float) -> list[int]:
        return [min(max(int(to_int(c * w)), lo), up) for w, lo, up in zip(weights, low, upper)]

    lo, hi = 0.0, max(up / max(w, 1e-12) for w, up in zip(weights, upper)) + 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if chain_params(bonds(mid), phys) <= budget:
            lo = mid
        else:
            hi = mid
    return bonds(lo)


def pair_moves(
    chi: Sequence[int], phys: Sequence[int], low: Sequence[int], upper: Sequence[int], budget: int,
    reach: int | None = None,
) -> list[tuple[int, ...]]:
    """Allocations one step from ``chi`` within the budget: bond ``i`` one smaller and bond ``j`` as much
    larger as the freed (and unused) parameters allow, for ``|i - j| <= reach`` (every pair by default), and
    each bond one larger where the budget has room: the neighbourhood of a local search on true errors."""
    n = len(chi)
    out: list[tuple[int, ...]] = []
    used = chain_params(chi, phys)
    for j in range(n):
        if chi[j] < upper[j] and used + _saving(chi, phys, j) <= budget:
            grown = list(chi)
            grown[j] += 1
            out.append(tuple(grown))
    for i in range(n):
        if chi[i] <= low[i]:
            continue
        less = list(chi)
        less[i] -= 1
        for j in range(n):
            if j == i or chi[j] >= upper[j] or (reach is not None and abs(i - j) > reach):
                continue
            moved = list(less)
            while moved[j] < upper[j] and chain_params(moved[:j] + [moved[j] + 1] + moved[j + 1:], phys) <= budget:
                moved[j] += 1
            if moved[j] > chi[j]:
                out.append(tuple(moved))
    return out


def _fill_from_middle(chi: list[int], phys: Sequence[int], upper: list[int], budget: int) -> list[int]:
    """A uniform allocation topped up by one, bond by bond from the middle outwards, while the budget allows
    (budget-filling without the weight proxy, so a near-uniform candidate always exists)."""
    out = list(chi)
    n = len(out)
    order = sorted(range(n), key=lambda k: abs(k - (n - 1) / 2))
    for k in order:
        if out[k] < upper[k]:
            out[k] += 1
            if chain_params(out, phys) > budget:
                out[k] -= 1
    return out


def _candidates(lo: int, up: int) -> np.ndarray:
    if up - lo + 1 <= _MAX_CANDIDATES:
        return np.arange(lo, up + 1)
    grid = np.unique(np.round(np.geomspace(lo, up, _MAX_CANDIDATES)).astype(np.int64))
    return np.unique(np.concatenate([grid, [lo, up]]))


def _lagrangian(tails, phys, cands, lam: float) -> list[int]:
    """Exact minimiser of weight + lam * params over the candidate grids (chain DP)."""
    nb = len(cands)
    value = tails[0][cands[0]] + lam * phys[0] * cands[0]
    back = []
    for k in range(1, nb):
        # value[a] + lam * a * d_k * b over previous a, for every b
        total = value[:, None] + lam * phys[k] * np.outer(cands[k - 1], cands[k])
        arg = np.argmin(total, axis=0)
        back.append(arg)
        value = total[arg, np.arange(len(cands[k]))] + tails[k][cands[k]]
    value = value + lam * phys[nb] * cands[nb - 1]
    idx = int(np.argmin(value))
    chosen = [0] * nb
    chosen[nb - 1] = idx
    for k in range(nb - 1, 0, -1):
        chosen[k - 1] = int(back[k - 1][chosen[k]])
    return [int(cands[k][chosen[k]]) for k in range(nb)]


def _dual(tails, phys, low, upper, budget) -> list[int]:
    cands = [_candidates(lo, up) for lo, up in zip(low, upper)]
    scale = max(float(t[0]) for t in tails) or 1.0
    lo_lam, hi_lam = 0.0, scale
    while chain_params(_lagrangian(tails, phys, cands, hi_lam), phys) > budget and hi_lam < scale * 2.0**60:
        hi_lam *= 2.0
    best = _lagrangian(tails, phys, cands, hi_lam)
    if chain_params(best, phys) > budget:
        return list(low)
    for _ in range(60):
        mid = 0.5 * (lo_lam + hi_lam)
        chi = _lagrangian(tails, phys, cands, mid)
        if chain_params(chi, phys) <= budget:
            hi_lam, best = mid, chi
        else:
            lo_lam = mid
    return best


def _prepare(spectra, phys_dims, max_params, upper, min_bond) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Tails (``tails[k][c]``: weight dropped when bond ``k`` keeps ``c``
    values) and the per-bond bounds; raises if nothing fits."""
    weights = [np.asarray(to_host(s), dtype=np.float64) ** 2 for s in spectra]
    n = len(phys_dims)
    if len(weights) != n - 1:
        raise ValueError(f"spectra has {len(weights)} bonds; expected {n - 1} for {n} sites")
    upper = [len(w) if upper is None else max(1, min(len(w), int(u))) for w, u in zip(weights, upper or weights)]
    low = [min(min_bond, u) for u in upper]
    smallest = chain_params(low, phys_dims)
    if smallest > max_params:
        raise BudgetTooSmallError(
            f"Truncation.max_params={max_params} is below the smallest network "
            f"with min_bond={min_bond}: {smallest} parameters"
        )
    tails = [np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]]) for w in weights]
    return tails, low, upper


def allocate_bonds(
    spectra: Sequence[Any],
    phys_dims: Sequence[int],
    max_params: int,
    *,
    upper: Sequence[int] | None = None,
    min_bond: int = 1,
) -> tuple[int, ...]:
    """Bond dimensions with ``num_params <= max_params`` and the least discarded weight.

    Parameters
    ----------
    spectra
        Schmidt values of every bond ``0 .. n-2`` (descending, any array
        library), from a canonical form, so that a bond's discarded weight is
        the sum of the squares it drops.
    phys_dims
        Physical dimension of every site (``out * in`` for an MPO).
    max_params
        Budget for ``sum_k chi_{k-1} d_k chi_k``.
    upper
        Largest dimension allowed per bond (default: the spectrum's length).
    min_bond
        Smallest dimension allowed per bond.

    Returns
    -------
    tuple of int
        One dimension per bond (see the module docstring for the method).

    Raises
    ------
    ValueError
        If even ``min_bond`` everywhere exceeds ``max_params``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> spectra = [np.array([1.0, 0.5]), np.array([1.0, 0.1])]
    >>> tnlib.allocate_bonds(spectra, (2, 2, 2), max_params=12)
    (2, 1)
    """
    tails = _prepare(spectra, phys_dims, max_params, upper, min_bond)[0]

    def cost(chi: Sequence[int]) -> float:
        return float(sum(t[c] for t, c in zip(tails, chi)))

    candidates = allocation_candidates(spectra, phys_dims, max_params, upper=upper, min_bond=min_bond)
    return min(candidates, key=cost)


def allocation_candidates(
    spectra: Sequence[Any],
    phys_dims: Sequence[int],
    max_params: int,
    *,
    upper: Sequence[int] | None = None,
    min_bond: int = 1,
) -> list[tuple[int, ...]]:
    """The distinct allocations :func:`allocate_bonds` chooses from (same arguments).

    Each meets the budget: the Lagrangian dynamic programme, the greedy
    descent and the best uniform cap, each grown greedily into what is left,
    the best uniform cap as it is and topped up from the middle bond
    outwards, and the largest rank rules proportional to the mean of each
    bond's two physical dimensions (TensorLy's rule for a fraction, rounded
    each of its three ways: at its own parameter count such a rule's largest
    ranks are TensorLy's) and to
    the spectral bounds: candidates that do not depend on the weight proxy,
    so a caller choosing by true error is never worse than those rank rules.
    """
    tails, low, caps = _prepare(spectra, phys_dims, max_params, upper, min_bond)
    if len(phys_dims) == 1:
        return [()]
    found: list[tuple[int, ...]] = []
    for start in (
        _dual(tails, phys_dims, low, caps, max_params),
        _shrink(tails, phys_dims, low, caps, max_params),
        uniform_cap(phys_dims, low, caps, max_params),
    ):
        chi = tuple(_grow(start, tails, phys_dims, caps, max_params))
        if chi not in found:
            found.append(chi)
    uniform = uniform_cap(phys_dims, low, caps, max_params)
    # rank rules proportional to per-bond weights (TensorLy's, and the spectral bounds'), as they are
    mean_dims = [(phys_dims[k] + phys_dims[k + 1]) / 2 for k in range(len(caps))]
    rules = [proportional_cap(phys_dims, mean_dims, low, caps, max_params, rounding) for rounding in _ROUNDINGS]
    for chi in (tuple(uniform), tuple(_fill_from_middle(uniform, phys_dims, caps, max_params)),
                *(tuple(rule) for rule in rules),
                tuple(proportional_cap(phys_dims, caps, low, caps, max_params))):
        if chi not in found:
            found.append(chi)
    return found


def bonds_for_error(
    spectra: Sequence[Any],
    phys_dims: Sequence[int],
    max_weight: float,
    *,
    upper: Sequence[int] | None = None,
    min_bond: int = 1,
) -> tuple[int, ...]:
    """Bond dimensions with few parameters whose discarded weights sum to at most ``max_weight``.

    Greedy descent from the full dimensions: drop, one at a time, the
    singular value that adds the least weight per parameter saved, while the
    total stays within ``max_weight``. A truncating sweep from the canonical
    form with these caps has ``||A - A_tt||_F^2 <= sum of the exact tails <=
    max_weight`` (each bond's discarded weight is at most its exact tail).
    """
    tails, low, caps = _prepare(spectra, phys_dims, 2**62, upper, min_bond)
    chi = list(caps)
    used = float(sum(tails[k][chi[k]] for k in range(len(chi))))  # what the caps already discard
    if used > max_weight:
        return tuple(int(c) for c in chi)  # the caps alone exceed the weight: keep all they allow
    while True:
        best, best_k = None, -1
        for k in range(len(chi)):
            if chi[k] <= low[k]:
                continue
            added = tails[k][chi[k] - 1] - tails[k][chi[k]]
            if used + added > max_weight:
                continue
            ratio = added / _saving(chi, phys_dims, k)
            if best is None or ratio < best:
                best, best_k = ratio, k
        if best is None:
            return tuple(int(c) for c in chi)
        used += tails[best_k][chi[best_k] - 1] - tails[best_k][chi[best_k]]
        chi[best_k] -= 1


def _losses(weights: list[np.ndarray], sensitivities: Sequence[float] | None) -> list[np.ndarray]:
    """What dropping each squared singular value loses: its share of its matrix, or its weight times the
    matrix's sensitivity."""
    if sensitivities is None:
        return [w / w.sum() if w.sum() > 0 else np.zeros_like(w) for w in weights]
    g = np.asarray(sensitivities, dtype=np.float64)
    if g.shape != (len(weights),) or not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError(f"sensitivities must be {len(weights)} non-negative finite numbers, one per matrix, got "
                         f"{list(sensitivities)!r}")
    return [w * gk for w, gk in zip(weights, g)]


def _checked_ranks_input(spectra: Sequence[Any], costs: Sequence[Any], budget: Any, min_rank: Any,
                         max_ranks: Sequence[Any] | None) -> tuple[list[Any], list[int], int, int, list[int] | None]:
    """:func:`allocate_ranks`' arguments validated: squared spectra, and the integers it needs, named in errors."""
    weights = [np.asarray(to_host(s), dtype=np.float64) ** 2 for s in spectra]
    n = len(weights)
    if len(costs) != n or (max_ranks is not None and len(max_ranks) != n):
        raise ValueError(f"spectra, costs and max_ranks must have one entry per matrix, got {n}, {len(costs)} and "
                         f"{None if max_ranks is None else len(max_ranks)}")
    for k, w in enumerate(weights):
        if w.ndim != 1 or not np.all(np.isfinite(w)):
            raise ValueError(f"spectra[{k}] must be a 1-D array of finite singular values, got shape {w.shape}"
                             f"{'' if np.all(np.isfinite(w)) else ' with NaN or inf'}")
    caps = None if max_ranks is None else [check_int(f"max_ranks[{k}]", m, 0) for k, m in enumerate(max_ranks)]
    return (weights, [check_int(f"costs[{k}]", c) for k, c in enumerate(costs)], check_int("budget", budget, 0),
            check_int("min_rank", min_rank, 0), caps)


def _floors(min_ranks: Sequence[Any] | None, n: int) -> list[int]:
    """``min_ranks`` validated (one non-negative int per matrix), or zeros."""
    if min_ranks is None:
        return [0] * n
    if len(min_ranks) != n:
        raise ValueError(f"min_ranks must have one rank per matrix ({n}), got {len(min_ranks)}")
    return [check_int(f"min_ranks[{k}]", r, 0) for k, r in enumerate(min_ranks)]


def allocate_ranks(
    spectra: Sequence[Any],
    costs: Sequence[int],
    budget: int,
    *,
    min_rank: int = 1,
    max_ranks: Sequence[int] | None = None,
    baseline: Sequence[int] | None = None,
    sensitivities: Sequence[float] | None = None,
    min_ranks: Sequence[int] | None = None,
) -> tuple[int, ...]:
    r"""Ranks of several independent matrices that share one parameter budget.

    Matrix ``k`` kept at rank ``r_k`` costs ``r_k * costs[k]`` parameters
    (``M + N`` for a truncated SVD) and loses the *relative* weight
    :math:`\sum_{j \ge r_k} s_j^2 / \sum_j s_j^2` of its descending spectrum
    ``spectra[k]``. The ranks minimise the sum of those losses subject to
    :math:`\sum_k r_k c_k \le` ``budget``: every singular value beyond
    ``min_rank`` is bought in order of relative weight per parameter (optimal
    for the fractional relaxation, the tails being convex), and the result is
    compared with ``baseline`` (for example the ranks that per-matrix budgets
    of ``numel / compression`` give) and the better kept, so it never loses
    to it.

    Parameters
    ----------
    spectra
        Descending singular values of each matrix (any array library).
    costs
        Parameters per unit of rank of each matrix.
    budget
        Total parameters.
    min_rank
        Smallest rank of every matrix.
    max_ranks
        Largest rank of each matrix (default: its spectrum's length).
    baseline
        Ranks to beat (within the budget), or ``None``.
    sensitivities
        Instead of relative losses, matrix ``k`` loses ``sensitivities[k]``
        times its *absolute* tail :math:`\sum_{j \ge r_k} s_j^2`: how much a
        unit of that matrix's error moves what is finally measured (for
        example a model's outputs; :func:`tnlib.nn.compress` measures it).
        Non-negative and finite, one per matrix.
    min_ranks
        A floor per matrix on top of ``min_rank`` (capped at its largest
        rank): what no matrix may be starved below, whatever the others
        would buy with it.

    Returns
    -------
    tuple of int
        One rank per matrix.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> fast, slow = 0.5 ** np.arange(16), 0.95 ** np.arange(16)
    >>> tnlib.budget.allocate_ranks([fast, slow], [32, 32], budget=16 * 32)
    (3, 13)
    """
    weights, costs, budget, min_rank, max_ranks = _checked_ranks_input(spectra, costs, budget, min_rank, max_ranks)
    n = len(weights)
    floors = _floors(min_ranks, n)
    upper = [len(w) for w in weights]
    if max_ranks is not None:
        upper = [min(int(m), u) for m, u in zip(max_ranks, upper)]
    low = [max(min(min_rank, u), min(f, u)) for u, f in zip(upper, floors)]
    floor = sum(lo * c for lo, c in zip(low, costs))
    if floor > budget:
        raise BudgetTooSmallError(
            f"a budget of {budget} parameters cannot hold {n} matrices at rank {min_rank}"
            f"{'' if min_ranks is None else ' and their min_ranks'} ({floor} needed)"
        )
    rel = _losses(weights, sensitivities)

    def loss(ranks: Sequence[int]) -> float:
        return float(sum(r[k:].sum() for r, k in zip(rel, ranks)))

    ranks, left = list(low), budget - floor
    heap = [(-rel[k][ranks[k]] / costs[k], k) for k in range(n) if ranks[k] < upper[k]]
    heapq.heapify(heap)
    while heap:
        _, k = heapq.heappop(heap)
        if costs[k] > left:
            continue  # this matrix's next step no longer fits; cheaper steps of others may
        ranks[k] += 1
        left -= costs[k]
        if ranks[k] < upper[k]:
            heapq.heappush(heap, (-rel[k][ranks[k]] / costs[k], k))
    if baseline is not None:
        if len(baseline) != n:
            raise ValueError(f"baseline must have one rank per matrix ({n}), got {len(baseline)}")
        base = [max(lo, min(u, int(b))) for lo, u, b in zip(low, upper, baseline)]
        if sum(r * c for r, c in zip(base, costs)) <= budget and loss(base) < loss(ranks):
            ranks = base
    return tuple(int(r) for r in ranks)
