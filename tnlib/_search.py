r"""Layout search: which MPO of a matrix is best for a parameter budget.

An MPO of an ``M x N`` matrix is fixed by its *layout*: the number of cores
and the row and column factors each core carries, in order
(``out_dims``, ``in_dims``; a factor may be 1, so a core may hold only rows
or only columns). The two-core layout ``out_dims=(M, 1), in_dims=(1, N)`` is
the truncated SVD; other two-core layouts are Kronecker-product SVDs (Van
Loan and Pitsianis 1993); more cores give the MPO of Gao et al. (2020).

For a budget ``max_params`` tnlib searches the layouts and keeps the one with
the least true error:

1. Every bond ``k`` of a layout is an unfolding of the matrix whose rows are
   the first ``k + 1`` row and column factors; its singular values are the
   exact Schmidt values of that bond. Unfoldings are shared between layouts
   (they depend only on the two prefix products) and computed once.
2. From the spectra, the budget's best allocation of bond dimensions
   (:func:`tnlib.allocate_bonds`) gives an upper bound on the layout's error,
   :math:`\sqrt{\sum_k \epsilon_k^2}` (Oseledets 2011), and the largest bond
   each bond could have alone a lower bound, :math:`\max_k \epsilon_k`.
3. The truncated SVD is fitted first, then the other layouts in order of
   their upper bound; a layout whose lower bound is not below the best true
   error found so far is pruned without a sweep.

Because the truncated SVD is always one of the fitted layouts and the winner
has the least true error, the result is never worse than the truncated SVD at
the same budget. With an input Gram ``C`` (``input_gram``) the errors are
measured in the output space, ``||X (W - W_hat)^T|| / ||X W^T||`` (on the
held-out rows when a held-out Gram is given); the SVD layout is then fitted
exactly by the whitened SVD and every other layout by alternating least
squares in the shrunk metric (see ``tnlib/_input_gram.py``).

This module is the engine: every fitted layout goes through
:func:`tnlib._decompose.decompose` and comes back as cores and a report,
never as an ``MPO``. The public table (:class:`tnlib.LayoutSearch`,
:func:`tnlib.layouts`) is :mod:`tnlib.layout_search`, which wraps the best
fit; :meth:`tnlib.MPO.from_matrix` calls :func:`search` directly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from ._backend import far_exponent, namespace, prod, scalar, to_host
from ._decompose import Decomposition, decompose, measured_error, scaled_back
from ._input_gram import GramFactor
from ._legs import num_params
from ._linalg import adjoint, svdvals
from .budget import chain_params, uniform_cap
from .dims import default_num_cores, divisors
from .truncation import BudgetTooSmallError, Truncation

__all__ = ["Layout", "LayoutRow", "SearchResult", "search", "candidate_layouts", "MAX_FITS"]

_GRAM_FROM = 256  # unfoldings with both sides at least this long get their spectrum from a Gram matrix

MAX_FITS = 8
"""At most this many layouts are fitted by a sweep (the truncated SVD always is)."""


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
        Relative weight-space error bounds from the exact spectra (with an
        input Gram: of the whitened matrix, a ranking heuristic).
    error : float or None
        Relative weight-space error ``||W - W_hat|| / ||W||`` of the fitted
        MPO; ``None`` when the layout was not fitted.
    output_error : float or None
        Relative output-space error on the fit's rows (only with an input Gram).
    held_out_error : float or None
        Relative output-space error on the held-out rows (only with a held-out Gram).
    status : str
        ``"fitted"``, ``"pruned"`` (its lower bound could not beat the best
        fitted error) or ``"not fitted"`` (beyond the fitting limit).

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


def _ordered_factorizations(n: int, k: int, largest: int) -> list[tuple[int, ...]]:
    """Ordered ``k``-tuples of factors in ``[2, largest]`` whose product is ``n``."""
    if k == 1:
        return [(n,)] if 2 <= n <= largest else []
    out = []
    for d in divisors(n):
        if 2 <= d <= largest:
            out += [(d, *rest) for rest in _ordered_factorizations(n // d, k - 1, largest)]
    return out


def candidate_layouts(shape: tuple[int, int], max_cores: int) -> list[Layout]:
    """Every two-core layout (all prefix pairs) and, for 3..max_cores cores, the
    orderings of near-balanced factorizations of both sides (factors at most
    twice the balanced one)."""
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
        outs = _ordered_factorizations(m, k, max(2, 2 * math.ceil(m ** (1 / k))))
        ins = _ordered_factorizations(n, k, max(2, 2 * math.ceil(n ** (1 / k))))
        for o, i in itertools.product(outs, ins):
            add(Layout(o, i))
    return out


class _Spectra:
    """Singular values of the unfoldings of one matrix, computed once per prefix pair."""

    def __init__(self, a: Any):
        self.a = a
        self.m, self.n = (int(d) for d in a.shape)
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, p: int, q: int) -> np.ndarray:
        key = (p, q)
        if key not in self.cache:
            xp = namespace(self.a)
            t = xp.reshape(self.a, (p, self.m // p, q, self.n // q))
            u = xp.reshape(xp.permute_dims(t, (0, 2, 1, 3)), (p * q, -1))
            if min(u.shape) < _GRAM_FROM:
                s = np.asarray(to_host(svdvals(u)), dtype=np.float64)
            else:
                # bounds only rank the layouts (the fits measure true errors): eigenvalues of the
                # small Gram matrix, accurate to eps * s_max^2, are enough and several times faster
                g = u @ adjoint(u) if u.shape[0] <= u.shape[1] else adjoint(u) @ u
                lam = np.asarray(to_host(xp.real(xp.linalg.eigvalsh(g))), dtype=np.float64)[::-1]
                s = np.sqrt(np.clip(lam, 0.0, None))
            self.cache[key] = s
        return self.cache[key]


def _tail(s: np.ndarray, r: int) -> float:
    return float(np.sum(s[r:] ** 2))


def _bounds(layout: Layout, spectra: _Spectra, budget: int, min_bond: int, total: float):
    """(bond_dims, params, upper, lower) relative bounds, or None when the budget cannot hold the layout.

    The upper bound is that of the best uniform cap within the budget (any
    allocation within the budget bounds the optimum from above); the lower
    bound, ``max_k`` of the weight bond ``k`` must drop even when it alone
    takes what the budget leaves after every other bond is at ``min_bond``.
    """
    phys = [o * i for o, i in zip(layout.out_dims, layout.in_dims)]
    nb = layout.num_cores - 1
    if chain_params([min_bond] * nb, phys) > budget:
        return None
    specs, p, q = [], 1, 1
    for o, i in zip(layout.out_dims[:-1], layout.in_dims[:-1]):
        p, q = p * o, q * i
        specs.append(spectra(p, q))
    chi = uniform_cap(phys, [min_bond] * nb, [max(len(s), min_bond) for s in specs], budget)
    upper = math.sqrt(sum(_tail(s, c) for s, c in zip(specs, chi)) / total)
    lower = 0.0
    for k, s in enumerate(specs):
        left = 1 if k == 0 else min_bond
        right = 1 if k == nb - 1 else min_bond
        per_unit = left * phys[k] + phys[k + 1] * right  # params of bond k per unit of its dimension
        rest = chain_params([min_bond] * nb, phys) - min_bond * per_unit
        r = max(min_bond, min(len(s), (budget - rest) // per_unit))
        lower = max(lower, math.sqrt(_tail(s, r) / total))
    return tuple(int(c) for c in chi), chain_params(chi, phys), upper, lower


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
        return fit, measured_error(a, fit.cores), None, None
    report = fit.report
    assert report.error is not None
    return fit, (report.error / report.norm if report.norm > 0 else 0.0), report.output_error, report.held_out_error


def _too_small(shape: tuple[int, int], budget: int, min_bond: int, cands: Sequence[Layout]) -> BudgetTooSmallError:
    m, n = shape
    smallest = min(
        chain_params([min_bond] * (c.num_cores - 1), [o * i for o, i in zip(c.out_dims, c.in_dims)]) for c in cands
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
                      max_fits=max_fits, svd=svd)
        return SearchResult(unit.rows, None if unit.best is None else scaled_back(unit.best, exponent))
    target = a if factor is None else a @ factor.L  # bounds on the whitened matrix rank the layouts
    total = scalar(xp.linalg.vector_norm(target)) ** 2
    if total <= 0.0:
        total = 1.0
    spectra = _Spectra(target)
    cands = _candidates((m, n), num_cores, max_cores)
    if not cands:
        raise ValueError(f"no layout of a {m} x {n} matrix has num_cores={num_cores} cores with factors >= 2")
    bounded = []
    for layout in cands:
        b = _bounds(layout, spectra, budget, truncation.min_bond, total)
        if b is not None:
            bounded.append((layout, *b))
    if not bounded:
        raise _too_small((m, n), budget, truncation.min_bond, cands)
    svd_entry = next((e for e in bounded if e[0].is_svd), None)
    # the truncated SVD first (when the budget holds rank min_bond), then by upper bound
    order = ([svd_entry] if svd_entry is not None else []) + sorted(
        (e for e in bounded if e is not svd_entry), key=lambda e: e[3]
    )
    rows: list[LayoutRow] = []
    best_score, best, fits = math.inf, None, 0
    for layout, chi, params, upper, lower in order:
        status, error, out, held = "not fitted", None, None, None
        if fits < max_fits:
            if factor is None and lower >= best_score * (1 - 1e-12):
                status = "pruned"
            else:
                fit, error, out, held = _fit(a, layout, truncation, svd, factor)
                chi = tuple(int(c.shape[3]) for c in fit.cores[:-1])
                params = num_params(fit.cores)
                status, fits = "fitted", fits + 1
                score = next(v for v in (held, out, error) if v is not None)
                if score < best_score:
                    best_score, best = score, fit
        rows.append(LayoutRow(layout, tuple(chi), int(params), upper, lower, error, out, status, held))
    return SearchResult(tuple(rows), best)


def _candidates(shape: tuple[int, int], num_cores: int | None, max_cores: int | None) -> list[Layout]:
    """The layouts searched: all with ``num_cores`` cores, or 2 up to ``max_cores`` (the truncated SVD first)."""
    m, n = shape
    if num_cores is not None:
        return [c for c in candidate_layouts(shape, max(num_cores, 2)) if c.num_cores == num_cores]
    return candidate_layouts(shape, max_cores if max_cores is not None else max(3, min(5, default_num_cores(m, n) + 1)))
