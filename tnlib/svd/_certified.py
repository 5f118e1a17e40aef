"""Fast truncated factorizations for ``svd="auto"``, used only when certified.

A truncating sweep needs, per unfolding, the leading left (or right) singular
vectors that the :class:`~tnlib.Truncation` keeps, not a full SVD. Two cheaper
routes are tried first; each result is checked a posteriori and dropped (the
caller falls back to the full SVD) unless it is as good as the full SVD's:

*Krylov route* (NumPy, square-ish unfoldings, when the randomized result
has no certificate, typically for flat spectra): the leading ``max_bond``
singular triplets by PROPACK's Lanczos bidiagonalisation
(``scipy.sparse.linalg.svds``) converged to a relative tolerance of
``1e-10``; any convergence warning drops it. Its discarded weight is measured
directly.

*Gram route* (next, for an unfolding at least 4 times as wide as tall, or
tall as wide): ``eigh`` of the small Gram matrix (with NumPy and a ``max_bond`` cut under a quarter of its
size, only the leading eigenpairs, by LAPACK ``syevr``, and the trace). Eigenvalues carry an absolute error
of about ``eps * s_max**2``, so the result is accepted only when that cannot
matter: the kept subspace is separated from the rest by a relative gap of at
least ``1e-5`` (its vectors are then accurate to ``eps / gap``), the discarded
weight is at least ``1e-9`` of the total (so it is resolved); or, when ``max_bond`` set
the cut, when the projection's error, measured directly as
``||A - U U^H A||_F``, is below ``1e-13 ||A||_F`` (rounding level) or,
for a discarded weight of at least ``1e-9`` of the total, within a factor
``1 + 1e-6`` of the eigenvalues' tail (which is within ``min(m, n) eps s_max**2`` of
the optimum: spectra that flatten into noise at the cut, where consecutive
eigenvalues are too close for the gap test), either
for the eigenvectors or after one step of subspace iteration from them
(two steps at most, stopping once the error is below ``1e-15 ||A||_F``: each
squares the eigenvectors' error; smooth kernels, whose tail is below rounding). A
``cutoff`` below ``1e-6`` or a ``max_discarded`` below ``1e-9`` is never
judged on Gram eigenvalues.

*Randomized route* (tried first, when ``max_bond`` is well below both sides
and no entropy criterion is set): range finder with
power iterations (Halko, Martinsson and Tropp 2011). The discarded weight of
the projection is measured directly as ``||A - U U^H A||_F^2``; the result
is accepted when its relative error is below ``1e-13``, or when it is
provably within 5 % of the optimum: with
``rho >= ||A - Q Q^H A||_2`` (a probabilistic bound from 8 Gaussian probes,
failing with probability below ``1e-8``), the optimal discarded weight is at
least ``||A||^2 - sum_{i <= chi} (s_i^2 + rho^2)`` (Weyl's inequality for ``A^H A = B^H B + R^H R``
with ``B = Q^H A`` and ``R = A - Q B``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .. import _linalg as linalg
from .._backend import namespace, scalar, sum_squares
from ..truncation import Truncation, select_rank
from ._registry import thin_svd

__all__ = ["FastFactor", "fast_left_factor", "gram_factor", "randomized_factor", "krylov_factor"]


class FastFactor(NamedTuple):
    """A certified truncated left factor: ``U`` (kept columns), every computed ``S``, ``chi``, discarded weight."""

    U: Any
    S: Any
    chi: int
    discarded: float

_ASPECT = 4
_MIN_GAP = 1e-5
_MIN_DISCARDED = 1e-9
_MIN_CUTOFF = 1e-6
_OVERSAMPLE = 10
_PROBES = 8
_ROUNDING = 1e-13
_EXACT = 1e-15
_REFINEMENTS = 2
_KRYLOV_TOL = 1e-10
_GRAM_SLACK = 1e-6


def _descending_eigh(g: Any, truncation: Truncation) -> tuple[Any, Any, float]:
    """Eigenvalues (descending, clipped at 0), eigenvectors and trace of the Hermitian ``g``: only the
    leading ones a ``max_bond`` cut can look at (one past the cap, two with ``degeneracy_tol``) when that
    is under a quarter of them (LAPACK ``syevr``, NumPy only), else all."""
    xp = namespace(g)
    n = int(g.shape[0])
    cap = None if truncation.needs_full_spectrum else truncation.cap
    if cap is not None and isinstance(g, np.ndarray):
        k = cap + (2 if truncation.degeneracy_tol is not None else 1)
        if 4 * k <= n:
            import scipy.linalg

            lam, vec = scipy.linalg.eigh(g, subset_by_index=(n - k, n - 1), driver="evr", check_finite=False)
            trace = float(np.real(np.trace(g)))
            return np.clip(lam[::-1], 0.0, None), vec[:, ::-1], trace
    lam, vec = xp.linalg.eigh(g)
    lam = xp.flip(lam, axis=0)
    lam = xp.where(lam > 0, lam, xp.zeros_like(lam))
    return lam, xp.flip(vec, axis=1), scalar(xp.sum(lam))


def gram_factor(a: Any, truncation: Truncation, refine: bool = True) -> FastFactor | None:
    """The Gram route (module docstring); ``refine=False`` gives up where it would try subspace iteration."""
    if truncation.cutoff is not None and truncation.cutoff < _MIN_CUTOFF:
        return None  # s below sqrt(eps) s_max cannot be judged on Gram eigenvalues
    if truncation.max_discarded is not None and truncation.max_discarded < _MIN_DISCARDED:
        return None
    xp = namespace(a)
    m, n = a.shape
    ah = linalg.adjoint(a)
    wide = m <= n
    lam, vec, total = _descending_eigh(a @ ah if wide else ah @ a, truncation)
    if total <= 0.0:
        return None
    s = xp.sqrt(lam)
    partial = s.shape[0] < min(m, n)
    chi = select_rank(s, truncation, total if partial else None)
    certified = True
    tail = 0.0
    if chi < min(m, n):
        gap = scalar(lam[chi - 1] - lam[chi]) / scalar(lam[0])
        tail = max(total - scalar(xp.sum(lam[:chi])), 0.0) if partial else scalar(xp.sum(lam[chi:]))
        certified = gap >= _MIN_GAP and tail >= _MIN_DISCARDED * total
    if not certified and chi != truncation.cap:
        return None  # chi was chosen on eigenvalues that may be rounding noise
    u = vec[:, :chi] if wide else linalg.qr(a @ vec[:, :chi])[0]  # A V = U S, re-orthonormalised
    if not certified:
        if not refine:
            return None
        refined = _refined(a, ah, u, total, tail)
        if refined is None:
            return None
        u, tail = refined
    return FastFactor(u, s, chi, tail)


def _refined(a: Any, ah: Any, u: Any, total: float, optimum: float) -> tuple[Any, float] | None:
    """``(u, discarded)`` when the projection's error, measured directly, is at rounding level or (for a
    resolved tail) within ``_GRAM_SLACK`` of the eigenvalues' tail ``optimum``; eigenvectors of the Gram
    matrix carry errors of about eps / gap, so steps of subspace iteration (u <- orth(A A^H u)) are tried
    before giving up (``None``)."""
    resolved = optimum >= _MIN_DISCARDED * total

    def accepted(measured: float, rounding: float) -> bool:
        return measured <= rounding**2 * total or (resolved and measured <= (1.0 + _GRAM_SLACK) * optimum)

    tail = linalg.projection_residual(a, u)
    for _ in range(_REFINEMENTS):
        if accepted(tail, _EXACT):
            break
        u = linalg.qr(a @ (ah @ u))[0]
        tail = linalg.projection_residual(a, u)
    return (u, tail) if accepted(tail, _ROUNDING) else None


def randomized_factor(a: Any, truncation: Truncation) -> FastFactor | None:
    """Range finder with power iterations; needs ``truncation.max_bond``."""
    cap = truncation.cap
    assert cap is not None
    xp = namespace(a)
    n = a.shape[1]
    q = linalg.range_finder(a, cap + _OVERSAMPLE)
    b = linalg.adjoint(q) @ a
    u_b, s, _ = thin_svd(b, None, "lapack")
    total = sum_squares(a)
    if total <= 0.0:
        return None
    chi = select_rank(s, truncation, total)
    u = q @ u_b[:, :chi]
    # the discarded weight of the projection, measured directly (no cancellation)
    discarded = linalg.projection_residual(a, u)
    if discarded > _ROUNDING**2 * total:
        probes = linalg.gaussian(a, (n, _PROBES), seed=1)
        resid = a @ probes
        resid = resid - q @ (linalg.adjoint(q) @ resid)
        norms = xp.linalg.vector_norm(resid, axis=0) / xp.linalg.vector_norm(probes, axis=0)
        rho = 10.0 * math.sqrt(2.0 / math.pi) * scalar(xp.max(norms))
        # A^H A = B^H B + R^H R (B = Q^H A, R = A - Q B), so s_i(A)^2 <= s_i(B)^2 + rho^2 (Weyl)
        upper_kept = scalar(xp.sum(s[:chi] ** 2)) + chi * rho**2
        lower = total - upper_kept
        if lower <= 0.0 or discarded > 1.05**2 * lower:
            return None
    return FastFactor(u, s, chi, discarded)


def krylov_factor(a: Any, truncation: Truncation) -> FastFactor | None:
    """Leading singular triplets by PROPACK (Lanczos bidiagonalisation), NumPy only."""
    import warnings

    import scipy.sparse.linalg

    if not isinstance(a, np.ndarray):
        return None
    k = truncation.cap
    assert k is not None
    if truncation.degeneracy_tol is not None:
        k += 1  # the first dropped value decides whether the cut is inside a multiplet
    if k >= min(a.shape):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            u, s, _ = scipy.sparse.linalg.svds(a, k=k, solver="propack", tol=_KRYLOV_TOL, random_state=0)
    except Exception:  # noqa: BLE001 - no convergence, or any solver failure: use the full SVD
        return None
    order = np.argsort(s)[::-1]
    u, s = u[:, order], s[order]
    total = sum_squares(a)
    chi = select_rank(s, truncation, total)
    u = u[:, :chi]
    discarded = linalg.projection_residual(a, u)
    return FastFactor(u, s, chi, discarded)


def fast_left_factor(a: Any, truncation: Truncation) -> FastFactor | None:
    """A :class:`FastFactor` by a certified fast route, or ``None``.

    ``S`` holds every singular value the route computed (approximate below
    ``sqrt(eps) * s_max`` for the Gram route); ``discarded`` is the weight the
    projection ``U_kept U_kept^H a`` drops.
    """
    m, n = a.shape
    cap = truncation.cap
    short, long_ = min(m, n), max(m, n)
    result = None
    if (
        cap is not None
        and truncation.max_entropy_loss is None
        and 4 * (cap + _OVERSAMPLE) <= short
    ):
        result = randomized_factor(a, truncation)
        if result is None and long_ < _ASPECT * short and 8 * cap <= short:
            result = krylov_factor(a, truncation)
    if result is None and long_ >= _ASPECT * short and short >= 2:
        result = gram_factor(a, truncation)
    return result
