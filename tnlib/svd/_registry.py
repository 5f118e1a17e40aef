"""The SVD methods behind ``svd=``: a registry, the LAPACK route and the randomized one.

Every SVD in tnlib goes through :func:`thin_svd`, which looks the method up in a
small registry. A method is a function ``f(a, rank) -> (U, S, Vh)`` taking a
2-D array ``a`` of shape ``(m, n)`` and an optional number ``rank`` of leading
singular triplets the caller needs (``None``: all of them). It returns the
thin SVD in ``a``'s namespace: ``S`` real, non-negative and descending, of
shape ``(k,)``; ``U`` of shape ``(m, j)`` and ``Vh`` of shape ``(j, n)`` with
the leading ``j`` singular vectors, ``rank <= j <= k`` (``j == k`` when
``rank`` is ``None``). A method whose ``S`` has fewer than ``min(m, n)``
values returns a *partial* spectrum; callers then take the total weight
from ``||a||_F^2`` and count the rest as discarded.

Built-in methods:

``"auto"``
    The default: currently ``"lapack"``.
``"lapack"``
    The full thin SVD of the array's own library (``gesdd`` for NumPy through
    SciPy, with a fallback to the slower but more robust ``gesvd`` when
    ``gesdd`` fails to converge). A matrix more than 4 times as wide as tall
    (or tall as wide) is first reduced by a QR factorization of its long side
    (blocked TSQR when very long), and only the small square factor goes
    through the SVD; this is backward stable, so no digits are lost.
``"randomized"``
    Randomized range finder with two power iterations, re-orthonormalised
    by QR at every step, and oversampling 10 (Halko, Martinsson and Tropp,
    SIAM Review 53, 2011). Used only when ``rank`` is given and well below
    ``min(m, n)``; otherwise it falls back to ``"lapack"``. Its truncation
    is checked a posteriori: the discarded weight it reports is
    ``||a||_F^2 - sum(S_kept^2)``, the exact error of the projection.
    For a whole chain (``MPO.from_matrix``, ``MPS.from_dense``) with a
    ``max_bond``, ``"randomized"`` instead runs the sketched TT-SVD of
    :mod:`tnlib._sketched` (two passes, a certificate in the report), and
    for a dask input a single pass.

Examples
--------
>>> import numpy as np, tnlib
>>> def numpy_svd(a, rank):
...     return np.linalg.svd(a, full_matrices=False)
>>> tnlib.register_svd("numpy", numpy_svd)
>>> a = np.arange(12.0).reshape(3, 4)
>>> tnlib.truncated_svd(a, svd="numpy").S.shape
(3,)
"""


from __future__ import annotations

from typing import Any, Callable

from .._backend import namespace
from .._linalg import ASPECT, adjoint, qr, r_factor, range_finder, square_svd

__all__ = ["SVDMethod", "register_svd", "svd_methods", "check_svd", "thin_svd", "left_factor"]

SVDMethod = Callable[[Any, "int | None"], "tuple[Any, Any, Any]"]


_OVERSAMPLE = 10


def _lapack_svd(a: Any, rank: int | None) -> tuple[Any, Any, Any]:
    m, n = a.shape
    k = min(m, n) if rank is None else rank
    if m >= ASPECT * n:
        q, r = qr(a)
        u, s, vh = square_svd(r)
        return q @ u[:, :k], s, vh[:k, :]
    if n >= ASPECT * m:
        q, r = qr(adjoint(a))
        u, s, vh = square_svd(adjoint(r))
        return u[:, :k], s, vh[:k, :] @ adjoint(q)
    return square_svd(a)


def _randomized_svd(a: Any, rank: int | None) -> tuple[Any, Any, Any]:
    m, n = a.shape
    if rank is None or 2 * (rank + _OVERSAMPLE) >= min(m, n):
        return _lapack_svd(a, rank)
    q = range_finder(a, rank + _OVERSAMPLE)
    u_small, s, vh = _lapack_svd(adjoint(q) @ a, None)
    return q @ u_small, s, vh


_REGISTRY: dict[str, SVDMethod] = {
    "auto": _lapack_svd,
    "lapack": _lapack_svd,
    "randomized": _randomized_svd,
}


