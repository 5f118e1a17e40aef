r"""Fits in the metric of a layer's inputs: the whitened SVD and ALS sweeps over the cores.

With the shrunk metric ``C_s = L L^H`` of a :class:`tnlib.Metric`
(:mod:`tnlib.metric` chooses ``s`` and builds ``L``):

* For a truncated SVD (an MPO whose first core holds every row and whose
  last core holds every column) the optimum in ``C_s`` is exact: truncate
  ``W L`` and map back, ``\hat W = [W L]_r L^{-1}`` (the idea of
  activation-aware SVD methods; Yuan et al. 2023, Wang et al. 2024),
  ``L = Q \Lambda_s^{1/2}`` from the eigen-decomposition of ``C``.
* For any other MPO a right-multiplication by a dense ``L^{-1}`` would
  destroy the chain, so the fit starts from the weight-space truncation and
  runs alternating least squares over the cores in the metric ``C_s``:
  each core in turn solves its normal equations by conjugate gradients,
  warm-started from its current value, with the other cores in canonical
  form (so the local problem is as well conditioned as ``C_s``). Bond
  dimensions, hence the parameter count, do not change.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import array_api_compat

from . import _linalg as linalg
from ._backend import namespace, scalar
from ._canonical import left_step, orthonormalize
from ._legs import deinterleave, interleave
from .metric import GramFactor
from .svd import thin_svd

__all__ = ["relative_error_in", "relative_errors_in", "output_error", "whitened_svd", "fit_in_metric"]


def _residual(w: Any, d: Any, gram: Any) -> float:
    """``tr(D C D^H)`` (real, non-negative up to roundoff)."""
    xp = namespace(w)
    return scalar(xp.real(xp.sum(xp.conj(d) * (d @ xp.matrix_transpose(gram)))))


def relative_error_in(w: Any, w_hat: Any, gram: Any) -> float:
    """``||(W - W_hat) L|| / ||W L||`` with ``gram = L L^H`` (via the trace form)."""
    return relative_errors_in(w, [w_hat], gram)[0]


def relative_errors_in(w: Any, w_hats: Sequence[Any], gram: Any) -> list[float]:
    """:func:`relative_error_in` of each of ``w_hats`` (the denominator formed once)."""
    den = _residual(w, w, gram)
    if den <= 0:
        return [0.0] * len(w_hats)
    return [math.sqrt(max(_residual(w, w - w_hat, gram), 0.0) / den) for w_hat in w_hats]


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
