"""Applying a chain of MPO cores to a batch of vectors, without forming the matrix.

The kernel behind :meth:`tnlib.MPO.apply` and the neural-network layers:
trusted cores ``(left, out, in, right)`` and a ``(batch, prod(in))`` array in
one namespace; no validation. Two strategies, chosen by FLOP count for the
actual batch size:

* the batch contracted with the cores on an optimal path
  (:func:`tnlib.contract`, plan cached per shape);
* the chain merged into two halves ``L (M_L, N_L, r)`` and ``R (r, M_R, N_R)``
  at the cheapest cut and applied as two large matrix products, which run
  closest to the machine's peak; preferred on a tie.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple, Sequence

import array_api_compat
import opt_einsum

from ._backend import capturing, namespace, prod
from ._cost import split_cost
from .contraction import contract, contraction_plan

__all__ = [
    "apply_cores", "apply_input_first", "MergedHalves", "merge_left", "merge_right", "merge_halves", "apply_merged",
    "inference_split", "WeightPlan",
    "chain_flops",
]


@functools.lru_cache(maxsize=64)
def apply_subscripts(num_sites: int) -> str:
    """``x[b, j_1..j_n] G_1[a_0, i_1, j_1, a_1] ... -> y[b, i_1..i_n]``."""
    k = num_sites
    out_idx = [opt_einsum.get_symbol(i) for i in range(k)]
    in_idx = [opt_einsum.get_symbol(k + i) for i in range(k)]
    bond = [opt_einsum.get_symbol(2 * k + i) for i in range(k + 1)]
    b = opt_einsum.get_symbol(3 * k + 1)
    terms = [b + "".join(in_idx)] + [bond[i] + out_idx[i] + in_idx[i] + bond[i + 1] for i in range(k)]
    return ",".join(terms) + "->" + b + "".join(out_idx)


def best_split(cores: Sequence[Any], batch: int) -> tuple[int | None, float]:
    """Where to cut the chain into two merged halves for ``batch`` rows, and the FLOPs of doing so
    (merging the halves included: :func:`tnlib._cost.split_cost` without the dense matrix)."""
    cost = split_cost([tuple(int(d) for d in c.shape) for c in cores], batch, build=True, dense=False)
    if cost.split is None:
        return None, float("inf")
    return cost.split, 2.0 * cost.macs


class MergedHalves(NamedTuple):
    """The chain merged into two halves at a cut, laid out for two matrix products.

    ``right`` is ``(N_R, r M_R)`` and ``left`` ``(N_L r, M_L)``: ``x (B, N_L N_R)``
    becomes ``y (B, M_L M_R)`` by :func:`apply_merged`.
    """

    right: Any
    left: Any
    ml: int
    nl: int
    r: int
    mr: int
    nr: int


def merge_left(cores: Sequence[Any]) -> Any:
    """``(M_L, N_L, r)`` from cores ``(left, out, in, right)`` whose first left bond is 1.

    Reshapes, permutations and matrix products only, with shapes read from the cores: a graph tracer
    (``torch.compile``, ``torch.export``, ONNX) follows it as it is, and eager code runs the same kernels.
    """
    xp = namespace(*cores)
    acc = xp.reshape(cores[0], tuple(cores[0].shape[1:]))  # (O, I, r)
    for c in cores[1:]:
        big_o, big_i, r = acc.shape
        _, o, i, right = c.shape
        t = xp.reshape(xp.reshape(acc, (big_o * big_i, r)) @ xp.reshape(c, (r, o * i * right)),
                       (big_o, big_i, o, i, right))
        acc = xp.reshape(xp.permute_dims(t, (0, 2, 1, 3, 4)), (big_o * o, big_i * i, right))
    return acc


def merge_right(cores: Sequence[Any]) -> Any:
    """``(r, M_R, N_R)`` from cores whose last right bond is 1 (traceable, as :func:`merge_left`)."""
    xp = namespace(*cores)
    acc = xp.reshape(cores[-1], tuple(cores[-1].shape[:3]))  # (R, O, I)
    for c in reversed(cores[:-1]):
        left, o, i, r = c.shape
        _, big_o, big_i = acc.shape
        t = xp.reshape(xp.reshape(c, (left * o * i, r)) @ xp.reshape(acc, (r, big_o * big_i)),
                       (left, o, i, big_o, big_i))
        acc = xp.reshape(xp.permute_dims(t, (0, 1, 3, 2, 4)), (left, o * big_o, i * big_i))
    return acc


def merge_halves(cores: Sequence[Any], split: int) -> MergedHalves:
    """Merge cores ``[:split]`` and ``[split:]`` into the two halves (done once, then reused; traceable)."""
    xp = namespace(*cores)
    left, right = merge_left(cores[:split]), merge_right(cores[split:])
    ml, nl, r = (int(d) for d in left.shape)
    _, mr, nr = (int(d) for d in right.shape)
    r_mat = xp.reshape(xp.permute_dims(right, (2, 0, 1)), (nr, r * mr))
    l_mat = xp.reshape(xp.permute_dims(left, (1, 2, 0)), (nl * r, ml))
    return MergedHalves(r_mat, l_mat, ml, nl, r, mr, nr)


def apply_merged(m: MergedHalves, flat: Any, xp: Any = None) -> Any:
    """``flat @ W.T`` through merged halves: two matrix products and two permutations (``xp``: the
    namespace, when the caller knows it)."""
    if m.nl == 1 and m.mr == 1:  # a low-rank product (the truncated SVD's layout): no permutation
        return (flat @ m.right) @ m.left
    xp = namespace(flat, m.right) if xp is None else xp
    batch = flat.shape[0]
    t = xp.reshape(flat, (batch * m.nl, m.nr)) @ m.right
    t = xp.reshape(xp.permute_dims(xp.reshape(t, (batch, m.nl, m.r, m.mr)), (0, 3, 1, 2)), (batch * m.mr, m.nl * m.r))
    y = t @ m.left
    return xp.reshape(xp.permute_dims(xp.reshape(y, (batch, m.mr, m.ml)), (0, 2, 1)), (batch, m.ml * m.mr))


def apply_halves(cores: Sequence[Any], flat: Any, split: int) -> Any:
    """``flat @ W.T`` through the two merged halves of the chain (two large GEMMs)."""
    xp = namespace(flat, *cores)
    dtype = xp.result_type(flat, cores[0])
    flat = flat if flat.dtype == dtype else xp.astype(flat, dtype)
    cores = [c if c.dtype == dtype else xp.astype(c, dtype) for c in cores]
    return apply_merged(merge_halves(cores, split), flat)


def inference_split(cores: Sequence[Any]) -> int | None:
    """The cut whose merged halves cost the fewest FLOPs per input row (their merging is paid once),
    or ``None`` when the dense matrix is no larger than the best halves (one product is then cheapest)."""
    return split_cost([tuple(int(d) for d in c.shape) for c in cores]).split


@functools.lru_cache(maxsize=1024)
def _route(shapes: tuple[tuple[int, ...], ...], batch: int, optimize: Any) -> int | None:
    """The cut for the two-halves route, or ``None`` for the contraction path (cached)."""
    in_dims = tuple(s[2] for s in shapes)
    subscripts = apply_subscripts(len(shapes))
    chain_flops = contraction_plan(subscripts, (batch, *in_dims), *shapes, optimize=optimize).flops
    halves = split_cost(shapes, batch, build=True, dense=False)
    return halves.split if halves.split is not None and 2.0 * halves.macs <= chain_flops else None


def apply_cores(cores: Sequence[Any], flat: Any, optimize: Any = "auto") -> Any:
    """``flat @ W.T`` for ``flat`` of shape ``(batch, prod(in_dims))``; returns ``(batch, prod(out_dims))``.

    The choice between the two routes is cached per core shapes and batch size.
    """
    shapes = tuple(tuple(int(d) for d in c.shape) for c in cores)
    batch = int(flat.shape[0])
    key = optimize if isinstance(optimize, str) else repr(optimize)
    split = None if capturing(flat) else _route(shapes, batch, key)  # opt_einsum's path search cannot be traced
    if split is not None:
        return apply_halves(cores, flat, split)
    xp = namespace(flat, *cores)
    legs = xp.reshape(flat, (batch, *(s[2] for s in shapes)))
    out_total = prod(s[1] for s in shapes)
    return xp.reshape(contract(apply_subscripts(len(cores)), legs, *cores, optimize=optimize), (batch, out_total))


@functools.lru_cache(maxsize=1024)
def chain_flops(shapes: tuple[tuple[int, ...], ...], batch: int) -> float:
    plan = contraction_plan(apply_subscripts(len(shapes)), (batch, *(s[2] for s in shapes)), *shapes)
    return float(plan.flops)


class WeightPlan:
    """The exact forms of one MPO weight for repeated products: its cores, and merged halves at the cut
    of :func:`inference_split` (or the dense ``W^T`` when no larger), built once.

    Each call ``plan(flat)`` takes whichever form is cheaper at its batch size:
    by FLOPs when they differ by more than 4x either way, else by timing both
    once (small batches are bound by memory and per-call overhead, which FLOPs
    do not count); the choice is remembered per batch size. Both forms are
    exact, so the choice never changes a result beyond rounding. The caller
    keeps a plan only while the cores do not change (one recurrence; a torch
    layer keys it on parameter versions).
    """

    __slots__ = ("cores", "shapes", "merged", "dense_t", "macs_per_row", "choice", "xp", "full", "choices")

    def __init__(self, cores: Sequence[Any]) -> None:
        self.cores = list(cores)
        self.xp = namespace(*self.cores)
        self.shapes = tuple(tuple(int(d) for d in c.shape) for c in self.cores)
        split = inference_split(self.cores)
        self.merged: MergedHalves | None = None
        self.dense_t = None
        self.full = None
        if split is None:
            self.dense_t = self.xp.matrix_transpose(self.matrix())  # a view: x @ W^T runs as BLAS gemv/gemm on W
            self.macs_per_row = prod(s[1] for s in self.shapes) * prod(s[2] for s in self.shapes)
        else:
            self.merged = merge_halves(self.cores, split)
            self.macs_per_row = split_cost(self.shapes).macs
        self.choice: dict[int, bool] = {}  # batch size -> contract the cores (True) or use the merged form
        self.choices: dict[Any, Any] = {}  # the callers' own choices for this weight (e.g. fused recurrences)

    def __getstate__(self) -> dict:  # copies and pickles: the namespace module is found again, not stored
        return {k: getattr(self, k) for k in self.__slots__ if k != "xp"}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self.xp = namespace(*self.cores)

    def merged_form(self, flat: Any) -> Any:
        if self.dense_t is not None:
            return flat @ self.dense_t
        assert self.merged is not None
        return apply_merged(self.merged, flat, self.xp)

    def __call__(self, flat: Any) -> Any:
        return apply_cores(self.cores, flat) if self.contracts(flat) else self.merged_form(flat)

    def contracts(self, flat: Any) -> bool:
        """Whether a call with ``flat``'s batch size contracts the cores (else it uses the merged form)."""
        batch = int(flat.shape[0])
        chain = self.choice.get(batch)
        if chain is None:
            chain = self.choice[batch] = self._chain_is_faster(flat)
        return chain

    def matrix(self) -> Any:
        """``W`` as a row-major ``(M, N)`` array, built once (the dense form, or on first request)."""
        if self.full is None:
            xp = self.xp
            n_in = prod(s[2] for s in self.shapes)
            eye = xp.eye(n_in, dtype=self.cores[0].dtype, device=array_api_compat.device(self.cores[0]))
            w = xp.matrix_transpose(apply_cores(self.cores, eye))  # (M, N)
            self.full = xp.reshape(xp.reshape(w, (-1,)), (int(w.shape[0]), n_in))  # row-major, as nn.Linear
        return self.full

    def dense(self, flat: Any) -> Any | None:
        """``W`` (row-major ``(M, N)``) when a call with ``flat``'s batch size uses the dense form, else ``None``."""
        if self.dense_t is None or self.contracts(flat):
            return None
        return self.xp.matrix_transpose(self.dense_t)

    def _chain_is_faster(self, flat: Any) -> bool:
        if self.merged is not None and self.merged.nl == 1 and self.merged.mr == 1:
            return False  # a low-rank product (the truncated SVD's layout): the merged form is the chain's two GEMMs
        batch = int(flat.shape[0])
        chain, merged = chain_flops(self.shapes, batch), 2.0 * batch * self.macs_per_row
        if chain * 4 < merged or merged * 4 < chain:
            return chain < merged
        return first_is_faster(lambda: apply_cores(self.cores, flat), lambda: self.merged_form(flat))


