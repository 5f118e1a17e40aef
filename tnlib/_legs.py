"""The leg conventions, written once: site cores, MPO cores and the interleaving between them.

* An MPS core, and every core the algorithms of :mod:`tnlib._canonical`,
  :mod:`tnlib._sweeps` and :mod:`tnlib._algebra` see, is a *site core*
  ``(left, phys, right)``; the boundary bonds have size 1.
* An MPO core is ``(left, out, in, right)``. Its site core merges the two
  middle legs, ``phys = out * in`` with ``out`` the slower index (C order).
* A matrix ``W`` of shape ``(M, N)``, ``M = prod(out_dims)``,
  ``N = prod(in_dims)``, has row and column multi-indices in C order. Its
  *interleaved* tensor has legs ``(out_1, in_1, ..., out_n, in_n)``, so that
  site ``k`` carries the pair ``(out_k, in_k)`` (Oseledets 2011, sec. 5):

  ``W.reshape(out_dims + in_dims).transpose(interleave_order(n))``.

Every module that goes between a matrix, its interleaved tensor, site cores
and MPO cores calls these functions; none writes the permutation itself.
"""

from __future__ import annotations

from typing import Any, Sequence

from ._backend import namespace, prod

__all__ = [
    "interleave_order",
    "deinterleave_order",
    "site_dims",
    "interleave",
    "deinterleave",
    "sites_to_cores",
    "cores_to_sites",
    "contract_sites",
    "cores_to_matrix",
    "num_params",
]


def interleave_order(n: int) -> tuple[int, ...]:
    """The axes ``(0, n, 1, n + 1, ...)``: ``(out_1..out_n, in_1..in_n)`` -> ``(out_1, in_1, ..., out_n, in_n)``."""
    return tuple(axis for k in range(n) for axis in (k, n + k))


def deinterleave_order(n: int) -> tuple[int, ...]:
    """The inverse of :func:`interleave_order`."""
    return tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2))


def site_dims(out_dims: Sequence[int], in_dims: Sequence[int]) -> tuple[int, ...]:
    """Physical dimension of each site: ``out_k * in_k``."""
    return tuple(int(o) * int(i) for o, i in zip(out_dims, in_dims))


def interleave(a: Any, out_dims: Sequence[int], in_dims: Sequence[int]) -> Any:
    """The interleaved tensor ``(out_1, in_1, ..., out_n, in_n)`` of a matrix ``(prod out, prod in)``."""
    xp = namespace(a)
    legs = xp.reshape(a, tuple(out_dims) + tuple(in_dims))
    return xp.permute_dims(legs, interleave_order(len(out_dims)))


def deinterleave(t: Any, out_dims: Sequence[int], in_dims: Sequence[int]) -> Any:
    """The matrix ``(prod out, prod in)`` of an interleaved tensor (any shape with that many entries)."""
    xp = namespace(t)
    pairs = tuple(d for o, i in zip(out_dims, in_dims) for d in (o, i))
    legs = xp.permute_dims(xp.reshape(t, pairs), deinterleave_order(len(out_dims)))
    return xp.reshape(legs, (prod(out_dims), prod(in_dims)))


def sites_to_cores(sites: Sequence[Any], out_dims: Sequence[int], in_dims: Sequence[int]) -> list[Any]:
    """Site cores ``(left, out*in, right)`` -> MPO cores ``(left, out, in, right)`` (reshapes, no copies)."""
    xp = namespace(*sites)
    return [xp.reshape(s, (s.shape[0], int(o), int(i), s.shape[2])) for s, o, i in zip(sites, out_dims, in_dims)]


def cores_to_sites(cores: Sequence[Any]) -> list[Any]:
    """MPO cores ``(left, out, in, right)`` -> site cores ``(left, out*in, right)``."""
    xp = namespace(*cores)
    return [xp.reshape(c, (c.shape[0], c.shape[1] * c.shape[2], c.shape[3])) for c in cores]


def contract_sites(sites: Sequence[Any]) -> Any:
    """Contract site cores into a ``(prod phys,)``-long vector, left to right."""
    xp = namespace(*sites)
    acc = xp.reshape(sites[0], (sites[0].shape[1], sites[0].shape[2]))
    for core in sites[1:]:
        left, phys, right = core.shape
        acc = xp.reshape(acc @ xp.reshape(core, (left, phys * right)), (-1, right))
    return xp.reshape(acc, (prod(c.shape[1] for c in sites),))


def cores_to_matrix(cores: Sequence[Any]) -> Any:
    """The full ``(prod out, prod in)`` matrix of MPO cores (padding included)."""
    out_dims = [int(c.shape[1]) for c in cores]
    in_dims = [int(c.shape[2]) for c in cores]
    return deinterleave(contract_sites(cores_to_sites(cores)), out_dims, in_dims)


def num_params(cores: Sequence[Any]) -> int:
    """Entries of all cores together (the stored parameters of a chain)."""
    return sum(prod(int(d) for d in c.shape) for c in cores)
