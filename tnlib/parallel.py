"""Decompose many matrices at once, on any ``concurrent.futures``-style executor.

A whole model has many weight matrices; each decomposition is independent, so
they parallelise perfectly. :func:`decompose_many` takes any object with a
``submit(fn, *args)`` method returning futures with ``.result()``: a
``concurrent.futures.ThreadPoolExecutor`` or ``ProcessPoolExecutor``, or a
``dask.distributed.Client`` (``client.get_executor()``), so the same code runs
on a laptop and on a cluster. Results come back in input order and are
identical to serial ones.

Each worker should use one BLAS thread (``OPENBLAS_NUM_THREADS=1`` in its
environment, or ``threadpoolctl``); several multi-threaded BLAS calls at once
on the same cores are slower than one. A process that has imported JAX (or
runs torch threads) should give ``ProcessPoolExecutor`` a ``"forkserver"``
or ``"spawn"`` context (``mp_context=multiprocessing.get_context(...)``):
forking a multithreaded process can deadlock.
"""

from __future__ import annotations

from typing import Any, Sequence

from ._backend import as_matrix, is_array_like
from ._out_of_core import is_dask
from .mpo import MPO

__all__ = ["decompose_many"]


def _decompose_one(matrix: Any, kwargs: dict[str, Any]) -> MPO:
    return MPO.from_matrix(matrix, **kwargs)


def decompose_many(
    matrices: Sequence[Any],
    *,
    executor: Any = None,
    **from_matrix_kwargs: Any,
) -> list[MPO]:
    """:meth:`tnlib.MPO.from_matrix` of every matrix, optionally in parallel.

    Parameters
    ----------
    matrices
        The matrices, each ``(M, N)``.
    executor
        ``None`` (serial), or any object whose ``submit(fn, *args)`` returns a
        future with ``result()``: ``concurrent.futures`` executors, a
        ``dask.distributed`` client's ``get_executor()``.
    **from_matrix_kwargs
        Passed to every ``from_matrix`` call (``out_dims``, ``in_dims``,
        ``truncation``, ``pad``, ...).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> ws = [np.random.default_rng(k).standard_normal((64, 64)) for k in range(4)]
    >>> with ThreadPoolExecutor(2) as pool:
    ...     mpos = tnlib.decompose_many(ws, executor=pool, out_dims=(4, 4, 4), in_dims=(4, 4, 4),
    ...                                 truncation=tnlib.Truncation(max_bond=8))
    >>> [m.bond_dims for m in mpos]
    [(8, 8), (8, 8), (8, 8), (8, 8)]
    """
    if isinstance(matrices, (str, bytes)) or not hasattr(matrices, "__iter__"):
        raise TypeError(f"matrices must be a sequence of matrices, got {type(matrices).__name__}")
    matrices = list(matrices)
    for k, m in enumerate(matrices):  # refused here, named by position, before any worker starts (a future of
        if is_array_like(m) and not is_dask(m):  # data scattered to workers is checked where it lives)
            as_matrix(m, f"matrices[{k}]")
    if executor is None:
        return [_named(k, lambda m=m: _decompose_one(m, from_matrix_kwargs)) for k, m in enumerate(matrices)]
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(
            f"executor must have a submit(fn, *args) method (a concurrent.futures executor or "
            f"a dask client's get_executor()), got {type(executor).__name__}"
        )
    futures = [executor.submit(_decompose_one, m, from_matrix_kwargs) for m in matrices]
    return [_named(k, f.result) for k, f in enumerate(futures)]


def _named(k: int, run: Any) -> Any:
    """``run()``, its ``TypeError`` / ``ValueError`` prefixed with the position of the matrix it is about."""
    try:
        return run()
    except (TypeError, ValueError) as exc:
        base = TypeError if isinstance(exc, TypeError) else ValueError
        raise base(f"matrices[{k}]: {exc}") from exc
