"""Randomized rounding of a chain (``compress(algorithm="randomized")``): no orthogonalization sweep.

Rounding a chain of large bonds (a sum, a Hadamard product, an MPO applied to
an MPS) to bonds ``chi`` usually orthogonalizes it first (a QR sweep) and then
truncates by SVDs. Randomize-then-orthogonalize (Al Daas, Ballard, Cazeaux et
al., SIAM J. Sci. Comput. 45, 2023) instead sketches every unfolding with a
random chain of bonds ``l = chi + p``:

1. right to left, the environments of the chain with the random chain
   (``W_k``, bonds ``R x l``) and with itself (``G_k``, ``R x R``: its Gram
   matrices across every bond);
2. left to right, for every site: ``Z = X_k W_{k+1}`` (the sketched unfolding),
   ``Q = orth(Z)``, ``C = Q^H X_k``; the eigenvectors of ``C G_{k+1} C^H``
   (the Gram matrix of ``Q^H`` times the whole unfolding, formed from the
   environment, never the tensor) give the kept ``chi`` directions, as a
   randomized SVD does; the core is ``Q V_chi``, and ``V_chi^H C`` moves into
   the next core.

Every core left is left-orthonormal, so the result ``Y`` is an orthogonal
projection of ``X``: ``||X - Y||^2 = ||X||^2 - ||Y||^2`` exactly, with
``||X||^2`` read from ``G_1`` and ``||Y||^2`` from the last core. That is the
certificate: deterministic up to the rounding of the two squared norms
(stated as a slack of ``32 n eps ||X||^2`` for ``n`` sites, so errors below
about ``sqrt(n eps)`` relative are reported as at most that). Only
``max_bond`` is honoured; criteria read from exact spectra are refused (use
``algorithm="svd"``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import _linalg as linalg
from ._backend import binary_exponent, namespace, rounding_unit, scalar
from .truncation import SketchCertificate

__all__ = ["randomized_round"]

_OVERSAMPLE = 8


def _unit(x: Any) -> tuple[Any, int]:
    """``(x * 2**-e, e)`` with ``e`` the power of two of ``x``'s Frobenius norm (exact; 0 when the norm is
    zero or beyond floating range, where the largest entry's is used)."""
    with np.errstate(over="ignore", under="ignore"):  # a norm out of range falls back to the largest entry
        norm = scalar(namespace(x).linalg.vector_norm(x))
    e = math.frexp(norm)[1] if 2.0**-900 < norm < 2.0**900 else binary_exponent(x)
    return (x * (2.0 ** -e) if e else x), e


def _environments(sites: Sequence[Any], ell: Sequence[int], seed: int) -> tuple[list[Any], list[Any], list[int]]:
    """``W[k]`` (``R_{k-1} x l_{k-1}``) and ``G[k]`` (``R_{k-1} x R_{k-1}``) of sites ``k .. n-1``, each
    brought to unit scale (``G[k]`` times ``2**E[k]`` is the true Gram; ``W`` only spans a subspace);
    index ``n`` holds the trivial ``1 x 1`` environments."""
    xp = namespace(sites[0])
    n = len(sites)
    like = sites[0]
    one = xp.ones((1, 1), dtype=like.dtype, device=getattr(like, "device", None))
    w: list[Any] = [None] * (n + 1)
    g: list[Any] = [None] * (n + 1)
    e = [0] * (n + 1)
    w[n], g[n] = one, one
    shapes = [(ell[k - 1], int(sites[k].shape[1]) * (ell[k] if k < n - 1 else 1)) for k in range(1, n)]
    sizes = [lo * hi for lo, hi in shapes]
    draws = xp.reshape(linalg.gaussian(like, (1, max(sum(sizes), 1)), seed), (-1,))  # one draw for all cores
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    for k in range(n - 1, 0, -1):
        core = sites[k]
        a, d, b = core.shape
        hi = ell[k] if k < n - 1 else 1
        rand = xp.reshape(draws[offsets[k - 1] : offsets[k]], shapes[k - 1])
        flat = xp.reshape(core, (a * d, b))
        w[k] = _unit(xp.reshape(flat @ w[k + 1], (a, d * hi)) @ linalg.adjoint(rand))[0]
        g[k], shift = _unit(xp.reshape(flat @ g[k + 1], (a, d * b)) @ linalg.adjoint(xp.reshape(core, (a, d * b))))
        e[k] = e[k + 1] + shift
    return w, g, e


