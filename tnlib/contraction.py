"""Tensor contraction on optimal paths, on any array library, with cached plans.

:func:`contract` takes an einsum expression. opt_einsum finds the pairwise
contraction order (Smith and Gray, JOSS 3, 2018); tnlib compiles every pairwise
step into one batched matrix product (permute, reshape, ``matmul``, reshape)
so that the same plan runs on NumPy, CuPy, PyTorch or any Array-API library
with no einsum of its own and no copy to NumPy. The compiled plan is cached by
``(subscripts, shapes, optimize)``, so a training loop pays for the path search
once.

Supported: explicit (``"ij,jk->ik"``) and implicit (``"ij,jk"``) output,
batch (Hadamard) indices shared by both operands of a step, and indices
summed within one operand. Not supported: ellipses and repeated indices
within one operand (diagonals).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import opt_einsum

from ._backend import capturing, namespace

__all__ = ["contract", "contraction_plan", "ContractionPlan"]


@dataclass(frozen=True)
class ContractionPlan:
    """How :func:`contract` evaluates an expression for given shapes.

    Attributes
    ----------
    subscripts : str
        The expression, with its output made explicit.
    shapes : tuple of tuple of int
    path : tuple of tuple of int
        Pairwise steps in opt_einsum's convention (positions in the current
        operand list; the result goes to the end).
    flops : int
        Floating-point operations of the path (opt_einsum's cost model).
    naive_flops : int
        The same for left-to-right contraction.
    largest_intermediate : int
        Entries of the largest intermediate array.

    Examples
    --------
    >>> import tnlib
    >>> plan = tnlib.contraction_plan("ij,jk,kl->il", (8, 64), (64, 64), (64, 2))
    >>> plan.flops <= plan.naive_flops
    True
    """

    subscripts: str
    shapes: tuple[tuple[int, ...], ...]
    path: tuple[tuple[int, ...], ...]
    flops: int
    naive_flops: int
    largest_intermediate: int

    @property
    def speedup(self) -> float:
        """``naive_flops / flops``: the gain over left-to-right contraction."""
        return self.naive_flops / self.flops if self.flops else 1.0

    def __str__(self) -> str:
        return (
            f"ContractionPlan {self.subscripts}\n"
            f"  path: {list(self.path)}\n"
            f"  flops: {self.flops:.4g} (left to right: {self.naive_flops:.4g}, "
            f"speed-up {self.speedup:.3g}x)\n"
            f"  largest intermediate: {self.largest_intermediate} entries"
        )


@dataclass(frozen=True)
class _Pair:
    i: int
    j: int
    sum_a: tuple[int, ...]
    sum_b: tuple[int, ...]
    perm_a: tuple[int, ...]
    perm_b: tuple[int, ...]
    shape_a: tuple[int, int, int]
    shape_b: tuple[int, int, int]
    shape_out: tuple[int, ...]


@dataclass(frozen=True)
class _Compiled:
    plan: ContractionPlan
    pre_sums: tuple[tuple[int, ...], ...]
    steps: tuple[_Pair, ...]
    final_sum: tuple[int, ...]
    final_perm: tuple[int, ...]


def _parse(subscripts: str, num_operands: int) -> tuple[list[str], str]:
    if not isinstance(subscripts, str):
        raise TypeError(f"subscripts must be a string such as 'ij,jk->ik', got {subscripts!r}")
    expr = subscripts.replace(" ", "")
    if "." in expr:
        raise ValueError(f"subscripts={subscripts!r}: ellipses are not supported; name every index")
    if "->" in expr:
        lhs, out = expr.split("->")
    else:
        lhs = expr
        counts = {c: lhs.count(c) for c in set(lhs) if c != ","}
        out = "".join(sorted(c for c, n in counts.items() if n == 1))
    terms = lhs.split(",")
    if len(terms) != num_operands:
        raise ValueError(
            f"subscripts={subscripts!r} names {len(terms)} operands but {num_operands} were given"
        )
    for k, term in enumerate(terms):
        for c in term:
            if not c.isalpha():
                raise ValueError(f"subscripts={subscripts!r}: index {c!r} is not a letter")
            if term.count(c) > 1:
                raise ValueError(
                    f"subscripts={subscripts!r}: index {c!r} repeats in operand {k} (a diagonal); "
                    "not supported"
                )
    for c in out:
        if out.count(c) > 1 or c not in lhs:
            raise ValueError(
                f"subscripts={subscripts!r}: output index {c!r} must appear once in the output "
                "and in some operand"
            )
    return terms, out


def _check_shapes(subscripts: str, terms: list[str], shapes: Sequence[tuple[int, ...]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        if len(term) != len(shape):
            raise ValueError(
                f"operand {k} has shape {tuple(shape)} but subscripts={subscripts!r} give it "
                f"{len(term)} indices ({term!r})"
            )
        for c, d in zip(term, shape):
            if sizes.setdefault(c, d) != d:
                raise ValueError(
                    f"index {c!r} has size {sizes[c]} in one operand and {d} in operand {k}; "
                    "sizes of a shared index must match"
                )
    return sizes


def _optimize_key(optimize: Any) -> Any:
    if isinstance(optimize, str):
        known = opt_einsum.paths.get_path_fn  # raises KeyError, listing the strategies, for an unknown name
        try:
            known(optimize)
        except KeyError as exc:
            raise ValueError(f"optimize={optimize!r} is not an opt_einsum strategy: {exc.args[0]}") from None
        return optimize
    if isinstance(optimize, bool):
        return optimize
    try:
        return tuple(tuple(int(i) for i in step) for step in optimize)
    except TypeError:
        raise TypeError(
            f"optimize must be an opt_einsum strategy name ('auto', 'optimal', 'greedy', ...) "
            f"or an explicit path, got {optimize!r}"
        ) from None


@functools.lru_cache(maxsize=1024)
def _compile(subscripts: str, shapes: tuple[tuple[int, ...], ...], optimize: Any) -> _Compiled:
    terms, out = _parse(subscripts, len(shapes))
    sizes = _check_shapes(subscripts, terms, shapes)
    explicit = ",".join(terms) + "->" + out
    opt = list(optimize) if isinstance(optimize, tuple) else optimize
    path, info = opt_einsum.contract_path(explicit, *shapes, shapes=True, optimize=opt)
    naive = [(0, 1)] * (len(shapes) - 1) if len(shapes) > 1 else [(0,)]
    _, naive_info = opt_einsum.contract_path(explicit, *shapes, shapes=True, optimize=naive)
    plan = ContractionPlan(
        subscripts=explicit,
        shapes=shapes,
        path=tuple(tuple(p) for p in path),
        flops=int(info.opt_cost),
        naive_flops=int(naive_info.opt_cost),
        largest_intermediate=int(info.largest_intermediate),
    )

    # Indices used by only one operand and absent from the output are summed first.
    current = list(terms)
    pre_sums = []
    for k, term in enumerate(current):
        others = "".join(t for m, t in enumerate(current) if m != k) + out
        drop = tuple(p for p, c in enumerate(term) if c not in others)
        pre_sums.append(drop)
        current[k] = "".join(c for c in term if c in others)

    steps = []
    for step in path:
        if len(step) == 1:
            continue  # single-operand steps are covered by the pre-sums and the final permutation
        i, j = sorted(step)
        a, b = current[i], current[j]
        rest = "".join(t for m, t in enumerate(current) if m not in (i, j)) + out
        sum_a = tuple(p for p, c in enumerate(a) if c not in b and c not in rest)
        sum_b = tuple(p for p, c in enumerate(b) if c not in a and c not in rest)
        a = "".join(c for p, c in enumerate(current[i]) if p not in sum_a)
        b = "".join(c for p, c in enumerate(current[j]) if p not in sum_b)
        batch = [c for c in a if c in b and c in rest]
        inner = [c for c in a if c in b and c not in rest]
        free_a = [c for c in a if c not in b]
        free_b = [c for c in b if c not in a]
        perm_a = tuple(a.index(c) for c in batch + free_a + inner)
        perm_b = tuple(b.index(c) for c in batch + inner + free_b)

        def size(cs: list[str]) -> int:
            return math.prod(sizes[c] for c in cs)

        steps.append(
            _Pair(
                i, j, sum_a, sum_b, perm_a, perm_b,
                (size(batch), size(free_a), size(inner)),
                (size(batch), size(inner), size(free_b)),
                tuple(sizes[c] for c in batch + free_a + free_b),
            )
        )
        current = [t for m, t in enumerate(current) if m not in (i, j)]
        current.append("".join(batch + free_a + free_b))
    (last,) = current
    final_sum = tuple(p for p, c in enumerate(last) if c not in out)
    last = "".join(c for c in last if c in out)
    final_perm = tuple(last.index(c) for c in out)
    return _Compiled(plan, tuple(pre_sums), tuple(steps), final_sum, final_perm)


def _captured(subscripts: str, operands: Sequence[Any], xp: Any) -> Any:
    """``torch.einsum`` while a torch graph is captured: one traceable operation, its path planned by torch."""
    import torch

    dtype = xp.result_type(*operands)
    return torch.einsum(subscripts, *(op if op.dtype == dtype else xp.astype(op, dtype) for op in operands))


def contraction_plan(subscripts: str, *shapes: Sequence[int], optimize: Any = "auto") -> ContractionPlan:
    """The path, cost and speed-up :func:`contract` would use for these shapes.

    Examples
    --------
    >>> import tnlib
    >>> plan = tnlib.contraction_plan("ab,bc,cd->ad", (1000, 2), (2, 1000), (1000, 3))
    >>> plan.path
    ((1, 2), (0, 1))
    >>> plan.flops < plan.naive_flops
    True
    """
    key = tuple(tuple(int(d) for d in s) for s in shapes)
    return _compile(subscripts, key, _optimize_key(optimize)).plan


def contract(subscripts: str, *operands: Any, optimize: Any = "auto") -> Any:
    """Evaluate an einsum expression on an optimal path, in the operands' namespace.

    Parameters
    ----------
    subscripts
        Einsum notation, e.g. ``"bj,ij->bi"``; the output may be implicit.
    *operands
        Arrays of one library (mixed dtypes are promoted).
    optimize
        An opt_einsum path strategy (``"auto"``, ``"optimal"``, ``"greedy"``,
        ...) or an explicit path. The compiled plan is cached per
        ``(subscripts, shapes, optimize)``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> a, b, c = np.ones((2, 3)), np.ones((3, 4)), np.ones((4, 5))
    >>> tnlib.contract("ij,jk,kl->il", a, b, c)[0, 0]
    np.float64(12.0)
    """
    if not operands:
        raise ValueError("contract needs at least one operand")
    xp = namespace(*operands)
    if capturing(*operands):
        return _captured(subscripts, operands, xp)
    key = tuple(tuple(int(d) for d in op.shape) for op in operands)
    compiled = _compile(subscripts, key, _optimize_key(optimize))
    dtype = xp.result_type(*operands)
    ops = [op if op.dtype == dtype else xp.astype(op, dtype) for op in operands]
    ops = [xp.sum(op, axis=axes) if axes else op for op, axes in zip(ops, compiled.pre_sums)]
    for st in compiled.steps:
        a, b = ops[st.i], ops[st.j]
        if st.sum_a:
            a = xp.sum(a, axis=st.sum_a)
        if st.sum_b:
            b = xp.sum(b, axis=st.sum_b)
        a = xp.reshape(xp.permute_dims(a, st.perm_a), st.shape_a)
        b = xp.reshape(xp.permute_dims(b, st.perm_b), st.shape_b)
        result = xp.reshape(xp.matmul(a, b), st.shape_out)
        ops = [op for m, op in enumerate(ops) if m not in (st.i, st.j)]
        ops.append(result)
    (result,) = ops
    if compiled.final_sum:
        result = xp.sum(result, axis=compiled.final_sum)
    if compiled.final_perm != tuple(range(len(compiled.final_perm))):
        result = xp.permute_dims(result, compiled.final_perm)
    return result
