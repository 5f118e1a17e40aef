"""Truncated SVDs of one matrix: what a bond of a sweep, or :func:`truncated_svd`, keeps."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from .._backend import as_matrix, namespace, scalar, sum_squares
from ..truncation import TruncatedSVD, Truncation, check_truncation, select_rank
from ._certified import fast_left_factor
from ._registry import check_svd, left_factor, thin_svd

__all__ = ["LeftFactor", "truncate_left", "truncated_svd"]


class LeftFactor(NamedTuple):
    """The kept left singular vectors of a matrix ``a`` and what they discard.

    A sweep needs only ``U``: it forms the rest as the exact projection
    ``U^H a``, whose squared distance to ``a`` is ``discarded``.

    Attributes
    ----------
    U : array, shape (m, chi)
        Orthonormal columns.
    S : array, shape (chi,)
        Kept singular values, descending.
    discarded : float
        ``||a - U U^H a||_F^2``, the absolute discarded weight.
    full_rank : int
        ``min(m, n)``: the bond's dimension before truncation.
    """

    U: Any
    S: Any
    discarded: float
    full_rank: int


def _full_weight(xp: Any, a: Any, s: Any, full_rank: int) -> float | None:
    """``||a||_F^2`` when ``s`` is only the leading part of the spectrum, else ``None``."""
    if s.shape[0] < full_rank:
        return sum_squares(a)
    return None


def _discarded(xp: Any, s: Any, chi: int, total: float | None) -> float:
    if total is None:  # summed at the scale of s[0]: the weight itself saturates to inf, never a warning or NaN
        peak = scalar(xp.max(s)) if int(s.shape[0]) else 0.0
        if not (peak > 0.0 and math.isfinite(peak)):
            return scalar(xp.sum(s[chi:] * s[chi:]))
        tail = s[chi:] / peak
        rest = scalar(xp.sum(tail * tail))
        return rest * peak * peak if rest == 0.0 or math.log(rest) + 2 * math.log(peak) < 709.0 else math.inf
    kept = s[:chi]
    return max(0.0, total - scalar(xp.sum(kept * kept)))


def _rank_cap(truncation: Truncation | None, full_rank: int) -> int | None:
    if truncation is not None and not truncation.needs_full_spectrum:
        cap = truncation.cap
        assert cap is not None  # needs_full_spectrum is False only with a cap
        if truncation.degeneracy_tol is not None:
            cap += 1  # the first dropped value decides whether the cut is inside a multiplet
        return min(cap, full_rank)
    return None


def truncate_left(a: Any, truncation: Truncation | None, svd: str) -> LeftFactor:
    """Kept left factor of a validated 2-D ``a`` (for the right factor pass ``adjoint(a)``).

    With ``svd="auto"`` a certified fast route (:mod:`tnlib.svd._certified`)
    is tried first. Trusts its caller: ``a`` is finite and floating,
    ``truncation`` has no ``max_params``.
    """
    xp = namespace(a)
    full_rank = min(a.shape)
    if svd == "auto" and truncation is not None and not truncation.is_exact:
        fast = fast_left_factor(a, truncation)
        if fast is not None:
            return LeftFactor(fast.U, fast.S[: fast.chi], fast.discarded, full_rank)
    u, s = left_factor(a, _rank_cap(truncation, full_rank), svd)
    total = _full_weight(xp, a, s, full_rank)
    chi = select_rank(s, truncation, total)
    return LeftFactor(u[:, :chi], s[:chi], _discarded(xp, s, chi, total), full_rank)


def _truncate_both(a: Any, truncation: Truncation | None, svd: str) -> TruncatedSVD:
    xp = namespace(a)
    full_rank = min(a.shape)
    u, s, vh = thin_svd(a, _rank_cap(truncation, full_rank), svd)
    total = _full_weight(xp, a, s, full_rank)
    chi = select_rank(s, truncation, total)
    return TruncatedSVD(u[:, :chi], s[:chi], vh[:chi, :], _discarded(xp, s, chi, total))


def truncated_svd(matrix: Any, truncation: Truncation | None = None, *, svd: str = "auto") -> TruncatedSVD:
    """Truncated singular value decomposition ``matrix ~ U diag(S) Vh``.

    Parameters
    ----------
    matrix : array, shape (m, n)
        Finite, of dtype float32, float64, complex64 or complex128, in any
        Array-API namespace; the result stays in it.
    truncation
        Which singular values to keep (``None``: all of them).
        ``max_params`` counts the ``chi * (m + n)`` entries of ``U diag(S)``
        and ``Vh``.
    svd
        A method name from :func:`tnlib.svd_methods`.

    Returns
    -------
    TruncatedSVD
        ``U, S, Vh`` and the absolute discarded weight.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> a = np.diag([3.0, 2.0, 1.0e-3])
    >>> r = tnlib.truncated_svd(a, tnlib.Truncation(cutoff=1e-2))
    >>> r.S, round(r.discarded, 12)
    (array([3., 2.]), 1e-06)
    """
    a = as_matrix(matrix)
    truncation = check_truncation(truncation)
    if truncation is not None:
        truncation = truncation.for_bond(0, 1)  # one bond: per-bond caps must have one entry
        if truncation.max_relative_error is not None:  # one bond: the error budget is its discarded weight
            eps2 = truncation.max_relative_error ** 2
            merged = eps2 if truncation.max_discarded is None else min(eps2, truncation.max_discarded)
            truncation = dataclasses.replace(truncation, max_relative_error=None, max_discarded=merged)
    check_svd(svd)
    if truncation is not None and truncation.max_params is not None:
        m, n = a.shape
        cap = truncation.max_params // (m + n)
        if cap < truncation.min_bond:
            raise ValueError(
                f"Truncation.max_params={truncation.max_params} is too small for a "
                f"{m} x {n} matrix: rank {truncation.min_bond} needs "
                f"{truncation.min_bond * (m + n)} parameters"
            )
        cap = cap if truncation.cap is None else min(cap, truncation.cap)
        truncation = dataclasses.replace(truncation, max_params=None, max_bond=cap)
    return _truncate_both(a, truncation, svd)
