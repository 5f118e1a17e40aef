r"""The metric of a data-aware fit: the Gram of a layer's inputs, validated once, and its shrinkage.

A layer ``y = x W^T`` is judged on its outputs for the inputs ``X`` it sees,
not on ``||W - W_hat||_F``. With the input Gram ``C = X^H X / n`` (``N x N``)
and any factor ``C = L L^H``,

.. math::
    \frac1n \|X (W - \hat W)^T\|_F^2 = \operatorname{tr}\big((W - \hat W) C (W - \hat W)^H\big)
    = \|(W - \hat W) L\|_F^2 .

A Gram from few rows (``n`` below, or not far above, ``N``) does not say how
the layer's inputs vary in the directions those rows missed, and a fit in
its metric is free to spoil them: on inputs it did not see it can be far
worse than the plain truncated SVD. tnlib therefore fits in the *shrunk*
metric

.. math::
    C_s = (1 - s)\, C + s\, \tau I, \qquad \tau = \operatorname{tr} C / N,

which is ``C`` at ``s = 0`` and the weight-space metric (the plain truncated
SVD) at ``s = 1``. With a held-out Gram (rows the fit does not see) ``s`` is
chosen from :data:`SHRINKAGE_GRID` by the held-out error of the whitened SVD
(the largest ``s`` within 2 % of the least: the safe side of a noisy choice),
fits are compared on the held-out rows, and the report gives the error there.
Without one ``s`` is :data:`SHRINKAGE`.

:class:`Metric` carries the Grams and the shrinkage as one frozen value;
:func:`checked_metric` validates it against a matrix once, on entry, and
:func:`metric_factor` builds the shrunk factor ``L`` the fits use
(:mod:`tnlib._metric_fit`). Every layout keeps the better of its
weight-space fit and its data-aware fit in the selection metric (held-out,
else the fit's own rows), so the result is never worse there than the
weight-space fit of that layout, and the layout search never worse than the
plain truncated SVD.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Sequence

import array_api_compat
import numpy as np

from . import _linalg as linalg
from ._backend import as_matrix, check_finite, check_floating, far_exponent, namespace, scalar, times_power_of_two
from ._checks import check_int, is_int, is_real
from ._stats import paired_upper_bound
from .truncation import warn_at_caller

__all__ = [
    "Metric", "GramFactor", "SHRINKAGE", "SHRINKAGE_GRID", "check_input_gram", "check_shrinkage", "gram_factor",
    "svd_rank", "choose_shrinkage", "resolve_metric", "checked_metric", "metric_factor", "shrunk",
]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Metric:
    """The metric a data-aware fit is made and judged in: the Gram of a layer's inputs.

    A layer ``y = x W^T`` is judged on its outputs ``X W^T`` for the inputs
    ``X`` it sees; with a metric, :meth:`tnlib.MPO.from_matrix`,
    :func:`tnlib.layouts` and :meth:`tnlib.nn.MPOLinear.from_linear` fit
    the cores to minimise ``||X (W - W_hat)^T||_F`` instead of
    ``||W - W_hat||_F`` (the whitened SVD for a truncated-SVD layout, ALS
    sweeps over the cores for any other), in the shrunk metric
    ``(1 - s) C + s tau I`` (``tau = tr C / N``; ``s = 1`` is the plain
    truncated SVD) so that a Gram of few rows cannot spoil the directions
    its rows missed. The value is validated against the matrix once, before
    any decomposition runs.

    Parameters
    ----------
    gram : array, shape (N, N)
        ``C = X^H X / n`` of the inputs the layer sees (:meth:`from_rows`
        forms it); symmetric positive semi-definite, finite, not zero.
    held_out : array, shape (N, N), optional
        The Gram of calibration rows the fit does not see. It chooses the
        shrinkage (the largest of :data:`SHRINKAGE_GRID` within 2 % of the
        least held-out error of the whitened truncated SVD) and, in a layout
        search, the layout; ``report.held_out_error`` gives the error there.
        Without it a rank-deficient ``gram`` warns.
    shrinkage : float in (0, 1], optional
        The shrinkage ``s`` itself (default: chosen on ``held_out``, else
        :data:`SHRINKAGE`, 0.01).
    folds : tuple of (array, int), optional
        The Grams of disjoint folds of the calibration samples with their row
        counts (:meth:`from_folds` builds the value; ``gram`` is then their
        pooled Gram). With two or more folds that hold rows, the shrinkage is
        cross-validated over them (a shrinkage below 1 is taken only when the
        upper end of a 95 % t-interval of its paired per-fold gain is below
        zero), the fit sees every fold but the last, the last chooses the
        layout and gives ``report.held_out_error``, and a searched layout other
        than the truncated SVD's is kept only when its paired per-fold gain is
        significant too. What :func:`tnlib.nn.compress` does with calibration.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((600, 16)) * np.geomspace(0.01, 3.0, 16)   # unevenly scaled inputs
    >>> W = rng.standard_normal((32, 16))
    >>> metric = tnlib.Metric.from_rows(X[:400], held_out=X[400:])
    >>> metric
    Metric(gram 16 x 16, held_out 16 x 16, shrinkage chosen on held_out)
    >>> t = tnlib.Truncation(max_bond=4)
    >>> aware = tnlib.MPO.from_matrix(W, (32, 1), (1, 16), truncation=t, metric=metric)
    >>> plain = tnlib.MPO.from_matrix(W, (32, 1), (1, 16), truncation=t)
    >>> def output_error(mpo):
    ...     return np.linalg.norm(X[400:] @ (W - mpo.to_matrix()).T) / np.linalg.norm(X[400:] @ W.T)
    >>> bool(output_error(aware) < 0.5 * output_error(plain))
    True
    """

    gram: Any
    held_out: Any = None
    shrinkage: float | None = None
    folds: tuple[tuple[Any, int], ...] | None = None

    def __post_init__(self) -> None:
        gram, held = _structure(self.gram, self.held_out, ("gram", "held_out"))
        object.__setattr__(self, "gram", gram)
        object.__setattr__(self, "held_out", held)
        if self.folds is not None:
            if held is not None:
                raise ValueError("a Metric takes held_out or folds, not both: the folds hold their own rows out")
            folds = tuple(self.folds)
            for k, fold in enumerate(folds):
                if not (isinstance(fold, tuple) and len(fold) == 2 and is_int(fold[1]) and fold[1] >= 0):
                    raise TypeError(f"folds[{k}] must be a (Gram, rows) pair with rows an int >= 0, got {fold!r}")
                if _structure(fold[0], None, (f"folds[{k}]", ""))[0].shape != gram.shape:
                    raise ValueError(f"folds[{k}] has shape {tuple(fold[0].shape)}; expected {tuple(gram.shape)}, "
                                     "the shape of gram")
            object.__setattr__(self, "folds", tuple((_array(f"folds[{k}]", g), int(r))
                                                    for k, (g, r) in enumerate(folds)))
        if self.shrinkage is not None:
            object.__setattr__(self, "shrinkage", check_shrinkage(self.shrinkage))

    @classmethod
    def from_rows(cls, rows: Any, *, held_out: Any = None, shrinkage: float | None = None) -> Metric:
        """The metric of input rows ``X`` (``n x N``, one row per input the layer sees): ``C = X^H X / n``.

        ``held_out`` is rows the fit does not see (the same ``N`` columns); their
        Gram chooses the shrinkage.

        >>> import numpy as np, tnlib
        >>> tnlib.Metric.from_rows(np.ones((5, 3))).gram
        array([[1., 1., 1.],
               [1., 1., 1.],
               [1., 1., 1.]])
        """
        gram = _gram_of_rows(rows, "rows")
        held = None if held_out is None else _gram_of_rows(held_out, "held_out")
        if held is not None and tuple(held.shape) != tuple(gram.shape):
            raise ValueError(
                f"held_out has {held.shape[0]} columns; expected {gram.shape[0]}, as many as rows "
                "(the same inputs of the same layer)"
            )
        return cls(gram, held, shrinkage)

    @classmethod
    def from_folds(cls, grams: Sequence[Any], rows: Sequence[int], *, shrinkage: float | None = None) -> Metric:
        """The metric of disjoint folds of calibration samples: ``grams[k]`` the Gram ``X_k^H X_k / n_k`` of
        fold ``k``, ``rows[k]`` its row count ``n_k`` (0 for an empty fold).

        >>> import numpy as np, tnlib
        >>> X = np.random.default_rng(0).standard_normal((40, 3))
        >>> parts = [X[k::4] for k in range(4)]
        >>> m = tnlib.Metric.from_folds([p.T @ p / len(p) for p in parts], [len(p) for p in parts])
        >>> bool(np.allclose(m.gram, X.T @ X / 40)), len(m.folds)
        (True, 4)
        """
        if isinstance(grams, (str, bytes)) or len(grams) != len(rows) or not grams:
            raise ValueError(f"grams and rows must be sequences of one length >= 1, got {len(grams)} and "
                             f"{len(rows)}")
        folds = []
        for k, (g, r) in enumerate(zip(grams, rows)):
            if not is_int(r) or r < 0:
                raise ValueError(f"rows[{k}]={r!r} is invalid; expected an int >= 0")
            folds.append((_array(f"grams[{k}]", g), int(r)))
        if sum(r for _, r in folds) <= 0:
            raise ValueError("the folds hold no rows; a metric needs inputs")
        return cls(_pooled(folds), shrinkage=shrinkage, folds=tuple(folds))

    def split(self, k: int) -> tuple[Any, Any, int]:
        """``(Gram of every fold but k, Gram of fold k, rows of fold k)``; needs :attr:`folds`."""
        assert self.folds is not None
        return _pooled(self.folds, without=k), self.folds[k][0], self.folds[k][1]

    def usable_folds(self) -> list[int]:
        """The folds that hold rows while the others do too (each can be held out)."""
        total = sum(r for _, r in self.folds or ())
        return [k for k, (_, r) in enumerate(self.folds or ()) if 0 < r < total]

    @property
    def num_features(self) -> int:
        """``N``: the number of inputs of the layer (columns of the matrix it fits)."""
        return int(self.gram.shape[0])

    def __repr__(self) -> str:
        n = self.num_features
        held = "" if self.held_out is None else f", held_out {n} x {n}"
        held += "" if self.folds is None else f", {len(self.folds)} folds"
        if self.shrinkage is not None:
            chosen = f"shrinkage {self.shrinkage:g}"
        elif self.held_out is not None or self.folds is not None:
            chosen = "shrinkage chosen on held_out" if self.folds is None else "shrinkage chosen over the folds"
        else:
            chosen = f"shrinkage {SHRINKAGE:g} (default)"
        return f"Metric(gram {n} x {n}{held}, {chosen})"


def _structure(gram: Any, held_out: Any, names: tuple[str, str]) -> tuple[Any, Any]:
    """The Grams as arrays (nested lists become NumPy arrays), square and of one size, or an error naming them."""
    if gram is None:
        raise TypeError(f"{names[0]} is needed: the Gram C = X^H X / n of the layer's inputs; got None")
    gram = _array(names[0], gram)
    n = _square(names[0], gram)
    _usable(names[0], gram, n)
    if held_out is not None:
        held_out = _array(names[1], held_out)
        _usable(names[1], held_out, _square(names[1], held_out))
        if _square(names[1], held_out) != n:
            raise ValueError(
                f"{names[1]} has shape {tuple(held_out.shape)}; expected ({n}, {n}), the shape of {names[0]} "
                "(the Gram of other rows of the same inputs)"
            )
    return gram, held_out


def _usable(name: str, gram: Any, n: int) -> None:
    """Refuse a Gram without data (torch ``meta``), without entries, or with NaN / inf entries, naming it."""
    if getattr(getattr(gram, "device", None), "type", None) == "meta":
        raise ValueError(f"{name} is on torch's 'meta' device and has no data")
    if n == 0:
        raise ValueError(f"{name} is empty (shape {tuple(gram.shape)}); a metric needs the Gram of at least one input")
    check_finite(gram, name)


def _array(name: str, value: Any) -> Any:
    if getattr(value, "shape", None) is not None:
        return value
    try:
        converted = np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged lists and the like
        converted = None
    if converted is None or converted.dtype.kind not in "iufc":
        raise TypeError(
            f"{name} must be an array of shape (N, N), the Gram C = X^H X / n of the inputs; "
            f"got {type(value).__name__}"
        )
    return converted


def _pooled(folds: Sequence[tuple[Any, int]], without: int | None = None) -> Any:
    """The Gram of the rows of every fold (but fold ``without``): the folds' Grams weighted by their rows."""
    kept = [(g, r) for j, (g, r) in enumerate(folds) if j != without and r]
    rows = sum(r for _, r in kept)
    return sum(g * (r / rows) for g, r in kept[1:]) + kept[0][0] * (kept[0][1] / rows)


