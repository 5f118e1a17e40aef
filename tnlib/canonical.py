"""Canonical forms and sweeps over a chain of three-leg cores.

This module owns the leg convention of the whole library. A chain is a list
of *site cores* of shape ``(left, phys, right)``; the boundary bonds have size
1, and bond ``k`` (``0 <= k <= n-2``) joins core ``k`` and core ``k+1``.
An MPS core is a site core. An MPO core ``(left, out, in, right)`` is viewed
as the site core ``(left, out * in, right)``, so every algorithm here serves
both.

A core is *left-orthonormal* when its ``(left * phys, right)`` reshape has
orthonormal columns, *right-orthonormal* when its ``(left, phys * right)``
reshape has orthonormal rows. A chain is in *mixed canonical form with centre
c* when the cores left of ``c`` are left-orthonormal and those right of it
right-orthonormal; then the singular values of the centre core's
``(left * phys, right)`` reshape are the Schmidt values of bond ``c``
(Schollwoeck, Ann. Phys. 326, 2011, sec. 4.4).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from . import linalg
from ._backend import namespace, prod
from .truncation import Truncation, svd_truncate

__all__ = [
    "orthonormalize",
    "svd_sweep",
    "schmidt_values",
    "contract_chain",
    "renyi_entropy",
]


def _left_step(xp: Any, cores: list[Any], k: int) -> Any:
    """Make core ``k`` left-orthonormal by QR; push R into core ``k+1``; return R."""
    left, phys, right = cores[k].shape
    q, r = linalg.qr(xp.reshape(cores[k], (left * phys, right)))
    cores[k] = xp.reshape(q, (left, phys, q.shape[1]))
    nxt = cores[k + 1]
    nl, np_, nr = nxt.shape
    cores[k + 1] = xp.reshape(r @ xp.reshape(nxt, (nl, np_ * nr)), (r.shape[0], np_, nr))
    return r


def _right_step(xp: Any, cores: list[Any], k: int) -> Any:
    """Make core ``k`` right-orthonormal by LQ (QR of the adjoint); push L into core ``k-1``; return L."""
    left, phys, right = cores[k].shape
    q, r = linalg.qr(linalg.adjoint(xp.reshape(cores[k], (left, phys * right))))
    chi = q.shape[1]
    cores[k] = xp.reshape(linalg.adjoint(q), (chi, phys, right))
    prev = cores[k - 1]
    pl, pp, pr = prev.shape
    cores[k - 1] = xp.reshape(xp.reshape(prev, (pl * pp, pr)) @ linalg.adjoint(r), (pl, pp, chi))
    return linalg.adjoint(r)


def orthonormalize(cores: Sequence[Any], center: int, old_center: int | None = None) -> list[Any]:
    """Mixed canonical form with centre ``center`` by QR sweeps.

    When the chain is already canonical at ``old_center``, only the cores
    between the two centres are touched (a movable orthogonality centre).
    Bond dimensions may shrink to the local ranks ``min(left*phys, right)``.
    """
    xp = namespace(*cores)
    out = list(cores)
    n = len(out)
    start, stop = (0, n - 1) if old_center is None else (old_center, old_center)
    for k in range(start, center):
        _left_step(xp, out, k)
    for k in range(stop, center, -1):
        _right_step(xp, out, k)
    return out


def svd_sweep(
    cores: Sequence[Any],
    direction: int,
    truncation_of_bond: Callable[[int], Truncation | None],
    method: str,
) -> tuple[list[Any], list[Any], list[int], list[int], list[float]]:
    """One SVD sweep over a canonical chain, truncating bond by bond.

    ``direction=+1`` needs the centre at core 0 and leaves it at ``n-1``;
    ``direction=-1`` the reverse. Because the sweep runs from a canonical
    form, the singular values at every step are the Schmidt values of the
    chain truncated so far, and the discarded weights add up to the squared
    error exactly.

    Returns
    -------
    cores, spectra, kept, full, discarded
        New cores; kept singular values, kept and full dimensions, and
        discarded weights, each indexed by bond ``0 .. n-2``.
    """
    xp = namespace(*cores)
    out = list(cores)
    n = len(out)
    nb = n - 1
    spectra: list[Any] = [None] * nb
    kept, full, discarded = [0] * nb, [0] * nb, [0.0] * nb
    sites = range(nb) if direction > 0 else range(n - 1, 0, -1)
    for k in sites:
        bond = k if direction > 0 else k - 1
        left, phys, right = out[k].shape
        if direction > 0:
            mat = xp.reshape(out[k], (left * phys, right))
            res, full[bond] = svd_truncate(mat, truncation_of_bond(bond), method, side="left")
            chi = res.S.shape[0]
            out[k] = xp.reshape(res.U, (left, phys, chi))
            nxt = out[k + 1]
            nl, np_, nr = nxt.shape
            carry = linalg.adjoint(res.U) @ mat  # = diag(S) Vh
            out[k + 1] = xp.reshape(carry @ xp.reshape(nxt, (nl, np_ * nr)), (chi, np_, nr))
        else:
            mat = xp.reshape(out[k], (left, phys * right))
            res, full[bond] = svd_truncate(mat, truncation_of_bond(bond), method, side="right")
            chi = res.S.shape[0]
            out[k] = xp.reshape(res.Vh, (chi, phys, right))
            prev = out[k - 1]
            pl, pp, pr = prev.shape
            carry = mat @ linalg.adjoint(res.Vh)  # = U diag(S)
            out[k - 1] = xp.reshape(xp.reshape(prev, (pl * pp, pr)) @ carry, (pl, pp, chi))
        spectra[bond], kept[bond], discarded[bond] = res.S, chi, res.discarded
    return out, spectra, kept, full, discarded


def schmidt_values(cores: Sequence[Any], center: int | None) -> list[Any]:
    """Schmidt values of every bond: a QR sweep to one end, then one back.

    On the way back, the LQ (or QR) step that moves the centre across bond
    ``k`` leaves the bond in a small square factor between two isometries:
    its singular values are the Schmidt values. One QR per site and one small
    ``svdvals`` per bond; no SVD of a core.
    """
    xp = namespace(*cores)
    n = len(cores)
    if n == 1:
        return []
    start = n - 1 if center is None or center >= n // 2 else 0
    out = orthonormalize(cores, start, center)
    spectra: list[Any] = [None] * (n - 1)
    if start == n - 1:
        for k in range(n - 1, 0, -1):
            spectra[k - 1] = linalg.svdvals(_right_step(xp, out, k))
    else:
        for k in range(n - 1):
            spectra[k] = linalg.svdvals(_left_step(xp, out, k))
    return spectra


def contract_chain(cores: Sequence[Any]) -> Any:
    """Contract a chain into a ``(prod phys,)``-long vector, left to right."""
    xp = namespace(*cores)
    acc = xp.reshape(cores[0], (cores[0].shape[1], cores[0].shape[2]))
    for core in cores[1:]:
        left, phys, right = core.shape
        acc = xp.reshape(acc @ xp.reshape(core, (left, phys * right)), (-1, right))
    return xp.reshape(acc, (prod(c.shape[1] for c in cores),))


def renyi_entropy(s: Any, alpha: float = 1.0) -> Any:
    """Entropy of the distribution ``p = s**2 / sum(s**2)`` of singular values ``s``.

    Von Neumann ``-sum p ln p`` for ``alpha == 1``, Renyi
    ``ln(sum p**alpha) / (1 - alpha)`` otherwise, ``-ln max p`` for
    ``alpha == inf``; natural logarithms; a 0-d array in ``s``'s namespace.
    """
    xp = namespace(s)
    s2 = s * s
    total = xp.sum(s2)
    p = s2 / xp.where(total > 0, total, 1.0)
    if alpha == 1.0:
        safe = xp.where(p > 0, p, 1.0)
        value = -xp.sum(p * xp.log(safe))
    elif alpha == float("inf"):
        value = -xp.log(xp.where(total > 0, xp.max(p), 1.0))
    else:
        value = xp.log(xp.where(total > 0, xp.sum(p**alpha), 1.0)) / (1.0 - alpha)
    return xp.maximum(value, xp.zeros_like(value))
