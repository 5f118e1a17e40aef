"""Layout search, the public table: :func:`layouts` and :class:`LayoutSearch`.

The search itself (candidate layouts, estimates from the leading Schmidt values of the
unfoldings, pruning, fits) is :mod:`tnlib._search`; this module validates the
arguments, runs it and wraps the best fit as an :class:`tnlib.MPO`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ._backend import as_matrix
from ._checks import check_int, check_real
from ._plot import plot_layouts
from ._search import MAX_FITS, WORK, Layout, LayoutRow, choice_score, search
from .metric import Metric, checked_metric, metric_factor, resolve_metric
from .mpo import wrap_decomposition
from .svd import check_svd
from .truncation import Truncation, check_truncation

__all__ = ["Layout", "LayoutRow", "LayoutSearch", "layouts"]


@dataclass(frozen=True)
class LayoutSearch:
    """The table of a layout search: what was searched and why the best won.

    Printable (``print(search)``) and plottable (:meth:`plot`). ``best`` is
    the fitted layout with the least error; ``svd`` the truncated SVD's row;
    ``mpo`` the best fitted MPO.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((32, 32)) @ np.diag(0.7 ** np.arange(32))
    >>> found = tnlib.layouts(W, max_params=400)
    >>> found.best.status, found.mpo.num_params <= 400
    ('fitted', True)
    """

    shape: tuple[int, int]
    max_params: int
    rows: tuple[LayoutRow, ...]
    mpo: Any = dataclasses.field(repr=False, compare=False)

    @property
    def best(self) -> LayoutRow:
        """The fitted row chosen: the least error, where in weight space (no input Gram) another layout must beat
        the truncated SVD by ``SVD_MARGIN`` (10 %) to replace it."""
        fitted = [r for r in self.rows if r.status == "fitted"]
        weight_space = all(r.output_error is None for r in fitted)
        return min(fitted, key=lambda r: choice_score(r.score, r.layout.is_svd, weight_space))

    @property
    def svd(self) -> LayoutRow | None:
        """The truncated SVD's row (``None`` when the budget cannot hold even its rank ``min_bond``)."""
        return next((r for r in self.rows if r.layout.is_svd and r.status == "fitted"), None)

    def __str__(self) -> str:
        data = any(r.output_error is not None for r in self.rows)
        held = any(r.held_out_error is not None for r in self.rows)
        head = f"layout search: {self.shape[0]} x {self.shape[1]} matrix, max_params={self.max_params}"
        cols = f"{'layout':<38} {'bonds':<18} {'params':>9} {'bound':>8} {'error':>8}"
        cols += (f" {'output':>8}" if data else "") + (f" {'held-out':>8}" if held else "")
        lines = [head, cols + "  status"]
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
            if held:
                out += " " + ("-" if r.held_out_error is None else f"{r.held_out_error:.4f}").rjust(8)
            marks = (["<- best"] if r is best else []) + (["(truncated SVD)"] if r.layout.is_svd else [])
            lines.append(
                f"{str(r.layout):<38} {str(r.bond_dims):<18} {r.num_params:>9} {r.error_bound:>8.4f} "
                f"{err:>8}{out}  {r.status} {' '.join(marks)}".rstrip()
            )
        if hidden:
            lines.append(f"... and {hidden} more layouts not fitted (larger estimates, or beyond the work)")
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Error against number of cores, the truncated SVD and the winner marked (needs matplotlib)."""
        return plot_layouts(self, ax)


def layouts(
    matrix: Any,
    max_params: int,
    *,
    truncation: Truncation | None = None,
    metric: Metric | None = None,
    input_gram: Any = None,
    held_out_gram: Any = None,
    shrinkage: float | None = None,
    max_cores: int | None = None,
    max_fits: int = MAX_FITS,
    svd: str = "auto",
    work: float = WORK,
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
    metric : tnlib.Metric, optional
        The Gram of the layer's inputs ``X``: layouts are then fitted and
        compared by the output-space error ``||X (W - W_hat)^T|| / ||X W^T||``;
        with held-out rows the layouts are compared on them (column
        ``held-out``). As in :meth:`tnlib.MPO.from_matrix`.
    input_gram, held_out_gram, shrinkage
        The older spelling of ``metric``, kept as an alias.
    max_cores
        Largest number of cores searched (default: one more than
        :func:`tnlib.default_num_cores`, at most 5).
    max_fits
        Most layouts fitted by a sweep (the truncated SVD always is).
    svd
        SVD method for the sweeps.
    work
        The search spends at most this many times the work of the truncated
        SVD's fit, counted in floating-point operations of a fixed model (so
        the result does not depend on the machine's load): half of what is
        left after that fit on a first look at the unfoldings, the rest on
        fits. Larger values look at more unfoldings and fit more layouts;
        ``work=1`` fits the truncated SVD alone. At least 1. Searches of
        small matrices (under about ``2e7`` flops) are not rationed.

    Returns
    -------
    LayoutSearch
        Every layout searched with its estimate, fitted errors and status;
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
    check_real("work", work)
    if not work >= 1.0 or not math.isfinite(work):
        raise ValueError(f"work={work!r} is invalid: pass a finite number >= 1 (multiples of one truncated-SVD fit)")
    check_svd(svd)
    t = dataclasses.replace(base, max_params=int(max_params))
    chosen, names = resolve_metric(metric, input_gram, held_out_gram, shrinkage)
    factor = None if chosen is None else metric_factor(checked_metric(chosen, a, names), a, t)
    rows, best = search(a, t, factor=factor, max_cores=max_cores, max_fits=max_fits, svd=svd, work=float(work))
    assert best is not None  # the first row in order is always fitted
    shape = (int(a.shape[0]), int(a.shape[1]))
    return LayoutSearch(shape, int(max_params), rows, wrap_decomposition(best, shape))
