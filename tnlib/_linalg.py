"""Dense factorizations every sweep is built from: QR (with TSQR), SVD kernels, sketches.

Each function takes a 2-D array and returns results in its namespace. NumPy
arrays go through SciPy's LAPACK wrappers (``gesdd`` with a ``gesvd``
fallback, blocked Householder QR); other libraries use their own
``linalg``. Which SVD a decomposition uses is chosen in :mod:`tnlib.svd`.
"""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat
import numpy as np

from ._backend import BLOCK_BYTES, block_size, capturing, itemsize, namespace, scalar
from ._svd_grad import differentiable_svd

__all__ = [
    "ASPECT",
    "top_eigenpairs",
    "top_eigenvectors",
    "eigh",
    "cholesky_factor",
    "shifted_cholesky_exists",
    "adjoint",
    "gaussian",
    "projection_residual",
    "qr",
    "r_factor",
    "range_finder",
    "scipy_svd",
    "square_svd",
    "svdvals",
]

_POWER_ITERATIONS = 2


ASPECT = 4
"""A matrix this many times as long as it is short counts as tall (or wide)."""
_TSQR_MIN_ROWS = 8192
_TSQR_BLOCK = 2048


def svdvals(a: Any) -> Any:
    """Singular values of a 2-D array, descending (``gesdd``, ``gesvd`` fallback for NumPy)."""
    if isinstance(a, np.ndarray):
        return _lapack_svdvals(a)
    xp = namespace(a)
    return xp.linalg.svdvals(a)


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


