"""Entropies of a spectrum of singular values (natural logarithms)."""

from __future__ import annotations

from typing import Any

from ._backend import namespace

__all__ = ["renyi_entropy"]


def renyi_entropy(s: Any, alpha: float = 1.0) -> Any:
    """Entropy of the distribution ``p = s**2 / sum(s**2)`` of singular values ``s``.

    Von Neumann ``-sum p ln p`` for ``alpha == 1``, Renyi
    ``ln(sum p**alpha) / (1 - alpha)`` otherwise, ``-ln max p`` for
    ``alpha == inf``; natural logarithms; a 0-d array in ``s``'s namespace.
    """
    xp = namespace(s)
    peak = xp.max(s) if s.shape[0] else None
    if peak is not None:
        s = s / xp.where(peak > 0, peak, xp.ones_like(peak))  # p does not depend on the scale; s^2 may not fit
    s2 = s * s
    total = xp.sum(s2)
    p = s2 / xp.where(total > 0, total, 1.0)
    if abs(alpha - 1.0) < 1e-8:
        # the Renyi entropy is von Neumann's up to O(alpha - 1); the general form would divide
        # rounding noise by alpha - 1
        safe = xp.where(p > 0, p, 1.0)
        value = -xp.sum(p * xp.log(safe))
    elif alpha == float("inf"):
        value = -xp.log(xp.where(total > 0, xp.max(p), 1.0))
    else:
        # factor out the largest weight so that p**alpha neither underflows (alpha large)
        # nor overflows: log sum p^a = a log p_max + log sum (p / p_max)^a
        p_max = xp.max(p)
        ratio = p / xp.where(p_max > 0, p_max, 1.0)
        positive = p_max > 0
        log_sum = alpha * xp.log(xp.where(positive, p_max, 1.0)) + xp.log(xp.where(positive, xp.sum(ratio**alpha), 1.0))
        value = xp.where(total > 0, log_sum, 0.0) / (1.0 - alpha)
    return xp.maximum(value, xp.zeros_like(value))
