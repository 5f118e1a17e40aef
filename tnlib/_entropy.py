"""Entropies of a spectrum of singular values (natural logarithms)."""

from __future__ import annotations

from typing import Any

import array_api_compat

from ._backend import namespace

__all__ = ["renyi_entropy"]


def renyi_entropy(s: Any, alpha: float = 1.0) -> Any:
    """Entropy of the distribution ``p = s**2 / sum(s**2)`` of singular values ``s``.

    Von Neumann ``-sum p ln p`` for ``alpha == 1``, Renyi
    ``ln(sum p**alpha) / (1 - alpha)`` otherwise, ``-ln max p`` for
    ``alpha == inf``; natural logarithms; a 0-d array in ``s``'s namespace.
    A 2-D ``s`` holds one spectrum per row (zero-padded: zeros carry no
    weight) and gives one entropy per row.
    """
    xp = namespace(s)
    if not s.shape[-1]:
        return xp.zeros(s.shape[:-1], dtype=s.dtype, device=array_api_compat.device(s))
    peak = xp.max(s, axis=-1, keepdims=True)
    s = s / xp.where(peak > 0, peak, xp.ones_like(peak))  # p does not depend on the scale; s^2 may not fit
    s2 = s * s
    total = xp.sum(s2, axis=-1, keepdims=True)
    p = s2 / xp.where(total > 0, total, 1.0)
    some = total[..., 0] > 0
    if abs(alpha - 1.0) < 1e-8:
        # the Renyi entropy is von Neumann's up to O(alpha - 1); the general form would divide
        # rounding noise by alpha - 1
        safe = xp.where(p > 0, p, 1.0)
        value = -xp.sum(p * xp.log(safe), axis=-1)
    elif alpha == float("inf"):
        value = -xp.log(xp.where(some, xp.max(p, axis=-1), 1.0))
    else:
        # factor out the largest weight so that p**alpha neither underflows (alpha large)
        # nor overflows: log sum p^a = a log p_max + log sum (p / p_max)^a
        p_max = xp.max(p, axis=-1, keepdims=True)
        ratio = p / xp.where(p_max > 0, p_max, 1.0)
        positive = p_max[..., 0] > 0
        log_sum = alpha * xp.log(xp.where(positive, p_max[..., 0], 1.0)) + xp.log(
            xp.where(positive, xp.sum(ratio**alpha, axis=-1), 1.0)
        )
        value = xp.where(some, log_sum, 0.0) / (1.0 - alpha)
    return xp.maximum(value, xp.zeros_like(value))
