"""Matrix factorizations behind every decomposition, and their registry.

Every SVD in tnlib goes through :func:`svd`, which looks the method up in a
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

import array_api_compat
import numpy as np

from ._backend import namespace

__all__ = ["register_svd", "svd_methods", "svd", "svdvals", "left_factor", "range_finder", "qr", "r_factor", "adjoint"]

SVDMethod = Callable[[Any, "int | None"], "tuple[Any, Any, Any]"]

_OVERSAMPLE = 10
_POWER_ITERATIONS = 2


_ASPECT = 4
_TSQR_MIN_ROWS = 8192
_TSQR_BLOCK = 2048


def _lapack_svd(a: Any, rank: int | None) -> tuple[Any, Any, Any]:
    m, n = a.shape
    k = min(m, n) if rank is None else rank
    if m >= _ASPECT * n:
        q, r = qr(a)
        u, s, vh = _square_svd(r)
        return q @ u[:, :k], s, vh[:k, :]
    if n >= _ASPECT * m:
        q, r = qr(adjoint(a))
        u, s, vh = _square_svd(adjoint(r))
        return u[:, :k], s, vh[:k, :] @ adjoint(q)
    return _square_svd(a)


def svdvals(a: Any) -> Any:
    """Singular values of a 2-D array, descending (``gesdd``, ``gesvd`` fallback for NumPy)."""
    if isinstance(a, np.ndarray):
        return _scipy_svd(a, compute_uv=False)
    xp = namespace(a)
    return xp.linalg.svdvals(a)


def left_factor(a: Any, rank: int | None = None, method: str = "auto") -> tuple[Any, Any]:
    """Left singular vectors and all singular values ``(U, S)`` of ``a``, no ``Vh``.

    For the built-in methods, a matrix at least 4 times as wide as tall needs
    only the triangular factor ``R`` of ``a^H = Q R`` (blocked Householder QR
    without forming ``Q``), then the SVD of the small ``R^H``: the left
    singular vectors and values of ``a`` are those of ``R^H``. A sweep that
    needs the right factor forms it as the exact projection ``U^H a``.
    """
    m, n = a.shape
    if method in ("auto", "lapack") and _REGISTRY[method] is _lapack_svd and n >= _ASPECT * m:
        k = m if rank is None else rank
        u, s, _ = _square_svd(adjoint(r_factor(adjoint(a))))
        return u[:, :k], s
    u, s, _ = svd(a, rank, method)
    return u, s


def r_factor(a: Any) -> Any:
    """The ``(n, n)`` triangular factor of the reduced QR of a tall ``(m, n)`` array.

    NumPy arrays use blocked Householder QR (LAPACK ``geqrf`` on row blocks,
    then on the stacked factors) without ever forming ``Q``.
    """
    m, n = a.shape
    if not isinstance(a, np.ndarray):
        return _direct_qr(a)[1]
    import scipy.linalg

    (geqrf,) = scipy.linalg.get_lapack_funcs(("geqrf",), (a,))

    def r_of(block: np.ndarray) -> np.ndarray:
        qr, _, _, info = geqrf(block, lwork=max(1, 64 * block.shape[1]))
        if info != 0:
            raise np.linalg.LinAlgError(f"geqrf failed with info={info}")
        k = min(block.shape)
        return np.triu(qr[:k, :])

    if m < _TSQR_MIN_ROWS:
        return r_of(a)
    block = max(_TSQR_BLOCK, 2 * n)
    return r_of(np.concatenate([r_of(a[i : i + block]) for i in range(0, m, block)]))


def adjoint(a: Any) -> Any:
    """Conjugate transpose of a 2-D array (no copy for real dtypes)."""
    xp = namespace(a)
    t = xp.matrix_transpose(a)
    return xp.conj(t) if xp.isdtype(a.dtype, "complex floating") else t


def _scipy_svd(a: np.ndarray, **kwargs: Any) -> Any:
    """SciPy's SVD by ``gesdd``, falling back to ``gesvd`` when it fails to converge."""
    import scipy.linalg

    try:
        return scipy.linalg.svd(a, check_finite=False, **kwargs)
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(a, check_finite=False, lapack_driver="gesvd", **kwargs)


def _square_svd(a: Any) -> tuple[Any, Any, Any]:
    if isinstance(a, np.ndarray):
        return _scipy_svd(a, full_matrices=False)
    xp = namespace(a)
    return tuple(xp.linalg.svd(a, full_matrices=False))