def _square(name: str, value: Any) -> int:
    shape = value.shape
    if len(shape) != 2 or int(shape[0]) != int(shape[1]):
        raise ValueError(
            f"{name} must be a square array (N, N), the Gram C = X^H X / n of the inputs; got shape {tuple(shape)}"
        )
    return int(shape[0])


def _gram_of_rows(rows: Any, name: str) -> Any:
    x = as_matrix(rows, name, hint="; expected rows (n, N), one per input the layer sees")
    gram = (linalg.adjoint(x) @ x) / int(x.shape[0])
    return (gram + linalg.adjoint(gram)) / 2  # Hermitian to the last bit


def resolve_metric(metric: Any, input_gram: Any = None, held_out_gram: Any = None,
                   shrinkage: Any = None) -> tuple[Metric | None, tuple[str, str]]:
    """``metric``, or the :class:`Metric` of the older keywords ``input_gram``, ``held_out_gram`` and
    ``shrinkage`` (one or the other, never both), and the names its Grams go by in errors."""
    loose = {"input_gram": input_gram, "held_out_gram": held_out_gram, "shrinkage": shrinkage}
    given = [k for k, v in loose.items() if v is not None]
    if metric is not None:
        if not isinstance(metric, Metric):
            raise TypeError(f"metric must be a tnlib.Metric or None, got {type(metric).__name__}")
        if given:
            raise TypeError(
                f"pass metric= or the older keywords ({', '.join(given)}), not both: "
                "tnlib.Metric(gram, held_out=..., shrinkage=...) holds all three"
            )
        return metric, ("metric.gram", "metric.held_out")
    if input_gram is None:
        for name in given:
            raise ValueError(f"{name} needs input_gram: it shapes a data-aware fit, and there is none")
        return None, ("metric.gram", "metric.held_out")
    names = ("input_gram", "held_out_gram")
    gram, held = _structure(input_gram, held_out_gram, names)  # errors in the names the caller used
    return Metric(gram, held, shrinkage), names