def register_svd(name: str, method: SVDMethod, *, overwrite: bool = False) -> None:
    """Add an SVD method under ``name`` for ``svd=name`` everywhere in tnlib.

    Parameters
    ----------
    name
        The name to pass as ``svd=`` to :func:`tnlib.truncated_svd`,
        :meth:`tnlib.MPO.from_matrix`, :meth:`tnlib.MPS.from_dense` and
        ``truncate``.
    method
        ``method(a, rank) -> (U, S, Vh)``: the thin SVD of the 2-D array
        ``a`` in its own namespace, ``S`` descending; ``rank`` is the number
        of leading triplets needed, or ``None`` for all.
    overwrite
        Allow replacing an existing method (built-ins included).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> plain = lambda a, rank: np.linalg.svd(a, full_matrices=False)
    >>> tnlib.register_svd("plain", plain, overwrite=True)   # overwrite: run twice, it replaces itself
    >>> "plain" in tnlib.svd_methods()
    True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(method):
        raise TypeError(f"method must be callable, got {type(method).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"an SVD method named {name!r} is already registered; "
            "pass overwrite=True to replace it"
        )
    _REGISTRY[name] = method


def svd_methods() -> tuple[str, ...]:
    """Names accepted by ``svd=``, built-ins first.

    Examples
    --------
    >>> import tnlib
    >>> "auto" in tnlib.svd_methods()
    True
    """
    return tuple(_REGISTRY)


def check_svd(svd: str) -> None:
    """Raise ``ValueError`` unless ``svd`` names a registered method."""
    if not isinstance(svd, str) or svd not in _REGISTRY:
        raise ValueError(
            f"svd={svd!r} is not a registered SVD method; expected one of "
            f"{', '.join(map(repr, _REGISTRY))} (add more with tnlib.register_svd)"
        )


def thin_svd(a: Any, rank: int | None = None, svd: str = "auto") -> tuple[Any, Any, Any]:
    """Thin SVD of the 2-D array ``a`` with the registered method named ``svd``."""
    check_svd(svd)
    u, s, vh = _REGISTRY[svd](a, rank)
    if svd not in ("auto", "lapack", "randomized"):
        _check_result(svd, a, rank, u, s, vh)
    return u, s, vh


def _check_result(svd: str, a: Any, rank: int | None, u: Any, s: Any, vh: Any) -> None:
    """Refuse what a registered method returns unless it is a thin SVD as promised: finite, non-negative,
    descending ``S`` with at least ``rank`` values (all ``min(m, n)`` for ``rank=None``), matching shapes."""
    m, n = (int(d) for d in a.shape)
    what = f"the SVD method {svd!r} returned"
    where = f"for a {m} x {n} matrix (rank={rank}); check the registered function"
    if getattr(s, "ndim", None) != 1 or getattr(u, "ndim", None) != 2 or getattr(vh, "ndim", None) != 2:
        raise ValueError(f"{what} arrays that are not (U 2-D, S 1-D, Vh 2-D) {where}")
    k = int(s.shape[0])
    needed = min(m, n) if rank is None else min(int(rank), m, n)
    if k < needed:
        raise ValueError(f"{what} {k} singular values where {needed} were asked {where}")
    if tuple(u.shape) != (m, k) or tuple(vh.shape) != (k, n):
        raise ValueError(
            f"{what} U {tuple(u.shape)}, S ({k},), Vh {tuple(vh.shape)}; "
            f"expected ({m}, {k}), ({k},), ({k}, {n}) {where}"
        )
    xp = namespace(s)
    if not bool(xp.all(xp.isfinite(s))) or (k and bool(xp.any(s < 0))):
        raise ValueError(f"{what} singular values that are not finite and non-negative {where}")
    if k > 1 and bool(xp.any(s[1:] > s[:-1])):
        raise ValueError(f"{what} singular values that are not in descending order {where}")


def left_factor(a: Any, rank: int | None = None, svd: str = "auto") -> tuple[Any, Any]:
    """Left singular vectors and all singular values ``(U, S)`` of ``a``, no ``Vh``.

    For the built-in methods, a matrix at least 4 times as wide as tall needs
    only the triangular factor ``R`` of ``a^H = Q R`` (blocked Householder QR
    without forming ``Q``), then the SVD of the small ``R^H``: the left
    singular vectors and values of ``a`` are those of ``R^H``. A sweep that
    needs the right factor forms it as the exact projection ``U^H a``.
    """
    m, n = a.shape
    if svd in ("auto", "lapack") and _REGISTRY[svd] is _lapack_svd and n >= ASPECT * m:
        k = m if rank is None else rank
        u, s, _ = square_svd(adjoint(r_factor(adjoint(a))))
        return u[:, :k], s
    u, s, _ = thin_svd(a, rank, svd)
    return u, s


