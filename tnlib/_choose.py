"""The layout chooser: one MPO of a matrix from ``(truncation, metric, objective)``, layout searched or given.

:meth:`tnlib.MPO.from_matrix` calls :func:`choose` for every in-memory
matrix with a truncation. Three things are decided here, once for the whole
library (``tnlib.nn.compress`` only passes its values through):

* **the metric's factor**: none (weight space), one split (``held_out``), or
  the folds of a calibration (:class:`tnlib.Metric` with ``folds``);
* **the layout**: the given dims, or the search of :mod:`tnlib._search`
  at a ``max_params`` budget;
* **the objective** (:class:`tnlib.Objective`): the least error, or the
  fewest multiply-adds within a tolerance of it.

With folds, the shrinkage is cross-validated over the usable folds
(:func:`tnlib.metric.choose_shrinkage`), the fit sees every fold but the last
usable one, which chooses the layout; a searched layout other than the
truncated SVD's is kept only when its paired per-fold gain over the SVD
layout is significant (:func:`tnlib._stats.paired_upper_bound`), or, for the
latency objective, when the SVD layout is not as accurate within the
tolerance and cheaper.
"""

from __future__ import annotations

from typing import Any, Sequence

from ._cost import split_cost
from ._decompose import Decomposition, decompose, refit
from ._legs import num_params
from ._search import LayoutRow, search
from ._stats import paired_upper_bound
from .metric import Metric, choose_shrinkage, metric_factor, svd_rank
from .objective import Objective
from .truncation import Truncation, warn_at_caller

__all__ = ["choose", "macs", "fastest"]

def choose(a: Any, dims: tuple[tuple[int, ...], tuple[int, ...]] | None, truncation: Truncation,
           metric: Metric | None, objective: Objective, svd: str, num_cores: int | None = None) -> Decomposition:
    """The decomposition of the validated ``a`` (``metric`` checked against it): in ``dims``, or searched when
    ``dims`` is ``None`` (a ``max_params`` budget)."""
    if metric is not None and metric.folds is not None:
        return _with_folds(a, dims, truncation, metric, objective, svd, num_cores)
    return _fit(a, dims, truncation, metric, objective, svd, num_cores)


def _fit(a: Any, dims: Any, truncation: Truncation, metric: Metric | None, objective: Objective, svd: str,
         num_cores: int | None) -> Decomposition:
    if dims is not None:
        base = decompose(a, dims[0], dims[1], truncation, svd)
        if metric is None:
            return base
        return refit(a, base, truncation, metric_factor(metric, a, truncation, num_params(base.cores)))
    factor = None if metric is None else metric_factor(metric, a, truncation)
    rows, best = search(a, truncation, factor=factor, num_cores=num_cores, svd=svd)
    assert best is not None  # the first layout in order is always fitted
    if objective.kind == "error":
        return best
    row = fastest(rows, objective)
    if _layout_of(best) == (row.layout.out_dims, row.layout.in_dims):
        return best
    return _fit(a, (row.layout.out_dims, row.layout.in_dims), truncation, metric, Objective(), svd, None)


def _layout_of(fit: Decomposition) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(int(c.shape[1]) for c in fit.cores), tuple(int(c.shape[2]) for c in fit.cores)


def macs(shapes: Sequence[Sequence[int]], objective: Objective = Objective()) -> int:
    """Multiply-adds of the cheapest exact form of cores of ``shapes``: per row, or per call of
    ``objective.batch`` rows with the form built in the call."""
    batch = objective.batch
    return split_cost(shapes, batch, build=batch is not None).macs


def fastest(rows: Sequence[LayoutRow], objective: Objective) -> LayoutRow:
    """The fitted row of fewest multiply-adds among those within ``objective.tolerance`` of the best score."""
    fitted = [r for r in rows if r.status == "fitted"]
    limit = min(r.score for r in fitted) * (1.0 + objective.tolerance)

    def cost(row: LayoutRow) -> int:
        bonds = [1, *row.bond_dims, 1]
        return macs([(bonds[k], o, i, bonds[k + 1])
                     for k, (o, i) in enumerate(zip(row.layout.out_dims, row.layout.in_dims))], objective)

    return min((r for r in fitted if r.score <= limit), key=lambda r: (cost(r), r.score))


def _held_out(fit: Decomposition) -> float:
    assert fit.report.held_out_error is not None  # fitted with a held-out Gram
    return fit.report.held_out_error


def _with_folds(a: Any, dims: Any, truncation: Truncation, metric: Metric, objective: Objective, svd: str,
                num_cores: int | None) -> Decomposition:
    usable = metric.usable_folds()
    if len(usable) < 2:
        warn_at_caller("the calibration holds a single sample, so no rows can be held out; fitted in the "
                       "weight-space metric (the plain truncated SVD's)")
        return _fit(a, dims, truncation, Metric(metric.gram, shrinkage=1.0), Objective(), svd, num_cores)
    shape = (int(a.shape[0]), int(a.shape[1]))
    params = truncation.max_params
    if params is None:
        params = num_params(_fit(a, dims, truncation, None, Objective(), svd, num_cores).cores)
    shrinkage, _ = choose_shrinkage(a, svd_rank(shape, params, truncation.cap), metric)

    def fit(k: int, layout: Any) -> Decomposition:
        train, held, _ = metric.split(k)
        return _fit(a, layout, truncation, Metric(train, held, shrinkage), Objective(), svd, num_cores)

    chosen = fit(usable[-1], dims)
    svd_dims = ((shape[0], 1), (1, shape[1]))
    if dims is not None or _layout_of(chosen) == svd_dims:
        return chosen
    # the search on one held-out fold chose another layout: confirm it against the SVD layout on every fold
    svds = {k: fit(k, svd_dims) for k in usable}
    svd_fit = svds[usable[-1]]
    cost = {id(f): macs([tuple(int(d) for d in c.shape) for c in f.cores], objective) for f in (svd_fit, chosen)}
    if objective.kind == "latency" and cost[id(svd_fit)] < cost[id(chosen)] and \
            _held_out(svd_fit) <= (1.0 + objective.tolerance) * _held_out(chosen):
        return svd_fit  # as accurate on the held-out rows, within the tolerance, and cheaper per row
    others = {k: chosen if k == usable[-1] else fit(k, _layout_of(chosen)) for k in usable}
    differences = [_held_out(others[k]) ** 2 - _held_out(svds[k]) ** 2 for k in usable]
    return chosen if paired_upper_bound(differences) < 0.0 else svd_fit