def checked_metric(metric: Metric, a: Any, names: tuple[str, str] = ("metric.gram", "metric.held_out")) -> Metric:
    """``metric`` validated for the matrix ``a``: Grams in ``a``'s namespace and dtype, ``N x N`` for its
    ``N`` columns, symmetric positive semi-definite, finite (an error names what is wrong, by ``names``)."""
    n = int(a.shape[1])
    held = None if metric.held_out is None else check_input_gram(metric.held_out, n, a, names[1])
    if metric.folds is None:
        return Metric(check_input_gram(metric.gram, n, a, names[0]), held, metric.shrinkage)
    folds = tuple((check_input_gram(g, n, a, f"metric.folds[{k}]", rescale=False) if r else _like(g, a), r)
                  for k, (g, r) in enumerate(metric.folds))
    # the pooled Gram of the checked folds, at their own scale (the splits stay consistent with it), is the gram
    return Metric(_pooled(folds), held, metric.shrinkage, folds)


def _like(g: Any, a: Any) -> Any:
    xp = namespace(a)
    return xp.asarray(g, dtype=a.dtype)


def metric_factor(metric: Metric, a: Any, truncation: Any, params: int | None = None) -> GramFactor:
    """The shrunk factor of a :func:`checked_metric` for ``a``: the shrinkage is the metric's, else chosen on
    its held-out Gram at the rank of the truncated SVD at ``truncation.max_params`` (or at ``params``, the
    weight-space fit's count), else :data:`SHRINKAGE` (a rank-deficient Gram warns)."""
    shrinkage = metric.shrinkage
    if shrinkage is None and metric.held_out is not None:
        budgets = [b for b in (getattr(truncation, "max_params", None), params) if b is not None]
        shape = (int(a.shape[0]), int(a.shape[1]))
        rank = svd_rank(shape, min(budgets) if budgets else min(shape) * sum(shape), getattr(truncation, "cap", None))
        shrinkage, _ = choose_shrinkage(a, rank, metric)
    elif shrinkage is None:
        shrinkage = SHRINKAGE
        _warn_if_deficient(metric.gram)
    return gram_factor(metric.gram, shrinkage, metric.held_out)


