r"""Quantized tensor trains (QTT): a function on ``2^L`` grid points as an MPS of ``L`` sites of size 2.

The grid of ``domain = (a, b)`` with ``L`` bits is :math:`x_j = a + j h`, :math:`h = (b - a) / 2^L`,
:math:`j = 0 .. 2^L - 1` (the right end excluded, as for a periodic function), and the binary
digits of :math:`j` are the indices of the sites, **site 0 the most significant**:
:math:`j = \sum_k i_k 2^{L-1-k}`. Smooth functions have small QTT ranks (an exponential or a
sine rank 1 and 2, a polynomial of degree :math:`p` at most :math:`p + 1`; Khoromskij, Constr.
Approx. 34, 2011; Oseledets, Constr. Approx. 37, 2013), so a grid of :math:`2^{40}` points
costs kilobytes.

:func:`grid` samples a function by cross approximation (:func:`tnlib.cross`); the operators
:func:`shift` and :func:`laplacian` are exact MPOs of bond dimension 2 and 3 (carry automata;
Kazeev and Khoromskij, SIAM J. Matrix Anal. Appl. 33, 2012), :func:`identity` bond 1;
:func:`integrate` and :func:`evaluate` read a QTT without forming it.

Examples
--------
>>> import numpy as np, tnlib
>>> u = tnlib.qtt.grid(np.sin, 30, (0.0, 2 * np.pi))          # 2^30 points
>>> max(u.bond_dims), round(float(tnlib.qtt.integrate(u * u, (0.0, 2 * np.pi))), 9) == round(np.pi, 9)
(2, True)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import array_api_compat
import numpy as np

from ._backend import as_array, namespace, to_host
from ._checks import check_int, is_real
from .cross import cross
from .mpo import MPO
from .mps import MPS
from .truncation import Truncation

__all__ = ["grid", "identity", "shift", "laplacian", "integrate", "evaluate", "points"]


def _check_bits(num_bits: Any) -> int:
    bits = check_int("num_bits", num_bits, 1)
    if bits > 62:
        raise ValueError(f"num_bits={bits} is invalid; at most 62 bits (int64 grid indices)")
    return bits


def _check_domain(domain: Any) -> tuple[float, float]:
    ok = isinstance(domain, (tuple, list)) and len(domain) == 2 and all(is_real(v) for v in domain)
    if not ok or not np.isfinite(domain).all() or not domain[0] < domain[1]:
        raise ValueError(f"domain={domain!r} is invalid; expected (a, b) with finite a < b")
    return float(domain[0]), float(domain[1])


def _weights(num_bits: int) -> np.ndarray:
    return np.array([1 << (num_bits - 1 - k) for k in range(num_bits)], dtype=np.int64)


def points(num_bits: int, domain: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
    """The grid ``a + j h``, ``j = 0 .. 2^num_bits - 1`` (only for grids small enough to list, up to 2^26).

    Examples
    --------
    >>> import tnlib
    >>> tnlib.qtt.points(2, (0.0, 1.0))
    array([0.  , 0.25, 0.5 , 0.75])
    """
    bits = _check_bits(num_bits)
    if bits > 26:
        raise ValueError(f"num_bits={bits}: a grid of 2^{bits} points is too large to list; use evaluate()")
    a, b = _check_domain(domain)
    return a + (b - a) / 2**bits * np.arange(2**bits)


def grid(
    fn: Callable[[np.ndarray], Any],
    num_bits: int,
    domain: Sequence[float] = (0.0, 1.0),
    truncation: Truncation | None = None,
    **options: Any,
) -> MPS:
    """The QTT of ``fn`` on ``2^num_bits`` grid points, by cross approximation (never the whole grid).

    Parameters
    ----------
    fn
        ``fn(x)`` of a 1-D float64 NumPy array of points, returning one value per point (any library).
    num_bits
        ``L``: the grid has ``2^L`` points and the MPS ``L`` sites of size 2 (``L <= 62``).
    domain
        ``(a, b)``; the points are ``a + j (b - a) / 2^L``.
    truncation, **options
        As for :func:`tnlib.cross` (``tol``, ``max_evals``, ``seed``, ...).

    Examples
    --------
    A function on 2^40 points as a 40-site MPS:

    >>> import numpy as np, tnlib
    >>> f = lambda x: np.exp(-x) * np.sin(20 * x)
    >>> q = tnlib.qtt.grid(f, 40, (0.0, 1.0), tnlib.Truncation(cutoff=1e-13))
    >>> q.num_sites, max(q.bond_dims), q.report.cross.evals < 10**5
    (40, 2, True)
    >>> x = np.array([0.1, 0.5, 0.7])
    >>> bool(np.allclose(tnlib.qtt.evaluate(q, x, (0.0, 1.0)), f(x)))
    True
    """
    bits = _check_bits(num_bits)
    a, b = _check_domain(domain)
    if not callable(fn):
        raise TypeError(f"fn must be a function of the grid points, got {type(fn).__name__}")
    h = (b - a) / 2**bits
    weights = _weights(bits)

    def at_points(idx: np.ndarray) -> Any:
        return fn(a + h * (idx @ weights).astype(np.float64))

    at_points.__name__ = getattr(fn, "__name__", "fn")
    return cross(at_points, (2,) * bits, truncation, **options)


def _operator(transitions: np.ndarray, left: np.ndarray, right: np.ndarray, num_bits: int, scale: float,
              like: Any) -> MPO:
    """An MPO from one automaton core ``(state out, o, i, state in)`` repeated, closed by boundary vectors."""
    cores = []
    for k in range(num_bits):
        core = transitions
        if k == 0:
            core = np.einsum("s,soit->oit", left, core)[None]
        if k == num_bits - 1:
            core = np.einsum("soit,t->soi", core, right)[..., None]
        cores.append(np.ascontiguousarray(core))
    cores[0] = cores[0] * scale
    if like is not None:
        ref = as_array(like, "like")
        xp = namespace(ref)
        cores = [xp.asarray(c, device=array_api_compat.device(ref)) for c in cores]
        if xp.isdtype(ref.dtype, ("real floating", "complex floating")):
            cores = [xp.astype(c, ref.dtype) for c in cores]
    return MPO(cores)


def identity(num_bits: int, *, like: Any = None) -> MPO:
    """The identity on ``2^num_bits`` points (bond 1); ``like`` chooses the library and device.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> bool(np.array_equal(tnlib.qtt.identity(3).to_matrix(), np.eye(8)))
    True
    """
    bits = _check_bits(num_bits)
    return MPO.identity((2,) * bits, like=like)


def shift(num_bits: int, *, periodic: bool = False, like: Any = None) -> MPO:
    """The shift ``(S x)[j] = x[j + 1]`` on ``2^num_bits`` points, an exact MPO of bond dimension 2.

    ``x[2^L]`` is 0 (``periodic=False``) or ``x[0]`` (``periodic=True``); ``S.T`` shifts the other
    way. The bond is the carry of ``j + 1`` in binary.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> S = tnlib.qtt.shift(3)
    >>> S.bond_dims, bool(np.array_equal(S.to_matrix(), np.eye(8, k=1)))
    ((2, 2), True)
    """
    bits = _check_bits(num_bits)
    _check_flag("periodic", periodic)
    # states: the carry (0 or 1) coming from the less significant bits; column bit = row bit + carry
    core = np.zeros((2, 2, 2, 2))
    for carry in (0, 1):
        for o in (0, 1):
            core[(o + carry) // 2, o, (o + carry) % 2, carry] = 1.0
    left = np.array([1.0, 1.0 if periodic else 0.0])
    right = np.array([0.0, 1.0])
    return _operator(core, left, right, bits, 1.0, like)


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def laplacian(num_bits: int, domain: Sequence[float] | None = None, *, periodic: bool = False,
              like: Any = None) -> MPO:
    """The second difference ``(x[j-1] - 2 x[j] + x[j+1]) / h^2``, an exact MPO of bond dimension 3.

    Zero outside the grid (``periodic=False``, Dirichlet) or wrapped around (``periodic=True``).
    ``h`` is the grid step of ``domain`` (as in :func:`grid`), or 1 when ``domain`` is ``None``.
    The three bond states say whether the column index equals the row index, is one more (a carry
    pending) or one less (a borrow pending).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> L = tnlib.qtt.laplacian(4)
    >>> dense = -2 * np.eye(16) + np.eye(16, k=1) + np.eye(16, k=-1)
    >>> L.bond_dims, bool(np.array_equal(L.to_matrix(), dense))
    ((3, 3, 3), True)
    """
    bits = _check_bits(num_bits)
    _check_flag("periodic", periodic)
    h = 1.0
    if domain is not None:
        a, b = _check_domain(domain)
        h = (b - a) / 2**bits
    equal, plus, minus = 0, 1, 2
    core = np.zeros((3, 2, 2, 3))
    for o in (0, 1):
        core[equal, o, o, equal] = 1.0
        # column = row + 1: a 0 bit takes the carry, a 1 bit passes it on
        core[equal if o == 0 else plus, o, 1 - o, plus] = 1.0
        # column = row - 1: a 1 bit takes the borrow, a 0 bit passes it on
        core[equal if o == 1 else minus, o, 1 - o, minus] = 1.0
    left = np.ones(3) if periodic else np.array([1.0, 0.0, 0.0])
    right = np.array([-2.0, 1.0, 1.0])
    return _operator(core, left, right, bits, 1.0 / h**2, like)


def _check_qtt(mps: Any) -> int:
    if not isinstance(mps, MPS):
        raise TypeError(f"expected a QTT (an MPS of sites of size 2), got {type(mps).__name__}")
    if any(n != 2 for n in mps.phys_dims):
        raise ValueError(f"a QTT has sites of size 2; this MPS has phys_dims={mps.phys_dims}")
    return mps.num_sites


def integrate(mps: MPS, domain: Sequence[float] = (0.0, 1.0)) -> Any:
    """``h * sum_j f(x_j)`` over the grid (the rectangle rule; spectrally accurate for periodic functions),
    a 0-d array in the cores' library.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> q = tnlib.qtt.grid(lambda x: np.cos(x) ** 2, 30, (0.0, 2 * np.pi))
    >>> round(float(tnlib.qtt.integrate(q, (0.0, 2 * np.pi))), 10) == round(np.pi, 10)
    True
    """
    bits = _check_qtt(mps)
    a, b = _check_domain(domain)
    return mps.sum() * ((b - a) / 2**bits)


def evaluate(mps: MPS, x: Any, domain: Sequence[float] = (0.0, 1.0)) -> Any:
    """The QTT at points ``x`` in ``[a, b]`` by linear interpolation between the neighbouring grid values
    (beyond the last grid point, its value); a 1-D array in the cores' library.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> q = tnlib.qtt.grid(lambda x: 3 * x + 1, 10)                     # linear: interpolation is exact
    >>> tnlib.qtt.evaluate(q, [0.0, 0.3337, 0.5]).round(10)
    array([1.    , 2.0011, 2.5   ])
    """
    bits = _check_qtt(mps)
    a, b = _check_domain(domain)
    host = to_host(as_array(x, "x"))
    if np.iscomplexobj(host):
        raise TypeError(f"x must hold real points of the domain, got dtype {host.dtype}")
    pts = host.astype(np.float64).reshape(-1)
    if not np.isfinite(pts).all() or (pts.size and (pts.min() < a or pts.max() > b)):
        raise ValueError(f"x must be finite points in the domain [{a}, {b}]")
    h = (b - a) / 2**bits
    t = (pts - a) / h
    j = np.minimum(np.floor(t).astype(np.int64), 2**bits - 1)
    frac = t - j
    nxt = np.minimum(j + 1, 2**bits - 1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    both = np.concatenate([j, nxt])
    values = mps.entries((both[:, None] >> shifts[None, :]) & 1)
    xp = namespace(values)
    lo, hi = values[: j.size], values[j.size :]
    w = xp.astype(xp.asarray(frac, device=array_api_compat.device(values)), xp.real(lo).dtype)
    return lo + (hi - lo) * w