def _gaussian(a: Any, shape: tuple[int, int], seed: int) -> Any:
    """A standard normal matrix in ``a``'s namespace, dtype and device."""
    xp = namespace(a)
    device = array_api_compat.device(a)
    if array_api_compat.is_torch_array(a):
        import torch

        gen = torch.Generator(device=a.device).manual_seed(seed)
        return torch.randn(shape, generator=gen, dtype=a.dtype, device=a.device)
    if array_api_compat.is_cupy_array(a):
        import cupy

        return cupy.random.default_rng(seed).standard_normal(shape).astype(a.dtype)
    host = np.random.default_rng(seed).standard_normal(shape)
    return xp.asarray(host, dtype=a.dtype, device=device)


def range_finder(a: Any, k: int) -> Any:
    """Orthonormal ``(m, k)`` basis approximating the range of ``a``.

    Gaussian sketch, then power iterations re-orthonormalised by QR at every
    step (Halko, Martinsson and Tropp 2011, Alg. 4.4); seeded, so repeatable.
    """
    ah = adjoint(a)
    q = qr(a @ _gaussian(a, (a.shape[1], k), seed=0))[0]
    for _ in range(_POWER_ITERATIONS):
        q = qr(a @ qr(ah @ q)[0])[0]
    return q


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
    >>> tnlib.register_svd("plain", lambda a, rank: np.linalg.svd(a, full_matrices=False))
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
    """Names accepted by ``svd=``, built-ins first."""
    return tuple(_REGISTRY)


def check_method(svd_name: str) -> None:
    if svd_name not in _REGISTRY:
        raise ValueError(
            f"svd={svd_name!r} is not a registered SVD method; expected one of "
            f"{', '.join(map(repr, _REGISTRY))} (add more with tnlib.register_svd)"
        )


def svd(a: Any, rank: int | None = None, method: str = "auto") -> tuple[Any, Any, Any]:
    """Thin SVD of the 2-D array ``a`` with the registered ``method``."""
    check_method(method)
    u, s, vh = _REGISTRY[method](a, rank)
    return u, s, vh


def qr(a: Any) -> tuple[Any, Any]:
    """Reduced QR of the 2-D array ``a`` in its own namespace.

    A tall-skinny ``a`` (at least 8192 rows and 4 times as many rows as
    columns) is factored by one level of TSQR (Demmel et al., SIAM J. Sci.
    Comput. 34, 2012): QR of row blocks, then QR of the stacked R factors. The
    blocks fit in cache, which LAPACK's panel factorization of the whole
    matrix does not.
    """
    m, n = a.shape
    if m >= _TSQR_MIN_ROWS and m >= _ASPECT * n:
        return _tsqr(a)
    return _direct_qr(a)


def _tsqr(a: Any) -> tuple[Any, Any]:
    xp = namespace(a)
    m, n = a.shape
    block = max(_TSQR_BLOCK, 2 * n)
    starts = range(0, m, block)
    if isinstance(a, np.ndarray):
        # Two passes keep memory at one output array: first only the R factors,
        # then each block's Q again, written straight into its rows of the result.
        r_blocks = [r_factor(a[i : i + block, :]) for i in starts]
        q2, r = _direct_qr(np.concatenate(r_blocks, axis=0))
        out = np.empty((m, q2.shape[1]), dtype=np.result_type(a, q2))
        row = 0
        for i, r_block in zip(starts, r_blocks):
            k = r_block.shape[0]
            q = _direct_qr(a[i : i + block, :])[0]
            np.matmul(q, q2[row : row + k, :], out=out[i : i + q.shape[0], :])
            row += k
        return out, r
    factors = [_direct_qr(a[i : i + block, :]) for i in starts]
    q2, r = _direct_qr(xp.concat([f[1] for f in factors], axis=0))
    pieces, row = [], 0
    for q, r_block in factors:
        k = r_block.shape[0]
        pieces.append(q @ q2[row : row + k, :])
        row += k
    return xp.concat(pieces, axis=0), r


def _direct_qr(a: Any) -> tuple[Any, Any]:
    if isinstance(a, np.ndarray):
        import scipy.linalg

        return scipy.linalg.qr(a, mode="economic", check_finite=False)
    xp = namespace(a)
    q, r = xp.linalg.qr(a, mode="reduced")
    return q, r