SHRINKAGE = 0.01
"""The default shrinkage ``s`` of the fitting metric ``(1 - s) C + s tau I`` (``tau`` the mean
eigenvalue of ``C``) when no held-out Gram chooses it: about the 1 % of the mean diagonal that
GPTQ-style methods add, which keeps ``L^{-1}`` from amplifying directions the calibration
inputs barely excite. ``s = 1`` is the weight-space metric: the plain truncated SVD."""

SHRINKAGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
"""The shrinkages a held-out Gram chooses from (``1``, the plain truncated SVD, always among them)."""

_TIE = 0.02
"""A shrinkage is chosen as the largest whose held-out error is within this fraction of the least:
selection on few held-out rows is noisy, and more shrinkage is the safer side."""


class GramFactor(NamedTuple):
    """The metric of a data-aware fit.

    ``gram`` is the Gram ``C`` of the fit's rows (the in-sample ``output_error``); ``metric`` the
    shrunk ``C_s = (1 - s) C + s tau I`` the cores are fitted in, with ``C_s = L L^H`` (``L`` its
    Cholesky factor, or ``Q sqrt(lam_s)`` where that fails) and ``L_inv`` its (pseudo-)inverse;
    ``held_out`` the Gram of rows the fit does not see (or ``None``), which chooses between fits and
    gives ``held_out_error``.
    """

    gram: Any
    L: Any
    L_inv: Any
    metric: Any
    shrinkage: float
    held_out: Any = None

    @property
    def selection(self) -> Any:
        """The Gram fits are compared in: the held-out one when there is one, else the fit's own."""
        return self.gram if self.held_out is None else self.held_out


