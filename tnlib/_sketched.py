"""Randomized TT-SVD of a whole chain: sketched unfoldings, two passes of the data, and a certificate.

The route of ``svd="randomized"`` for a tensor (or an MPO's interleaved
matrix) truncated with a ``max_bond``, and of ``svd="auto"`` when its result
is certified as good as the exact route's per bond. Each unfolding ``U``
(``m x n``, the rest of the sweep) with cap ``chi`` is handled in two passes
(Halko, Martinsson and Tropp, SIAM Rev. 53, 2011; the sequential TT variant of
Huber, Schneider and Wolf, 2017):

1. **sketch**: ``Y = U Omega`` with ``k = chi + p`` columns, ``Omega`` a
   Khatri-Rao product of two small Gaussian matrices over a split
   ``n = n1 n2`` of the columns (drawing ``n k`` Gaussian numbers would cost
   more than the product); ``Q = orth(Y)``;
2. **projection**: ``[Q, H']^H U`` in one product, ``H`` an independent
   Gaussian test matrix of ``t`` columns and ``H' = (I - Q Q^H) H``. The
   first ``k`` rows are ``B = Q^H U``, the last are ``h_i^H E`` for the
   residual ``E = U - Q Q^H U``: the *test sketch*.

The kept core is ``Q V_chi`` (``V`` the eigenvectors of ``B B^H``) and the
next unfolding ``V_chi^H B``; every core is left-orthonormal, so the squared
error of the chain is the sum of the discarded weights of its steps, each
``||E||_F^2`` plus the rows of ``V^H B`` that were dropped (measured
directly). ``||E||_F^2`` has two estimates: ``||U||^2 - ||B||^2``
(Pythagoras; exact but for cancellation, resolved above about ``sqrt(eps)``
relative) and the test sketch's ``sum_i ||h_i^H E||^2 / t``, whose
upper confidence bound is rigorous: for any fixed ``E``,
``P(||E||_F^2 > a * sum_i ||h_i^H E||^2 / t) <= (c e^(1-c))^(t/2)`` with
``c = 1/a`` (a Chernoff bound; ``prod_j (1 + 2 s sigma_j^2) >= 1 + 2 s sum_j
sigma_j^2`` reduces any spectrum of ``E`` to the worst case, rank one). The
spectral norm is bounded by ``rho = a sqrt(2/pi) max_i ||h_i^H E||`` with
failure probability ``a^-t`` (Halko et al., Lemma 4.1), and for
``U^H U = B^H B + E^H E`` Weyl's inequality gives ``sigma_i(U)^2 <= s_i(B)^2 +
rho^2`` (bounds that decide whether a ``cutoff`` is met) and Ky Fan's
``sum_{i <= chi} sigma_i(U)^2 <= sum_{i <= chi} s_i(B)^2 + min(chi rho^2,
||E||_F^2)``: a lower bound on the optimal discarded weight.

A step whose result cannot be certified is tried again after a step of
subspace iteration (two at most: each costs two more passes). When a
criterion of the :class:`~tnlib.Truncation` (``cutoff``, ``max_discarded``)
cannot be shown, or under ``"auto"`` when a bond is not provably within 5 %
of the optimal discarded weight of its unfolding (the exact route's own
guarantee), the whole route is abandoned (``None``) and the caller runs the
exact one. Criteria that need every singular value (``max_entropy_loss``,
``max_relative_error``, ``max_params``, ``degeneracy_tol``) never take this
route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import array_api_compat
import numpy as np

from . import _linalg as linalg
from ._backend import namespace, rounding_unit, scalar, sum_squares
from .svd import truncate_left
from .svd._certified import gram_factor
from .svd._truncate import LeftFactor
from .truncation import SketchCertificate, Truncation, select_rank

__all__ = ["applies", "sketch_chain", "frobenius_confidence", "oversampling", "PROBES", "FAILURE"]

PROBES = 16
"""Columns of the test sketch of every sketched bond."""
FAILURE = 1e-3
"""Probability that the certificate of a whole chain fails (shared among its sketched bonds)."""
_OVERSAMPLE = 8
_POWER_ITERATIONS = 2
_QUASI_OPTIMAL = 1.05
_ROUNDING = 1e-13
_DENSE_SKETCH = 2**19  # entries of a test matrix up to which it is drawn whole


def oversampling(cap: int) -> int:
    """Columns drawn beyond the cap: ``max(8, cap // 4)``."""
    return max(_OVERSAMPLE, cap // 4)


def applies(truncation: Truncation | None) -> bool:
    """Whether the sketched route can honour ``truncation``: a ``max_bond``, no criterion that needs every
    singular value of a bond or of the chain."""
    return (
        truncation is not None
        and truncation.max_bond is not None
        and not truncation.needs_full_spectrum
        and not truncation.chain_criteria
        and truncation.degeneracy_tol is None
    )


def frobenius_confidence(probes: int, failure: float) -> float:
    """The factor ``a`` with ``P(||E||_F^2 > a * mean_i ||h_i^H E||^2) <= failure`` for ``probes`` Gaussian
    vectors ``h_i``: ``1 / c`` where ``c e^(1 - c) = failure^(2 / probes)``, ``c`` in ``(0, 1)``."""
    target = failure ** (2.0 / probes)
    lo, hi = 0.0, 1.0  # c e^(1-c) increases from 0 to 1 on [0, 1]
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mid * math.exp(1.0 - mid) < target:
            lo = mid
        else:
            hi = mid
    return 1.0 / lo if lo > 0.0 else math.inf


@dataclass(frozen=True)
class _Step:
    core: Any  # (m, chi) orthonormal columns
    rest: Any  # (chi, n)
    spectrum: Any  # the kept values s_i(B)
    estimate: float  # discarded weight, point estimate
    upper: float  # discarded weight, upper bound (with the stated probability)
    power: int


def _split(n: int) -> int:
    """The largest divisor of ``n`` at most ``sqrt(n)``."""
    for d in range(math.isqrt(n), 0, -1):
        if n % d == 0:
            return d
    return 1  # pragma: no cover - 1 divides every n


def _sketch(u: Any, k: int, seed: int) -> Any:
    """``u @ Omega`` for a ``(n, k)`` test matrix: Gaussian when small, else the Khatri-Rao product of two
    Gaussian factors over a split ``n = n1 n2`` (column ``j`` is ``alpha_j (x) beta_j``) when ``n2`` is at
    least ``4 k``."""
    xp = namespace(u)
    m, n = u.shape
    n1 = _split(n)
    n2 = n // n1
    if n * k <= _DENSE_SKETCH or n2 < 4 * k:  # drawing Omega is cheap, or the Khatri-Rao product's
        return u @ linalg.gaussian(u, (n, k), seed)  # intermediate (m, n1, k) would outgrow u
    alpha = linalg.gaussian(u, (n1, k), seed)
    beta = linalg.gaussian(u, (n2, k), seed + 1)
    z = xp.reshape(xp.reshape(u, (m * n1, n2)) @ beta, (m, n1, k))
    return xp.sum(z * alpha[None, :, :], axis=1)


def _row_weights(x: Any) -> Any:
    """``||x[i, :]||^2`` for every row, real."""
    if isinstance(x, np.ndarray):
        return np.einsum("ij,ij->i", x, x.conj()).real
    xp = namespace(x)
    norms = xp.linalg.vector_norm(x, axis=1)
    return norms * norms


def _optimal_at_least(rows: Any, chi: int, total: float, rho: float, upper_e: float) -> float:
    """A lower bound on the optimal discarded weight of ``U`` at rank ``chi`` (Ky Fan, as in ``_step``)."""
    return total - scalar(namespace(rows).sum(rows[:chi])) - min(chi * rho * rho, upper_e)


def _cutoff_certified(s: Any, chi: int, k: int, full: int, cutoff: float, rho: float) -> bool:
    """Whether every kept value is surely at least, and every dropped one surely below, ``cutoff`` times
    the largest (``s_i(B) <= sigma_i <= sqrt(s_i(B)^2 + rho^2)``; values beyond the sketch are at most
    ``rho``); ``full``: the most values the bond can keep (its cap, or the unfolding's rank)."""
    s1 = float(s[0])
    top = math.hypot(s1, rho)
    kept_ok = float(s[chi - 1]) >= cutoff * top
    if chi >= full:
        return kept_ok
    nxt = float(s[chi]) if chi < k else 0.0
    return kept_ok and math.hypot(nxt, rho) < cutoff * s1


class _Probe:
    """The test sketch of one bond: Gaussian ``H`` (``m x t``) and the failure bounds it carries."""

    def __init__(self, u: Any, seed: int, failure: float) -> None:
        self.h = linalg.gaussian(u, (u.shape[0], PROBES), seed)
        self.factor = frobenius_confidence(PROBES, failure)
        # ||E||_2 <= a sqrt(2/pi) max_i ||h_i^H E|| but with probability a^-t (Halko et al., Lemma 4.1);
        # real probes of a complex E see Re(E E^H), whose norm is at least half of ||E||_2^2
        self.spectral = failure ** (-1.0 / PROBES) * math.sqrt(2.0 / math.pi)
        if "complex" in str(u.dtype):
            self.spectral *= math.sqrt(2.0)


def _step(u: Any, truncation: Truncation, total: float, seed: int, failure: float, optimal: bool) -> _Step | None:
    """One sketched bond of the sweep (see the module docstring); ``None`` when it cannot be certified."""
    xp = namespace(u)
    m, n = u.shape
    cap = truncation.cap
    assert cap is not None
    k = min(cap + oversampling(cap), m)
    probe = _Probe(u, seed + 7, failure)
    uh = linalg.adjoint(u)
    q = linalg.qr(_sketch(u, k, seed))[0]
    slack = _slack(u, total)
    for power in range(_POWER_ITERATIONS + 1):
        if power:
            q = linalg.qr(u @ linalg.qr(uh @ q)[0])[0]
        h = probe.h - q @ (linalg.adjoint(q) @ probe.h)
        w = linalg.adjoint(xp.concat([q, h], axis=1)) @ u
        b, test = w[:k, :], w[k:, :]
        lam, vec = linalg.descending_eigh(b @ linalg.adjoint(b))
        rot = linalg.adjoint(vec) @ b
        rows = _row_weights(rot)  # ||row i||^2, = s_i(B)^2 without eigh's rounding
        s = xp.sqrt(lam)
        probe_rows = _row_weights(test)
        pyth = total - scalar(xp.sum(rows))
        est_e = scalar(xp.sum(probe_rows)) / PROBES
        upper_e = min(max(pyth, 0.0) + slack, probe.factor * est_e)
        point_e = pyth if pyth > 100.0 * slack else est_e
        rho = probe.spectral * math.sqrt(scalar(xp.max(probe_rows)))
        chi = select_rank(s, truncation, total)
        tail = scalar(xp.sum(rows[chi:]))
        upper = upper_e + tail
        certified = True
        if truncation.max_discarded is not None:
            certified = upper <= truncation.max_discarded * total or (
                chi == truncation.cap and _optimal_at_least(rows, chi - 1, total, rho, upper_e)
                > truncation.max_discarded * total
            )  # at the cap: the exact route keeps the cap too when one value fewer surely discards too much
        if truncation.cutoff is not None and certified:
            certified = _cutoff_certified(s, chi, k, min(m, n, cap), truncation.cutoff, rho)
        # Ky Fan for U^H U = B^H B + E^H E: the chi largest sigma_i(U)^2 sum to at most those of B plus
        # min(chi ||E||_2^2, ||E||_F^2): a lower bound on the optimal discarded weight
        lower = _optimal_at_least(rows, chi, total, rho, upper_e)
        ratio = math.sqrt(upper / lower) if lower > 0.0 else None
        near = upper <= _ROUNDING**2 * total or (ratio is not None and ratio <= _QUASI_OPTIMAL)
        if certified and (near or not optimal):
            break
        if certified and optimal and ratio is None:
            return None  # no lower bound at all (a flat spectrum): subspace iteration would not give one
        if not certified and power == _POWER_ITERATIONS:
            return None
    if optimal and not near:
        return None
    kept = vec[:, :chi]
    return _Step(q @ kept, rot[:chi, :], s[:chi], point_e + tail, upper, power)


def _slack(u: Any, total: float) -> float:
    """What rounding may leave in ``||U||^2 - ||B||^2``: 64 ulps per square root of the entries summed."""
    return 64.0 * rounding_unit(u) * math.sqrt(float(u.shape[0]) * float(u.shape[1])) * total


def _sketched(m: int, n: int, cap: int) -> bool:
    """Whether a bond is worth sketching: its two narrow products (``k`` and ``k + t`` rows, at about half
    the rate of a Gram matrix's product on this kind of shape) cost less than the exact route's Gram
    matrix of ``m`` rows and projection on ``cap`` rows; at least twice as many columns as the sketch."""
    k = cap + oversampling(cap)
    return 2 * (2 * k + PROBES) <= m + cap and n >= 2 * k


def _sketchable(m: int, n: int, cap: int) -> bool:
    """Whether a bond can be sketched at all: fewer sketch and test columns than rows."""
    k = cap + oversampling(cap)
    return k + PROBES <= m and n >= 2 * k


def _gram_step(u: Any, truncation: Truncation) -> LeftFactor | None:
    """The certified Gram route of the exact sweep for a short, wide unfolding, else ``None``."""
    m, n = u.shape
    if n < 4 * m or not isinstance(u, np.ndarray):
        return None
    fast = gram_factor(u, truncation, refine=not _sketchable(m, n, truncation.cap or 0))
    return None if fast is None else LeftFactor(fast.U, fast.S[: fast.chi], fast.discarded, min(m, n))


def sketch_chain(
    tensor: Any, dims: Sequence[int], truncation: Truncation, norm: float, optimal: bool, seed: int = 0
) -> tuple[list[Any], list[Any], list[int], list[int], list[float], SketchCertificate] | None:
    """The randomized TT-SVD of ``tensor`` (``prod(dims)`` entries, Frobenius norm ``norm``, near unit scale).

    Returns site cores, kept spectra, kept and full bond dimensions, discarded weights per bond and the
    certificate; ``None`` when a bond cannot be certified (``optimal``: each sketched bond must be within
    5 % of its unfolding's optimum, as the exact route's per-bond truncation is).
    """
    xp = namespace(tensor)
    n_bonds = len(dims) - 1
    planned = []  # which bonds look worth sketching (the ranks of later ones estimated by their caps)
    r_max = 1
    for k, d in enumerate(dims[:-1]):
        cap = truncation.for_bond(k, n_bonds).cap
        assert cap is not None
        rows = r_max * d
        planned.append(_sketched(rows, math.prod(dims) // rows, cap))
        r_max = min(rows, cap, math.prod(dims) // rows)
    if not any(planned):
        return None
    failure = FAILURE / (2 * n_bonds)  # shared by every bond that may be sketched (two bounds each)
    cores, spectra, kept, full, discarded, uppers, powers, sketched = [], [], [], [], [], [], [], []
    rest, r, total = tensor, 1, norm * norm
    for k, d in enumerate(dims[:-1]):
        u = xp.reshape(rest, (r * d, -1))
        tk = truncation.for_bond(k, n_bonds)
        m, n = u.shape
        assert tk.cap is not None
        fast = None if _sketched(m, n, tk.cap) else _gram_step(u, tk)
        if fast is None and _sketchable(m, n, tk.cap):
            step = _step(u, tk, total, seed + 101 * k, failure, optimal)
            if step is None:
                return None
            core, rest, s, est, upper = step.core, step.rest, step.spectrum, step.estimate, step.upper
            powers.append(step.power)
            sketched.append(True)
        else:
            res = truncate_left(u, tk, "auto") if fast is None else fast
            core, s, est = res.U, res.S, res.discarded
            # the exact SVD's values carry absolute errors of about eps * s_max (s_max <= sqrt(total))
            upper = (math.sqrt(max(est, 0.0)) + math.sqrt(min(m, n)) * rounding_unit(u) * math.sqrt(total)) ** 2
            rest = linalg.adjoint(core) @ u
            powers.append(0)
            sketched.append(False)
        chi = int(core.shape[1])
        cores.append(xp.reshape(core, (r, d, chi)))
        spectra.append(s)
        kept.append(chi)
        full.append(min(m, n))
        discarded.append(max(est, 0.0))
        uppers.append(max(upper, 0.0))
        total = sum_squares(rest)
        r = chi
    last = xp.reshape(rest, (r, dims[-1], 1))
    if array_api_compat.is_numpy_array(last) and np.may_share_memory(last, tensor):
        last = last.copy()
    scale = norm if norm > 0 else 1.0
    certificate = SketchCertificate(
        error_estimate=math.sqrt(sum(discarded)) / scale,
        error_bound=math.sqrt(sum(uppers)) / scale,
        probability=1.0 - FAILURE,
        probes=PROBES,
        power_iterations=tuple(powers),
        sketched=tuple(sketched),
    )
    return cores + [last], spectra, kept, full, discarded, certificate