def first_is_faster(first: Any, second: Any, repeats: int = 5, margin: float = 0.0) -> bool:
    """Whether ``first()`` runs faster than ``second()`` (or slower by at most ``margin``, relative), for choices
    between exact forms of one computation where FLOPs do not decide: each is run in blocks of ``repeats`` calls
    (its data warm in cache, as in a loop that keeps to one form), the blocks alternated twice; the best call of
    each decides (the least disturbed by other work on the machine)."""
    best = [float("inf"), float("inf")]
    for _ in range(2):
        for k, run in enumerate((first, second)):
            run()  # warm: caches, contraction plans, the other form's data out of the way
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                best[k] = min(best[k], time.perf_counter() - start)
    return best[0] < best[1] * (1.0 + margin)


def apply_input_first(cores: Sequence[Any], num_in: int, flat: Any) -> Any:
    """``flat @ W.T`` for ``W`` stored as an MPS whose first ``num_in`` sites are its input legs.

    The MPS tensor-train form of a weight (Murua et al. 2020): sites
    ``(j_1, ..., j_n, i_1, ..., i_m)`` with MPS cores ``(left, phys, right)``.
    The input sites are contracted with ``flat (batch, prod j)`` first, leaving
    ``(batch, r_mid)``, which then runs through the output sites.
    """
    xp = namespace(flat, *cores)
    batch = int(flat.shape[0])
    acc = xp.reshape(flat, (batch, 1, -1))  # (B, r, rest of the input legs)
    for core in cores[:num_in]:
        r, j, r2 = (int(d) for d in core.shape)
        acc = contract("brjs,rjq->bqs", xp.reshape(acc, (batch, r, j, -1)), core)
    acc = xp.reshape(acc, (batch, -1))  # (B, r_mid)
    for core in cores[num_in:]:
        r, i, r2 = (int(d) for d in core.shape)
        acc = xp.reshape(xp.reshape(acc, (-1, r)) @ xp.reshape(core, (r, i * r2)), (batch, -1, r2))
    return xp.reshape(acc, (batch, -1))