def projection_residual(a: Any, u: Any, block_bytes: int = BLOCK_BYTES) -> float:
    """``||a - u u^H a||_F^2`` for orthonormal columns ``u``, measured directly, a block at a time.

    Never forms the ``(m, n)`` difference: a wide ``a`` is projected a block
    of columns at a time, a tall one a block of rows at a time (against the
    small ``u^H a``), each block at most ``block_bytes``, so the extra memory is a few
    blocks whatever the size of ``a``. Direct measurement (not
    ``||a||^2 - ||u^H a||^2``) keeps a small residual free of cancellation.
    """
    xp = namespace(a)
    m, n = a.shape
    uh = adjoint(u)
    total = 0.0
    block_bytes = block_size(m * n * itemsize(a), block_bytes)
    if m >= n:
        c = uh @ a
        step = max(1, block_bytes // max(1, n * itemsize(a)))
        for i in range(0, m, step):
            total += scalar(xp.linalg.vector_norm(a[i : min(i + step, m), :] - u[i : min(i + step, m), :] @ c)) ** 2
        return total
    step = max(1, block_bytes // max(1, m * itemsize(a)))
    for j in range(0, n, step):
        block = a[:, j : min(j + step, n)]
        total += scalar(xp.linalg.vector_norm(block - u @ (uh @ block))) ** 2
    return total


def adjoint(a: Any) -> Any:
    """Conjugate transpose of a 2-D array (no copy for real dtypes)."""
    if isinstance(a, np.ndarray):  # the sweeps' hot path: no namespace lookup
        return a.T.conj() if np.iscomplexobj(a) else a.T
    xp = namespace(a)
    t = xp.matrix_transpose(a)
    return xp.conj(t) if xp.isdtype(a.dtype, "complex floating") else t


def _lapack_svdvals(a: np.ndarray) -> np.ndarray:
    """Singular values by LAPACK ``gesdd`` called directly (``gesvd`` if it does not converge): no argument
    checks or workspace queries, which cost as much as the small factorizations of a sweep."""
    import scipy.linalg.lapack as lapack

    if a.size == 0:
        return np.zeros((0,), dtype=np.finfo(a.dtype).dtype)
    (gesdd,) = lapack.get_lapack_funcs(("gesdd",), (a,))
    out = gesdd(a, compute_uv=0)
    s, info = out[1], out[-1]
    if info == 0:
        return s
    import scipy.linalg

    return scipy.linalg.svd(a, compute_uv=False, check_finite=False, lapack_driver="gesvd")


def scipy_svd(a: np.ndarray, **kwargs: Any) -> Any:
    """SciPy's SVD by ``gesdd``, falling back to ``gesvd`` when it fails to converge."""
    import scipy.linalg

    try:
        return scipy.linalg.svd(a, check_finite=False, **kwargs)
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(a, check_finite=False, lapack_driver="gesvd", **kwargs)


def square_svd(a: Any) -> tuple[Any, Any, Any]:
    """Thin SVD; a torch tensor in an autograd graph gets a backward that handles degenerate and zero
    singular values (:mod:`tnlib._svd_grad`) instead of returning NaN."""
    if isinstance(a, np.ndarray):
        return scipy_svd(a, full_matrices=False)
    if array_api_compat.is_torch_array(a) and a.requires_grad:
        return differentiable_svd(a)
    xp = namespace(a)
    return tuple(xp.linalg.svd(a, full_matrices=False))


def descending_eigh(h: Any) -> tuple[Any, Any]:
    """Eigenvalues (descending, real, negatives from rounding set to 0) and eigenvectors of the Hermitian
    ``h``; LAPACK ``syevr``/``heevr`` through SciPy for NumPy (no finiteness pass; several times faster
    than ``numpy.linalg.eigh`` on the small matrices of a sweep)."""
    if isinstance(h, np.ndarray):
        import scipy.linalg

        lam, vec = scipy.linalg.eigh(h, check_finite=False, driver="evr")
        return np.clip(lam[::-1], 0.0, None), vec[:, ::-1]
    xp = namespace(h)
    lam, vec = xp.linalg.eigh(h)
    lam = xp.flip(xp.real(lam), axis=0)
    return xp.where(lam > 0, lam, xp.zeros_like(lam)), xp.flip(vec, axis=1)


def _on_host(h: Any) -> bool:
    """Whether LAPACK through SciPy can take ``h`` in place: NumPy, or a CPU torch tensor outside an autograd graph
    and any trace (read through a shared-memory view)."""
    return isinstance(h, np.ndarray) or (array_api_compat.is_torch_array(h) and h.device.type == "cpu"
                                         and not h.requires_grad and not capturing(h))


def _from_host(vec: np.ndarray, like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return vec
    import torch

    return torch.from_numpy(vec)


def eigh(h: Any) -> tuple[Any, Any]:
    """Eigenvalues (ascending) and eigenvectors of the Hermitian ``h``; on the host LAPACK's ``syevd`` through
    SciPy (1.6x faster than torch's own ``eigh`` on a 3072 x 3072 CPU tensor, one thread)."""
    if _on_host(h):
        import scipy.linalg

        host = h if isinstance(h, np.ndarray) else h.resolve_conj().numpy()
        lam, vec = scipy.linalg.eigh(host, check_finite=False, driver="evd")
        return _from_host(lam, h), _from_host(vec, h)
    xp = namespace(h)
    return tuple(xp.linalg.eigh(h))


def cholesky_factor(c: Any) -> tuple[Any, Any] | None:
    """``(L, L^{-1})`` with ``c = L L^H``, ``L`` lower triangular, for a Hermitian positive definite ``c``; ``None``
    when the factorization fails (``c`` not numerically positive definite) or gives non-finite values.

    On the host LAPACK ``potrf`` and ``trtri`` through SciPy (about ``2 n^3 / 3`` flops, a tenth of an ``eigh``);
    elsewhere the library's ``cholesky`` and ``inv`` (differentiable in torch).
    """
    xp = namespace(c)
    if _on_host(c):
        import scipy.linalg
        import scipy.linalg.lapack as lapack

        host = np.array(c if isinstance(c, np.ndarray) else c.resolve_conj().numpy())
        try:
            low = scipy.linalg.cholesky(host, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            return None
        (trtri,) = lapack.get_lapack_funcs(("trtri",), (low,))
        inv, info = trtri(low, lower=1)  # SciPy's factor has zeros above the diagonal, and so has its inverse
        if info != 0:
            return None
        return _from_host(low, c), _from_host(inv, c)
    try:
        low = xp.linalg.cholesky(c)
        inv = xp.linalg.inv(low)
    except Exception:  # noqa: BLE001 - each library has its own LinAlgError
        return None
    if not (scalar(xp.all(xp.isfinite(low))) and scalar(xp.all(xp.isfinite(inv)))):
        return None
    return low, inv


def _subset_limit(n: int) -> float:
    """The most eigenvectors of an ``n x n`` matrix that ``syevr`` computes faster than a full ``syevd`` (measured
    here, one thread: the crossover is at ``k / n`` about 0.15 for ``n = 256``, 0.2 for 768, 0.3 for 1536)."""
    return n * (0.15 if n <= 384 else 0.2 if n <= 1024 else 0.3)


def top_eigenpairs(h: Any, k: int) -> tuple[Any, Any]:
    """The ``k`` largest eigenvalues of the Hermitian ``h`` and their eigenvectors (columns), in ascending order.

    On the host (NumPy, or a CPU torch tensor outside an autograd graph and any trace, read through a
    shared-memory view) LAPACK's ``syevr`` computes only those ``k`` (2-3x faster than a full ``eigh`` at
    ``k = n / 16``) while ``k`` is below :func:`_subset_limit` of ``n``, past which the full divide-and-conquer
    ``syevd`` is faster (measured, one thread: ``n = 384, k = 115``: 19 ms subset, 11 ms full); elsewhere a
    full ``eigh``, sliced.
    """
    n = int(h.shape[0])
    k = max(1, min(int(k), n))
    if _on_host(h) and k <= _subset_limit(n):
        import scipy.linalg

        host = h if isinstance(h, np.ndarray) else h.resolve_conj().numpy()
        lam, vec = scipy.linalg.eigh(host, subset_by_index=[n - k, n - 1], check_finite=False, driver="evr")
        return _from_host(lam, h), _from_host(vec, h)
    lam, vec = eigh(h)
    return lam[n - k:], vec[:, n - k:]


def top_eigenvectors(h: Any, k: int) -> Any:
    """The eigenvectors of the ``k`` largest eigenvalues of the Hermitian ``h`` (columns, in ascending order);
    see :func:`top_eigenpairs`."""
    return top_eigenpairs(h, k)[1]


def shifted_cholesky_exists(c: Any, shift: float) -> bool:
    """Whether ``c + shift I`` (Hermitian ``c``) has a Cholesky factor computed in double precision: then every
    eigenvalue of ``c`` is at least ``-shift``, up to double rounding. A tenth of an ``eigvalsh``'s time.

    ``False`` says only that this cheap test did not show it: a failed factorization, or an array it cannot
    factor on the spot (neither NumPy nor a concrete torch tensor); the caller then takes the eigenvalues.
    """
    if isinstance(c, np.ndarray):
        import scipy.linalg

        double = c.astype(np.complex128 if np.iscomplexobj(c) else np.float64)
        double[np.diag_indices_from(double)] += shift
        try:
            scipy.linalg.cholesky(double, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            return False
        return True
    if not array_api_compat.is_torch_array(c) or capturing(c):
        return False
    import torch

    shifted = c.detach().to(torch.complex128 if c.is_complex() else torch.float64, copy=True)  # shifted in place
    shifted.diagonal().add_(shift)
    return int(torch.linalg.cholesky_ex(shifted).info) == 0


def gaussian(a: Any, shape: tuple[int, int], seed: int) -> Any:
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
    q = qr(a @ gaussian(a, (a.shape[1], k), seed=0))[0]
    for _ in range(_POWER_ITERATIONS):
        q = qr(a @ qr(ah @ q)[0])[0]
    return q


def qr(a: Any, *, overwrite: bool = False) -> tuple[Any, Any]:
    """Reduced QR of the 2-D array ``a`` in its own namespace.

    A tall-skinny ``a`` (at least 8192 rows and 4 times as many rows as
    columns) is factored by one level of TSQR (Demmel et al., SIAM J. Sci.
    Comput. 34, 2012): QR of row blocks, then QR of the stacked R factors. The
    blocks fit in cache, which LAPACK's panel factorization of the whole
    matrix does not. With ``overwrite=True`` (for an array the caller owns
    and no longer needs) a C-contiguous NumPy ``a`` factored by TSQR receives
    ``Q`` in place, so the factorization needs no second array of its size.
    """
    m, n = a.shape
    if m >= _TSQR_MIN_ROWS and m >= ASPECT * n:
        return _tsqr(a, overwrite)
    return _direct_qr(a)


def _tsqr(a: Any, overwrite: bool = False) -> tuple[Any, Any]:
    xp = namespace(a)
    m, n = a.shape
    block = max(_TSQR_BLOCK, 2 * n)
    starts = range(0, m, block)
    if isinstance(a, np.ndarray):
        # Two passes keep memory at one output array: first only the R factors,
        # then each block's Q again, written straight into its rows of the result.
        r_blocks = [r_factor(a[i : i + block, :]) for i in starts]
        q2, r = _direct_qr(np.concatenate(r_blocks, axis=0))
        dtype = np.result_type(a, q2)
        in_place = overwrite and a.flags.c_contiguous and a.flags.writeable and dtype == a.dtype
        # each block's Q is computed from a copy of the block, so it may then overwrite those rows
        out = a if in_place else np.empty((m, q2.shape[1]), dtype=dtype)
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
        return _lapack_qr(a)
    xp = namespace(a)
    q, r = xp.linalg.qr(a, mode="reduced")
    return q, r


@functools.lru_cache(maxsize=64)
def _upper_mask(rows: int, cols: int, dtype: str) -> np.ndarray:
    """Read-only 0/1 mask of the upper triangle of a ``(rows, cols)`` matrix (memoised; a few shapes per sweep)."""
    mask = np.triu(np.ones((rows, cols), dtype=dtype))
    mask.flags.writeable = False
    return mask


def _lapack_qr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR of a NumPy matrix by LAPACK's ``geqrf`` and ``orgqr``/``ungqr`` called directly.

    The same factorization as ``scipy.linalg.qr(mode="economic")``, without
    its two workspace queries and argument checks per call, which cost as
    much as the factorization itself for the small cores of a canonical-form
    sweep.
    """
    import scipy.linalg.lapack as lapack

    m, n = a.shape
    k = min(m, n)
    geqrf, gqr = lapack.get_lapack_funcs(("geqrf", "ungqr" if np.iscomplexobj(a) else "orgqr"), (a,))
    lwork = max(1, 64 * max(m, n))  # a blocked workspace; LAPACK needs only n (geqrf) and k (orgqr)
    qr, tau, _, info = geqrf(a, lwork=lwork)
    if info != 0:  # pragma: no cover - geqrf reports only invalid arguments
        raise np.linalg.LinAlgError(f"geqrf failed with info={info}")
    r = qr[:k, :] * _upper_mask(k, n, qr.dtype.char)  # np.triu builds its mask on every call
    q, _, info = gqr(qr[:, :k], tau, lwork=lwork, overwrite_a=1)
    if info != 0:  # pragma: no cover
        raise np.linalg.LinAlgError(f"orgqr failed with info={info}")
    return q, r

