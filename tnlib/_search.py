r"""Layout search: which MPO of a matrix is best for a parameter budget, at the cost of a few fits.

An MPO of an ``M x N`` matrix is fixed by its *layout*: the number of cores
and the row and column factors each core carries, in order
(``out_dims``, ``in_dims``; a factor may be 1, so a core may hold only rows
or only columns). The two-core layout ``out_dims=(M, 1), in_dims=(1, N)`` is
the truncated SVD; other two-core layouts are Kronecker-product SVDs (Van
Loan and Pitsianis 1993); more cores give the MPO of Gao et al. (2020).

For a budget ``max_params`` tnlib looks at the layouts and keeps the fitted
one with the least true error, spending at most ``WORK`` times the work of
the truncated SVD's own fit (in the flop model of
:mod:`tnlib._unfoldings`, so the result never depends on the machine):

1. The truncated SVD is fitted first. It is the reference: the result is
   never worse than it, whatever else happens.
2. *First look.* Every bond of a layout is an unfolding of the matrix (a
   prefix pair of row and column factors), shared between layouts. Within
   half of the work left, the ``SCREEN_DEPTH`` leading Schmidt values of
   the unfoldings are computed by a Gaussian sketch (whole spectra for short
   sides), nearest-square unfoldings first.
3. *Estimates.* From those values each layout gets the bonds of the largest
   uniform cap within the budget, an estimated error (the tails continued
   geometrically beyond the computed values, clipped to the valid bounds)
   and a lower bound (each bond alone at the largest rank the budget could
   give it).
4. *Fits*, in order of the estimate: a layout whose lower bound cannot beat
   the best fitted error is ``"pruned"``; one whose estimate is not below the
   truncated SVD's and the best fitted error by ``MARGIN`` is ``"screened"``
   (gains smaller than that are not worth a fit), as is every layout once a
   fitted error is below ``MARGIN`` times the truncated SVD's (structure
   found: the rest could only polish it) or below ``EXACT``; the rest are fitted until
   ``max_fits`` or the work is spent (``"not fitted"``, as are layouts whose
   unfoldings the first look did not reach). Two-core layouts are fitted at
   the largest rank the budget holds; longer ones by one truncating sweep at
   the estimated bonds.

Estimates only choose what to fit: every fitted row carries its measured
error. With an input Gram ``C`` (``input_gram``) the estimates are made on
the whitened matrix and the errors measured in the output space,
``||X (W - W_hat)^T|| / ||X W^T||`` (on the held-out rows when a held-out
Gram is given); the SVD layout is then fitted exactly by the whitened SVD
and every other layout by alternating least squares in the shrunk metric
(see :mod:`tnlib.metric`).

This module is the engine: every fitted layout goes through
:func:`tnlib._decompose.decompose` and comes back as cores and a report,
never as an ``MPO``. The public table (:class:`tnlib.LayoutSearch`,
:func:`tnlib.layouts`) is :mod:`tnlib.layout_search`, which wraps the best
fit; :meth:`tnlib.MPO.from_matrix` calls :func:`search` directly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

from ._backend import far_exponent, namespace, prod, scalar
from ._decompose import Decomposition, decompose, measured_error, scaled_back
from ._legs import num_params, site_dims
from ._unfoldings import Partial, Unfoldings, factor_cost, log_balance
from .budget import chain_params, uniform_cap
from .dims import choose_dims, default_num_cores, divisors
from .metric import GramFactor
from .truncation import BudgetTooSmallError, Truncation

__all__ = ["Layout", "LayoutRow", "SearchResult", "search", "candidate_layouts", "MAX_FITS"]

_RESOLVED = 1e-6  # a two-core fit's relative error read from its discarded weight at or above this (else measured)
_SMALL = 2e7  # flops below which a search (work > 1) is not worth rationing (about a millisecond)

MAX_FITS = 8
"""At most this many layouts are fitted by a sweep (the truncated SVD always is)."""

WORK = 3.0
"""A search spends at most this many times the work of the truncated SVD's fit (in the flop model of
:mod:`tnlib._unfoldings`); the truncated SVD is always fitted."""

MARGIN = 0.01
"""A layout is fitted only when its estimated error is below the truncated SVD's (and the best fitted
error) by at least this fraction."""

SVD_MARGIN = 0.1
"""Without an input Gram (weight space), another layout replaces the truncated SVD only when its weight error is
below the SVD's by at least this fraction: a weight error is a poor proxy for what a model computes, and a small
gain in it has cost tasks more than it gave (a pitch CNN lost 0.53 -> 0.16 accuracy to a layout with 0.70 against
the SVD's 0.75)."""


def choice_score(score: float, is_svd: bool, weight_space: bool) -> float:
    """What a layout is chosen by: its error, raised by :data:`SVD_MARGIN` for a layout other than the truncated
    SVD's when judged in weight space."""
    return score if is_svd or not weight_space else score / (1.0 - SVD_MARGIN)


EXACT = 1e-8
"""A fitted relative error at or below this (under single precision's rounding) ends the search."""

SCREEN_DEPTH = 8
"""Leading Schmidt values of every unfolding computed by the first look."""

SCREEN_SHARE = 1 / 2
"""The share of the work left after the truncated SVD's fit that the first look may spend."""


@dataclass(frozen=True)
class Layout:
    """The row and column factors of every core of an MPO, in order.

    Examples
    --------
    >>> import tnlib
    >>> tnlib.Layout((512, 1), (1, 128)).is_svd
    True
    >>> str(tnlib.Layout((8, 8, 8), (4, 4, 8)))
    'out (8, 8, 8) x in (4, 4, 8)'
    """

    out_dims: tuple[int, ...]
    in_dims: tuple[int, ...]

    @property
    def num_cores(self) -> int:
        """Number of cores."""
        return len(self.out_dims)

    @property
    def shape(self) -> tuple[int, int]:
        """``(prod(out_dims), prod(in_dims))``."""
        return prod(self.out_dims), prod(self.in_dims)

    @property
    def is_svd(self) -> bool:
        """True for the two-core layout that is a truncated SVD (all rows in one core, all columns in the other)."""
        if self.num_cores != 2:
            return False
        (o0, o1), (i0, i1) = self.out_dims, self.in_dims
        return (o1 == 1 and i0 == 1) or (o0 == 1 and i1 == 1)

    def __str__(self) -> str:
        return f"out {self.out_dims} x in {self.in_dims}"


@dataclass(frozen=True)
class LayoutRow:
    """One searched layout.

    Attributes
    ----------
    layout : Layout
    bond_dims : tuple of int
        The allocation of the budget the bounds refer to.
    num_params : int
        Parameters of that allocation.
    error_bound, lower_bound : float
        Relative weight-space error estimated from the leading Schmidt values
        of the layout's unfoldings, and a lower bound on it (each bond alone);
        with an input Gram, of the whitened matrix. Estimates choose what to
        fit; ``error_bound`` is NaN for a layout the first look did not reach.
    error : float or None
        Relative weight-space error ``||W - W_hat|| / ||W||`` of the fitted
        MPO; ``None`` when the layout was not fitted.
    output_error : float or None
        Relative output-space error on the fit's rows (only with an input Gram).
    held_out_error : float or None
        Relative output-space error on the held-out rows (only with a held-out Gram).
    status : str
        ``"fitted"``; ``"pruned"`` (its lower bound could not beat the best
        fitted error); ``"screened"`` (its estimate was not below the
        truncated SVD's and the best fitted error by ``MARGIN``); or
        ``"not fitted"`` (beyond ``max_fits`` or the search's work).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((32, 16)) @ np.diag(0.7 ** np.arange(16))
    >>> row = tnlib.layouts(W, max_params=300).svd
    >>> row.layout.is_svd, row.status, row.num_params <= 300
    (True, 'fitted', True)
    """

    layout: Layout
    bond_dims: tuple[int, ...]
    num_params: int
    error_bound: float
    lower_bound: float
    error: float | None
    output_error: float | None
    status: str
    held_out_error: float | None = None

    @property
    def score(self) -> float:
        """The error the search minimises: on held-out rows with a held-out Gram, else output-space with an
        input Gram, else weight-space."""
        value = next((v for v in (self.held_out_error, self.output_error, self.error) if v is not None), None)
        return math.inf if value is None else value


def _factor_sets(n: int, k: int, largest: int) -> list[tuple[int, ...]]:
    """Descending ``k``-tuples of factors in ``[2, largest]`` whose product is ``n`` (each multiset once)."""
    def rec(rest: int, k: int, top: int) -> list[tuple[int, ...]]:
        if k == 1:
            return [(rest,)] if 2 <= rest <= top else []
        return [(d, *tail) for d in reversed(divisors(rest)) if 2 <= d <= top for tail in rec(rest // d, k - 1, d)]
    return rec(n, k, largest)


def _orderings(n: int, k: int) -> list[tuple[int, ...]]:
    """Near-balanced factorizations of ``n`` into ``k`` factors (at most twice the balanced one), each in
    descending and ascending order."""
    out: list[tuple[int, ...]] = []
    for f in _factor_sets(n, k, max(2, 2 * math.ceil(n ** (1 / k)))):
        out += [f] if f == f[::-1] else [f, f[::-1]]
    return out


@functools.lru_cache(maxsize=256)
def candidate_layouts(shape: tuple[int, int], max_cores: int) -> tuple[Layout, ...]:
    """Every two-core layout (all prefix pairs) and, for 3..max_cores cores, the near-balanced
    factorizations of both sides (factors at most twice the balanced one) in descending and ascending
    order, with tnlib's default balanced layout."""
    m, n = shape
    seen: set[Layout] = set()
    out: list[Layout] = []

    def add(layout: Layout) -> None:
        if layout not in seen:
            seen.add(layout)
            out.append(layout)

    add(Layout((m, 1), (1, n)))  # the truncated SVD first
    for p, q in itertools.product(divisors(m), divisors(n)):
        if (p, q) not in ((1, 1), (m, n), (1, n)):  # (1, n) is the SVD again, transposed
            add(Layout((p, m // p), (q, n // q)))
    for k in range(3, max_cores + 1):
        try:
            default = Layout(*choose_dims(shape, num_cores=k))
        except ValueError:
            default = None
        if default is not None and min(default.out_dims + default.in_dims) >= 2:
            add(default)
        for o, i in itertools.product(_orderings(m, k), _orderings(n, k)):
            add(Layout(o, i))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _prefixes(layout: Layout) -> tuple[tuple[int, int], ...]:
    """The prefix pair ``(p, q)`` of every bond: the unfolding it is."""
    pairs, p, q = [], 1, 1
    for o, i in zip(layout.out_dims[:-1], layout.in_dims[:-1]):
        p, q = p * o, q * i
        pairs.append((p, q))
    return tuple(pairs)


class _Estimate(NamedTuple):
    """A layout's bond allocation and parameters, estimated relative error and a lower bound on it."""

    chi: tuple[int, ...]
    params: int
    estimate: float
    lower: float


def _depths(layout: Layout, budget: int, min_bond: int, cap: int | None, shorts: Sequence[int]) -> list[int]:
    """The largest rank each bond can get when every other bond is at ``min_bond`` (capped by its short side
    and the truncation's ``max_bond``)."""
    phys = site_dims(layout.out_dims, layout.in_dims)
    nb = layout.num_cores - 1
    base = chain_params([min_bond] * nb, phys)
    out = []
    for k in range(nb):
        left = 1 if k == 0 else min_bond
        right = 1 if k == nb - 1 else min_bond
        per_unit = left * phys[k] + phys[k + 1] * right
        r = max(min_bond, (budget - (base - min_bond * per_unit)) // per_unit)
        out.append(min(r, shorts[k], cap if cap is not None else shorts[k]))
    return out


def _estimate(layout: Layout, parts: Sequence[Partial], budget: int, min_bond: int, cap: int | None,
              total: float) -> _Estimate:
    """Error estimate (uniform cap within the budget) and lower bound (each bond alone) from partial spectra."""
    phys = site_dims(layout.out_dims, layout.in_dims)
    nb = layout.num_cores - 1
    shorts = [p.rank for p in parts]
    depths = _depths(layout, budget, min_bond, cap, shorts)
    chi = uniform_cap(phys, [min_bond] * nb, depths, budget)  # depths are capped by the short sides
    est = sum(p.tail(c)[0] for p, c in zip(parts, chi))
    lower = max(p.tail(d)[1] for p, d in zip(parts, depths))
    return _Estimate(tuple(int(c) for c in chi), chain_params(chi, phys), math.sqrt(est / total),
                     math.sqrt(lower / total))


class SearchResult(NamedTuple):
    """The rows of a search and the best fitted decomposition (``None`` only when nothing was fitted)."""

    rows: tuple[LayoutRow, ...]
    best: Decomposition | None


def _fit(a: Any, layout: Layout, truncation: Truncation, svd: str,
         factor: GramFactor | None) -> tuple[Decomposition, float, float | None, float | None]:
    """One layout decomposed (and refitted to the Gram): (decomposition, relative error, relative output
    errors on the fit's rows and on the held-out rows)."""
    fit = decompose(a, layout.out_dims, layout.in_dims, truncation, svd, factor)
    if factor is None:
        if layout.num_cores == 2 and fit.report.relative_error_bound >= _RESOLVED:
            return fit, fit.report.relative_error_bound, None, None  # one bond: its discarded weight is the error
        return fit, measured_error(a, fit.cores), None, None
    report = fit.report
    assert report.error is not None
    return fit, (report.error / report.norm if report.norm > 0 else 0.0), report.output_error, report.held_out_error


def _too_small(shape: tuple[int, int], budget: int, min_bond: int, cands: Sequence[Layout]) -> BudgetTooSmallError:
    m, n = shape
    smallest = min(
        chain_params([min_bond] * (c.num_cores - 1), site_dims(c.out_dims, c.in_dims)) for c in cands
    )
    return BudgetTooSmallError(
        f"Truncation.max_params={budget} is too small for a {m} x {n} matrix: the truncated SVD at rank "
        f"{min_bond} needs {min_bond * (m + n)} parameters and the smallest layout searched {smallest}"
    )


def search(
    a: Any,
    truncation: Truncation,
    *,
    factor: GramFactor | None = None,
    max_cores: int | None = None,
    num_cores: int | None = None,
    max_fits: int = MAX_FITS,
    svd: str = "auto",
    work: float = WORK,
) -> SearchResult:
    """The layout search on a validated matrix and Gram factor (see the module docstring)."""
    budget = truncation.max_params
    assert budget is not None
    if isinstance(truncation.max_bond, tuple):
        raise ValueError(
            "per-bond caps (Truncation.max_bond as a sequence) cannot be combined with a layout search: "
            "layouts differ in their number of bonds; pass an int max_bond or explicit dims"
        )
    m, n = (int(d) for d in a.shape)
    xp = namespace(a)
    exponent = far_exponent(a)
    if exponent:  # searched at unit scale (every error is relative): spectra and fits neither under- nor overflow
        unit = search(a * 2.0**-exponent, truncation, factor=factor, max_cores=max_cores, num_cores=num_cores,
                      max_fits=max_fits, svd=svd, work=work)
        return SearchResult(unit.rows, None if unit.best is None else scaled_back(unit.best, exponent))
    target = a if factor is None else a @ factor.L  # estimates on the whitened matrix rank the layouts
    total = scalar(xp.linalg.vector_norm(target)) ** 2
    if total <= 0.0:
        total = 1.0
    cands = _candidates((m, n), num_cores, max_cores)
    if not cands:
        raise ValueError(f"no layout of a {m} x {n} matrix has num_cores={num_cores} cores with factors >= 2")
    low = truncation.min_bond
    feasible = [c for c in cands if chain_params([low] * (c.num_cores - 1), site_dims(c.out_dims, c.in_dims)) <= budget]
    if not feasible:
        raise _too_small((m, n), budget, low, cands)
    cap = truncation.max_bond if isinstance(truncation.max_bond, int) else None
    unfoldings = Unfoldings(target, total)
    rank = min(budget // (m + n), m, n, cap if cap is not None else m)
    reference_cost = factor_cost(m, n, max(rank, 1))
    allowance = max(work * reference_cost, _SMALL) if work > 1 else reference_cost
    fits = _Fits(a, svd, factor)
    reference = math.inf
    svd_layout = next((c for c in feasible if c.is_svd), None)
    if svd_layout is not None:  # the truncated SVD first: the reference every other layout must beat
        part = unfoldings.get(m, 1, rank) if factor is not None else None
        svd_est = _svd_estimate(svd_layout, low, rank, part, total)
        fits.fit(svd_layout, truncation, svd_est)
        reference = svd_est.estimate if factor is not None else fits.best_score
    others = [c for c in feasible if c is not svd_layout]
    found = factor is None and fits.best_score <= EXACT  # the truncated SVD is exact: nothing to look for
    _first_look(unfoldings, others, 0.0 if found else max(allowance - fits.spent, 0.0) * SCREEN_SHARE)
    fits.spent += unfoldings.work
    for layout, est in _estimates(others, unfoldings, budget, low, cap, fits.rows):
        status = _skip(est, reference, fits.best_score, factor is None, fits.count >= max_fits)
        if status is None and fits.count and fits.spent + _fit_cost(layout, est.chi) > allowance:
            status = "not fitted"  # the first fit is always made: a search returns a layout
        if status is None:
            fits.fit(layout, _layout_truncation(layout, truncation, est), est)
        else:
            fits.rows.append(LayoutRow(layout, est.chi, est.params, est.estimate, est.lower, None, None, status))
    if fits.best is None:  # no truncated SVD in the candidates and the first look reached none: the first one
        fits.rows = [r for r in fits.rows if r.layout != others[0]]
        est = _Estimate((), 0, math.nan, 0.0)
        fits.fit(others[0], _layout_truncation(others[0], truncation, est), est)
    return SearchResult(tuple(fits.rows), fits.best)


def _estimates(layouts: Sequence[Layout], unfoldings: Unfoldings, budget: int, low: int, cap: int | None,
               rows: list[LayoutRow]) -> list[tuple[Layout, _Estimate]]:
    """The layouts whose unfoldings the first look reached, with their estimates, best first; a
    ``"not fitted"`` row in ``rows`` for each of the others."""
    looked = []
    for layout in layouts:
        parts = [unfoldings.cache.get(pq) for pq in _prefixes(layout)]
        if any(part is None for part in parts):
            rows.append(LayoutRow(layout, (), 0, math.nan, 0.0, None, None, "not fitted"))
        else:
            looked.append((layout, _estimate(layout, parts, budget, low, cap, unfoldings.total)))  # type: ignore[arg-type]
    return sorted(looked, key=lambda e: (e[1].estimate, e[1].params))


class _Fits:
    """The layouts one search fitted: their rows, the best decomposition and its score, the work spent."""

    def __init__(self, a: Any, svd: str, factor: GramFactor | None):
        self.a, self.svd, self.factor = a, svd, factor
        self.rows: list[LayoutRow] = []
        self.best: Decomposition | None = None
        self.best_score = math.inf
        self.count = 0
        self.spent = 0.0

    def fit(self, layout: Layout, truncation: Truncation, est: _Estimate) -> None:
        decomposition, error, out, held = _fit(self.a, layout, truncation, self.svd, self.factor)
        self.spent += _fit_cost(layout, est.chi)
        self.count += 1
        score = choice_score(next(v for v in (held, out, error) if v is not None), layout.is_svd, self.factor is None)
        if score < self.best_score:
            self.best_score, self.best = score, decomposition
        chi = tuple(int(c.shape[3]) for c in decomposition.cores[:-1])
        estimate = error if math.isnan(est.estimate) else est.estimate  # the truncated SVD's is its error
        self.rows.append(LayoutRow(layout, chi, num_params(decomposition.cores), estimate, est.lower, error,
                                   out, "fitted", held))


def _first_look(unfoldings: Unfoldings, layouts: Sequence[Layout], limit: float) -> None:
    """``SCREEN_DEPTH`` leading values of the unfoldings of ``layouts``, nearest-square ones first, within
    ``limit`` flops (an unfolding that no longer fits is passed over, so cheaper ones still come in)."""
    m, n = unfoldings.m, unfoldings.n
    pairs = sorted({pair for c in layouts for pair in _prefixes(c)}, key=lambda pq: log_balance(pq[0], pq[1], m, n))
    start = unfoldings.work
    for p, q in pairs:
        if unfoldings.work - start + unfoldings.cost(p, q, SCREEN_DEPTH, power=0) <= limit:
            unfoldings.get(p, q, SCREEN_DEPTH, power=0)


def _skip(est: _Estimate, reference: float, best: float, weight_space: bool, full: bool) -> str | None:
    """Why a layout is not fitted, or ``None``: beyond ``max_fits``; its lower bound cannot beat the best
    fitted error (weight space only); its estimate is not below the truncated SVD's (and the best fitted
    error) by ``MARGIN``; or the best fitted error is already below ``MARGIN`` times the truncated SVD's
    or ``EXACT``."""
    if full:
        return "not fitted"
    if weight_space and est.lower >= best * (1 - 1e-12):
        return "pruned"
    if est.estimate >= reference * (1 - MARGIN) or (weight_space and est.estimate >= best * (1 - MARGIN)):
        return "screened"
    if weight_space and best <= max(MARGIN * reference, EXACT):
        return "screened"  # a layout a hundred times better than the truncated SVD (or exact) is found: stop
    return None


def _svd_estimate(layout: Layout, low: int, rank: int, part: Partial | None, total: float) -> _Estimate:
    m, n = layout.shape
    r = max(rank, low)
    est = math.nan if part is None else math.sqrt(part.tail(r)[0] / total)
    return _Estimate((r,), r * (m + n), est, 0.0 if part is None else est)


def _layout_truncation(layout: Layout, truncation: Truncation, est: _Estimate) -> Truncation:
    """The truncation a layout is fitted with: the budget for two cores (one truncated SVD at the largest rank
    it holds), the estimated allocation as per-bond caps for more (one truncating sweep, no exact chain)."""
    if layout.num_cores == 2 or not est.chi:
        return truncation
    return dataclasses.replace(truncation, max_params=None, max_bond=est.chi,
                               min_bond=min(truncation.min_bond, *est.chi))


def _fit_cost(layout: Layout, chi: Sequence[int]) -> float:
    """Flops of a truncating sweep of the layout at bonds ``chi`` (the model of :mod:`tnlib._unfoldings`)."""
    cost, left, rest = 0.0, 1, prod(layout.shape)
    for o, i, c in zip(layout.out_dims, layout.in_dims, chi):
        rows = left * o * i
        rest //= o * i
        cost += factor_cost(rows, rest, c)
        left = c
    return cost


def _candidates(shape: tuple[int, int], num_cores: int | None, max_cores: int | None) -> Sequence[Layout]:
    """The layouts searched: all with ``num_cores`` cores, or 2 up to ``max_cores`` (the truncated SVD first)."""
    m, n = shape
    if num_cores is not None:
        return [c for c in candidate_layouts(shape, max(num_cores, 2)) if c.num_cores == num_cores]
    return candidate_layouts(shape, max_cores if max_cores is not None else max(3, min(5, default_num_cores(m, n) + 1)))
