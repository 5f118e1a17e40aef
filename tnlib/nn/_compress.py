"""Compress a whole model: every chosen layer becomes its MPO form.

Handled layers: ``nn.Linear``, ``nn.LSTM``, ``nn.GRU``, ``nn.LSTMCell``,
``nn.GRUCell`` and the ``Conv1D`` of Hugging Face ``transformers`` (GPT-2),
which becomes an :class:`~tnlib.nn.MPOLinear` of its transposed weight.

With a ``compression`` ratio (or a ``max_params`` truncation) and no
``num_cores``, every weight matrix gets the MPO layout of least error at its
budget (:func:`tnlib.layouts`: never worse than its truncated SVD). With
``calibration`` batches, the input Gram of every weight is recorded
(:mod:`tnlib.nn._calibration`) and each MPO is fitted to the layer's outputs
on those inputs rather than to its weights.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

import tnlib
from tnlib._checks import is_real
from tnlib._choose import macs
from tnlib.metric import gram_factor

from . import _mpo_cells, _mpo_conv, _mpo_embedding, _mpo_linear, _mpo_rnn  # noqa: F401 - they register their kinds
from ._calibration import GramFolds, record_folds
from ._cores import positive_int
from ._kinds import Source, describe_supported, source_of
from ._sensitivity import MAX_BATCHES, output_change_per_error

__all__ = ["compress", "LayerReport", "SUPPORTED"]

SUPPORTED = describe_supported()
"""The dense modules tnlib's own layers replace (from the registry of layer kinds, :mod:`tnlib.nn._kinds`; a kind
registered later is named in errors too)."""


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
        ``"Conv2d"`` or ``"Embedding"``.
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
        and of the dense layer.

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

    @property
    def compression_ratio(self) -> float:
        return self.params_before / self.params_after

    @property
    def flop_ratio(self) -> float | None:
        """``macs / dense_macs``: below 1, the MPO layer needs fewer multiply-adds per row."""
        return None if self.macs is None or not self.dense_macs else self.macs / self.dense_macs

    def __str__(self) -> str:
        out = "" if self.output_error is None else f", output error {self.output_error:.4f}"
        out += "" if self.held_out_error is None else f" (held-out rows {self.held_out_error:.4f})"
        text = (
            f"{self.name} ({self.kind}): {self.params_before} -> {self.params_after} weights "
            f"({self.compression_ratio:.2f}x), weight error {self.relative_error:.4f}{out}"
        )
        return text + (f"; {self.note}" if self.note else "")


def _check_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    named = dict(model.named_modules())
    if layers is None:
        if source_of(model) is not None:
            raise ValueError(
                f"model is itself a {type(model).__name__}; use MPOLinear.from_linear, MPOLSTM.from_lstm, ... "
                "or pass the model that holds it"
            )
        # embeddings only when named: they are often tied to an output layer, which would keep its dense copy
        return [n for n, m in named.items() if n and source_of(m) is not None and not isinstance(m, nn.Embedding)]
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of module names, got {layers!r}; e.g. layers=[{layers!r}]")
    if len(set(layers)) != len(layers):
        twice = sorted({n for n in layers if list(layers).count(n) > 1})
        raise ValueError(f"layers names {', '.join(map(repr, twice))} more than once; name each layer once")
    for n in layers:
        if n not in named:
            raise ValueError(
                f"layers names {n!r}, which is not a module of the model; modules: {[k for k in named if k][:12]}"
            )
        if source_of(named[n]) is None:
            raise TypeError(
                f"layer {n!r} is a {type(named[n]).__name__}; only {describe_supported()} can be compressed"
            )
    return list(layers)


def _check_materialized(model: nn.Module, targets: Sequence[str]) -> None:
    """Refuse layers whose weights have no values (the meta device) before anything is computed."""
    for name in targets:
        meta = [n for n, p in model.get_submodule(name).named_parameters() if p.is_meta]
        if meta:
            raise ValueError(
                f"layer {name!r} has weights on the meta device ({', '.join(meta)}): they hold no values to "
                "compress; load the model's state_dict (or call to_empty() and load) first"
            )


def compress(
    model: nn.Module,
    truncation: tnlib.Truncation | None = None,
    *,
    compression: float | None = None,
    layers: Sequence[str] | None = None,
    inplace: bool = False,
    num_cores: int | None = None,
    calibration: Iterable[Any] | None = None,
    allocation: str = "uniform",
    objective: str | tnlib.Objective = "error",
    tolerance: float = 0.02,
) -> tuple[nn.Module, list[LayerReport]]:
    """Replace linear, recurrent, convolutional and embedding layers by MPO layers.

    Parameters
    ----------
    model
        Any module (for example one just loaded from a ``state_dict``).
    truncation
        Applied to every weight matrix (``None``: exact).
    compression
        Instead of (or on top of) ``truncation``: a parameter budget of
        ``weight.numel() / compression`` per weight matrix. Without
        ``num_cores`` the layout of every matrix is searched.
    layers
        Names (as in ``model.named_modules()``) of the modules to convert;
        default every supported one (``nn.Linear``, ``nn.LSTM``, ``nn.GRU``,
        ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.Conv1d``, ``nn.Conv2d``, ``transformers``' ``Conv1D``);
        an ``nn.Embedding`` only when named here (tables are often tied to an
        output layer, whose dense copy would stay).
    inplace
        Modify ``model`` instead of a deep copy.
    num_cores
        Cores per MPO: fixes the layout (balanced, or the gate layout of
        Gao et al. for recurrent layers) instead of searching it.
    calibration
        Unlabelled model inputs (an iterable of tensors, argument tuples or
        keyword dicts, e.g. a ``DataLoader`` of inputs only). The input Gram
        of every weight is recorded on them and each MPO is fitted to the
        layer's outputs (:meth:`tnlib.MPO.from_matrix` with a ``metric``):
        the samples are dealt into four folds; the shrinkage of the metric
        is cross-validated over them, the fit sees three and the fourth
        chooses the layout and gives ``held_out_error`` (never worse there
        than the plain truncated SVD). Fewer rows than a weight has input
        features warn. Needs a budget or a truncation.
    allocation
        How ``compression`` is shared: ``"uniform"`` (default), every weight
        matrix ``numel / compression``; ``"global"``, one budget of
        ``sum numel / compression`` for all the chosen layers, spent by
        :func:`tnlib.budget.allocate_ranks` on the truncated-SVD spectra
        (whitened in the calibrated metric when there is calibration).
        Without calibration it buys the most relative error removed per
        stored weight, never worse by that measure than the uniform shares.
        With calibration it buys the most change of the *model's outputs*
        removed: each matrix's error is weighted by how much the outputs
        move per unit of it, measured by one backward pass per calibration
        batch (at most 8; :mod:`tnlib.nn._sensitivity`), so a matrix the
        model barely listens to gives up its budget. Each report's ``share``
        gives the layer's part of the total.
    objective, tolerance
        How a searched layout is chosen (a :class:`tnlib.Objective`, or its
        kind and tolerance): ``"error"`` (default), the least
        error; ``"latency"``, the fewest multiply-adds per input row (the
        cost of a step at batch 1) among the layouts whose error is within
        ``tolerance`` (relative, default 2 %) of the least. With calibration
        the held-out error decides. Each report gives ``macs`` and
        ``dense_macs``.

    Returns
    -------
    model, reports
        The compressed model and one :class:`LayerReport` per converted layer.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    >>> small, reports = tnlib.nn.compress(net, compression=8, layers=["0"])
    >>> type(small[0]).__name__, reports[0].compression_ratio >= 8
    ('MPOLinear', True)
    >>> batches = [torch.randn(32, 256) for _ in range(16)]
    >>> aware, reports = tnlib.nn.compress(net, compression=8, layers=["0"], calibration=batches)
    >>> reports[0].output_error <= 1.0 and reports[0].held_out_error <= 1.0
    True
    """
    if compression is not None:
        tnlib.truncation.check_compression(compression)
    if num_cores is not None:
        positive_int("num_cores", num_cores)
    truncation = tnlib.truncation.check_truncation(truncation)
    targets = _check_layers(model, layers)
    _check_materialized(model, targets)
    _check_allocation(allocation, compression)
    goal = _check_objective(objective, tolerance)
    if calibration is not None and compression is None and (truncation is None or truncation.is_exact):
        raise ValueError("calibration needs compression= or a truncation: an exact conversion has nothing to fit")
    recorded = [t for t in targets if _records(model.get_submodule(t))]  # a lookup has no inputs to record
    kept: list[Any] = []  # the first batches read, for the sensitivities of a global budget
    if calibration is not None and allocation == "global":
        calibration = _keeping(calibration, kept)
    grams = record_folds(model, recorded, calibration) if calibration is not None else {}
    has_budget = compression is not None or (truncation is not None and truncation.max_params is not None)
    shares = None
    if allocation == "global":
        assert compression is not None
        shares = _global_budgets(model, targets, truncation, compression, grams, kept)
    built, reports = [], []
    for name in targets:  # every layer is converted before any is replaced: a failure leaves the model whole
        module = model.get_submodule(name)
        source = source_of(module)
        assert source is not None
        budgets = None if shares is None else shares[name]
        mpos, budget = _decompose_layer(name, module, source, truncation, compression, num_cores,
                                        grams.get(name, {}), budgets, goal)
        reports.append(_report(name, source, module, mpos, grams.get(name, {}), budget if has_budget else None))
        built.append((name, source, mpos))
    out = model if inplace else copy.deepcopy(model)
    for name, source, mpos in built:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, source.build(out.get_submodule(name), mpos))
    total = sum(r.budget or 0 for r in reports)
    return out, [dataclasses.replace(r, share=r.budget / total) if r.budget and total else r for r in reports]


def _check_objective(objective: Any, tolerance: Any) -> tnlib.Objective:
    """``objective`` (a :class:`tnlib.Objective`, or its kind with ``tolerance``) as one value."""
    if isinstance(objective, tnlib.Objective):
        return objective
    if objective not in ("error", "latency"):
        raise ValueError(f"objective={objective!r} is invalid; expected 'error', 'latency' or a tnlib.Objective")
    if not is_real(tolerance) or not 0 <= tolerance < 1:
        raise ValueError(f"tolerance={tolerance!r} is invalid; expected a relative error margin in [0, 1)")
    return tnlib.Objective(objective, float(tolerance))


def _records(module: nn.Module) -> bool:
    source = source_of(module)
    return source is not None and source.record is not None


def _check_allocation(allocation: Any, compression: float | None) -> None:
    if allocation not in ("uniform", "global"):
        raise ValueError(f"allocation must be 'uniform' or 'global', got {allocation!r}")
    if allocation == "global" and compression is None:
        raise ValueError("allocation='global' shares the budget of a compression ratio: pass compression=")


def _keeping(batches: Iterable[Any], kept: list[Any]) -> Iterator[Any]:
    """The batches, the first ``MAX_BATCHES`` (all the sensitivities read) also appended to ``kept`` as they
    are read (an endless iterator stays lazy, and the rest are not held)."""
    for batch in batches:
        if len(kept) < MAX_BATCHES:
            kept.append(batch)
        yield batch


def _global_budgets(model: nn.Module, targets: Sequence[str], truncation: tnlib.Truncation | None,
                    compression: float, grams: dict[str, dict[str, GramFolds]],
                    batches: Sequence[Any] = ()) -> dict[str, dict[str, int]]:
    """Per weight matrix, its part of one budget of ``sum numel / compression``: truncated-SVD ranks chosen by
    :func:`tnlib.budget.allocate_ranks` on the spectra, whitened in the calibrated metric (at the default
    shrinkage), weighted with calibration by each weight's measured effect on the model's outputs
    (:mod:`tnlib.nn._sensitivity`)."""
    keys, spectra, costs, caps, uniform = [], [], [], [], []
    params, as_matrix, factors = {}, {}, {}
    total = 0
    for name in targets:
        module = model.get_submodule(name)
        source = source_of(module)
        assert source is not None
        for wname, w in source.weights(module).items():
            w64 = w.detach().to(torch.float64).cpu()
            m, n = (int(d) for d in w64.shape)
            share = tnlib.truncation.with_compression(truncation, m * n, compression).max_params
            assert share is not None
            folds = grams.get(name, {}).get(wname)
            target, factor = w64, None
            if folds is not None:  # the default shrinkage: the fits themselves choose theirs on held-out rows
                factor = gram_factor(folds.gram()).L
                target = w64 @ factor
            key = (name, wname)
            keys.append(key)
            params[key], factors[key] = getattr(module, wname), factor
            as_matrix[key] = source.as_matrix
            spectra.append(torch.linalg.svdvals(target).numpy())
            costs.append(m + n)
            caps.append(max(1, min(m, n, m * n // (m + n))))
            uniform.append(share // (m + n))
            total += share
    sensitivities = output_change_per_error(model, params, as_matrix, factors, batches) if batches else None
    min_rank = truncation.min_bond if truncation is not None else 1
    ranks = tnlib.budget.allocate_ranks(spectra, costs, total, min_rank=min_rank, max_ranks=caps, baseline=uniform,
                                        sensitivities=None if sensitivities is None else
                                        [sensitivities[k] for k in keys])
    out: dict[str, dict[str, int]] = {name: {} for name in targets}
    for (name, wname), r, c in zip(keys, ranks, costs):
        out[name][wname] = r * c
    return out


def _decompose_layer(name: str, module: Any, source: Source, truncation: tnlib.Truncation | None,
                     compression: float | None, num_cores: int | None, folds: dict[str, GramFolds],
                     budgets: dict[str, int] | None = None,
                     objective: tnlib.Objective = tnlib.Objective()) -> tuple[dict[str, tnlib.MPO], int]:
    """Every weight of one layer as an MPO (searched layout at a budget, else the source's), and the budget:
    the core's layout chooser (:meth:`tnlib.MPO.from_matrix`) does the rest, in the metric of the folds."""
    mpos: dict[str, tnlib.MPO] = {}
    budget = 0
    few = [f"{wname} ({f.rows} rows, {f.sums[0].shape[0]} features)" for wname, f in folds.items()
           if f.rows < f.sums[0].shape[0]]
    if few:
        warnings.warn(
            f"layer {name!r} has fewer calibration rows than input features: {', '.join(few)}; the fit is "
            "chosen on held-out rows and stays safe, but it gains over the truncated SVD only with more rows",
            UserWarning,
            stacklevel=3,
        )
    for wname, w in source.weights(module).items():
        t: tnlib.Truncation | None
        if budgets is not None:
            t = dataclasses.replace(truncation or tnlib.Truncation(), max_params=budgets[wname])
        elif compression is not None:
            t = tnlib.truncation.with_compression(truncation, w.numel(), compression)
        else:
            t = truncation
        search = t is not None and t.max_params is not None and num_cores is None
        dims = (None, None) if search else source.layout(module, w, num_cores)
        metric = folds[wname].metric() if wname in folds else None
        with torch.no_grad():
            try:
                mpos[wname] = tnlib.MPO.from_matrix(w.to(torch.float64).cpu(), dims[0], dims[1], truncation=t,
                                                    metric=metric, objective=objective)
            except tnlib.truncation.BudgetTooSmallError as exc:
                raise ValueError(
                    f"layer {name!r} ({w.shape[0]} x {w.shape[1]} weight) cannot be held in "
                    f"{t.max_params if t is not None else '?'} parameters: {exc}; leave it out with layers=[...] "
                    "or lower compression"
                ) from None
        budget += t.max_params if t is not None and t.max_params is not None else w.numel()
    return mpos, budget


def _report(name: str, source: Source, module: Any, mpos: dict[str, tnlib.MPO],
            folds: dict[str, GramFolds], budget: int | None) -> LayerReport:
    """The layer's report from its MPOs' reports (errors as the decomposition measured them)."""
    weights = source.weights(module)
    num = den = 0.0
    seen, held = _Pooled(), _Pooled()
    for wname, mpo in mpos.items():
        report = mpo.report
        assert report is not None
        num += (report.relative_error_bound * report.norm) ** 2
        den += report.norm**2
        f = folds.get(wname)
        if f is not None and report.output_error is not None:
            w64 = weights[wname].to(torch.float64).cpu()
            usable = f.usable_folds()
            fit_gram, held_gram, _ = f.split(usable[-1]) if len(usable) >= 2 else (f.gram(), None, 0)
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
        math.sqrt(num / den) if den else 0.0,
        tuple(tuple(float(v) for v in m.entropies()) for m in mpos.values()),
        seen.value(),
        budget,
        tuple(f"out {m.out_dims} x in {m.in_dims}" for m in mpos.values()),
        note,
        held.value(),
        macs=sum(_macs(m) for m in mpos.values()),
        dense_macs=sum(int(w.shape[0]) * int(w.shape[1]) for w in weights.values()),
    )


def _macs(mpo: tnlib.MPO) -> int:
    """Multiply-adds per input row of the cheapest inference form of ``mpo`` (built once, as eager plans do)."""
    return macs([tuple(int(d) for d in c.shape) for c in mpo.cores])


class _Pooled:
    """Relative errors of several weights pooled by their signals ``tr(W C W^T)``."""

    def __init__(self) -> None:
        self.num = self.den = 0.0

    def add(self, error: float, w: torch.Tensor, gram: torch.Tensor) -> None:
        signal = float(torch.sum(w * (w @ gram.to(w.dtype))))
        self.num += error**2 * signal
        self.den += signal

    def value(self) -> float | None:
        return math.sqrt(max(self.num, 0.0) / self.den) if self.den > 0 else None
