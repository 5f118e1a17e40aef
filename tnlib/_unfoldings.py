r"""Leading Schmidt values of the unfoldings of one matrix, to the depth a budget needs, and what they cost.

Every bond of every MPO layout of an ``M x N`` matrix ``W`` is an unfolding
of ``W``: for the prefix pair ``(p, q)`` (the product of the row and of the
column factors of the cores left of the bond) the ``pq x (MN / pq)`` matrix
whose rows are the leading ``p`` row and ``q`` column digits. All unfoldings
have the Frobenius norm of ``W``, so the discarded weight at rank ``r`` is
``||W||^2`` minus the energy of the leading ``r`` Schmidt values, and a layout
search at a parameter budget needs only those leading values, never a full
spectrum (a budget of ``P`` parameters cannot give any bond more than about
``P / (pq + MN / pq)``).

:class:`Unfoldings` computes them to the depth asked:

* the whole spectrum when the short side is small (at most ``_WHOLE``) or the
  depth is a sizeable part of it (``svdvals``, or ``eigvalsh`` of the small
  Gram matrix for long or elongated unfoldings);
* otherwise the leading ``depth`` values by randomized range finding
  (Halko, Martinsson and Tropp 2011): a Gaussian sketch of ``depth + 8``
  columns (``depth + 4`` for a first look without power iterations),
  ``power`` power iterations, and the singular values of
  ``Q^H B``. The energy ``Q`` captures is a lower bound on the energy of the
  leading values, so every tail read from a sketch is an upper bound on the
  true tail at that rank (up to rounding).

:class:`Partial` reads tails at any rank from the computed values: exact (or
an upper bound, for a sketch) at ranks it computed; beyond them the valid
bounds ``t_c - (r - c) s_c^2 <= t_r <= t_c (N - r) / (N - c)`` (the values are
sorted) and, between them, an estimate that continues the geometric decay
of the second half of the computed values. Estimates only rank the layouts;
the search measures the true error of every layout it fits.

Costs are counted in floating-point operations of a simple model (matrix
products ``2 m n k``, a copy of the unfolding as ``m n``, dense spectra
``2 k m n + 10 k^3``), so a search's work, and therefore its result, never
depend on the machine's load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ._backend import namespace, to_host
from ._linalg import adjoint, gaussian, qr, svdvals

__all__ = ["Partial", "Unfoldings", "dense_cost", "sketch_cost", "factor_cost"]

_WHOLE = 48  # unfoldings with a short side at most this long get their whole spectrum
_GRAM_FROM = 256  # whole spectra of unfoldings with both sides at least this long come from a Gram matrix
_GRAM_ASPECT = 4  # as do those at least this many times as long as short (LAPACK's SVD of a 4 x 262144 costs 15x)
_OVERSAMPLE = 8
_FIRST_OVERSAMPLE = 4  # a first look (no power iteration) only ranks layouts


def dense_cost(short: int, size: int) -> float:
    """Flops of the whole spectrum of an unfolding with ``size`` entries and the given short side."""
    return 2.0 * short * size + 10.0 * short**3


def sketch_cost(size: int, short: int, width: int, power: int) -> float:
    """Flops of a width-``width`` sketch with ``power`` power iterations (copy, products, QRs)."""
    return size + (2 + 2 * power) * 2.0 * size * width + (1 + power) * 4.0 * short * width**2


def factor_cost(rows: int, cols: int, rank: int) -> float:
    """Flops of tnlib's truncated factorization of a ``rows x cols`` matrix at ``rank`` (``svd="auto"``):
    a randomized range finder with two power iterations and a measured residual when the rank is well
    below the short side, the dense route otherwise (the cheaper of the two models)."""
    size, short = rows * cols, min(rows, cols)
    dense = dense_cost(short, size) + 2.0 * size * min(short, rank)
    if 4 * (rank + 10) > short:
        return dense
    return min(dense, sketch_cost(size, short, rank + 10, 2) + 4.0 * size * rank)


@dataclass(frozen=True, eq=False)
class Partial:
    """The leading Schmidt values ``s`` of one unfolding (descending), its short side ``rank`` and the
    squared norm ``total``; ``whole`` when ``s`` is the whole spectrum."""

    s: np.ndarray
    rank: int
    total: float
    whole: bool

    @property
    def depth(self) -> int:
        """How many leading values are known (all of them when whole)."""
        return self.rank if self.whole else len(self.s)

    @cached_property
    def _decay(self) -> tuple[list[float], float, float]:
        """Kept energy at each computed rank, the last computed value squared, and the geometric decay
        ``rho`` of the second half of the computed values (0 when they reach zero)."""
        s2 = self.s.astype(np.float64) ** 2
        c = len(s2)
        kept = [0.0, *np.cumsum(s2).tolist()]
        half = max(c // 2, 1)
        last = float(s2[-1]) if c else 0.0
        if c and last > 0 and s2[half - 1] > 0 and c - half > 0:
            rho = min(float(last / s2[half - 1]) ** (1.0 / (c - half)), 1.0)
        else:
            rho = 0.0
        return kept, last, rho

    def tail(self, rank: int) -> tuple[float, float, float]:
        """(estimate, lower, upper) of the discarded weight at ``rank``."""
        r = min(max(int(rank), 0), self.rank)
        if r >= self.rank:
            return 0.0, 0.0, 0.0
        kept, last, rho = self._decay
        c = len(kept) - 1
        known = max(self.total - kept[min(r, c)], 0.0)  # at r <= c the tail at r; beyond it, the tail at c
        if self.whole or c == 0 or c >= self.rank or r <= c:
            return known, known, known
        extra = r - c
        upper = known * (self.rank - r) / max(self.rank - c, 1)
        lower = max(known - extra * last, 0.0)
        drop = extra * last if rho >= 1.0 - 1e-12 else last * rho * (1.0 - rho**extra) / (1.0 - rho)
        return min(max(known - drop, lower), upper), lower, upper

    def tails(self, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`tail` at each rank in ``ranks`` (an int array), as three arrays."""
        rows = np.array([self.tail(r) for r in np.asarray(ranks).ravel()], dtype=np.float64).reshape(-1, 3)
        return rows[:, 0], rows[:, 1], rows[:, 2]