GRAM_ROUNDING = 16 * float(np.finfo(np.float32).eps)
"""Negative eigenvalues of an input Gram down to ``GRAM_ROUNDING * sqrt(n)`` times its largest are rounding (a Gram
computed in single precision) and taken as zero; below that the Gram is refused as not positive semi-definite."""


def check_input_gram(input_gram: Any, n: int, like: Any, name: str = "input_gram", *, rescale: bool = True) -> Any:
    """Validate a Gram for a matrix with ``n`` columns; return it in ``like``'s namespace and dtype."""
    xp = namespace(like)
    try:
        c = xp.asarray(input_gram, dtype=like.dtype)
    except Exception as exc:  # noqa: BLE001 - any library's conversion error
        raise TypeError(
            f"{name} must be an array of shape ({n}, {n}) in the matrix's library, got "
            f"{type(input_gram).__name__} ({exc})"
        ) from None
    if c.ndim != 2 or tuple(c.shape) != (n, n):
        raise ValueError(
            f"{name} has shape {tuple(c.shape)}; expected ({n}, {n}) = (N, N) for a matrix with "
            f"N = {n} columns (C = X^T X / n of the layer's inputs X)"
        )
    check_floating(c, name)
    check_finite(c, name)
    scale = scalar(xp.max(xp.abs(c))) if n else 0.0
    asym = scalar(xp.max(xp.abs(c - linalg.adjoint(c))))
    if asym > 1e-6 * max(scale, 1e-300):
        raise ValueError(
            f"{name} is not symmetric: max |C - C^T| = {asym:.3g} against max |C| = {scale:.3g}; "
            "expected C = X^T X / n"
        )
    c = (c + linalg.adjoint(c)) / 2
    _check_semidefinite(c, n, name)
    exponent = far_exponent(c) if rescale else 0
    # the fit depends on C only up to scale: at unit scale its products neither under- nor overflow
    return c * 2.0**-exponent if exponent else c


def _check_semidefinite(c: Any, n: int, name: str) -> None:
    """Refuse a Hermitian ``c`` with an eigenvalue below ``-GRAM_ROUNDING sqrt(n)`` times its largest, or a zero one.

    The largest diagonal entry is at most the largest eigenvalue, so a Cholesky factor of ``c`` shifted by
    the tolerance at that entry proves the Gram fine without its eigenvalues; only a Gram that fails it
    (or that the cheap test cannot factor) pays for ``eigvalsh``, which decides and words the error.
    """
    xp = namespace(c)
    top = scalar(xp.max(xp.real(xp.linalg.diagonal(c)))) if n else 0.0
    if top > 0.0 and linalg.shifted_cholesky_exists(c, GRAM_ROUNDING * math.sqrt(n) * top):
        return
    lam = xp.linalg.eigvalsh(c)
    # a Gram computed in single precision (then perhaps converted) has negative eigenvalues of about
    # eps_32 |C| sqrt(n) from rounding: those are zeros; an indefinite matrix has far larger ones
    if scalar(lam[0]) < -GRAM_ROUNDING * math.sqrt(n) * max(scalar(lam[-1]), 1e-300):
        raise ValueError(
            f"{name} is not positive semi-definite: its smallest eigenvalue is {scalar(lam[0]):.3g} "
            f"against a largest of {scalar(lam[-1]):.3g}; expected C = X^T X / n"
        )
    if scalar(lam[-1]) <= 0.0:
        raise ValueError(f"{name} is zero: the inputs carry no signal to fit")


