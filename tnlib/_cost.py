"""The cost model of an MPO weight's exact forms, from the core shapes alone (multiply-adds).

``x (rows, N) @ W^T`` can run through the dense matrix ``W`` (``M N`` per row)
or through the chain merged into two halves at a cut ``s``,
``L (M_L, N_L, r)`` and ``R (r, M_R, N_R)``: two matrix products of
``N_L r M_R (N_R + M_L)`` per row. Building a form from the cores costs the
merging of its halves (the dense matrix merges the whole chain).
:func:`split_cost` picks the cheapest form for a number of rows, counting
the building or not:

* eager inference plans (:class:`tnlib._apply.WeightPlan`) build a form once
  and reuse it: ``rows=None``, per row only;
* a captured graph (:mod:`tnlib.nn._layers._traced`) builds it on every call:
  ``rows`` products and ``build=True``;
* :meth:`tnlib.MPO.apply` builds the halves per call and compares them with
  the contraction path of :func:`tnlib.contract` (``dense=False``).

On a tie the dense matrix wins, then the earlier cut: one large product runs
closest to the machine's peak.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

__all__ = ["FormCost", "merge_macs", "split_cost"]


class FormCost(NamedTuple):
    """The cheapest form: the cut of the merged halves (``None``: the dense matrix) and its multiply-adds."""

    split: int | None
    macs: int


def merge_macs(outs: Sequence[int], ins: Sequence[int], bonds: Sequence[int]) -> int:
    """Multiply-adds of merging cores with these legs left to right (``bonds`` has one more entry)."""
    macs, o, i = 0, outs[0], ins[0]
    for k in range(1, len(outs)):
        macs += o * i * bonds[k] * outs[k] * ins[k] * bonds[k + 1]
        o, i = o * outs[k], i * ins[k]
    return macs


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def split_cost(shapes: Sequence[Sequence[int]], rows: int | None = None, *, build: bool = False,
               dense: bool = True) -> FormCost:
    """The form of least cost for ``rows`` products (``None``: per row, building never counted).

    ``shapes`` are the cores' ``(left, out, in, right)``; ``build`` counts the
    merging of the form's halves; ``dense=False`` leaves the dense matrix out
    (the halves only).
    """
    outs = [int(s[1]) for s in shapes]
    ins = [int(s[2]) for s in shapes]
    bonds = [int(shapes[0][0])] + [int(s[3]) for s in shapes]
    per_call = 1 if rows is None else int(rows)
    builds = build and rows is not None
    best: FormCost = FormCost(None, -1)
    if dense:
        best = FormCost(None, (merge_macs(outs, ins, bonds) if builds else 0) + per_call * _prod(outs) * _prod(ins))
    for s in range(1, len(shapes)):
        ml, nl, mr, nr = _prod(outs[:s]), _prod(ins[:s]), _prod(outs[s:]), _prod(ins[s:])
        cost = per_call * nl * bonds[s] * mr * (nr + ml)
        if builds:
            cost += merge_macs(outs[:s], ins[:s], bonds[: s + 1])
            cost += merge_macs(outs[s:][::-1], ins[s:][::-1], bonds[s:][::-1])
        if best.macs < 0 or cost < best.macs:
            best = FormCost(s, cost)
    return best