class Unfoldings:
    """Leading Schmidt values of the unfoldings of the matrix ``a``, cached per prefix pair, and the flops
    spent computing them (``work``)."""

    def __init__(self, a: Any, total: float):
        self.a = a
        self.m, self.n = (int(d) for d in a.shape)
        self.total = total
        self.cache: dict[tuple[int, int], Partial] = {}
        self.work = 0.0

    def short(self, p: int, q: int) -> int:
        """The short side of the unfolding of ``(p, q)``."""
        return min(p * q, (self.m * self.n) // (p * q))

    def _known(self, p: int, q: int, depth: int) -> Partial | None:
        """The cached values of the pair when they reach ``depth`` (or the whole spectrum), else ``None``."""
        known = self.cache.get((p, q))
        return known if known is not None and known.depth >= min(depth, known.rank) else None

    def _whole(self, p: int, q: int, depth: int) -> bool:
        short = self.short(p, q)
        return short <= _WHOLE or 4 * (depth + _OVERSAMPLE) > short

    def cost(self, p: int, q: int, depth: int, power: int = 1) -> float:
        """Flops :meth:`get` would spend to know ``depth`` leading values of the pair (0 when known)."""
        if self._known(p, q, depth) is not None:
            return 0.0
        size, short = self.m * self.n, self.short(p, q)
        if self._whole(p, q, depth):
            return size + dense_cost(short, size)
        return sketch_cost(size, short, depth + _oversample(power), power)

    def get(self, p: int, q: int, depth: int, power: int = 1) -> Partial:
        """At least the leading ``min(depth, short side)`` Schmidt values of the unfolding of ``(p, q)``."""
        known = self._known(p, q, depth)
        if known is not None:
            return known
        self.work += self.cost(p, q, depth, power)
        u = self._unfolding(p, q)
        short = min(u.shape)
        if self._whole(p, q, depth):
            s = _whole_spectrum(u)
            result = Partial(s, short, self.total, True)
        else:
            result = Partial(_leading(u, depth, power), short, self.total, False)
        self.cache[(p, q)] = result
        return result

    def _unfolding(self, p: int, q: int) -> Any:
        xp = namespace(self.a)
        t = xp.reshape(self.a, (p, self.m // p, q, self.n // q))
        u = xp.reshape(xp.permute_dims(t, (0, 2, 1, 3)), (p * q, -1))
        return u if u.shape[0] <= u.shape[1] else adjoint(u)


def _whole_spectrum(u: Any) -> np.ndarray:
    """Every singular value of the wide matrix ``u``: ``svdvals``, or the Gram's eigenvalues for long ones
    (accurate to ``eps * s_max^2``, enough to rank layouts: the fits measure true errors)."""
    xp = namespace(u)
    if u.shape[0] < _GRAM_FROM and u.shape[1] < _GRAM_ASPECT * u.shape[0]:
        return np.asarray(to_host(svdvals(u)), dtype=np.float64)
    lam = np.asarray(to_host(xp.real(xp.linalg.eigvalsh(u @ adjoint(u)))), dtype=np.float64)[::-1]
    return np.sqrt(np.clip(lam, 0.0, None))


def _oversample(power: int) -> int:
    return _FIRST_OVERSAMPLE if power == 0 else _OVERSAMPLE


def _leading(u: Any, depth: int, power: int) -> np.ndarray:
    """The leading ``depth`` singular values of the wide matrix ``u`` by a randomized range finder."""
    width = depth + _oversample(power)
    q = qr(u @ gaussian(u, (u.shape[1], width), seed=0))[0]
    for _ in range(power):
        q = qr(u @ (adjoint(u) @ q))[0]
    s = _whole_spectrum(adjoint(q) @ u)  # a short, wide matrix: from its Gram
    return s[: max(depth, 1)]


def log_balance(p: int, q: int, m: int, n: int) -> float:
    """How far the unfolding of ``(p, q)`` is from square (0 when square), on a log scale."""
    return abs(math.log(p * q) - 0.5 * math.log(m * n))
