r"""Cross approximation: an MPS of a tensor that is never formed, from a few of its entries.

Given a function of the indices, :func:`cross` evaluates it on a few fibres
and builds the tensor train directly, with a number of evaluations linear in
the number of sites (Oseledets and Tyrtyshnikov, "TT-cross approximation for
multidimensional arrays", Linear Algebra Appl. 432, 2010).

The algorithm is the one-site alternating cross with rank growth. Each site
``k`` has a set of left multi-indices :math:`I_k` (over sites ``0..k-1``) and
right multi-indices :math:`J_{k+1}` (over sites ``k+1..``). A sweep from left
to right evaluates the fibre :math:`F_k = f(I_k, i_k, J_{k+1})`, an
:math:`|I_k| n_k \times |J_{k+1}|` matrix, truncates its SVD
:math:`F_k \approx U S V^H` by the :class:`~tnlib.Truncation`, and picks rows
of :math:`U` of (rectangular) maximum volume (:mod:`tnlib._maxvol`), ``kick``
more than its rank so the ranks can grow: those rows are the next left set
:math:`I_{k+1}`, and the core is the interpolation
:math:`U\,U[I_{k+1}]^{+}`. The sweep back does the same with columns. Every
sweep ends with a complete tensor train, checked against a held-out random
sample of entries; the run stops when that error is below ``tol``, when the
fibres show no new rank, when the error stagnates, or at ``max_sweeps`` or
``max_evals``, and never loops. The result is rounded (SVD truncation from
the canonical form) and its :attr:`~tnlib.MPS.report` says what happened
(:class:`CrossReport`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import array_api_compat
import numpy as np

from ._algebra import site_entries
from ._backend import as_array, capturing, far_exponent, is_tracer, namespace, times_power_of_two, to_host
from ._canonical import spread_exponent
from ._checks import check_int, is_int, is_real
from ._maxvol import rect_maxvol
from ._out_of_core import is_dask
from .mps import MPS
from .truncation import Truncation, check_truncation

__all__ = ["cross", "cross_apply", "CrossReport"]

_MAX_INDEX = 2**62


@dataclass(frozen=True)
class CrossReport:
    """What a cross approximation did (``mps.report.cross``).

    Attributes
    ----------
    evals : int
        Entries of the function evaluated, all included (sweeps, the held-out
        check sample and the determinism check).
    calls : int
        Calls of the function (one per batch).
    sweeps : int
        Half sweeps run (one direction each).
    error : float or None
        Relative error ``||f - tt|| / ||f||`` of the result on the held-out
        sample (``None`` when ``check_size=0``).
    check_size : int
        Entries in the held-out sample.
    converged : bool
        ``error <= tol`` for the rounded result (or, without a check sample, the fibres showed no
        new rank).
    stopped : str
        Why the run stopped: ``"tol"``, ``"ranks"`` (no bond grew), ``"stagnated"`` (the
        error stopped improving), ``"max_sweeps"`` or ``"max_evals"``.
    history : tuple of float
        Held-out error after every half sweep.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> mps = tnlib.cross(lambda idx: np.cos(idx.sum(axis=1) / 10.0), (8,) * 5)
    >>> rep = mps.report.cross
    >>> rep.converged, rep.stopped, mps.bond_dims
    (True, 'tol', (2, 2, 2, 2))
    >>> rep.evals > rep.check_size, rep.sweeps == len(rep.history)
    (True, True)
    """

    evals: int
    calls: int
    sweeps: int
    error: float | None
    check_size: int
    converged: bool
    stopped: str
    history: tuple[float, ...] = ()


class _Sampler:
    """``fn`` on batches of index tuples: counts, validates and moves the values to the host."""

    def __init__(self, fn: Callable[[np.ndarray], Any], name: str, batch_size: int) -> None:
        self.fn = fn
        self.name = name
        self.batch_size = batch_size
        self.evals = 0
        self.calls = 0
        self.xp: Any = None
        self.dtype: Any = None
        self.device: Any = None
        self.host_dtype: Any = np.float64

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.shape[0], dtype=np.complex128)
        for start in range(0, idx.shape[0], self.batch_size):
            block = idx[start : start + self.batch_size]
            out[start : start + block.shape[0]] = self._batch(block)
        if self.host_dtype == np.float64:
            return np.ascontiguousarray(out.real)
        return out

    def _batch(self, idx: np.ndarray) -> np.ndarray:
        try:
            raw = self.fn(idx)
        except Exception as exc:  # noqa: BLE001 - re-raised with the batch that failed
            raise RuntimeError(
                f"{self.name} raised {type(exc).__name__} on a batch of {idx.shape[0]} index tuples "
                f"(first {idx[0].tolist()}): {exc}"
            ) from exc
        self.calls += 1
        self.evals += idx.shape[0]
        values = as_array(raw, f"the value of {self.name}")
        _refuse_graph(values, f"the value of {self.name}")
        if tuple(values.shape) != (idx.shape[0],):
            raise ValueError(
                f"{self.name} returned shape {tuple(values.shape)} for {idx.shape[0]} index tuples; "
                f"expected ({idx.shape[0]},): one value per row of its (batch, {idx.shape[1]}) int64 argument"
            )
        self._note_library(values)
        host = to_host(values)
        if not np.issubdtype(host.dtype, np.number) or host.dtype == np.bool_:
            raise TypeError(f"{self.name} returned dtype {host.dtype}; expected real or complex numbers")
        bad = ~np.isfinite(host)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"{self.name} returned {int(bad.sum())} NaN or infinite value(s) out of {idx.shape[0]}, e.g. "
                f"{host[first]} at index {idx[first].tolist()}; expected finite values"
            )
        if np.iscomplexobj(host):
            self.host_dtype = np.complex128
        return host.astype(np.complex128, copy=False)

    def _note_library(self, values: Any) -> None:
        if self.xp is not None:
            return
        self.xp = namespace(values)
        self.device = array_api_compat.device(values)
        xp = self.xp
        if xp.isdtype(values.dtype, ("real floating", "complex floating")) and values.dtype in (
            xp.float32, xp.float64, xp.complex64, xp.complex128
        ):
            self.dtype = values.dtype
        else:
            self.dtype = xp.float64

    def out_dtype(self) -> Any:
        xp = self.xp
        if self.host_dtype == np.complex128 and not xp.isdtype(self.dtype, "complex floating"):
            return xp.complex64 if self.dtype == xp.float32 else xp.complex128
        return self.dtype

    def noise(self) -> float:
        """Relative size of singular values that are rounding noise of the function's precision."""
        single = self.xp is not None and self.dtype in (self.xp.float32, self.xp.complex64)
        return 100 * float(np.finfo(np.float32 if single else np.float64).eps)


