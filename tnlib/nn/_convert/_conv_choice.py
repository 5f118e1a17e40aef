"""A convolution's other network: its Tucker-2 form at a parameter budget, judged like the MPO it competes with.

With a parameter budget, ``compress`` fits every ``nn.Conv1d`` / ``nn.Conv2d`` as an
MPO over the ``(out, in * taps)`` matrix of unfolded patches (its layout
chooser). This module gives the Tucker-2 candidate at the same budget (channel
factors and a small core: :class:`~tnlib.nn.TuckerConv1d`,
:class:`~tnlib.nn.TuckerConv2d`, which also run fewer multiply-adds): the ranks
that fit, at three ratios of ``rank_out`` to ``rank_in``, each fitted by HOSVD
and HOOI sweeps and, with calibration, also in the layer's outputs on the
fitted patch rows (:func:`~tnlib.nn._layers._tucker_conv.tucker2_in_metric`,
in the shrunk metric ``(1 - s) C + s tau I`` of :data:`tnlib.metric.SHRINKAGE`),
and the one of least error is kept. Errors are measured as the MPO's are: relative to the kernel
without calibration, relative to the layer's outputs on the held-out patch
rows with it (:meth:`GramFolds.fit_and_held`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tnlib.nn._convert._calibration import GramFolds
from tnlib.nn._layers._tucker_conv import shrunk, tucker2, tucker_params
from tnlib.quantization import relative_error

__all__ = ["TuckerChoice", "tucker_choice"]

_ASPECTS = (0.5, 1.0, 2.0)  # rank_out / rank_in, relative to out / in


@dataclass(frozen=True, eq=False)
class TuckerChoice:
    """The Tucker-2 factors of a kernel, their ranks and errors (``judged``: what the choice compares)."""

    factors: tuple[np.ndarray, np.ndarray, np.ndarray]
    ranks: tuple[int, int]
    params: int
    weight_error: float
    judged: float
    fit_error: float | None
    held_out_error: float | None


def _largest_ranks(out: int, n: int, taps: int, budget: int, aspect: float) -> tuple[int, int] | None:
    """The largest ``(rank_out, rank_in)`` with ``rank_out / rank_in ~ aspect * out / n`` within ``budget``."""
    best = None
    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection on the fraction of the channels kept
        mid = (lo + hi) / 2
        r_in = max(1, min(n, round(n * mid)))
        r_out = max(1, min(out, round(out * mid * aspect)))
        if tucker_params(out, n, taps, r_out, r_in) <= budget:
            best, lo = (r_out, r_in), mid
        else:
            hi = mid
    return best


def tucker_choice(conv: nn.Conv1d | nn.Conv2d, budget: int, folds: GramFolds | None) -> TuckerChoice | None:
    """The Tucker-2 form of ``conv`` of least error within ``budget`` weights (``None``: none fits, or the
    ranks that fit would hold the whole kernel, where the MPO route is exact anyway)."""
    w = conv.weight.detach().to(device="cpu", dtype=torch.float64).numpy()
    out, n = w.shape[:2]
    taps = int(np.prod(w.shape[2:]))
    ranks = {r for a in _ASPECTS if (r := _largest_ranks(out, n, taps, budget, a)) is not None}
    ranks = {r for r in ranks if r != (out, n)}
    if not ranks:
        return None
    fit, held = (None, None) if folds is None else folds.fit_and_held()
    matrix = w.reshape(out, -1)
    best = None
    for r_out, r_in in sorted(ranks):
        fits = [tucker2(w, r_out, r_in)]
        if fit is not None and np.trace(fit) > 0:  # also fitted in the layer's outputs, judged with the other
            fits.append(tucker2(w, r_out, r_in, gram=shrunk(fit)))
        for factors in fits:
            choice = _judged(matrix, factors, fit, held, taps)
            if best is None or choice.judged < best.judged:
                best = choice
    return best


def _judged(matrix: np.ndarray, factors: tuple[np.ndarray, np.ndarray, np.ndarray], fit: np.ndarray | None,
            held: np.ndarray | None, taps: int) -> TuckerChoice:
    u_out, core, u_in = factors
    out, n = u_out.shape[0], u_in.shape[0]
    r_out, r_in = core.shape[:2]  # a leg of fewer directions than asked (in > out * taps) keeps what it has
    approx = np.einsum("or,rsk,is->oik", u_out, core.reshape(r_out, r_in, taps), u_in).reshape(out, -1)
    plain = relative_error(matrix, approx)
    on_fit = None if fit is None else relative_error(matrix, approx, fit)
    on_held = None if held is None else relative_error(matrix, approx, held)
    judged = on_held if on_held is not None else on_fit if on_fit is not None else plain
    return TuckerChoice(factors, (r_out, r_in), tucker_params(out, n, taps, r_out, r_in), plain, judged, on_fit,
                        on_held)
