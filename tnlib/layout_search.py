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
measured in the output space, ``||X (W - W_hat)^T|| / ||X W^T||``; the SVD
layout is then fitted exactly by the whitened SVD and every other layout by
alternating least squares in that metric (see ``tnlib/_input_gram.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import _input_gram as gram_fit
from ._backend import as_matrix, namespace, prod, to_host
from ._checks import check_int
from ._linalg import adjoint, svdvals
from .truncation import Truncation, TruncationReport, check_truncation

if TYPE_CHECKING:
    from .mpo import MPO

__all__ = ["Layout", "LayoutRow", "LayoutSearch", "layouts", "search", "fit_layout"]

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
        Relative output-space error (only with an input Gram).
    status : str
        ``"fitted"``, ``"pruned"`` (its lower bound could not beat the best
        fitted error) or ``"not fitted"`` (beyond the fitting limit).
    """

    layout: Layout
    bond_dims: tuple[int, ...]
    num_params: int
    error_bound: float
    lower_bound: float
    error: float | None
    output_error: float | None
    status: str

    @property
    def score(self) -> float:
        """The error the search minimises: output-space with an input Gram, else weight-space."""
        value = self.output_error if self.output_error is not None else self.error
        return math.inf if value is None else value


@dataclass(frozen=True)
class LayoutSearch:
    """The table of a layout search: what was searched and why the best won.

    Printable (``print(search)``) and plottable (:meth:`plot`). ``best`` is
    the fitted layout with the least error; ``svd`` the truncated SVD's row;
    ``mpo`` the best fitted MPO.
    """

    shape: tuple[int, int]
    max_params: int
    rows: tuple[LayoutRow, ...]
    mpo: Any = dataclasses.field(repr=False, compare=False)

    @property
    def best(self) -> LayoutRow:
        """The fitted row with the least error."""
        return min((r for r in self.rows if r.status == "fitted"), key=lambda r: r.score)

    @property
    def svd(self) -> LayoutRow | None:
        """The truncated SVD's row (``None`` when the budget cannot hold even its rank ``min_bond``)."""
        return next((r for r in self.rows if r.layout.is_svd and r.status == "fitted"), None)

    def __str__(self) -> str:
        data = any(r.output_error is not None for r in self.rows)
        head = f"layout search: {self.shape[0]} x {self.shape[1]} matrix, max_params={self.max_params}"
        cols = f"{'layout':<38} {'bonds':<18} {'params':>9} {'bound':>8} {'error':>8}"
        lines = [head, cols + (f" {'output':>8}" if data else "") + "  status"]
        best = self.best
        shown = 0
        hidden = 0
        for r in sorted(self.rows, key=lambda r: (r.score, r.error_bound)):
            if r.status == "not fitted" and shown >= 12:
                hidden += 1
                continue
            shown += r.status == "not fitted"
            err = "-" if r.error is None else f"{r.error:.4f}"
            out = "" if not data else (" " + ("-" if r.output_error is None else f"{r.output_error:.4f}").rjust(8))
            marks = (["<- best"] if r is best else []) + (["(truncated SVD)"] if r.layout.is_svd else [])
            lines.append(
                f"{str(r.layout):<38} {str(r.bond_dims):<18} {r.num_params:>9} {r.error_bound:>8.4f} "
                f"{err:>8}{out}  {r.status} {' '.join(marks)}".rstrip()
            )
        if hidden:
            lines.append(f"... and {hidden} more layouts not fitted (larger bounds)")
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Error against number of cores, the truncated SVD and the winner marked (needs matplotlib)."""
        from ._plot import plot_layouts

        return plot_layouts(self, ax)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _ordered_factorizations(n: int, k: int, largest: int) -> list[tuple[int, ...]]:
    """Ordered ``k``-tuples of factors in ``[2, largest]`` whose product is ``n``."""
    if k == 1:
        return [(n,)] if 2 <= n <= largest else []
    out = []
    for d in _divisors(n):
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
    for p, q in itertools.product(_divisors(m), _divisors(n)):
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


def _params(chi: Sequence[int], phys: Sequence[int]) -> int:
    full = [1, *chi, 1]
    return sum(full[k] * d * full[k + 1] for k, d in enumerate(phys))


def _tail(s: np.ndarray, r: int) -> float:
    return float(np.sum(s[r:] ** 2))


def _uniform_cap(specs: Sequence[np.ndarray], phys: Sequence[int], budget: int, min_bond: int) -> list[int]:
    """The bonds ``min(c, rank_k)`` for the largest cap ``c`` within the budget (bisection)."""
    ranks = [len(s) for s in specs]

    def bonds(c: int) -> list[int]:
        return [max(min_bond, min(c, r)) for r in ranks]

    lo, hi = min_bond, max(ranks)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _params(bonds(mid), phys) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return bonds(lo)


def _bounds(layout: Layout, spectra: _Spectra, budget: int, min_bond: int, total: float):
    """(bond_dims, params, upper, lower) relative bounds, or None when the budget cannot hold the layout.

    The upper bound is that of the best uniform cap within the budget (any
    allocation within the budget bounds the optimum from above); the lower
    bound, ``max_k`` of the weight bond ``k`` must drop even when it alone
    takes what the budget leaves after every other bond is at ``min_bond``.
    """
    phys = [o * i for o, i in zip(layout.out_dims, layout.in_dims)]
    nb = layout.num_cores - 1
    if _params([min_bond] * nb, phys) > budget:
        return None
    specs, p, q = [], 1, 1
    for o, i in zip(layout.out_dims[:-1], layout.in_dims[:-1]):
        p, q = p * o, q * i
        specs.append(spectra(p, q))
    chi = _uniform_cap(specs, phys, budget, min_bond)
    upper = math.sqrt(sum(_tail(s, c) for s, c in zip(specs, chi)) / total)
    lower = 0.0
    for k, s in enumerate(specs):
        left = 1 if k == 0 else min_bond
        right = 1 if k == nb - 1 else min_bond
        per_unit = left * phys[k] + phys[k + 1] * right  # params of bond k per unit of its dimension
        rest = _params([min_bond] * nb, phys) - min_bond * per_unit
        r = max(min_bond, min(len(s), (budget - rest) // per_unit))
        lower = max(lower, math.sqrt(_tail(s, r) / total))
    return tuple(int(c) for c in chi), _params(chi, phys), upper, lower


def _svd_layout_mpo(cls: Any, a: Any, budget: int, truncation: Truncation, factor: Any) -> MPO:
    """The whitened truncated SVD as the two-core MPO of layout ``out (M, 1) x in (1, N)``."""
    xp = namespace(a)
    m, n = (int(d) for d in a.shape)
    rank = max(1, min(budget // (m + n), m, n))
    if truncation.cap is not None:
        rank = min(rank, truncation.cap)
    left, right = gram_fit.whitened_svd(a, rank, factor)
    r = left.shape[1]
    return cls([xp.reshape(left, (1, m, 1, r)), xp.reshape(right, (r, 1, n, 1))])


def _measured(cls: Any, a: Any, mpo: MPO, truncation: Truncation, factor: Any) -> tuple[MPO, float, float | None]:
    """The MPO with a report of its measured errors: (mpo, relative error, relative output error)."""
    from ._chain import rebuild

    xp = namespace(a)
    w_hat = mpo.to_matrix()
    norm = float(xp.linalg.vector_norm(a))
    error = float(xp.linalg.vector_norm(a - w_hat))
    out = None if factor is None else gram_fit.output_error(a, w_hat, factor)
    base = mpo.report
    if factor is None and base is not None:
        return mpo, (error / norm if norm > 0 else 0.0), None
    bonds = mpo.bond_dims
    report = TruncationReport(
        bonds,
        base.full_bond_dims if base is not None else bonds,
        (float("nan"),) * len(bonds),
        norm,
        truncation,
        error=error,
        output_error=out,
    )
    return rebuild(mpo, mpo.center, report), (error / norm if norm > 0 else 0.0), out


def _fit(cls: Any, a: Any, layout: Layout, truncation: Truncation, svd: str, factor: Any) -> MPO:
    mpo = cls.from_matrix(a, layout.out_dims, layout.in_dims, truncation=truncation, svd=svd)
    if factor is None:
        return mpo
    return _fit_in_metric(cls, a, mpo, layout, truncation, factor)


def _fit_in_metric(cls: Any, a: Any, mpo: MPO, layout: Layout, truncation: Truncation, factor: Any) -> MPO:
    """Refit a weight-space truncation ``mpo`` of ``a`` in the metric of the Gram (same bonds).

    A truncated-SVD layout starts from the better (in the undamped metric) of
    the whitened SVD and ``mpo``; every layout then runs ALS sweeps in the
    undamped metric, which never increase the output-space error and leave
    directions the inputs never excite as the weight-space fit had them.
    """
    from ._chain import site_cores

    if layout.is_svd and layout.out_dims[1] == 1:
        budget = truncation.max_params if truncation.max_params is not None else mpo.num_params
        whitened = _svd_layout_mpo(cls, a, min(budget, mpo.num_params), truncation, factor)
        if gram_fit.output_error(a, whitened.to_matrix(), factor) < gram_fit.output_error(a, mpo.to_matrix(), factor):
            mpo = whitened

    sites = gram_fit.fit_in_metric(site_cores(mpo), a, factor.gram, layout.out_dims, layout.in_dims)
    xp = namespace(a)
    cores = [
        xp.reshape(s, (s.shape[0], o, i, s.shape[2])) for s, o, i in zip(sites, layout.out_dims, layout.in_dims)
    ]
    return cls(cores)


def fit_layout(cls: Any, a: Any, mpo: MPO, layout: Layout, truncation: Truncation, input_gram: Any) -> MPO:
    """``mpo`` (a weight-space truncation of ``a`` in ``layout``) refitted to an input Gram, with its report."""
    factor = gram_fit.gram_factor(gram_fit.check_input_gram(input_gram, int(a.shape[1]), a))
    return _measured(cls, a, _fit_in_metric(cls, a, mpo, layout, truncation, factor), truncation, factor)[0]


def search(
    a: Any,
    truncation: Truncation,
    *,
    input_gram: Any = None,
    max_cores: int | None = None,
    num_cores: int | None = None,
    max_fits: int = MAX_FITS,
    svd: str = "auto",
) -> LayoutSearch:
    """The layout search on a validated matrix (see the module docstring)."""
    from .mpo import MPO

    budget = truncation.max_params
    assert budget is not None
    if isinstance(truncation.max_bond, tuple):
        raise ValueError(
            "per-bond caps (Truncation.max_bond as a sequence) cannot be combined with a layout search: "
            "layouts differ in their number of bonds; pass an int max_bond or explicit dims"
        )
    m, n = (int(d) for d in a.shape)
    xp = namespace(a)
    factor = None
    target = a
    if input_gram is not None:
        factor = gram_fit.gram_factor(gram_fit.check_input_gram(input_gram, n, a))
        target = a @ factor.L  # bounds on the whitened matrix rank the layouts
    total = float(xp.linalg.vector_norm(target)) ** 2
    if total <= 0.0:
        total = 1.0
    spectra = _Spectra(target)
    cands = _candidates((m, n), num_cores, max_cores)
    bounded = []
    for layout in cands:
        b = _bounds(layout, spectra, budget, truncation.min_bond, total)
        if b is not None:
            bounded.append((layout, *b))
    svd_entry = next((e for e in bounded if e[0].is_svd), None)
    if not cands:
        raise ValueError(f"no layout of a {m} x {n} matrix has num_cores={num_cores} cores with factors >= 2")
    if not bounded:
        smallest = min(
            _params([truncation.min_bond] * (c.num_cores - 1), [o * i for o, i in zip(c.out_dims, c.in_dims)])
            for c in cands
        )
        raise ValueError(
            f"Truncation.max_params={budget} is too small for a {m} x {n} matrix: the truncated SVD at rank "
            f"{truncation.min_bond} needs {truncation.min_bond * (m + n)} parameters and the smallest layout "
            f"searched {smallest}"
        )
    # the truncated SVD first (when the budget holds rank min_bond), then by upper bound
    order = ([svd_entry] if svd_entry is not None else []) + sorted(
        (e for e in bounded if e is not svd_entry), key=lambda e: e[3]
    )
    rows: list[LayoutRow] = []
    best_score, best_mpo, fits = math.inf, None, 0
    for layout, chi, params, upper, lower in order:
        status, error, out, mpo = "not fitted", None, None, None
        if fits < max_fits:
            if factor is None and lower >= best_score * (1 - 1e-12):
                status = "pruned"
            else:
                mpo, error, out = _measured(MPO, a, _fit(MPO, a, layout, truncation, svd, factor), truncation, factor)
                chi, params = mpo.bond_dims, mpo.num_params
                status, fits = "fitted", fits + 1
                score = out if out is not None else error
                if score < best_score:
                    best_score, best_mpo = score, mpo
        rows.append(LayoutRow(layout, tuple(chi), params, upper, lower, error, out, status))
    return LayoutSearch((m, n), budget, tuple(rows), best_mpo)


def _candidates(shape: tuple[int, int], num_cores: int | None, max_cores: int | None) -> list[Layout]:
    """The layouts searched: all with ``num_cores`` cores, or 2 up to ``max_cores`` (the truncated SVD first)."""
    m, n = shape
    if num_cores is not None:
        return [c for c in candidate_layouts(shape, max(num_cores, 2)) if c.num_cores == num_cores]
    return candidate_layouts(shape, max_cores if max_cores is not None else max(3, _default_max_cores(m, n)))


def _default_max_cores(m: int, n: int) -> int:
    from .dims import default_num_cores

    return min(5, default_num_cores(m, n) + 1)


def layouts(
    matrix: Any,
    max_params: int,
    *,
    truncation: Truncation | None = None,
    input_gram: Any = None,
    max_cores: int | None = None,
    max_fits: int = MAX_FITS,
    svd: str = "auto",
) -> LayoutSearch:
    """Search the MPO layouts of ``matrix`` for a parameter budget; return the table.

    Parameters
    ----------
    matrix : array, shape (M, N)
        Finite, floating, any Array-API library.
    max_params
        The budget: parameters of the whole MPO.
    truncation
        Other criteria every fit obeys as well (``max_bond``, ``cutoff``, ...);
        its ``max_params`` is replaced by ``max_params``.
    input_gram : array, shape (N, N), optional
        ``C = X^T X / n`` of the layer's inputs: layouts are then fitted and
        compared by the output-space error ``||X (W - W_hat)^T|| / ||X W^T||``.
    max_cores
        Largest number of cores searched (default: one more than
        :func:`tnlib.default_num_cores`, at most 5).
    max_fits
        Most layouts fitted by a sweep (the truncated SVD always is).
    svd
        SVD method for the sweeps.

    Returns
    -------
    LayoutSearch
        Every layout searched with its bounds, fitted errors and status;
        ``.best``, ``.svd``, ``.mpo`` (the best MPO), ``print()``, ``.plot()``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((64, 32)) @ np.diag(0.8 ** np.arange(32))
    >>> found = tnlib.layouts(W, max_params=700)
    >>> found.best.error <= found.svd.error
    True
    >>> found.mpo.num_params <= 700
    True
    """
    a = as_matrix(matrix)
    check_int("max_params", max_params, 1)
    base = check_truncation(truncation) or Truncation()
    if max_cores is not None:
        check_int("max_cores", max_cores, 2)
    check_int("max_fits", max_fits, 1)
    from .svd import check_svd

    check_svd(svd)
    t = dataclasses.replace(base, max_params=int(max_params))
    return search(a, t, input_gram=input_gram, max_cores=max_cores, max_fits=max_fits, svd=svd)