def check_shrinkage(shrinkage: Any) -> float:
    """``shrinkage`` as a float in ``(0, 1]``."""
    if not is_real(shrinkage) or not 0.0 < float(shrinkage) <= 1.0:  # NumPy scalars accepted, NaN refused
        raise ValueError(
            f"shrinkage must be a number in (0, 1] (the weight of the identity in the fitting metric; "
            f"1 is the plain truncated SVD), got {shrinkage!r}"
        )
    return float(shrinkage)


class _Eigen(NamedTuple):
    lam: Any
    q: Any
    tau: float


def _tau(c: Any) -> float:
    """``tau = tr C / N``, the mean eigenvalue the shrinkage moves towards (0 for a Gram of negative trace)."""
    xp = namespace(c)
    return max(scalar(xp.real(xp.linalg.trace(c))) / int(c.shape[0]), 0.0)


def _eigen(c: Any) -> _Eigen:
    xp = namespace(c)
    lam, q = linalg.eigh(c)
    return _Eigen(xp.where(lam > 0, lam, xp.zeros_like(lam)), q, _tau(c))


def _shrunk_eigenvalues(eig: _Eigen, shrinkage: float) -> Any:
    """The eigenvalues ``(1 - s) lam + s tau`` of the shrunk metric."""
    return (1.0 - shrinkage) * eig.lam + shrinkage * eig.tau


def shrunk(c: Any, shrinkage: float = SHRINKAGE) -> Any:
    """The fitting metric ``C_s = (1 - s) C + s tau I`` of a Gram ``C`` (``tau = tr C / N``): positive definite
    for a positive semi-definite ``C`` of positive trace and ``s > 0``.

    Examples
    --------
    >>> import numpy as np, tnlib.metric
    >>> tnlib.metric.shrunk(np.diag([4.0, 0.0]), 0.5)
    array([[3., 0.],
           [0., 1.]])
    """
    xp = namespace(c)
    n = int(c.shape[0])
    return (1.0 - shrinkage) * c + (shrinkage * _tau(c)) * xp.eye(n, dtype=c.dtype, device=array_api_compat.device(c))


def gram_factor(c: Any, shrinkage: float = SHRINKAGE, held_out: Any = None) -> GramFactor:
    """The shrunk factor of a validated Gram matrix: ``C_s = (1 - s) C + s tau I = L L^H`` (``tau = tr C / N``).

    ``L`` is the Cholesky factor (a tenth of an ``eigh``'s time), or ``Q sqrt(lam_s)`` from the eigenvalues
    (``lam`` clipped at zero; a pseudo-inverse for ``L_inv``) when ``C_s`` is not numerically positive definite
    (rounding-level negative eigenvalues of ``C`` beyond the shrinkage). Every use is invariant to which factor:
    the whitened SVD's ``[W L]_r L^{-1}``, the singular values of ``W L``, and the errors ``||D L||``.
    """
    xp = namespace(c)
    tau = _tau(c)
    metric = shrunk(c, shrinkage)
    factor = linalg.cholesky_factor(metric) if tau > 0.0 else None
    if factor is None:
        eig = _eigen(c)
        root = xp.sqrt(_shrunk_eigenvalues(eig, shrinkage))
        inverse = xp.where(root > 0, 1.0 / xp.where(root > 0, root, xp.ones_like(root)), xp.zeros_like(root))
        factor = (eig.q * root, linalg.adjoint(eig.q) * inverse[:, None])
    return GramFactor(c, factor[0], factor[1], metric, shrinkage, held_out)