def _fibre_indices(left: np.ndarray, n: int, right: np.ndarray) -> np.ndarray:
    """All index tuples ``(I[a], i, J[b])`` in C order over ``(a, i, b)``."""
    a, k = left.shape
    b, rest = right.shape
    idx = np.empty((a, n, b, k + 1 + rest), dtype=np.int64)
    idx[..., :k] = left[:, None, None, :]
    idx[..., k] = np.arange(n)[None, :, None]
    idx[..., k + 1 :] = right[None, None, :, :]
    return idx.reshape(-1, k + 1 + rest)


def _host_entries(cores: Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray:
    return np.asarray(site_entries(list(cores), idx))


@dataclass
class _Run:
    """The state of one cross run: index sets, the current cores and the bookkeeping."""

    sample: _Sampler
    dims: tuple[int, ...]
    caps: tuple[int | None, ...]  # max_bond of every bond (None: uncapped)
    left: list[np.ndarray]
    right: list[np.ndarray]
    cores: list[np.ndarray]
    ranks: list[int]
    saturated: list[bool]
    rng: np.random.Generator

    def rank_of(self, s: np.ndarray, bond: int) -> int:
        """A fibre's rank: its singular values above the function's rounding noise, at most ``max_bond``.

        The other criteria of the truncation apply to the result's rounding only: a fibre's spectrum
        is not the tensor's, and cutting fibres early stalls the error on small entries.
        """
        if s.size == 0 or s[0] == 0.0:
            return 1
        r = int(np.sum(s > self.sample.noise() * s[0]))
        cap = self.caps[bond]
        return max(r if cap is None else min(r, cap), 1)

    def left_step(self, k: int, fibre: np.ndarray, kick: int) -> None:
        """Site ``k`` of a left-to-right sweep: core ``k`` and the left set of site ``k + 1``."""
        a, n, b = fibre.shape
        u, s, _ = np.linalg.svd(fibre.reshape(a * n, b), full_matrices=False)
        r = self.rank_of(s, k)
        u = u[:, :r]
        rows = self._explore(rect_maxvol(u, r + kick), r + kick, a * n)
        self.cores[k] = (u @ np.linalg.pinv(u[rows])).reshape(a, n, rows.size)
        self.left[k + 1] = np.hstack([self.left[k][rows // n], (rows % n)[:, None]])
        self.saturated[k] = r < min(a * n, b) and r <= self.ranks[k]
        self.ranks[k] = r

    def right_step(self, k: int, fibre: np.ndarray, kick: int) -> None:
        """Site ``k`` of a right-to-left sweep: core ``k`` and the right set of site ``k``."""
        a, n, b = fibre.shape
        _, s, vh = np.linalg.svd(fibre.reshape(a, n * b), full_matrices=False)
        r = self.rank_of(s, k - 1)
        v = vh[:r].conj().T
        cols = self._explore(rect_maxvol(v, r + kick), r + kick, n * b)
        self.cores[k] = (v @ np.linalg.pinv(v[cols])).conj().T.reshape(cols.size, n, b)
        self.right[k] = np.vstack([(cols // b)[None, :], self.right[k + 1][cols % b].T]).T
        self.saturated[k - 1] = r < min(a, n * b) and r <= self.ranks[k - 1]
        self.ranks[k - 1] = r

    def _explore(self, chosen: np.ndarray, count: int, total: int) -> np.ndarray:
        """``chosen`` and random other rows up to ``count``: rows the fibre's span cannot predict, where a
        rank the sampled fibres have not shown yet can appear (random enrichment)."""
        count = min(count, total)
        if chosen.size >= count:
            return chosen
        free = np.setdiff1d(np.arange(total), chosen)
        extra = self.rng.choice(free, size=count - chosen.size, replace=False)
        return np.concatenate([chosen, extra.astype(np.int64)])

    def fibre(self, k: int) -> np.ndarray:
        left, right = self.left[k], self.right[k + 1]
        values = self.sample(_fibre_indices(left, self.dims[k], right))
        return values.reshape(left.shape[0], self.dims[k], right.shape[0])

    def sweep_cost(self, forward: bool, kick: int, first: bool = False) -> int:
        """An upper bound on the evaluations of the next half sweep with rank growth ``kick`` (``first``: no
        fibre to reuse from a previous sweep, so its first fibre is evaluated too)."""
        d, dims, caps = len(self.dims), self.dims, self.caps
        cost = 0
        if forward:
            rows = 1
            for k in range(d - 1):
                cols = self.right[k + 1].shape[0]
                if k > 0 or first:
                    cost += rows * dims[k] * cols
                cap = min(cols, caps[k] or cols)
                rows = min(rows * dims[k], cap + kick)
            cost += rows * dims[d - 1]
        else:
            cols = 1
            for k in range(d - 1, 0, -1):
                rows = self.left[k].shape[0]
                if k < d - 1 or first:
                    cost += rows * dims[k] * cols
                cap = min(rows, caps[k - 1] or rows)
                cols = min(cols * dims[k], cap + kick)
            cost += cols * dims[0]
        return cost

    def half_sweep(self, forward: bool, kick: int, reuse: np.ndarray | None) -> np.ndarray:
        """One sweep in one direction; returns the last fibre (the first of the next sweep)."""
        d = len(self.dims)
        order = range(d - 1) if forward else range(d - 1, 0, -1)
        for k in order:
            fibre = reuse if reuse is not None else self.fibre(k)
            reuse = None
            if forward:
                self.left_step(k, fibre, kick)
            else:
                self.right_step(k, fibre, kick)
        last = self.fibre(d - 1 if forward else 0)
        self.cores[d - 1 if forward else 0] = last
        return last


def _initial_sets(dims: tuple[int, ...], rank: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random right index sets ``J_k`` (``k = 0..d``) of at most ``rank`` distinct rows each."""
    d = len(dims)
    right: list[np.ndarray] = [np.zeros((0, d - k), dtype=np.int64) for k in range(d + 1)]
    right[d] = np.zeros((1, 0), dtype=np.int64)
    for k in range(d - 1, 0, -1):
        size = min(rank, math.prod(dims[k:]))
        rows: set[tuple[int, ...]] = set()
        while len(rows) < size:
            rows.add(tuple(int(rng.integers(n)) for n in dims[k:]))
        right[k] = np.array(sorted(rows), dtype=np.int64).reshape(size, d - k)
    return right


MAX_FIBRE_BYTES = 2**31
"""The most bytes of index tuples one fibre of a sweep may hold (a larger ``rank`` is refused up front)."""


def _first_sweep(dims: tuple[int, ...], rank: int, caps: Sequence[int | None]) -> tuple[int, int]:
    """Evaluations of the first forward half sweep at ``rank`` (all its fibres, before any index set is drawn:
    the right sets hold ``min(rank, prod(dims[k:]))`` rows, as :func:`_initial_sets` draws them), and the
    largest fibre's entries."""
    d = len(dims)
    total, largest, rows = 0, 0, 1
    for k in range(d):
        cols = min(rank, math.prod(dims[k + 1:])) if k < d - 1 else 1
        entries = rows * dims[k] * cols
        total, largest = total + entries, max(largest, entries)
        if k < d - 1:
            rows = min(rows * dims[k], min(cols, caps[k] or cols))
    return total, largest


def _refuse_large_rank(dims: tuple[int, ...], rank: int, caps: Sequence[int | None], max_evals: int | None,
                       check: int) -> None:
    """A ``rank`` whose first sweep cannot run (past ``max_evals``, or fibres too large to index) is refused
    before any index set is drawn or any entry evaluated."""
    total, largest = _first_sweep(dims, rank, caps)
    _refuse_small_budget(max_evals, check + total, f"a first sweep at rank {rank}")
    if largest * (len(dims) + 1) * 8 > MAX_FIBRE_BYTES:
        raise ValueError(f"rank={rank} is too large for dims of {len(dims)} sites: the first sweep's largest "
                         f"fibre has {largest} entries ({largest * (len(dims) + 1) * 8 / 2**30:.3g} GiB of indices); "
                         "start from a smaller rank (it grows by kick each half sweep)")


def _relative_error(cores: Sequence[np.ndarray], idx: np.ndarray, values: np.ndarray) -> float:
    if idx.shape[0] == 0:
        return math.nan
    diff = float(np.linalg.norm(_host_entries(cores, idx) - values))
    norm = float(np.linalg.norm(values))
    return diff / norm if norm > 0 else diff


def _check_dims(dims: Any) -> tuple[int, ...]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or len(dims) == 0:
        raise TypeError(f"dims must be a non-empty sequence of ints (the size of every index), got {dims!r}")
    out = tuple(check_int(f"dims[{k}]", n, 1) for k, n in enumerate(dims))
    return out


def is_function(fn: Any) -> bool:
    """Whether ``fn`` is a function of indices rather than an array (dense or dask) to read entries of."""
    return callable(fn) and not array_api_compat.is_array_api_obj(fn) and not is_dask(fn)


def array_entries(array: Any) -> Callable[[np.ndarray], Any]:
    """Entries of a dense or dask array at index tuples ``(batch, ndim)``, read by index (never the whole array)."""
    if is_dask(array):
        return lambda idx: array.vindex[tuple(idx.T)].compute()
    xp = namespace(array)
    if isinstance(array, np.ndarray):
        return lambda idx: array[tuple(idx.T)]
    flat = xp.reshape(array, (-1,))
    strides = np.array([math.prod(array.shape[k + 1 :]) for k in range(array.ndim)], dtype=np.int64)
    device = array_api_compat.device(array)
    return lambda idx: xp.take(flat, xp.asarray(idx @ strides, device=device), axis=0)


def _check_options(max_evals: Any, tol: Any, max_sweeps: Any, rank: Any, kick: Any, check_size: Any,
                   seed: Any, batch_size: Any) -> None:
    if max_evals is not None:
        check_int("max_evals", max_evals, 1)
    if not (is_real(tol) and 0 <= tol < 1):
        raise ValueError(f"tol={tol!r} is invalid; expected a real number in [0, 1)")
    check_int("max_sweeps", max_sweeps, 1)
    check_int("rank", rank, 1)
    check_int("kick", kick, 0)
    check_int("check_size", check_size, 0)
    check_int("batch_size", batch_size, 1)
    if seed is not None and not is_int(seed):
        raise TypeError(f"seed must be an int or None, got {seed!r}")


def cross(
    fn: Any,
    dims: Sequence[int] | None = None,
    truncation: Truncation | None = None,
    *,
    max_evals: int | None = None,
    tol: float = 1e-10,
    max_sweeps: int = 20,
    rank: int = 2,
    kick: int = 2,
    check_size: int = 1000,
    seed: int | None = 0,
    batch_size: int = 2**16,
) -> MPS:
    """Approximate a tensor given by a function of its indices as an MPS, by TT-cross.

    Parameters
    ----------
    fn : callable or array
        ``fn(indices)`` takes a NumPy ``int64`` array of shape ``(batch, len(dims))``, one index
        tuple per row, and returns the ``batch`` entries as a 1-D array of any library (its
        library, dtype and device are those of the result's cores). A dense array or a
        ``dask.array`` is read entry by entry (never whole); ``dims`` is then its shape.
    dims
        The size of every index (all ``>= 1``).
    truncation
        How to round the result (:class:`~tnlib.Truncation`, any criterion); its ``max_bond``
        also caps the fibres' ranks during the sweeps. ``None``: rounding at the function's
        precision only.
    max_evals
        Cap on the entries evaluated (``None``: no cap). A sweep that would pass it is not
        started; the run returns the best tensor train found, and the report says so.
    tol
        Stop when the relative error on the held-out sample is at most this.
    max_sweeps
        Cap on the half sweeps (each one direction).
    rank, kick
        Initial rank of the index sets, and how many rows beyond its rank each fibre adds to the
        next index set (rank growth per half sweep).
    check_size
        Random entries held out to estimate the error (evaluated once, counted in the report).
    seed
        Seed of the initial index sets and the check sample.
    batch_size
        Most index tuples per call of ``fn``.

    Returns
    -------
    MPS
        Left-canonical, rounded; ``report.cross`` is a :class:`CrossReport` and
        ``report.held_out_error`` the relative error on the check sample.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> hilbert = lambda idx: 1.0 / (1.0 + idx.sum(axis=1))      # 1 / (i + j + k + ... + 1)
    >>> mps = tnlib.cross(hilbert, dims=(32,) * 8, truncation=tnlib.Truncation(cutoff=1e-12), tol=1e-8)
    >>> mps.report.cross.converged, mps.report.held_out_error < 1e-8
    (True, True)
    >>> mps.report.cross.evals < 32**8 / 1e6                      # of 10^12 entries
    True
    """
    if is_function(fn):
        if dims is None:
            raise TypeError("cross(fn, dims) needs dims, the size of every index, when fn is a function")
        shape = _check_dims(dims)
        sample = _Sampler(fn, getattr(fn, "__name__", "fn") + "(indices)", batch_size)
    else:
        array = fn if is_dask(fn) else as_array(fn, "fn")
        _refuse_graph(array, "fn")
        shape = tuple(int(n) for n in array.shape)
        _check_array(array, shape)
        if dims is not None and _check_dims(dims) != shape:
            raise ValueError(f"dims={tuple(dims)} but the array fn has shape {shape}; give dims=None")
        _check_dims(shape)
        exponent = 0 if is_dask(array) else far_exponent(array)
        if exponent:  # a dense array far from unit scale is crossed at unit scale: its samples' squares stay in range
            array = times_power_of_two(array, -exponent)
        sample = _Sampler(array_entries(array), "fn[indices]", batch_size)
        found = _cross(sample, shape, truncation, max_evals=max_evals, tol=tol, max_sweeps=max_sweeps,
                       rank=rank, kick=kick, check_size=check_size, seed=seed)
        if exponent:
            return found._with_sites(spread_exponent(list(found.cores), exponent), None, found.report)
        return found
    return _cross(sample, shape, truncation, max_evals=max_evals, tol=tol, max_sweeps=max_sweeps,
                  rank=rank, kick=kick, check_size=check_size, seed=seed)


def _check_array(array: Any, shape: tuple[int, ...]) -> None:
    """An array ``fn`` with numbers and at least one index of positive size, or an error naming ``fn``."""
    kind = getattr(getattr(array, "dtype", None), "kind", None)
    if kind is not None and kind not in "iufcb":
        raise TypeError(f"fn must be a function or an array of numbers, got an array of dtype {array.dtype}")
    if not shape or 0 in shape:
        raise ValueError(f"fn is an array of shape {shape}; expected a non-empty array with at least one index")


def _refuse_graph(x: Any, what: str) -> None:
    """Cross approximation is not differentiable (its index sets are chosen from the values): an input in an
    autograd graph or under a JAX / torch trace is refused, never silently detached."""
    if getattr(x, "requires_grad", False) or is_tracer(x) or capturing(x):
        raise ValueError(f"{what} requires grad or is being traced; cross approximation is not differentiable "
                         "(its index sets are chosen from the values): detach it first (.detach(), "
                         "torch.no_grad(), jax.lax.stop_gradient) or call it outside the traced function")


def _check_indices(dims: tuple[int, ...], size: int, rng: np.random.Generator) -> np.ndarray:
    """The held-out sample's indices (at least 4: they also test that ``fn`` is deterministic)."""
    return np.stack([rng.integers(n, size=max(size, 4)) for n in dims], axis=1).astype(np.int64)


def _check_cost(idx: np.ndarray) -> int:
    """Evaluations :func:`_check_sample` spends on ``idx``: all of them, and the first 8 again."""
    return idx.shape[0] + min(idx.shape[0], 8)


def _refuse_small_budget(max_evals: int | None, need: int, what: str) -> None:
    """Before any evaluation: a ``max_evals`` below the ``need`` of the check sample and ``what`` is refused."""
    if max_evals is not None and need > max_evals:
        raise ValueError(f"max_evals={max_evals} is too small: the check sample and {what} need {need} "
                         "evaluations (nothing was evaluated); raise max_evals or lower check_size")


def _check_sample(sample: _Sampler, idx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out sample, evaluated; a few of its entries evaluated again to catch a nondeterministic fn."""
    values = sample(idx)
    again = sample(idx[:8])
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    if not np.allclose(again, values[:8], rtol=1e-9, atol=1e-12 * scale):
        worst = int(np.argmax(np.abs(again - values[:8])))
        raise ValueError(
            f"{sample.name} is not deterministic: at index {idx[worst].tolist()} it returned "
            f"{values[worst]} and then {again[worst]}; cross approximation needs a fixed function"
        )
    return (idx, values) if size else (idx[:0], values[:0])


def _cross(sample: _Sampler, dims: tuple[int, ...], truncation: Truncation | None, *, max_evals: int | None,
           tol: float, max_sweeps: int, rank: int, kick: int, check_size: int, seed: int | None) -> MPS:
    """The cross run behind :func:`cross` and :func:`cross_apply`; validates their common options."""
    check_truncation(truncation)
    _check_options(max_evals, tol, max_sweeps, rank, kick, check_size, seed, sample.batch_size)
    tol = float(tol)
    rng = np.random.default_rng(seed)
    d = len(dims)
    check_idx = _check_indices(dims, check_size, rng)
    if d == 1:
        _refuse_small_budget(max_evals, _check_cost(check_idx) + dims[0], f"one site of {dims[0]} entries")
        check_idx, check_values = _check_sample(sample, check_idx, check_size)
        core = sample(np.arange(dims[0], dtype=np.int64)[:, None]).reshape(1, dims[0], 1)
        return _finish(sample, [core], truncation, check_idx, check_values, tol, 0, "tol", (), d)
    caps = truncation.bond_caps(d - 1) if truncation is not None else (None,) * (d - 1)
    _refuse_large_rank(dims, rank, caps, max_evals, _check_cost(check_idx))
    run = _Run(sample, dims, tuple(caps),
               left=[np.zeros((1, 0), dtype=np.int64)] + [np.zeros((0, k), dtype=np.int64) for k in range(1, d + 1)],
               right=_initial_sets(dims, rank, rng), cores=[np.zeros((1, n, 1)) for n in dims],
               ranks=[0] * (d - 1), saturated=[False] * (d - 1), rng=rng)
    assert max_evals is None or _check_cost(check_idx) + run.sweep_cost(True, 0, first=True) <= max_evals
    check_idx, check_values = _check_sample(sample, check_idx, check_size)
    best: tuple[float, list[np.ndarray]] | None = None
    history: list[float] = []
    stopped, reuse, sweeps, stale = "max_sweeps", None, 0, 0
    for sweep in range(max_sweeps):
        forward = sweep % 2 == 0
        step = _affordable_kick(run, forward, kick, max_evals, first=sweep == 0)
        if step is None:
            stopped = "max_evals"
            break
        reuse = run.half_sweep(forward, step, reuse)
        sweeps += 1
        err = _relative_error(run.cores, check_idx, check_values)
        if check_size:
            history.append(err)
        if best is None or not err >= best[0]:
            stale = 0 if best is None or not err > 0.98 * best[0] else stale + 1
            best = (err, list(run.cores))
        else:
            stale += 1
        if check_size and err <= tol:
            stopped = "tol"
            break
        if not check_size and sweep >= 1 and all(run.saturated):
            stopped = "ranks"
            break
        if stale >= 4:
            stopped = "stagnated"
            break
    if best is None:
        need = run.sweep_cost(True, 0, first=True) + sample.evals
        raise ValueError(
            f"max_evals={max_evals} is too small for one sweep: the check sample and a first sweep at rank "
            f"{rank} need {need} evaluations"
        )
    cores = best[1] if check_size else list(run.cores)
    return _finish(sample, cores, truncation, check_idx, check_values, tol, sweeps, stopped, tuple(history), d,
                   all(run.saturated))


def _affordable_kick(run: _Run, forward: bool, kick: int, max_evals: int | None, first: bool) -> int | None:
    """The largest rank growth ``<= kick`` whose half sweep fits in what is left of ``max_evals``."""
    if max_evals is None:
        return kick
    left = max_evals - run.sample.evals
    for step in range(kick, -1, -1):
        if run.sweep_cost(forward, step, first) <= left:
            return step
    return None


def _finish(sample: _Sampler, cores: list[np.ndarray], truncation: Truncation | None, check_idx: np.ndarray,
            check_values: np.ndarray, tol: float, sweeps: int, stopped: str, history: tuple[float, ...],
            d: int, saturated: bool = True) -> MPS:
    """Round the host cores, measure the held-out error and move the cores to ``fn``'s library."""
    host = MPS([np.ascontiguousarray(c, dtype=sample.host_dtype) for c in cores])
    rounding = truncation if truncation is not None else Truncation(cutoff=sample.noise())
    rounded = host.truncate(rounding)
    error = _relative_error(rounded.cores, check_idx, check_values) if check_idx.shape[0] else None
    converged = error <= tol if error is not None else saturated
    stats = CrossReport(sample.evals, sample.calls, sweeps, error, int(check_idx.shape[0]), bool(converged),
                        stopped, history)
    base = rounded.report
    assert base is not None
    report = dataclasses.replace(base, truncation=truncation, held_out_error=error, cross=stats)
    xp, dtype = sample.xp, sample.out_dtype()
    if array_api_compat.is_numpy_namespace(xp):
        out = [c.astype(dtype, copy=False) for c in rounded.cores]
    else:
        out = [xp.astype(xp.asarray(c, device=sample.device), dtype) for c in rounded.cores]
    return MPS._trusted(out, d - 1, report)


def cross_apply(
    f: Callable[..., Any],
    *chains: Any,
    truncation: Truncation | None = None,
    max_evals: int | None = None,
    tol: float = 1e-10,
    max_sweeps: int = 20,
    rank: int = 2,
    kick: int = 2,
    check_size: int = 1000,
    seed: int | None = 0,
    batch_size: int = 2**16,
) -> Any:
    """Cross approximation of an elementwise function of one or more chains: ``f(x1, x2, ...)`` entry by entry.

    ``f`` receives one 1-D array of entries per chain (in the chains' library) and returns the
    values, as ``exp(mps)``, ``1 / mps`` or ``mps1 * sin(mps2)``. The chains are MPSs with the same
    ``phys_dims``, or MPOs with the same legs (the result is then an MPO of the same shape). Only
    entries of the chains are computed, never their dense tensors. The other arguments are those
    of :func:`cross`.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> x = np.linspace(0.0, 1.0, 2**10)
    >>> mps = tnlib.MPS.from_dense(x.reshape((2,) * 10))                 # rank 2
    >>> e = tnlib.cross_apply(np.exp, mps, truncation=tnlib.Truncation(cutoff=1e-12))
    >>> e.bond_dims, bool(np.allclose(e.to_dense().reshape(-1), np.exp(x)))
    ((1, 1, 1, 1, 1, 1, 1, 1, 1), True)
    """
    if not callable(f):
        raise TypeError(f"f must be a callable of the chains' entries, got {type(f).__name__}")
    if not chains:
        raise TypeError("cross_apply(f, *chains) needs at least one chain")
    first = chains[0]
    if not hasattr(first, "_signature") or not hasattr(first, "cores"):
        raise TypeError(f"chains must be MPSs or MPOs, got {type(first).__name__}")
    for k, other in enumerate(chains[1:], start=1):
        if isinstance(other, Truncation):
            raise TypeError(f"chains[{k}] is a Truncation; pass it as truncation=... (a keyword)")
        if not hasattr(other, "cores"):
            raise TypeError(f"chains[{k}] is a {type(other).__name__}; expected an {type(first).__name__}")
        first._check_same_legs(other, "cross_apply")
    for k, chain in enumerate(chains):
        for core in chain.cores:
            _refuse_graph(core, f"chains[{k}]")
    sites = [c._sites() for c in chains]
    dims = tuple(int(s.shape[1]) for s in sites[0])
    name = getattr(f, "__name__", "f")

    def entries(idx: np.ndarray) -> Any:
        return f(*(site_entries(s, idx) for s in sites))

    sample = _Sampler(entries, f"{name}(chain entries)", batch_size)
    mps = _cross(sample, dims, truncation, max_evals=max_evals, tol=tol, max_sweeps=max_sweeps,
                 rank=rank, kick=kick, check_size=check_size, seed=seed)
    return first._with_sites(list(mps.cores), mps.center, mps.report)

