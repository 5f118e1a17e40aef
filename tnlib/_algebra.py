"""Arithmetic on chains of site cores: products, sums, inner products, fitting.

All functions take and return lists of site cores ``(left, phys, right)``
(:mod:`tnlib._canonical`); the containers wrap them. Contractions go through
:func:`tnlib.contract`, so every array library works.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import array_api_compat
import numpy as np

from . import _linalg as linalg
from ._backend import namespace, scalar
from ._canonical import orthonormalize
from .contraction import contract

__all__ = ["operator_times_state", "operator_times_operator", "direct_sum", "inner", "FitResult", "fit", "site_entries",
           "hadamard", "entry_sum", "dense_dot"]


def operator_times_state(ops: Sequence[Any], states: Sequence[Any]) -> list[Any]:
    """MPO cores ``(a, out, in, b)`` applied to MPS cores ``(c, in, d)``: bonds multiply."""
    xp = namespace(*ops, *states)
    out = []
    for g, s in zip(ops, states):
        t = contract("aijb,cjd->acibd", g, s)
        out.append(xp.reshape(t, (g.shape[0] * s.shape[0], g.shape[1], g.shape[3] * s.shape[2])))
    return out


def operator_times_operator(left: Sequence[Any], right: Sequence[Any]) -> list[Any]:
    """MPO cores times MPO cores (the matrix product ``A @ B``): bonds multiply."""
    xp = namespace(*left, *right)
    out = []
    for a, b in zip(left, right):
        t = contract("aijb,cjkd->acikbd", a, b)
        out.append(
            xp.reshape(t, (a.shape[0] * b.shape[0], a.shape[1], b.shape[2], a.shape[3] * b.shape[3]))
        )
    return out


def _zeros(like: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    xp = namespace(like)
    return xp.zeros(shape, dtype=dtype, device=array_api_compat.device(like))


def direct_sum(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    """Site cores of the sum of two chains: bonds add (block-diagonal cores)."""
    xp = namespace(*a, *b)
    dtype = xp.result_type(a[0], b[0])
    a = [xp.astype(c, dtype) for c in a]
    b = [xp.astype(c, dtype) for c in b]
    n = len(a)
    if n == 1:
        return [a[0] + b[0]]
    out = [xp.concat([a[0], b[0]], axis=2)]
    for k in range(1, n - 1):
        (la, p, ra), (lb, _, rb) = a[k].shape, b[k].shape
        top = xp.concat([a[k], _zeros(a[k], (la, p, rb), dtype)], axis=2)
        bottom = xp.concat([_zeros(a[k], (lb, p, ra), dtype), b[k]], axis=2)
        out.append(xp.concat([top, bottom], axis=0))
    out.append(xp.concat([a[-1], b[-1]], axis=0))
    return out


def inner(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """``<a|b> = sum conj(a) * b`` by transfer matrices, left to right; a 0-d array."""
    xp = namespace(*a, *b)
    env = None
    for x, y in zip(a, b):
        if env is None:
            env = contract("xpz,ypw->zw", xp.conj(x), y)
        else:
            env = contract("xy,xpz,ypw->zw", env, xp.conj(x), y)
    return xp.reshape(env, ())


def _random_chain(like: Any, phys: Sequence[int], bonds: Sequence[int], seed: int) -> list[Any]:
    xp = namespace(like)
    rng = np.random.default_rng(seed)
    full = [1, *bonds, 1]
    complex_ = xp.isdtype(like.dtype, "complex floating")
    cores = []
    for k, d in enumerate(phys):
        shape = (full[k], d, full[k + 1])
        host = rng.standard_normal(shape)
        if complex_:
            host = host + 1j * rng.standard_normal(shape)
        cores.append(xp.asarray(host, dtype=like.dtype, device=array_api_compat.device(like)))
    return cores


class FitResult(NamedTuple):
    """Result of :func:`fit`."""

    cores: list[Any]
    error_squared: float
    target_norm_squared: float
    sweeps: int


def fit(
    target: Sequence[Any],
    bonds: Sequence[int],
    *,
    sweeps: int = 10,
    tol: float = 1e-10,
    initial: Sequence[Any] | None = None,
    seed: int = 0,
) -> FitResult:
    """Variational compression: the chain with bond dims ``bonds`` closest to ``target``.

    One-site alternating least squares (fitting): the approximation is kept
    in mixed canonical form, so the optimal centre core is the projection of
    the target, ``L_k * target_k * R_k``, and ``||target - fit||^2 =
    ||target||^2 - ||centre||^2`` at every step (Schollwoeck 2011, sec. 4.5.2).
    Each sweep costs ``O(n d D chi (D + chi))`` for target bond ``D`` and fit
    bond ``chi``, against ``O(n d D^3)`` for an SVD sweep.

    Returns
    -------
    FitResult
        Left-canonical fitted cores (centre ``n - 1``), the final squared
        error, the target's squared norm and the number of sweeps run.
    """
    xp = namespace(*target)
    n = len(target)
    phys = [c.shape[1] for c in target]
    norm2 = scalar(xp.real(inner(target, target)))
    phi = list(initial) if initial is not None else _random_chain(target[0], phys, bonds, seed)
    phi = orthonormalize(phi, 0, None)
    ones = xp.ones((1, 1), dtype=xp.result_type(target[0], phi[0]), device=array_api_compat.device(target[0]))
    # right environments: right[k] covers sites k..n-1; right[n] = 1
    right: list[Any] = [None] * (n + 1)
    right[n] = ones
    for k in range(n - 1, 0, -1):
        right[k] = contract("xpz,ypw,zw->xy", xp.conj(phi[k]), target[k], right[k + 1])
    left: list[Any] = [None] * (n + 1)
    left[0] = ones
    err2 = previous = float("inf")
    done = 0
    for sweep in range(sweeps):
        order = list(range(n)) if sweep % 2 == 0 else list(range(n - 1, -1, -1))
        for step, k in enumerate(order):
            centre = contract("xy,ypw,zw->xpz", left[k], target[k], right[k + 1])
            last = step == len(order) - 1
            l_, p_, r_ = centre.shape
            if last:
                phi[k] = centre
            elif sweep % 2 == 0:
                q, _ = linalg.qr(xp.reshape(centre, (l_ * p_, r_)))
                phi[k] = xp.reshape(q, (l_, p_, q.shape[1]))
                left[k + 1] = contract("xy,xpz,ypw->zw", left[k], xp.conj(phi[k]), target[k])
            else:
                q, _ = linalg.qr(linalg.adjoint(xp.reshape(centre, (l_, p_ * r_))))
                phi[k] = xp.reshape(linalg.adjoint(q), (q.shape[1], p_, r_))
                right[k] = contract("xpz,ypw,zw->xy", xp.conj(phi[k]), target[k], right[k + 1])
        centre_norm2 = scalar(xp.linalg.vector_norm(phi[order[-1]])) ** 2
        err2 = max(norm2 - centre_norm2, 0.0)
        done = sweep + 1
        if previous - err2 <= tol * max(norm2, 1e-300):
            break
        previous = err2
    if done % 2 == 0:
        phi = orthonormalize(phi, n - 1, 0)
    return FitResult(phi, err2, norm2, done)


def site_entries(sites: Sequence[Any], idx: np.ndarray) -> Any:
    """Entries of the chain of site cores at the index tuples ``idx`` (an integer NumPy array of shape
    ``(batch, len(sites))``), a 1-D array in the cores' library; the dense tensor is never formed."""
    xp = namespace(*sites)
    device = array_api_compat.device(sites[0])
    by_index = [xp.permute_dims(core, (1, 0, 2)) for core in sites]  # (phys, left, right)
    widest = max(int(c.shape[0]) * int(c.shape[2]) for c in sites)
    step = max(1, 2**21 // widest)
    out = []
    for start in range(0, idx.shape[0], step):
        block = idx[start : start + step]
        v = None
        for k, core in enumerate(by_index):
            g = xp.take(core, xp.asarray(block[:, k], device=device), axis=0)  # (batch, left, right)
            v = g[:, 0, :] if v is None else xp.matmul(v[:, None, :], g)[:, 0, :]
        assert v is not None
        out.append(v[:, 0])
    if not out:
        return xp.zeros((0,), dtype=sites[0].dtype, device=device)
    return out[0] if len(out) == 1 else xp.concat(out)


def hadamard(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    """Site cores of the elementwise product of two chains: bonds multiply (Kronecker product of the bonds)."""
    xp = namespace(*a, *b)
    out = []
    for x, y in zip(a, b):
        t = contract("aib,cid->acibd", x, y)
        out.append(xp.reshape(t, (x.shape[0] * y.shape[0], x.shape[1], x.shape[2] * y.shape[2])))
    return out


def entry_sum(sites: Sequence[Any]) -> Any:
    """Sum of all entries of a chain of site cores, a 0-d array (each core summed over its physical leg)."""
    xp = namespace(*sites)
    acc = None
    for core in sites:
        mat = xp.sum(core, axis=1)
        acc = mat if acc is None else acc @ mat
    return xp.reshape(acc, ())


def dense_dot(sites: Sequence[Any], x: Any) -> Any:
    """``sum_i chain[i] * x[i]`` for a dense ``x`` with one entry per entry of the chain (any shape of that
    size), one core at a time: ``O(size * bond)`` work, the chain never dense."""
    xp = namespace(*sites, x)
    rest = xp.reshape(x, (1, -1))  # (bond, remaining entries)
    for core in sites:
        left, phys, right = core.shape
        rest = xp.reshape(rest, (left, phys, -1))
        rest = contract("lpr,lpm->rm", core, rest)
    return xp.reshape(rest, ())