def svd_rank(shape: tuple[int, int], budget: int, cap: int | None = None) -> int:
    """The rank of the truncated SVD of an ``M x N`` matrix at ``budget`` parameters (at least 1)."""
    m, n = shape
    rank = max(1, min(budget // (m + n), m, n))
    return rank if cap is None else max(1, min(rank, cap))


def choose_shrinkage(w: Any, rank: int, folds: Sequence[tuple[Any, Any, float]] | Metric) -> tuple[float, float]:
    """The shrinkage of the whitened rank-``rank`` SVD chosen on held-out rows, and its pooled held-out error.

    ``folds`` holds ``(fit Gram, held-out Gram, weight)`` triples: one split, or the folds of a
    cross-validation (weights: the held-out row counts, which pool the errors); or a checked
    :class:`Metric`: its usable folds, each held out in turn, else its one ``(gram, held_out)`` split.
    With several folds the shrinkage of least :func:`paired_upper_bound` of its per-fold relative
    difference against ``s = 1`` (the plain truncated SVD) wins, and ``s = 1`` unless that bound is
    negative: a noisy gain is not taken. With one split, the largest shrinkage within :data:`_TIE` of the
    least error. The whitened SVD is taken through the small side's Gram (its top ``rank`` eigenvectors),
    so each shrinkage costs ``O(min(M, N)^3)`` after ``O(M N min(M, N))`` products; a wide ``W`` never
    decomposes an ``N x N`` Gram, and with a Metric's folds forms one ``W G W^H`` per fold.
    """
    w = as_matrix(w, "w")  # a finite, non-empty 2-D array, or an error naming it
    rank = check_int("rank", rank)
    exponent = far_exponent(w)  # the choice is scale-free in W; far from unit scale its squares would not fit
    w = times_power_of_two(w, -exponent) if exponent else w
    grid = SHRINKAGE_GRID
    shared = _Shared.of(w, rank)
    results = [(_residuals(shared, split), weight) for split, weight in _splits(w, shared, folds)]
    rel = [[0.0] * len(results) for _ in grid]  # rel[k][f]: held-out squared error of grid[k], relative, fold f
    pooled_num, pooled_den = [0.0] * len(grid), 0.0
    for f, ((residuals, signal), weight) in enumerate(results):
        pooled_den += weight * signal
        for k, r in enumerate(residuals):
            rel[k][f] = r / signal if signal > 0 else 0.0
            pooled_num[k] += weight * r
    if pooled_den <= 0.0:
        return 1.0, 0.0
    last = len(grid) - 1  # s = 1
    if len(results) >= 2:
        bounds = [paired_upper_bound([a - b for a, b in zip(rel[k], rel[last])]) for k in range(last)]
        k = min(range(last), key=bounds.__getitem__)
        k = k if bounds[k] < 0.0 else last
    else:
        least = min(pooled_num)
        k = max(k for k, v in enumerate(pooled_num) if v <= least * (1 + _TIE) + 1e-300)
    return grid[k], math.sqrt(max(pooled_num[k], 0.0) / pooled_den)


class _Shared(NamedTuple):
    """What the whitened SVDs of one ``W`` share across splits: whether it is tall (``N <= M``), the short
    side's Gram (``W^H W`` when tall, else ``W W^H``), its top ``rank`` eigenvalues and eigenvectors (``s = 1``)."""

    rank: int
    tall: bool
    gram: Any
    values: Any
    plain: Any

    @classmethod
    def of(cls, w: Any, rank: int) -> _Shared:
        m, n = (int(d) for d in w.shape)
        rank = max(1, min(rank, m, n))
        gram = linalg.adjoint(w) @ w if n <= m else w @ linalg.adjoint(w)
        return cls(rank, n <= m, gram, *linalg.top_eigenpairs(gram, rank))


class _Split(NamedTuple):
    """One split as the residuals need it: a tall ``W``'s fit and held-out Grams; a wide one's ``W C W^H``
    and ``W H W^H`` (``M x M``) with ``tau = tr(C) / N``."""

    fit: Any
    held: Any
    tau: float = 0.0


def _splits(w: Any, shared: _Shared, folds: Sequence[tuple[Any, Any, float]] | Metric) -> list[tuple[_Split, float]]:
    """The splits of ``folds`` with their weights (see :func:`choose_shrinkage`)."""
    xp = namespace(w)
    n = int(w.shape[1])

    def trace(g: Any) -> float:
        return scalar(xp.real(xp.linalg.trace(g)))

    def side(g: Any) -> Any:
        return w @ g @ linalg.adjoint(w)

    if not isinstance(folds, Metric):
        if shared.tall:
            return [(_Split(fit, held), float(weight)) for fit, held, weight in folds]
        return [(_Split(side(fit), side(held), trace(fit) / n), float(weight)) for fit, held, weight in folds]
    if folds.folds is None:
        if folds.held_out is None:
            raise ValueError("choose_shrinkage needs held-out rows: a Metric with held_out or folds")
        return _splits(w, shared, [(_like(folds.gram, w), _like(folds.held_out, w), 1.0)])
    parts = tuple((_like(g, w), r) for g, r in folds.folds)  # in W's library and dtype
    metric = Metric(folds.gram, folds=parts)
    usable = metric.usable_folds()
    if len(usable) < 2:
        raise ValueError(f"choose_shrinkage needs two folds that can each be held out (rows in them and in the "
                         f"others); the Metric's folds give {len(usable)}")
    if shared.tall:
        return [(_Split(*metric.split(k)[:2]), float(parts[k][1])) for k in usable]
    # C_k (every fold but k) is linear in the folds' Grams: so are W C_k W^H and tr(C_k)
    rows = [(k, r) for k, (_, r) in enumerate(parts) if r]
    sides = {k: side(parts[k][0]) for k, _ in rows}
    traces = {k: trace(parts[k][0]) for k, _ in rows}
    out = []
    for k in usable:
        others = [(j, r) for j, r in rows if j != k]
        total = sum(r for _, r in others)
        fit = sum(sides[j] * (r / total) for j, r in others[1:]) + sides[others[0][0]] * (others[0][1] / total)
        tau = sum(traces[j] * r for j, r in others) / total / n
        out.append((_Split(fit, sides[k], tau), float(parts[k][1])))
    return out


def _residuals(shared: _Shared, split: _Split) -> tuple[list[float], float]:
    """``tr(D H D^H)`` of the whitened SVD fitted to the split's fit Gram at every shrinkage of the grid, and
    ``tr(W H W^H)``.

    Everything a shrinkage does not change is formed once per split (or once per ``W``: ``shared``), and
    each shrinkage costs one small ``eigh`` of the short side and ``O(n^2 rank)`` products with its ``rank``
    leading eigenvectors (the exact traces, reduced by the eigen-equation; see the comments).
    """
    xp = namespace(shared.gram)
    rank = shared.rank
    out = []

    def weighted(z: Any, g: Any, mu: Any) -> float:  # sum_j mu_j z_j^H g z_j
        return scalar(xp.sum(xp.real(xp.conj(z) * (g @ z)) * mu[None, :]))

    if shared.tall:
        # W_hat = W P, P = Q X Y^H Q^H with X = D V, Y = D^-1 V: D = diag(sqrt(lam_s)), V (and mu) the top
        # eigenvectors (eigenvalues) of D T D, T = Q^H W^H W Q; Hq = Q^H H Q. tr((I-P) H (I-P)^H W^H W) expands to
        # tr(Hq T) - 2 Re tr(Y^H Hq T X) + tr((Y^H Hq Y)(X^H T X)), and D T D V = V mu gives T X = Y mu and
        # X^H T X = mu: it is tr(Hq T) - sum_j mu_j y_j^H Hq y_j. At s = 1 D = sqrt(tau) I and V = Q^H V_1, V_1 the
        # top eigenvectors of W^H W (shared), mu = tau times its eigenvalues.
        eig = _eigen(split.fit)
        qh = linalg.adjoint(eig.q)
        t = qh @ shared.gram @ eig.q
        hq = qh @ split.held @ eig.q
        total = scalar(xp.sum(xp.real(hq * xp.conj(t))))  # tr(Hq T) = tr(W H W^H), T Hermitian
        for s in SHRINKAGE_GRID:
            root = xp.sqrt(_shrunk_eigenvalues(eig, s))
            if s == 1.0:
                mu, v = shared.values * eig.tau, qh @ shared.plain
            else:
                mu, v = linalg.top_eigenpairs((root[:, None] * t) * root[None, :], rank)
            out.append(max(total - weighted(v / root[:, None], hq, mu), 0.0))
    else:
        # W_hat = U U^H W, U the top eigenvectors of W C_s W^H = (1 - s) W C W^H + s tau W W^H, tau = tr(C) / N:
        # tr((I-U U^H) S (I-U U^H)) = tr(S) - tr(U^H S U), S = W H W^H
        signal, tau = split.held, max(split.tau, 0.0)
        total = scalar(xp.real(xp.linalg.trace(signal)))
        ones = xp.ones((rank,), dtype=xp.real(signal).dtype)
        for s in SHRINKAGE_GRID:
            u = shared.plain if s == 1.0 else linalg.top_eigenvectors((1.0 - s) * split.fit + (s * tau) * shared.gram,
                                                                     rank)
            out.append(max(total - weighted(u, signal, ones), 0.0))
    return out, total


def _warn_if_deficient(c: Any) -> None:
    xp = namespace(c)
    lam = xp.linalg.eigvalsh(c)
    n = int(lam.shape[0])
    rank = int(xp.sum(xp.astype(lam > 1e-10 * scalar(lam[-1]), xp.int64)))
    if rank < n:
        warn_at_caller(
            f"the input Gram has rank {rank} of {n}: the fit is free in directions its inputs never excite and "
            "can be worse than the plain truncated SVD on other inputs; pass held-out rows "
            "(tnlib.Metric(gram, held_out=...), or held_out_gram=) to choose the shrinkage, or a shrinkage "
            "(1 is the truncated SVD)"
        )


