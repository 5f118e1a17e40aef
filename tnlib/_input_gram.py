r"""Fitting a matrix in the metric of its inputs: ``||X (W - W_hat)^T||_F``.

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

* For a truncated SVD (an MPO whose first core holds every row and whose
  last core holds every column) the optimum in ``C_s`` is exact: truncate
  ``W L`` and map back, ``\hat W = [W L]_r L^{-1}`` with ``C_s = L L^H``
  (the idea of activation-aware SVD methods; Yuan et al. 2023, Wang et al.
  2024), ``L = Q \Lambda_s^{1/2}`` from the eigen-decomposition of ``C``.
* For any other MPO a right-multiplication by a dense ``L^{-1}`` would
  destroy the chain, so tnlib starts from the weight-space truncation and
  runs alternating least squares over the cores in the metric ``C_s``:
  each core in turn solves its normal equations by conjugate gradients,
  warm-started from its current value, with the other cores in canonical
  form (so the local problem is as well conditioned as ``C_s``). Bond
  dimensions, hence the parameter count, do not change.
* Every layout keeps the better of its weight-space fit and its data-aware
  fit in the selection metric (held-out, else the fit's own rows), so the
  result is never worse there than the weight-space fit of that layout,
  and the layout search never worse than the plain truncated SVD.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple, Sequence

import array_api_compat

from . import _linalg as linalg
from ._backend import check_finite, check_floating, far_exponent, namespace, scalar
from ._canonical import left_step, orthonormalize
from ._legs import deinterleave, interleave
from .svd import thin_svd

__all__ = [
    "GramFactor", "SHRINKAGE", "SHRINKAGE_GRID", "check_input_gram", "check_shrinkage", "gram_factor", "svd_rank",
    "choose_shrinkage", "paired_upper_bound", "factor_of", "check_metric_args", "relative_error_in", "output_error",
    "whitened_svd", "fit_in_metric",
]

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
    shrunk ``C_s = (1 - s) C + s tau I`` the cores are fitted in, with ``C_s = L L^H``,
    ``L = Q sqrt(lam_s)`` and ``L^{-1} = lam_s^{-1/2} Q^H``; ``held_out`` the Gram of rows the fit
    does not see (or ``None``), which chooses between fits and gives ``held_out_error``.
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


def check_input_gram(input_gram: Any, n: int, like: Any, name: str = "input_gram") -> Any:
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
    lam = xp.linalg.eigvalsh(c)
    if scalar(lam[0]) < -1e-8 * max(scalar(lam[-1]), 1e-300):
        raise ValueError(
            f"{name} is not positive semi-definite: its smallest eigenvalue is {scalar(lam[0]):.3g} "
            f"against a largest of {scalar(lam[-1]):.3g}; expected C = X^T X / n"
        )
    if scalar(lam[-1]) <= 0.0:
        raise ValueError(f"{name} is zero: the inputs carry no signal to fit")
    exponent = far_exponent(c)
    # the fit depends on C only up to scale: at unit scale its products neither under- nor overflow
    return c * 2.0**-exponent if exponent else c


def check_shrinkage(shrinkage: Any) -> float:
    """``shrinkage`` as a float in ``(0, 1]``."""
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) or not 0.0 < float(shrinkage) <= 1.0:
        raise ValueError(
            f"shrinkage must be a number in (0, 1] (the weight of the identity in the fitting metric; "
            f"1 is the plain truncated SVD), got {shrinkage!r}"
        )
    return float(shrinkage)


class _Eigen(NamedTuple):
    lam: Any
    q: Any
    tau: float


def _eigen(c: Any) -> _Eigen:
    xp = namespace(c)
    lam, q = xp.linalg.eigh(c)
    lam = xp.where(lam > 0, lam, xp.zeros_like(lam))
    return _Eigen(lam, q, scalar(xp.mean(lam)))


def _shrunk_eigenvalues(eig: _Eigen, shrinkage: float) -> Any:
    """The eigenvalues ``(1 - s) lam + s tau`` of the shrunk metric."""
    return (1.0 - shrinkage) * eig.lam + shrinkage * eig.tau


def _shrunk(gram: Any, eig: _Eigen, shrinkage: float, held_out: Any = None) -> GramFactor:
    xp = namespace(gram)
    lam_s = _shrunk_eigenvalues(eig, shrinkage)
    root = xp.sqrt(lam_s)
    metric = (eig.q * lam_s) @ linalg.adjoint(eig.q)
    return GramFactor(gram, eig.q * root, linalg.adjoint(eig.q) / root[:, None], (metric + linalg.adjoint(metric)) / 2,
                      shrinkage, held_out)


def gram_factor(c: Any, shrinkage: float = SHRINKAGE, held_out: Any = None) -> GramFactor:
    """The shrunk eigen-factor of a validated Gram matrix."""
    return _shrunk(c, _eigen(c), shrinkage, held_out)


def svd_rank(shape: tuple[int, int], budget: int, cap: int | None = None) -> int:
    """The rank of the truncated SVD of an ``M x N`` matrix at ``budget`` parameters (at least 1)."""
    m, n = shape
    rank = max(1, min(budget // (m + n), m, n))
    return rank if cap is None else max(1, min(rank, cap))


CONFIDENCE = 0.95
"""With several folds, a shrinkage below 1 (or a layout other than the truncated SVD's) is taken only
when the one-sided upper confidence bound, at this level, of its paired per-fold difference in held-out
error against the safe choice is below zero (a t-interval over the folds)."""


def paired_upper_bound(differences: Sequence[float]) -> float:
    """The one-sided :data:`CONFIDENCE` upper bound of the mean of paired per-fold differences."""
    k = len(differences)
    mean = sum(differences) / k
    if k < 2:
        return mean
    from scipy import stats

    var = sum((d - mean) ** 2 for d in differences) / (k - 1)
    return mean + float(stats.t.ppf(CONFIDENCE, k - 1)) * math.sqrt(var / k)


def choose_shrinkage(w: Any, rank: int, folds: Sequence[tuple[Any, Any, float]]) -> tuple[float, float]:
    """The shrinkage of the whitened rank-``rank`` SVD chosen on held-out rows, and its pooled held-out error.

    ``folds`` holds ``(fit Gram, held-out Gram, weight)`` triples: one split, or the folds of a
    cross-validation (weights: the held-out row counts, which pool the errors). With several folds
    the shrinkage of least :func:`paired_upper_bound` of its per-fold relative difference against
    ``s = 1`` (the plain truncated SVD) wins, and ``s = 1`` unless that bound is negative: a noisy
    gain is not taken. With one split, the largest shrinkage within :data:`_TIE` of the least error.
    The whitened SVD is taken through the small side's Gram (its top ``rank`` eigenvectors), so each
    shrinkage costs ``O(min(M, N)^3)`` after one ``O(M N min(M, N))`` product.
    """
    grid = SHRINKAGE_GRID
    rel = [[0.0] * len(folds) for _ in grid]  # rel[k][f]: held-out squared error of grid[k], relative, fold f
    pooled_num, pooled_den = [0.0] * len(grid), 0.0
    for f, (fit, held, weight) in enumerate(folds):
        residuals, signal = _whitened_residuals(w, rank, fit, held)
        pooled_den += weight * signal
        for k, r in enumerate(residuals):
            rel[k][f] = r / signal if signal > 0 else 0.0
            pooled_num[k] += weight * r
    if pooled_den <= 0.0:
        return 1.0, 0.0
    last = len(grid) - 1  # s = 1
    if len(folds) >= 2:
        bounds = [paired_upper_bound([a - b for a, b in zip(rel[k], rel[last])]) for k in range(last)]
        k = min(range(last), key=bounds.__getitem__)
        k = k if bounds[k] < 0.0 else last
    else:
        least = min(pooled_num)
        k = max(k for k, v in enumerate(pooled_num) if v <= least * (1 + _TIE) + 1e-300)
    return grid[k], math.sqrt(max(pooled_num[k], 0.0) / pooled_den)


def _whitened_residuals(w: Any, rank: int, fit: Any, held: Any) -> tuple[list[float], float]:
    """``tr(D H D^H)`` of the whitened SVD fitted to ``fit`` at every shrinkage of the grid, and ``tr(W H W^H)``.

    In the eigenbasis ``Q`` of ``fit`` the shrunk metric is diagonal, so everything a shrinkage does not
    change is formed once per call and each shrinkage costs one small ``eigh`` and products with its
    ``rank`` leading eigenvectors (the exact traces, expanded; see the comments).
    """
    xp = namespace(w)
    m, n = (int(d) for d in w.shape)
    rank = max(1, min(rank, m, n))
    eig = _eigen(fit)
    wq = w @ eig.q
    signal = w @ held @ linalg.adjoint(w)  # W H W^H (M x M)
    total = scalar(xp.real(xp.linalg.trace(signal)))
    out = []
    if n <= m:
        # W_hat = W P, P = Q D V V^H D^-1 Q^H: D = diag(sqrt(lam_s)), V the top eigenvectors of D T D, T = Q^H W^H W Q.
        # With X = D V, Y = D^-1 V, Hq = Q^H H Q: tr((I-P) H (I-P)^H W^H W)
        #   = tr(Hq T) - 2 Re tr(Y^H Hq T X) + tr((Y^H Hq Y)(X^H T X)).
        t = linalg.adjoint(wq) @ wq
        hq = linalg.adjoint(eig.q) @ held @ eig.q
        ht = hq @ t
        for s in SHRINKAGE_GRID:
            root = xp.sqrt(_shrunk_eigenvalues(eig, s))
            v = xp.linalg.eigh((root[:, None] * t) * root[None, :])[1][:, n - rank:]
            x, y = root[:, None] * v, v / root[:, None]
            cross = xp.real(xp.linalg.trace(linalg.adjoint(y) @ ht @ x))
            both = xp.real(xp.linalg.trace((linalg.adjoint(y) @ hq @ y) @ (linalg.adjoint(x) @ t @ x)))
            out.append(max(total - 2.0 * scalar(cross) + scalar(both), 0.0))
    else:
        # W_hat = U U^H W, U the top eigenvectors of W C_s W^H: tr((I-U U^H) S (I-U U^H)) = tr(S) - tr(U^H S U)
        for s in SHRINKAGE_GRID:
            u = xp.linalg.eigh((wq * _shrunk_eigenvalues(eig, s)) @ linalg.adjoint(wq))[1][:, m - rank:]
            out.append(max(total - scalar(xp.real(xp.linalg.trace(linalg.adjoint(u) @ signal @ u))), 0.0))
    return out, total


def factor_of(
    input_gram: Any,
    a: Any,
    *,
    held_out_gram: Any = None,
    shrinkage: float | None = None,
    rank: int | None = None,
) -> GramFactor | None:
    """The metric of a user's ``input_gram`` for the matrix ``a`` (validated), or ``None`` without one.

    The shrinkage is ``shrinkage`` when given, else chosen on ``held_out_gram`` by
    :func:`choose_shrinkage` at ``rank`` (the truncated SVD's rank at the budget), else
    :data:`SHRINKAGE`; a rank-deficient ``input_gram`` without a held-out Gram warns.
    """
    if input_gram is None:
        return None
    n = int(a.shape[1])
    c = check_input_gram(input_gram, n, a)
    held = None if held_out_gram is None else check_input_gram(held_out_gram, n, a, "held_out_gram")
    if shrinkage is None and held is not None:
        assert rank is not None
        shrinkage, _ = choose_shrinkage(a, rank, [(c, held, 1.0)])
    elif shrinkage is None:
        shrinkage = SHRINKAGE
        _warn_if_deficient(c)
    return gram_factor(c, shrinkage, held)


def check_metric_args(
    input_gram: Any, held_out_gram: Any, shrinkage: Any, a: Any, truncation: Any, params: int | None = None
) -> GramFactor | None:
    """The metric of ``from_matrix`` / ``layouts`` arguments, validated; the shrinkage is chosen at the rank
    of the truncated SVD at ``truncation.max_params`` (or at ``params``, the weight-space fit's count)."""
    if input_gram is None:
        for name, value in (("held_out_gram", held_out_gram), ("shrinkage", shrinkage)):
            if value is not None:
                raise ValueError(f"{name} needs input_gram: it shapes a data-aware fit, and there is none")
        return None
    if shrinkage is not None:
        shrinkage = check_shrinkage(shrinkage)
    budgets = [b for b in (getattr(truncation, "max_params", None), params) if b is not None]
    rank = svd_rank((int(a.shape[0]), int(a.shape[1])), min(budgets) if budgets else min(a.shape) * sum(a.shape),
                    getattr(truncation, "cap", None))
    return factor_of(input_gram, a, held_out_gram=held_out_gram, shrinkage=shrinkage, rank=rank)


def _warn_if_deficient(c: Any) -> None:
    xp = namespace(c)
    lam = xp.linalg.eigvalsh(c)
    n = int(lam.shape[0])
    rank = int(xp.sum(xp.astype(lam > 1e-10 * scalar(lam[-1]), xp.int64)))
    if rank < n:
        warnings.warn(
            f"input_gram has rank {rank} of {n}: the fit is free in directions its inputs never excite and "
            "can be worse than the plain truncated SVD on other inputs; pass held_out_gram= (the Gram of rows the "
            "fit does not see) to choose the shrinkage, or shrinkage= (1 is the truncated SVD)",
            UserWarning,
            stacklevel=4,
        )


def _residual(w: Any, d: Any, gram: Any) -> float:
    """``tr(D C D^H)`` (real, non-negative up to roundoff)."""
    xp = namespace(w)
    return scalar(xp.real(xp.sum(xp.conj(d) * (d @ xp.matrix_transpose(gram)))))


def relative_error_in(w: Any, w_hat: Any, gram: Any) -> float:
    """``||(W - W_hat) L|| / ||W L||`` with ``gram = L L^H`` (via the trace form)."""
    num, den = _residual(w, w - w_hat, gram), _residual(w, w, gram)
    return math.sqrt(max(num, 0.0) / den) if den > 0 else 0.0


def output_error(w: Any, w_hat: Any, factor: GramFactor) -> float:
    """The relative output-space error on the fit's own rows (the unshrunk ``gram``)."""
    return relative_error_in(w, w_hat, factor.gram)


def whitened_svd(w: Any, rank: int, factor: GramFactor) -> tuple[Any, Any]:
    """``(U S, Vh L^{-1})``: the rank-``rank`` matrix closest to ``w`` in the (shrunk) metric."""
    u, s, vh = thin_svd(w @ factor.L)
    return u[:, :rank] * s[:rank], vh[:rank, :] @ factor.L_inv


class _Problem:
    """Dense helpers for one MPO layout: interleaved tensors <-> (M, N) matrices and the metric."""

    def __init__(self, w: Any, gram: Any, out_dims: Sequence[int], in_dims: Sequence[int]):
        self.xp = namespace(w)
        self.out_dims, self.in_dims = tuple(out_dims), tuple(in_dims)
        self.gram_t = self.xp.matrix_transpose(gram)
        self.target = self.to_interleaved(w @ self.gram_t)  # the right-hand side W C

    def to_interleaved(self, m: Any) -> Any:
        return self.xp.reshape(interleave(m, self.out_dims, self.in_dims), (-1,))

    def to_matrix(self, t: Any) -> Any:
        return deinterleave(t, self.out_dims, self.in_dims)

    def metric(self, t: Any) -> Any:
        """``vec(T C)`` for an interleaved ``T``."""
        return self.to_interleaved(self.to_matrix(t) @ self.gram_t)


def _left_env(xp: Any, sites: Sequence[Any], k: int) -> Any:
    env = xp.ones((1, 1), dtype=sites[0].dtype, device=array_api_compat.device(sites[0]))
    for c in sites[:k]:
        l, d, r = c.shape
        env = xp.reshape(env @ xp.reshape(c, (l, d * r)), (-1, r))
    return env  # (P, l_k)


def _right_env(xp: Any, sites: Sequence[Any], k: int) -> Any:
    env = xp.ones((1, 1), dtype=sites[0].dtype, device=array_api_compat.device(sites[0]))
    for c in reversed(sites[k + 1 :]):
        l, d, r = c.shape
        env = xp.reshape(xp.reshape(c, (l * d, r)) @ env, (l, -1))
    return env  # (r_k, Q)


def _solve_core(problem: _Problem, left: Any, core: Any, right: Any, iterations: int) -> Any:
    """Conjugate gradients on the local normal equations, warm-started at ``core``."""
    xp = problem.xp
    l, d, r = core.shape
    lh, rh = linalg.adjoint(left), linalg.adjoint(right)

    def expand(g: Any) -> Any:
        t = xp.reshape(left @ xp.reshape(g, (l, d * r)), (-1, r))
        return xp.reshape(t @ right, (-1,))

    def project(t: Any) -> Any:
        p = left.shape[0]
        t = xp.reshape(lh @ xp.reshape(t, (p, -1)), (l * d, -1))
        return xp.reshape(t @ rh, (l, d, r))

    def apply_h(g: Any) -> Any:
        return project(problem.metric(expand(g)))

    def dot(a: Any, b: Any) -> float:
        return scalar(xp.real(xp.sum(xp.conj(a) * b)))

    b = project(problem.target)
    g = core
    res = b - apply_h(g)
    p = res
    rr = dot(res, res)
    stop = 1e-24 * max(dot(b, b), 1e-300)
    for _ in range(iterations):
        if rr <= stop:
            break
        hp = apply_h(p)
        php = dot(p, hp)
        if php <= 0.0:
            break
        alpha = rr / php
        g = g + alpha * p
        res = res - alpha * hp
        rr_new = dot(res, res)
        p = res + (rr_new / rr) * p
        rr = rr_new
    return g


def fit_in_metric(
    sites: Sequence[Any],
    w: Any,
    gram: Any,
    out_dims: Sequence[int],
    in_dims: Sequence[int],
    *,
    sweeps: int = 3,
    iterations: int = 30,
) -> list[Any]:
    """ALS sweeps over site cores ``(left, out*in, right)`` minimising ``tr((W - W_hat) C (W - W_hat)^H)``.

    Returns left-canonical site cores with the same bond dimensions.
    """
    xp = namespace(*sites)
    problem = _Problem(w, gram, out_dims, in_dims)
    n = len(sites)
    cores = orthonormalize(list(sites), 0, None)  # centre at 0: the right part is orthonormal
    for sweep in range(sweeps):
        order = range(n) if sweep % 2 == 0 else range(n - 1, -1, -1)
        for k in order:
            left, right = _left_env(xp, cores, k), _right_env(xp, cores, k)
            cores[k] = _solve_core(problem, left, cores[k], right, iterations)
            if sweep % 2 == 0 and k < n - 1:
                left_step(xp, cores, k)
            elif sweep % 2 == 1 and k > 0:
                cores = orthonormalize(cores, k - 1, k)
    return orthonormalize(cores, n - 1, None)
