"""Canonical forms of a chain of three-leg cores, by QR sweeps; Schmidt values.

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

from typing import Any, Sequence

from . import _linalg as linalg
from ._backend import binary_exponent, namespace, times_power_of_two

__all__ = ["left_step", "right_step", "orthonormalize", "normalized", "schmidt_values"]


def left_step(xp: Any, cores: list[Any], k: int) -> Any:
    """Make core ``k`` left-orthonormal by QR; push R into core ``k+1``; return R."""
    left, phys, right = cores[k].shape
    q, r = linalg.qr(xp.reshape(cores[k], (left * phys, right)))
    cores[k] = xp.reshape(q, (left, phys, q.shape[1]))
    nxt = cores[k + 1]
    nl, np_, nr = nxt.shape
    cores[k + 1] = xp.reshape(r @ xp.reshape(nxt, (nl, np_ * nr)), (r.shape[0], np_, nr))
    return r


def right_step(xp: Any, cores: list[Any], k: int) -> Any:
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
        left_step(xp, out, k)
    for k in range(stop, center, -1):
        right_step(xp, out, k)
    return out


def unit_cores(cores: Sequence[Any]) -> tuple[list[Any], int]:
    """Every core divided by the power of two of its largest entry, and the sum of those powers: the chain is
    ``2**e`` times the returned one, whose cores are all at unit scale (exact: powers of two)."""
    out, total = [], 0
    for core in cores:
        e = binary_exponent(core)
        out.append(core * (2.0 ** -e) if e else core)
        total += e
    return out, total


def spread_exponent(cores: Sequence[Any], e: int) -> list[Any]:
    """``2**e`` times the chain, the power spread evenly over its cores (so that none leaves float range where
    the chain's norm, or its n-th root per core, is in range)."""
    n = len(cores)
    if not e or not n:
        return list(cores)
    share, extra = divmod(e, n)
    return [times_power_of_two(c, share + (1 if k < extra else 0)) for k, c in enumerate(cores)]


def normalized(cores: Sequence[Any], center: int, old_center: int | None = None) -> tuple[list[Any], int]:
    """``(chain, e)`` with ``chain`` in mixed canonical form with centre ``center`` and the tensor equal to
    ``2**e`` times ``chain``'s: every core is divided by a power of two of its size before it is factored,
    so neither the products of a long chain nor cores at 1e+-100 under- or overflow (exact: powers of two).

    With a known centre ``old_center`` the orthonormal cores (entries at most 1) are left as they are and
    only the cores between the two centres are factored, as in :func:`orthonormalize`.
    """
    xp = namespace(*cores)
    out = list(cores)
    n = len(out)
    total = 0

    def rescale(k: int) -> None:
        nonlocal total
        e = binary_exponent(out[k])
        if e:
            out[k] = out[k] * (2.0 ** -e)
            total += e

    start, stop = (0, n - 1) if old_center is None else (old_center, old_center)
    for k in range(start, center):
        rescale(k)
        left_step(xp, out, k)
    for k in range(stop, center, -1):
        rescale(k)
        right_step(xp, out, k)
    rescale(center)
    return out, total


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
            spectra[k - 1] = linalg.svdvals(right_step(xp, out, k))
    else:
        for k in range(n - 1):
            spectra[k] = linalg.svdvals(left_step(xp, out, k))
    return spectra
