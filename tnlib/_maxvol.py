"""Maximum-volume row selection, the pivoting rule of cross approximation.

For a tall matrix ``A`` (``N x r``) with orthonormal or well-conditioned
columns, :func:`maxvol` picks ``r`` rows whose square submatrix has (locally)
maximal ``|det|``: every entry of ``A @ inv(A[rows])`` is then at most ``tau``
in modulus (Goreinov, Oseledets, Savostyanov, Tyrtyshnikov, Zamarashkin, "How
to find a good submatrix", 2010). :func:`rect_maxvol` adds rows greedily
beyond ``r``, each time the row of largest ``||A[i] pinv(A[rows])||``, which
maximises the volume of the rectangular submatrix (Mikhalev and Oseledets,
"Rectangular maximum-volume submatrices and their applications", Linear
Algebra Appl. 538, 2018). Host NumPy only: the matrices are small and the
loops are sequential.
"""

from __future__ import annotations

import numpy as np

__all__ = ["maxvol", "rect_maxvol"]


def maxvol(a: np.ndarray, tau: float = 1.05, max_iters: int = 100) -> np.ndarray:
    """Indices of ``r`` rows of the ``N x r`` matrix ``a`` (``N >= r``) of locally maximal volume."""
    n, r = a.shape
    if r == 0:
        return np.zeros(0, dtype=np.int64)
    import scipy.linalg  # here, not at import: it costs ~0.3 s, and only cross approximation needs it

    # a good start: the pivots of a QR with column pivoting of a^T
    _, _, piv = scipy.linalg.qr(a.T, mode="economic", pivoting=True, check_finite=False)
    rows = np.array(piv[:r], dtype=np.int64)
    try:
        b = scipy.linalg.solve(a[rows].T, a.T, check_finite=False).T  # a @ inv(a[rows])
    except (np.linalg.LinAlgError, ValueError):
        return rows  # a singular start: ``a`` is rank deficient, nothing to improve
    for _ in range(max_iters):
        flat = int(np.argmax(np.abs(b)))
        i, j = divmod(flat, r)
        pivot = b[i, j]
        if abs(pivot) <= tau:
            break
        # swap row rows[j] out for row i; rank-one update of a @ inv(a[rows])
        col = b[:, j].copy()
        row = b[i].copy()
        row[j] -= 1.0
        b -= np.outer(col, row / pivot)
        rows[j] = i
    return rows


def rect_maxvol(a: np.ndarray, count: int, tau: float = 1.0) -> np.ndarray:
    """Indices of at most ``count`` rows (``r <= count <= N``) of the ``N x r`` matrix ``a``: the :func:`maxvol`
    rows, then greedily the row of largest ``||a[i] pinv(a[rows])||^2`` while it exceeds ``tau`` (below it every
    row is already interpolated with coefficients of norm at most ``sqrt(tau)``, and the search stops)."""
    n, r = a.shape
    rows = list(maxvol(a))
    count = min(count, n)
    if count <= r or r == 0:
        return np.array(rows[:count] if r else np.arange(count), dtype=np.int64)
    # w = a (a_I^H a_I)^{-1}; lev[i] = a[i] (a_I^H a_I)^{-1} a[i]^H = ||a[i] pinv(a_I)||^2
    import scipy.linalg

    gram = a[rows].conj().T @ a[rows]
    try:
        w = scipy.linalg.solve(gram, a.conj().T, assume_a="her", check_finite=False).T.conj()
    except (np.linalg.LinAlgError, ValueError):
        return np.array(rows, dtype=np.int64)
    lev = np.real(np.sum(a.conj() * w, axis=1))
    chosen = np.zeros(n, dtype=bool)
    chosen[rows] = True
    while len(rows) < count:
        lev_free = np.where(chosen, -np.inf, lev)
        i = int(np.argmax(lev_free))
        if lev_free[i] <= tau:
            break
        c = w @ a[i].conj()  # a_j (a_I^H a_I)^{-1} a_i^H for every j
        w -= np.outer(c, w[i]) / (1.0 + lev[i])
        lev -= np.abs(c) ** 2 / (1.0 + lev[i])
        rows.append(i)
        chosen[i] = True
    return np.array(rows, dtype=np.int64)
