"""A convolution's other networks: its Tucker-2 and CP forms at a parameter budget, judged like the MPO they
compete with.

With a parameter budget, ``compress`` fits every ``nn.Conv1d`` / ``nn.Conv2d`` as an
MPO over the ``(out, in * taps)`` matrix of unfolded patches (its layout
chooser). This module gives the candidates that keep the kernel's legs apart
and run as small convolutions that never form it (fewer multiply-adds too):

- Tucker-2 (channel factors and a small core: :class:`~tnlib.nn.TuckerConv1d`,
  :class:`~tnlib.nn.TuckerConv2d`): the ranks that fit, at three ratios of
  ``rank_out`` to ``rank_in``, each fitted by HOSVD and HOOI sweeps and, with
  calibration, also in the layer's outputs on the fitted patch rows
  (:func:`~tnlib.nn._layers._tucker_conv.tucker2_in_metric`, in the shrunk
  metric ``(1 - s) C + s tau I`` of :data:`tnlib.metric.SHRINKAGE`);
- CP (a ``1 x 1``, a depthwise and a ``1 x 1`` convolution:
  :class:`~tnlib.nn.CPConv1d`, :class:`~tnlib.nn.CPConv2d`): the largest rank
  that fits, by alternating least squares on the kernel. Without calibration
  a degenerate fit is refused: terms whose norms sum past ``sqrt(rank)``
  times the fit's norm cancel (:func:`~tnlib.nn._layers._cp_conv.cancellation`),
  and their small weight error hides large terms that inputs can excite (on
  the packaged Silero VAD such fits, 6-40x the kernel's norm in total,
  lowered every convolution's weight error at 4x and dropped the uncalibrated
  model's ROC-AUC from 0.79 to 0.56). With calibration it is judged like the
  others, on the held-out patch rows, which measure whether the inputs excite
  those terms (refused by the weights alone, the CP fits of the pretrained
  CREPE's convolutions, cancellation 2-20, were never tried, though with them
  the 2x model keeps its pitch accuracy: ``benchmarks/bench_crepe.py``).

The one of least error is kept. Errors are measured as the MPO's are: relative to the kernel
without calibration, relative to the layer's outputs on the held-out patch
rows with it (:meth:`GramFolds.fit_and_held`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tnlib.metric import shrunk
from tnlib.nn._convert._calibration import GramFolds
from tnlib.nn._layers._cp_conv import build_cp, cancellation, cp_kernel, cp_params
from tnlib.nn._layers._tucker_conv import build_tucker, tucker2, tucker_params
from tnlib.quantization import relative_error

__all__ = ["ConvChoice", "conv_choice"]

_ASPECTS = (0.5, 1.0, 2.0)  # rank_out / rank_in, relative to out / in


@dataclass(frozen=True, eq=False)
class ConvChoice:
    """A network of a kernel (``"tucker-2"``: ``(U_out, G, U_in)``, ranks ``(out, in)``; ``"cp"``: ``(A, B, K)``,
    ranks ``(rank,)``), its size and errors (``judged``: what the choice compares)."""

    network: str
    factors: tuple[np.ndarray, np.ndarray, np.ndarray]
    ranks: tuple[int, ...]
    params: int
    weight_error: float
    judged: float
    fit_error: float | None
    held_out_error: float | None

    def build(self, conv: nn.Module) -> nn.Module:
        """The layer that replaces ``conv``."""
        return build_tucker(conv, self.factors) if self.network == "tucker-2" else build_cp(conv, self.factors)

    @property
    def note(self) -> str:
        """How the report describes it."""
        if self.network == "cp":
            return f"cp rank {self.ranks[0]}"
        return f"tucker-2 ranks (out {self.ranks[0]}, in {self.ranks[1]})"


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


def conv_choice(conv: nn.Conv1d | nn.Conv2d, budget: int, folds: GramFolds | None) -> ConvChoice | None:
    """The Tucker-2 or CP form of ``conv`` of least error within ``budget`` weights (``None``: none fits, or the
    ranks that fit would hold the whole kernel, where the MPO route is exact anyway)."""
    w = conv.weight.detach().to(device="cpu", dtype=torch.float64).numpy()
    out, n = w.shape[:2]
    taps = int(np.prod(w.shape[2:]))
    ranks = {r for a in _ASPECTS if (r := _largest_ranks(out, n, taps, budget, a)) is not None}
    ranks = {r for r in ranks if r != (out, n)}
    fit, held = (None, None) if folds is None else folds.fit_and_held()
    matrix = w.reshape(out, -1)
    candidates = []
    for r_out, r_in in sorted(ranks):
        candidates.append(("tucker-2", tucker2(w, r_out, r_in)))
        if fit is not None and np.trace(fit) > 0:  # also fitted in the layer's outputs, judged with the other
            candidates.append(("tucker-2", tucker2(w, r_out, r_in, gram=shrunk(fit))))
    rank = min(budget // (out + n + taps), out * n, out * taps, n * taps)  # past the bound CP is exact anyway
    if 1 <= rank and cp_params(out, n, taps, rank) < out * n * taps:
        cp = cp_kernel(w, rank)
        # a degenerate fit (terms that cancel) is judged only where held-out rows show what inputs excite
        if held is not None or cancellation(cp) <= 1:
            candidates.append(("cp", cp))
    best = None
    for network, factors in candidates:
        choice = _judged(network, matrix, factors, fit, held, taps)
        if best is None or choice.judged < best.judged:
            best = choice
    return best


def _judged(network: str, matrix: np.ndarray, factors: tuple[np.ndarray, np.ndarray, np.ndarray],
            fit: np.ndarray | None, held: np.ndarray | None, taps: int) -> ConvChoice:
    out = matrix.shape[0]
    ranks: tuple[int, ...]
    if network == "cp":
        a, b, k = factors
        n, ranks = b.shape[0], (int(a.shape[1]),)
        approx = np.einsum("or,ir,tr->oit", a, b, k).reshape(out, -1)
        params = cp_params(out, n, taps, ranks[0])
    else:
        u_out, core, u_in = factors
        n = u_in.shape[0]
        r_out, r_in = core.shape[:2]  # a leg of fewer directions than asked (in > out * taps) keeps what it has
        approx = np.einsum("or,rsk,is->oik", u_out, core.reshape(r_out, r_in, taps), u_in).reshape(out, -1)
        ranks, params = (r_out, r_in), tucker_params(out, n, taps, r_out, r_in)
    plain = relative_error(matrix, approx)
    on_fit = None if fit is None else relative_error(matrix, approx, fit)
    on_held = None if held is None else relative_error(matrix, approx, held)
    judged = on_held if on_held is not None else on_fit if on_fit is not None else plain
    return ConvChoice(network, factors, ranks, params, plain, judged, on_fit, on_held)
