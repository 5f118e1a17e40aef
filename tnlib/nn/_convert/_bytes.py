"""Budgets in stored bytes: each linear weight becomes the quantized form of least error that its bytes buy.

The forms of one weight matrix ``W`` (``out x in``) are: ``W`` itself at 8, 4, 3
and 2 bits (round-to-nearest, or GPTQ in the calibration Gram), and low-rank
splits ``U V`` with both factors at 4 or 8 bits (:func:`tnlib.quantize_low_rank`:
the whitened SVD, then GPTQ and a refit). With calibration every form is
fitted on the Gram of all folds but one and judged on the held-out fold (the
relative error of ``x W^T`` there); without, by the relative error of ``W``.
Plain quantization is always a candidate, so at equal bytes a byte budget is
never worse than it on the rows that judge.

``allocation="uniform"`` gives every matrix the bytes of its share of the
weights; ``"global"`` spends the whole budget where it removes the most
squared relative error, each matrix's weighted (with calibration) by how much
the model's outputs move per unit of it (a Lagrangian sweep over every
matrix's forms, never worse by that measure than the uniform shares).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

import tnlib
from tnlib.nn._convert._calibration import GramFolds
from tnlib.quantization import (
    Quantization,
    QuantizedMatrix,
    gptq_factor,
    gptq_widths,
    quantize,
    quantize_low_rank,
    relative_error,
    split_prefixes,
    whitened_svd,
)

__all__ = ["Form", "forms_of", "refitted", "choose_forms", "BYTE_KINDS", "weight_key"]

BYTE_KINDS = ("Linear", "Conv1D", "Conv1d", "Conv2d", "LSTM", "GRU", "LSTMCell", "GRUCell", "MultiheadAttention")
"""The kinds of layer a byte budget converts: one weight matrix of ``x W^T`` (``Linear``, transformers'
``Conv1D``; a convolution's kernel as the matrix of its unfolded patches), or one per layer, direction and side of
a recurrent layer or cell (``LSTM``, ``GRU``, ``LSTMCell``, ``GRUCell``), or one per projection of an attention
(``MultiheadAttention``: query, key, value, output), each given its own form."""


def weight_key(name: str, weight: str) -> str:
    """How a byte budget names one weight matrix: the module's name for its only ``weight``, else the
    parameter's path (``encoder.weight_hh_l0``)."""
    return name if weight == "weight" else f"{name}.{weight}"

_DENSE_BITS = (8, 4, 3, 2)
_FACTOR_BITS = (8, 4)
_RANKS = 24  # low-rank forms per matrix and factor width, at most (the largest that fits a budget is the one that
# counts: a sparse grid of ranks loses what the bytes between two of its ranks would have bought)


@dataclass(frozen=True, eq=False)
class Form:
    """One way to store a weight matrix: its quantized factors, their bytes and errors."""

    label: str
    factors: tuple[QuantizedMatrix, ...]
    stored_bytes: int
    error: float
    fit_error: float | None
    held_out_error: float | None
    weight_error: float
    note: str = ""


def _group(n: int) -> int | None:
    """The group size of a matrix with ``n`` columns: 64, 32 or 16 when one divides it, else one per row."""
    return next((g for g in (64, 32, 16) if n % g == 0), None)



class _Judge:
    """Relative errors of many approximations of one ``W`` in one Gram ``H`` (``None``: Frobenius), sharing
    ``W H`` and ``tr(W H W^T)``: ``||E||_H^2 = tr(W H W^T) - 2 tr(W H Q^T) + tr(Q H Q^T)``, and for low-rank
    ``Q = A B`` with ``B`` a prefix of one quantized ``V`` the products of that ``V`` with ``H``, once."""

    def __init__(self, m: np.ndarray, h: np.ndarray | None) -> None:
        self.h = h
        self.wh = m if h is None else m @ h
        self.signal = float(np.sum(self.wh * m))
        self.vhv: np.ndarray | None = None
        self.whv: np.ndarray | None = None

    def dense(self, q: np.ndarray) -> float:
        qh = q if self.h is None else q @ self.h
        return self._relative(self.signal - 2 * float(np.sum(self.wh * q)) + float(np.sum(qh * q)))

    def prefixes_of(self, v: np.ndarray) -> None:
        """``V H V^T`` and ``W H V^T`` of the deepest ``V``: every prefix ``B`` of it reads its blocks."""
        vh = v if self.h is None else v @ self.h
        self.vhv, self.whv = vh @ v.T, self.wh @ v.T

    def low_rank(self, a: np.ndarray, rank: int) -> float:
        """The error of ``A B`` with ``B`` the first ``rank`` rows of the ``V`` of :meth:`prefixes_of`."""
        assert self.vhv is not None and self.whv is not None
        cross = float(np.sum(self.whv[:, :rank] * a))
        return self._relative(self.signal - 2 * cross + float(np.sum((a @ self.vhv[:rank, :rank]) * a)))

    def _relative(self, squared: float) -> float:
        return math.sqrt(max(squared, 0.0) / self.signal) if self.signal > 0 else 0.0


def forms_of(w: torch.Tensor, folds: GramFolds | None) -> list[Form]:
    """Every candidate form of ``w`` (``out x in``, any float dtype), judged as the module docstring says
    (``fit_error`` is left for :func:`with_fit_error` to fill in for the chosen form)."""
    m = w.detach().to(device="cpu", dtype=torch.float64).numpy()
    out, n = m.shape
    note = ""
    if folds is not None and folds.rows < n:
        note = (f"calibration has {folds.rows} rows for {n} inputs, too few to judge the forms: chosen by "
                "weight error, round-to-nearest")
        folds = None
    elif folds is not None and not float(torch.trace(folds.gram())) > 0.0:
        note = ("the calibration inputs of this weight are all zero (a state never set?): chosen by weight error, "
                "round-to-nearest")
        folds = None
    fit, held = _grams(folds)
    c = np.eye(n) if fit is None else fit
    factor = gptq_factor(c)
    judges = [_Judge(m, held if held is not None else fit), _Judge(m, None)]

    def form(label: str, factors: tuple[QuantizedMatrix, ...], errors: list[float]) -> Form:
        on_held = errors[0] if held is not None else None
        return Form(label, factors, sum(f.stored_bytes for f in factors), errors[0], None, on_held, errors[1], note)

    found = []
    for group, bits in _dense_plans(n):  # every width at one group size in one pass over the columns
        widths = [Quantization(b, group) for b in bits]
        made = [quantize(m, q) for q in widths] if fit is None else gptq_widths(m, factor, widths)
        for q, f in zip(widths, made):
            approx = f.dequantize()
            found.append(form(f"int{q.bits}" + (f" g{q.group_size}" if q.group_size else " per row"), (f,),
                              [j.dense(approx) for j in judges]))
    g = next((g for g in (32, 16) if n % g == 0), None)
    if g is None:
        return found  # no group divides the inputs: the low-rank factors would need one scale per row
    plans = _rank_plans(out, n, g)
    if not plans:
        return found
    _, v = whitened_svd(m, c)
    deepest = max(r for ranks in plans.values() for r in ranks)
    v_all = gptq_widths(v[:deepest], factor, list(plans))  # rows are independent: every rank is a prefix
    for (q, ranks), vq in zip(plans.items(), v_all):
        b_all = vq.dequantize()
        for j in judges:
            j.prefixes_of(b_all)
        for r, (u_q, v_q) in zip(ranks, split_prefixes(m, c, vq, ranks, q)):
            a = u_q.dequantize()
            found.append(form(f"rank {r} x int{q.bits} g{g}", (u_q, v_q),
                              [j.low_rank(a, r) for j in judges]))
    return found


def _rank_plans(out: int, n: int, g: int) -> dict[Quantization, list[int]]:
    """Per factor width, the ranks (multiples of the group ``g``, at most ``_RANKS`` spread evenly) whose
    split stores fewer bytes than the plain weight at that width."""
    plans = {}
    for bits in _FACTOR_BITS:
        q = Quantization(bits, g)
        dense_bytes = Quantization(bits, None if bits == 8 else _group(n)).stored_bytes((out, n))
        ranks = [r for r in range(g, min(out, n) + 1, g)
                 if q.stored_bytes((out, r)) + q.stored_bytes((r, n)) < dense_bytes]
        if len(ranks) > _RANKS:
            pick = np.unique(np.round(np.linspace(0, len(ranks) - 1, _RANKS)).astype(int))
            ranks = [ranks[i] for i in pick]
        if ranks:
            plans[q] = ranks
    return plans


def refitted(form: Form, w: torch.Tensor, folds: GramFolds | None) -> Form:
    """The chosen ``form`` fitted again, at the same widths, groups and rank, on every calibration row (it was
    chosen by its error on a held-out fold, fitted without it), with its relative error on those rows as
    ``fit_error``; ``error`` and ``held_out_error`` stay those the choice was made by. Unchanged without
    calibration or when its rows were too few to judge (``note``)."""
    if folds is None or form.note:
        return form
    m = w.detach().to(device="cpu", dtype=torch.float64).numpy()
    c = np.array(folds.gram().numpy())
    q = form.factors[0].quantization
    if len(form.factors) == 1:
        factors: tuple[QuantizedMatrix, ...] = (quantize(m, q, gram=c),)
    else:
        factors = tuple(quantize_low_rank(m, int(form.factors[0].shape[1]), q, gram=c))
    approx = factors[0].dequantize() if len(factors) == 1 else factors[0].dequantize() @ factors[1].dequantize()
    return dataclasses.replace(form, factors=factors, stored_bytes=sum(f.stored_bytes for f in factors),
                               fit_error=relative_error(m, approx, c))


def _dense_plans(n: int) -> list[tuple[int | None, tuple[int, ...]]]:
    """``(group size, widths)`` of the plain quantized forms of a matrix with ``n`` columns: 8 bits with one scale
    per row, and 4, 3 and 2 bits with each of 128, 64 and 32 that divides ``n``; every width with one scale per
    row when none does (a convolution's ``in * taps`` columns, e.g. 129 x 3)."""
    groups = [g for g in (128, 64, 32) if n % g == 0]
    if not groups:
        return [(None, _DENSE_BITS)]
    return [(None, (8,)), *((g, tuple(b for b in _DENSE_BITS if b != 8)) for g in groups)]


def _grams(folds: GramFolds | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(Gram the forms are fitted in, Gram they are judged in), ``None`` twice without calibration."""
    return (None, None) if folds is None else folds.fit_and_held()


def choose_forms(candidates: dict[str, list[Form]], sizes: dict[str, int], total: int,
                 allocation: str, weights: dict[str, float] | None = None) -> tuple[dict[str, Form], dict[str, int]]:
    """One form per matrix within ``total`` stored bytes, and each matrix's byte budget.

    ``sizes`` are the matrices' entries; ``"uniform"`` gives each
    ``total * size / sum(sizes)`` bytes and takes its least-error form within;
    ``"global"`` minimises the sum of squared errors over every choice within
    ``total``, each weighted by ``weights`` when given (how much the model's
    outputs move per unit of that matrix's squared relative error).
    ``ValueError`` when even the smallest forms do not fit.
    """
    least = sum(min(f.stored_bytes for f in fs) for fs in candidates.values())
    if least > total:
        raise ValueError(f"bytes={total} is below what the smallest forms of these weights take ({least} bytes: "
                         "2 bits per weight with their scales); pass at least that")
    if allocation == "uniform":
        chosen, budgets = {}, {}
        shares = _shares(sizes, total)
        for name, fs in candidates.items():
            budget = shares[name]
            fitting = [f for f in fs if f.stored_bytes <= budget]
            if not fitting:
                smallest = min(f.stored_bytes for f in fs)
                raise ValueError(f"weight {name!r} gets {budget} bytes of bytes={total} by its size, below its "
                                 f"smallest form ({smallest} bytes); pass more bytes or allocation='global'")
            chosen[name] = min(fitting, key=lambda f: (f.error, f.stored_bytes))
            budgets[name] = budget
        return chosen, budgets
    scale = weights or {}
    total_weight = sum(scale.values())
    if scale and not (math.isfinite(total_weight) and total_weight > 0):
        scale = {}  # nothing measured: every matrix counts alike
    cost = {name: scale.get(name, 1.0) / (total_weight if scale else 1.0) for name in candidates}
    chosen = _lagrangian(candidates, total, cost)
    try:  # the uniform shares are one feasible choice: global is never worse than them by its own measure
        uniform, _ = choose_forms(candidates, sizes, total, "uniform")
    except ValueError:
        uniform = None
    if uniform is not None and _squared(uniform, cost) < _squared(chosen, cost):
        chosen = uniform
    return chosen, {name: f.stored_bytes for name, f in chosen.items()}


def _squared(choice: dict[str, Form], cost: dict[str, float]) -> float:
    return sum(cost[name] * f.error**2 for name, f in choice.items())


def _shares(sizes: dict[str, int], total: int) -> dict[str, int]:
    """``total`` bytes split in proportion to the matrices' sizes beyond each one's fixed 2-byte exponent, whole
    bytes by largest remainders (so the shares sum to ``total``: plain quantization at ``total`` fits in them)."""
    fixed = 2 * len(sizes)
    rest = max(total - fixed, 0)
    everything = sum(sizes.values())
    exact = {name: rest * size / everything for name, size in sizes.items()}
    shares = {name: 2 + int(math.floor(x)) for name, x in exact.items()}
    left = total - sum(shares.values())
    for name in sorted(exact, key=lambda n: exact[n] - math.floor(exact[n]), reverse=True)[:max(left, 0)]:
        shares[name] += 1
    return shares


def _lagrangian(candidates: dict[str, list[Form]], total: int, cost: dict[str, float]) -> dict[str, Form]:
    """The choice of least total squared error within ``total`` bytes found by a sweep of the price of a byte,
    then the leftover bytes spent greedily on the upgrade that removes the most error per byte."""

    def pick(price: float) -> dict[str, Form]:
        return {name: min(fs, key=lambda f: (cost[name] * f.error**2 + price * f.stored_bytes, f.stored_bytes))
                for name, fs in candidates.items()}

    def size(choice: dict[str, Form]) -> int:
        return sum(f.stored_bytes for f in choice.values())

    lo, hi = 0.0, 1.0
    while size(pick(hi)) > total:
        hi *= 4.0
        if hi > 1e30:
            break
    if size(pick(lo)) <= total:
        return pick(lo)
    for _ in range(100):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 1e12
        if size(pick(mid)) > total:
            lo = mid
        else:
            hi = mid
        if lo > 0 and hi / lo < 1 + 1e-9:
            break
    choice = pick(hi)
    if size(choice) > total:  # the sweep's cheapest end: every matrix at its smallest form
        choice = {name: min(fs, key=lambda f: f.stored_bytes) for name, fs in candidates.items()}
    return _spend(candidates, choice, total - size(choice), cost)


def _spend(candidates: dict[str, list[Form]], choice: dict[str, Form], left: int,
           cost: dict[str, float]) -> dict[str, Form]:
    """``choice`` upgraded, one matrix at a time, by the upgrade that removes the most squared error per byte
    within the ``left`` bytes, while one fits."""
    while True:
        best = None
        for name, fs in candidates.items():
            now = choice[name]
            for f in fs:
                extra = f.stored_bytes - now.stored_bytes
                gain = cost[name] * (now.error**2 - f.error**2)
                if 0 < extra <= left and gain > 0 and (best is None or gain / extra > best[0]):
                    best = (gain / extra, name, f)
        if best is None:
            return choice
        left -= best[2].stored_bytes - choice[best[1]].stored_bytes
        choice[best[1]] = best[2]


def byte_budget(value: Any) -> int:
    """``bytes=`` as a positive int, or an error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"bytes={value!r} is invalid; expected a positive int: the stored bytes of the converted "
                         "weights (for b bits per weight: b * weights // 8)")
    return int(value)


def check_byte_options(truncation: tnlib.Truncation | None, compression: float | None, num_cores: int | None,
                       objective: Any) -> None:
    """``bytes=`` chooses every matrix's form itself: refuse the options of the MPO route beside it."""
    given = [name for name, v in (("truncation", truncation), ("compression", compression),
                                  ("num_cores", num_cores)) if v is not None]
    if given:
        raise ValueError(f"bytes= chooses each weight's quantized form itself; drop {', '.join(given)} "
                         "(compression= and truncations budget parameters of MPO layers)")
    kind = objective.kind if isinstance(objective, tnlib.Objective) else objective
    if kind != "error":
        raise ValueError(f"bytes= chooses by error only; objective={kind!r} is not available with it")


def byte_targets(targets: Sequence[str], kinds: dict[str, str], named: bool) -> tuple[list[str], list[str]]:
    """The targets a byte budget converts and those it leaves dense (named ones of another kind: refused)."""
    others = [t for t in targets if kinds[t] not in BYTE_KINDS]
    if others and named:
        raise ValueError(f"bytes= converts nn.Linear (and transformers' Conv1D), nn.Conv1d / nn.Conv2d (groups=1, "
                         f"zero padding), nn.LSTM, nn.GRU and their cells, nn.MultiheadAttention; "
                         f"{others[0]!r} is an "
                         f"nn.{kinds[others[0]]}: leave it out of layers=[...]")
    return [t for t in targets if kinds[t] in BYTE_KINDS], others
