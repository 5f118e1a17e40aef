"""What :func:`tnlib.nn.compress` reports per layer: ``LayerReport``, pooled from the MPOs' own reports."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

import tnlib
from tnlib._choose import macs
from tnlib.nn._convert._calibration import GramFolds
from tnlib.nn._layers._kinds import Source

__all__ = ["LayerReport", "layer_report", "byte_report", "network_report", "mpo_macs", "Pooled"]


@dataclass(frozen=True)
class LayerReport:
    """What :func:`compress` did to one layer.

    Attributes
    ----------
    name : str
        The module's name in the model.
    kind : str
        The kind of module replaced: ``"Linear"``, ``"Conv1D"`` (transformers'),
        ``"LSTM"``, ``"GRU"``, ``"LSTMCell"``, ``"GRUCell"``, ``"Conv1d"``,
        ``"Conv2d"``, ``"Embedding"`` or ``"MultiheadAttention"``.
    params_before, params_after : int
        Weight entries (biases excluded) of the original and of the MPO layer.
    relative_error : float
        ``||W - W_mpo||_F / ||W||_F`` over all the layer's weight matrices.
    entropies : tuple of tuple of float
        Von Neumann entropy of every bond of every MPO of the layer.
    output_error : float or None
        With calibration: ``sqrt(sum_W tr((W - W_mpo) C (W - W_mpo)^T) / sum_W tr(W C W^T))``,
        the relative error of the layer's pre-activations on the calibration rows the fit saw.
    budget : int or None
        The parameter budget of the layer (sum over its matrices).
    layouts : tuple of str
        The layout of every MPO (``out (...) x in (...)``).
    note : str
        Set when the stored weights miss the budget by more than 5 %.
    held_out_error : float or None
        With calibration: the same relative error on the held-out calibration
        rows (one fold in four of the samples), which the fit did not see.
    share : float or None
        The layer's part of the budget of all converted layers (with
        ``allocation="global"`` chosen by error, else by size).
    macs, dense_macs : int or None
        Multiply-adds per input row (per step for a recurrent layer, all its
        matrices) of the MPO layer's inference form (merged halves or the
        dense matrix, whichever is cheaper; :func:`tnlib._cost.split_cost`)
        and of the dense layer. An embedding's ``dense_macs`` is ``None``: a
        dense lookup multiplies nothing, so no :attr:`flop_ratio` is claimed.
    bytes_before, bytes_after : int or None
        Stored bytes of the layer's weights (biases excluded) before and after:
        the dense weights' ``numel * itemsize``, and an MPO layer's cores or a
        quantized layer's packed codes, float16 scales and zero points.
    byte_budget : int or None
        With ``compress(bytes=...)``: the bytes the layer's weights were given.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    >>> small, reports = tnlib.nn.compress(model, compression=4)
    >>> reports[0].name, reports[0].kind, reports[0].params_after <= 64 * 64 // 4
    ('0', 'Linear', True)
    """

    name: str
    kind: str
    params_before: int
    params_after: int
    relative_error: float
    entropies: tuple[tuple[float, ...], ...]
    output_error: float | None = None
    budget: int | None = None
    layouts: tuple[str, ...] = ()
    note: str = ""
    held_out_error: float | None = None
    share: float | None = None
    macs: int | None = None
    dense_macs: int | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    byte_budget: int | None = None

    @property
    def compression_ratio(self) -> float:
        return self.params_before / self.params_after

    @property
    def flop_ratio(self) -> float | None:
        """``macs / dense_macs``: below 1, the MPO layer needs fewer multiply-adds per row."""
        return None if self.macs is None or not self.dense_macs else self.macs / self.dense_macs

    def __repr__(self) -> str:
        held = "" if self.held_out_error is None else f", held_out_error={self.held_out_error:.3g}"
        size = (f"{self.bytes_before} -> {self.bytes_after} bytes" if self.byte_budget is not None
                else f"{self.params_before} -> {self.params_after} weights")
        return f"LayerReport({self.name!r}, {self.kind}, {size}, relative_error={self.relative_error:.3g}{held})"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"

    def __str__(self) -> str:
        out = "" if self.output_error is None else f", output error {self.output_error:.4f}"
        out += "" if self.held_out_error is None else f" (held-out rows {self.held_out_error:.4f})"
        size = f"{self.params_before} -> {self.params_after} weights ({self.compression_ratio:.2f}x)"
        if self.bytes_before is not None and self.bytes_after is not None and self.byte_budget is not None:
            size = (f"{self.bytes_before} -> {self.bytes_after} bytes ({self.bytes_before / self.bytes_after:.2f}x, "
                    f"{8 * self.bytes_after / self.params_before:.2f} bits per weight) as {', '.join(self.layouts)}")
        text = f"{self.name} ({self.kind}): {size}, weight error {self.relative_error:.4f}{out}"
        return text + (f"; {self.note}" if self.note else "")


def layer_report(name: str, source: Source, module: Any, mpos: dict[str, tnlib.MPO],
            folds: dict[str, GramFolds], budget: int | None) -> LayerReport:
    """The layer's report from its MPOs' reports (errors as the decomposition measured them)."""
    weights = source.weights(module)
    errors: list[tuple[float, float]] = []  # (relative error, norm) per weight, pooled at unit scale below
    seen, held = Pooled(), Pooled()
    for wname, mpo in mpos.items():
        report = mpo.report
        assert report is not None
        errors.append((report.relative_error_bound, report.norm))
        f = folds.get(wname)
        if f is not None and report.output_error is not None:
            w64 = weights[wname].to(torch.float64).cpu()
            metric = f.metric()  # the folds as the fit saw them: all but the last usable one, which it held out
            usable = metric.usable_folds()
            fit_gram, held_gram, _ = metric.split(usable[-1]) if len(usable) >= 2 else (f.gram(), None, 0)
            seen.add(report.output_error, w64, fit_gram)
            if held_gram is not None and report.held_out_error is not None:
                held.add(report.held_out_error, w64, held_gram)
    before = sum(w.numel() for w in weights.values())
    after = sum(m.num_params for m in mpos.values())
    note = ""
    if budget is not None and after < 0.95 * budget:
        note = (
            f"stored {after} weights of a {budget} budget ({after / budget:.1%}): the best layout's "
            "ranks cannot fill it more closely"
        )
    return LayerReport(
        name,
        source.kind,
        before,
        after,
        _pooled_relative(errors),
        tuple(tuple(float(v) for v in m.entropies()) for m in mpos.values()),
        seen.value(),
        budget,
        tuple(f"out {m.out_dims} x in {m.in_dims}" for m in mpos.values()),
        note,
        held.value(),
        macs=sum(mpo_macs(m) for m in mpos.values()),
        # a dense lookup reads a row and multiplies nothing: no ratio of multiply-adds to report for a table
        dense_macs=None if source.record is None else sum(int(w.shape[0]) * int(w.shape[1]) for w in weights.values()),
        bytes_before=sum(w.numel() * w.element_size() for w in weights.values()),
        bytes_after=after * next(iter(weights.values())).element_size(),  # cores kept in the weights' dtype
    )


def _pooled_relative(errors: list[tuple[float, float]]) -> float:
    """``sqrt(sum (e_k n_k)^2 / sum n_k^2)`` of relative errors ``e_k`` of weights of norms ``n_k``, computed with
    the norms divided by the largest (norms near 1e200 square to inf)."""
    top = max((n for _, n in errors), default=0.0)
    if not top > 0.0 or not math.isfinite(top):
        return 0.0 if not errors else max(e for e, _ in errors)
    num = sum((e * n / top) ** 2 for e, n in errors)
    den = sum((n / top) ** 2 for _, n in errors)
    return math.sqrt(num / den)


def byte_report(name: str, kind: str, parts: Sequence[tuple[torch.Tensor, Any, GramFolds | None]],
                budget: int) -> LayerReport:
    """The report of a layer whose weights are stored as quantized forms (:mod:`tnlib.nn._convert._bytes`)
    within ``budget``: ``parts`` holds each weight matrix, its form (refitted on every calibration row: its
    ``fit_error`` is measured there) and its calibration folds; several weights' errors are pooled by their signals
    (in the Gram each error is measured in)."""
    forms = [form for _, form, _ in parts]
    weight, fit, held = Pooled(), Pooled(), Pooled()
    for w, form, folds in parts:
        w64 = w.detach().to(device="cpu", dtype=torch.float64)
        weight.add(form.weight_error, w64, None)
        held_gram = folds.fit_and_held()[1] if folds is not None else None
        if form.fit_error is not None and folds is not None:  # measured on every calibration row (the refit's)
            fit.add(form.fit_error, w64, folds.gram())
        if form.held_out_error is not None and held_gram is not None:
            held.add(form.held_out_error, w64, torch.from_numpy(held_gram))
    stored = sum(int(f.codes.size) for form in forms for f in form.factors)
    macs = sum(int(w.shape[0]) * int(w.shape[1]) if len(form.factors) == 1 else
               int(form.factors[1].shape[0]) * (int(w.shape[0]) + int(w.shape[1])) for w, form, _ in parts)
    before = sum(w.numel() for w, _, _ in parts)
    notes = sorted({form.note for form in forms if form.note})
    return LayerReport(
        name, kind, before, stored, weight.value() or 0.0, (), fit.value() if fit.entries else None, None,
        tuple(form.label for form in forms), "; ".join(notes),
        held_out_error=held.value() if held.entries else None,
        macs=macs, dense_macs=sum(int(w.shape[0]) * int(w.shape[1]) for w, _, _ in parts),
        bytes_before=sum(w.numel() * w.element_size() for w, _, _ in parts),
        bytes_after=sum(form.stored_bytes for form in forms), byte_budget=budget,
    )


def network_report(name: str, conv: Any, choice: Any, budget: int) -> LayerReport:
    """The report of a convolution replaced by its Tucker-2 or CP network (:mod:`tnlib.nn._convert._conv_choice`)."""
    w = conv.weight
    return LayerReport(
        name, type(conv).__name__, w.numel(), choice.params, choice.weight_error, (), choice.fit_error, budget,
        (choice.note,), held_out_error=choice.held_out_error,
        macs=choice.params, dense_macs=w.numel(),
        bytes_before=w.numel() * w.element_size(), bytes_after=choice.params * w.element_size(),
    )


def mpo_macs(mpo: tnlib.MPO) -> int:
    """Multiply-adds per input row of the cheapest inference form of ``mpo`` (built once, as eager plans do)."""
    return macs([tuple(int(d) for d in c.shape) for c in mpo.cores])


class Pooled:
    """Relative errors of several weights pooled by their signals ``tr(W C W^T)`` (formed only when there are
    several: one weight's pooled error is its own); a ``gram`` of ``None`` is the identity (``||W||_F^2``)."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, torch.Tensor, torch.Tensor | None]] = []

    def add(self, error: float, w: torch.Tensor, gram: torch.Tensor | None) -> None:
        self.entries.append((error, w, gram))

    def value(self) -> float | None:
        if len(self.entries) == 1:
            return self.entries[0][0]
        num = den = 0.0
        for error, w, gram in self.entries:
            signal = float(torch.sum(w * w if gram is None else w * (w @ gram.to(w.dtype))))
            num += error**2 * signal
            den += signal
        return math.sqrt(max(num, 0.0) / den) if den > 0 else None
