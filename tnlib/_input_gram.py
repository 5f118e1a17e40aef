r"""Fitting a matrix in the metric of its inputs: ``||X (W - W_hat)^T||_F``.

A layer ``y = x W^T`` is judged on its outputs for the inputs ``X`` it sees,
not on ``||W - W_hat||_F``. With the input Gram ``C = X^H X / n`` (``N x N``)
and any factor ``C = L L^H``,

.. math::
    \frac1n \|X (W - \hat W)^T\|_F^2 = \operatorname{tr}\big((W - \hat W) C (W - \hat W)^H\big)
    = \|(W - \hat W) L\|_F^2 .

* For a truncated SVD (an MPO whose first core holds every row and whose
  last core holds every column) the optimum is exact: truncate ``W L`` and
  map back, ``\hat W = [W L]_r L^{-1}`` (the idea of activation-aware SVD
  methods; Yuan et al. 2023, Wang et al. 2024). tnlib uses the eigen-factor
  ``L = Q \Lambda^{1/2}`` of a damped ``C + \delta I``, keeps it only if it
  beats the plain truncated SVD in the undamped metric, and polishes it by
  the sweeps below.
* For any other MPO a right-multiplication by a dense ``L^{-1}`` would
  destroy the chain, so tnlib starts from the weight-space truncation and
  runs alternating least squares over the cores in the metric of ``C``:
  each core in turn solves its normal equations by conjugate gradients,
  warm-started from its current value, with the other cores in canonical
  form (so the local problem is as well conditioned as ``C``). Every step
  lowers the output-space error; bond dimensions, hence the parameter count,
  do not change.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import array_api_compat

from . import _linalg as linalg
from ._backend import check_finite, check_floating, far_exponent, namespace
from ._canonical import left_step, orthonormalize
from ._legs import deinterleave, interleave
from .svd import thin_svd

__all__ = [
    "GramFactor", "check_input_gram", "gram_factor", "factor_of", "output_error", "whitened_svd", "fit_in_metric"
]

DAMPING = 1e-2
"""The damping ``delta`` of the whitened SVD is this fraction of the mean eigenvalue of ``C``
(as the 1 % of the mean diagonal that GPTQ-style methods add): it keeps ``L^{-1}`` from
amplifying directions the calibration inputs barely excite."""


class GramFactor(NamedTuple):
    """``C + delta I = L L^H`` with ``L = Q sqrt(lam)`` and its inverse ``L^{-1} = lam^{-1/2} Q^H``."""

    gram: Any
    L: Any
    L_inv: Any


def check_input_gram(input_gram: Any, n: int, like: Any) -> Any:
    """Validate ``input_gram`` for a matrix with ``n`` columns; return it in ``like``'s namespace and dtype."""
    xp = namespace(like)
    try:
        c = xp.asarray(input_gram, dtype=like.dtype)
    except Exception as exc:  # noqa: BLE001 - any library's conversion error
        raise TypeError(
            f"input_gram must be an array of shape ({n}, {n}) in the matrix's library, got "
            f"{type(input_gram).__name__} ({exc})"
        ) from None
    if c.ndim != 2 or tuple(c.shape) != (n, n):
        raise ValueError(
            f"input_gram has shape {tuple(c.shape)}; expected ({n}, {n}) = (N, N) for a matrix with "
            f"N = {n} columns (C = X^T X / n of the layer's inputs X)"
        )
    check_floating(c, "input_gram")
    check_finite(c, "input_gram")
    scale = float(xp.max(xp.abs(c))) if n else 0.0
    asym = float(xp.max(xp.abs(c - linalg.adjoint(c))))
    if asym > 1e-6 * max(scale, 1e-300):
        raise ValueError(
            f"input_gram is not symmetric: max |C - C^T| = {asym:.3g} against max |C| = {scale:.3g}; "
            "expected C = X^T X / n"
        )
    c = (c + linalg.adjoint(c)) / 2
    lam = xp.linalg.eigvalsh(c)
    if float(lam[0]) < -1e-8 * max(float(lam[-1]), 1e-300):
        raise ValueError(
            f"input_gram is not positive semi-definite: its smallest eigenvalue is {float(lam[0]):.3g} "
            f"against a largest of {float(lam[-1]):.3g}; expected C = X^T X / n"
        )
    if float(lam[-1]) <= 0.0:
        raise ValueError("input_gram is zero: the inputs carry no signal to fit")
    return c


def gram_factor(c: Any) -> GramFactor:
    """The damped eigen-factor of a validated Gram matrix."""
    xp = namespace(c)
    lam, q = xp.linalg.eigh(c)
    lam = xp.where(lam > 0, lam, xp.zeros_like(lam))
    delta = DAMPING * float(xp.mean(lam))
    root = xp.sqrt(lam + delta)
    return GramFactor(c, q * root, linalg.adjoint(q) / root[:, None])


def factor_of(input_gram: Any, a: Any) -> GramFactor | None:
    """The damped factor of a user's ``input_gram`` for the matrix ``a`` (validated), or ``None`` without one."""
    if input_gram is None:
        return None
    c = check_input_gram(input_gram, int(a.shape[1]), a)
    exponent = far_exponent(c)
    # the fit depends on C only up to scale: at unit scale its products neither under- nor overflow
    return gram_factor(c * 2.0**-exponent if exponent else c)


def output_error(w: Any, w_hat: Any, factor: GramFactor) -> float:
    """``||(W - W_hat) L|| / ||W L||`` with ``L`` the factor of the *undamped* Gram (via the trace form)."""
    xp = namespace(w)
    d = w - w_hat
    num = float(xp.real(xp.sum(xp.conj(d) * (d @ xp.matrix_transpose(factor.gram)))))
    den = float(xp.real(xp.sum(xp.conj(w) * (w @ xp.matrix_transpose(factor.gram)))))
    return math.sqrt(max(num, 0.0) / den) if den > 0 else 0.0


def whitened_svd(w: Any, rank: int, factor: GramFactor) -> tuple[Any, Any]:
    """``(U S, Vh L^{-1})``: the rank-``rank`` matrix closest to ``w`` in the metric of the Gram."""
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
        return float(xp.real(xp.sum(xp.conj(a) * b)))

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