def _absorb(carry: Any, core: Any) -> Any:
    """``carry`` (``r x a``) times the core ``(a, d, b)``: a ``(r, d, b)`` core."""
    xp = namespace(core)
    a, d, b = core.shape
    return xp.reshape(carry @ xp.reshape(core, (a, d * b)), (int(carry.shape[0]), d, b))


def _kept(lam: Any, cap: int) -> int:
    xp = namespace(lam)
    positive = int(scalar(xp.sum(xp.astype(lam > 0, xp.int64))))
    return max(1, min(cap, positive))


def _weight(x: Any) -> float:
    xp = namespace(x)
    return scalar(xp.real(xp.sum(x * xp.conj(x))))


def randomized_round(
    sites: Sequence[Any], caps: Sequence[int], seed: int = 0
) -> tuple[list[Any], int, tuple[int, ...], tuple[float, ...], float, SketchCertificate]:
    """Round the chain ``sites`` (``(left, phys, right)`` cores) to the bond caps ``caps``.

    Works at unit scale: returns left-canonical cores whose tensor times ``2**exponent`` is the
    result, the exponent, the full bond dimensions before rounding, the discarded weight of every bond
    relative to ``||X||_F^2``, ``log2 ||X||_F`` and the certificate.
    """
    xp = namespace(sites[0])
    n = len(sites)
    units = [_unit(c) for c in sites]
    sites = [u[0] for u in units]
    exponent = sum(u[1] for u in units)
    ell = [c + max(_OVERSAMPLE, c // 4) for c in caps]
    w, g, e = _environments(sites, ell, seed)
    total, c_exp = 0.0, 0  # ||X||^2 at the scale of G[1]; the carry is 2**c_exp times what it holds
    carry = None
    out: list[Any] = []
    relative, full = [], []
    for k in range(n - 1):
        core = sites[k] if carry is None else _absorb(carry, sites[k])
        r, d, b = core.shape
        x = xp.reshape(core, (r * d, b))
        weight = _weight_in(x, g[k + 1])  # trace(X G X^H): this unfolding's weight (scale 2^(2c + E[k+1]))
        if k == 0:
            total = weight
        if r * d <= ell[k]:  # few rows: the Gram matrix of the whole unfolding, exactly
            q, c = None, x
        else:
            q = linalg.qr(x @ w[k + 1])[0]
            c = linalg.adjoint(q) @ x
        lam, vec = linalg.descending_eigh((c @ g[k + 1]) @ linalg.adjoint(c))
        chi = _kept(lam, caps[k])
        v = vec[:, :chi]
        out.append(xp.reshape(v if q is None else q @ v, (r, d, chi)))
        dropped = max(weight - scalar(xp.sum(lam[:chi])), 0.0)
        relative.append(_ratio(dropped, total, 2 * c_exp + e[k + 1] - e[1]))
        carry, shift = _unit(linalg.adjoint(v) @ c)
        c_exp += shift
        full.append(min(r * d, b))
    last = sites[-1] if carry is None else _absorb(carry, sites[-1])
    out.append(last)
    if n == 1:
        total = _weight(last)
    kept = _ratio(_weight(last), total, 2 * c_exp - e[1] if n > 1 else 0)
    eps = rounding_unit(last)
    err2 = max(1.0 - kept, 0.0) if total > 0 else 0.0  # a zero chain rounds to itself
    certificate = SketchCertificate(
        error_estimate=math.sqrt(err2),
        error_bound=math.sqrt(err2 + 32.0 * n * eps),
        probability=1.0,
        probes=0,
        power_iterations=(0,) * (n - 1),
        sketched=tuple(int(out[k].shape[0]) * int(out[k].shape[1]) > ell[k] for k in range(n - 1)),
    )
    log2_norm = 0.5 * (math.log2(total) + (e[1] if n > 1 else 0)) + exponent if total > 0 else -math.inf
    return out, exponent + c_exp, tuple(full), tuple(relative), log2_norm, certificate


def _weight_in(x: Any, g: Any) -> float:
    """``trace(X G X^H)``."""
    xp = namespace(x)
    return scalar(xp.real(xp.sum((x @ g) * xp.conj(x))))


def _ratio(value: float, total: float, shift: int) -> float:
    """``value * 2**shift / total`` without leaving floating range in between (0 for a zero total)."""
    if total <= 0.0:
        return 0.0
    return math.ldexp(value / total, shift) if shift > -1100 else 0.0
