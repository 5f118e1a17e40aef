"""Compress a whole model: every chosen layer becomes its MPO form.

Handled layers: ``nn.Linear``, ``nn.LSTM``, ``nn.GRU``, ``nn.LSTMCell``,
``nn.GRUCell`` and the ``Conv1D`` of Hugging Face ``transformers`` (GPT-2),
which becomes an :class:`~tnlib.nn.MPOLinear` of its transposed weight.

With a ``compression`` ratio (or a ``max_params`` truncation) and no
``num_cores``, every weight matrix gets the MPO layout of least error at its
budget (:func:`tnlib.layouts`: never worse than its truncated SVD). With
``calibration`` batches, the input Gram of every weight is recorded
(:mod:`tnlib.nn._convert._calibration`) and each MPO is fitted to the layer's outputs
on those inputs rather than to its weights.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib._checks import is_real
from tnlib.nn._convert._bytes import (
    byte_budget,
    byte_targets,
    check_byte_options,
    choose_forms,
    forms_of,
    refitted,
    weight_key,
)
from tnlib.nn._convert._calibration import GramFolds, affordable, gram_bytes, record_folds, run_batch
from tnlib.nn._convert._conv_choice import ConvChoice, conv_choice
from tnlib.nn._convert._global_budget import global_budgets, importance, keeping
from tnlib.nn._convert._layer_report import LayerReport, byte_report, layer_report, network_report
from tnlib.nn._convert._progress import Progress, tracking
from tnlib.nn._convert._sensitivity import MAX_BATCHES
from tnlib.nn._convert._sharing import apply_sharing, sharing_groups
from tnlib.nn._convert._targets import check_materialized, replace_everywhere, select_targets
from tnlib.nn._layers._attention import settle_parents
from tnlib.nn._layers._cores import check_weight, positive_int, wide
from tnlib.nn._layers._kinds import Source, describe_supported, source_of
from tnlib.nn._layers._quantized_attention import build_quantized_attention
from tnlib.nn._layers._quantized_conv import build_quantized_conv
from tnlib.nn._layers._quantized_linear import build_quantized
from tnlib.nn._layers._quantized_rnn import build_quantized_cell, build_quantized_rnn
from tnlib.truncation import warn_at_caller

__all__ = ["compress", "LayerReport", "SUPPORTED"]

SUPPORTED = describe_supported()
"""The dense modules tnlib's own layers replace (from the registry of layer kinds,
:mod:`tnlib.nn._layers._kinds`; a kind registered later is named in errors too)."""


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
    bytes: int | None = None,
    progress: bool = False,
    verbose: bool = False,
    example: Any = None,
    share: str | Sequence[Sequence[str]] | None = None,
) -> tuple[nn.Module, list[LayerReport]]:
    """Replace linear, recurrent, convolutional and embedding layers by MPO layers.

    Parameters
    ----------
    model
        Any module (for example one just loaded from a ``state_dict``).
    truncation
        Applied to every weight matrix; ``tnlib.Truncation()`` converts
        exactly (the MPO layers then store more than the dense ones). One of
        ``truncation``, ``compression`` and ``bytes`` is needed: without a
        target ``compress`` refuses rather than return a larger model.
    compression
        Instead of (or on top of) ``truncation``: a parameter budget of
        ``weight.numel() / compression`` per weight matrix. Without
        ``num_cores`` the layout of every matrix is searched, and an
        ``nn.Conv1d`` / ``nn.Conv2d`` becomes a :class:`~tnlib.nn.TuckerConv2d`
        or :class:`~tnlib.nn.CPConv2d` (``...1d``; three small convolutions,
        fewer multiply-adds) when its Tucker-2 or CP network at the same
        budget has less error than the MPO (on held-out patch rows with
        ``calibration``, on the kernel without).
    layers
        Names (as in ``model.named_modules()``) of the modules to convert;
        default every supported one (``nn.Linear``, ``nn.LSTM``, ``nn.GRU``,
        ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.Conv1d``, ``nn.Conv2d``, ``transformers``' ``Conv1D``);
        an ``nn.Embedding`` only when named here (tables are often tied to an
        output layer, whose dense copy would stay). A module whose parent
        reads its weight itself (the linear layers inside
        ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` /
        ``DecoderLayer``) or whose weight is tied to another module's stays
        dense, with a warning naming it and why (named here: refused); a
        module used at several places is converted once and the new layer
        takes every place. With ``calibration`` the converted model is run on
        the first batch; if it fails or returns NaN, every original module is
        put back and the error names the cause.
    inplace
        Modify ``model`` instead of a deep copy.
    num_cores
        Cores per MPO: fixes the layout (balanced, or the gate layout of
        Gao et al. for recurrent layers) instead of searching it.
    calibration
        Model inputs: an iterable of tensors, argument tuples or keyword
        dicts (a ``DataLoader``); a tuple with more items than the model's
        ``forward`` takes positionally is read as ``(inputs, targets)`` and
        the targets are ignored; NumPy arrays become tensors. The input Gram
        of every weight is recorded on them and each MPO is fitted to the
        layer's outputs (:meth:`tnlib.MPO.from_matrix` with a ``metric``):
        the samples are dealt into four folds; the shrinkage of the metric
        is cross-validated over them, the fit sees three and the fourth
        chooses the layout and gives ``held_out_error`` (never worse there
        than the plain truncated SVD). Fewer rows than a weight has input
        features warn. Layers whose Grams (four float64 ``n x n`` sums per
        weight with ``n`` inputs) would not fit in half this machine's
        memory, largest first, are converted without calibration, with a
        warning naming them. Needs a budget or a truncation.
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
        batch (at most 8; :mod:`tnlib.nn._convert._sensitivity`), so a matrix the
        model barely listens to gives up its budget, but never below a quarter
        of the rank its uniform share would give (no layer is starved); the
        uniform split is fitted too and kept instead where it moves the whole
        model's outputs less on those batches (one in four of the first eight
        held out from both fits when there are four or more; each report's
        ``note`` says which, with both changes); the forms of the split kept
        (layouts, ranks, shrinkages) are then fitted again on every batch, the
        held-out ones included. Each report's ``share``
        gives the layer's part of the total.
    objective, tolerance
        How a searched layout is chosen (a :class:`tnlib.Objective`, or its
        kind and tolerance): ``"error"`` (default), the least
        error; ``"latency"``, the fewest multiply-adds per input row (the
        cost of a step at batch 1) among the layouts whose error is within
        ``tolerance`` (relative, default 2 %) of the least. With calibration
        the held-out error decides. Each report gives ``macs`` and
        ``dense_macs``.
    bytes
        A budget in stored bytes instead of parameters: the weights of the
        converted ``nn.Linear`` layers (and ``transformers``' ``Conv1D``),
        ``nn.Conv1d`` / ``nn.Conv2d`` (``groups=1``, zero padding), ``nn.LSTM``,
        ``nn.GRU`` and their cells (other kinds stay dense, with a warning,
        and are refused when named in ``layers``) take at most this
        many bytes in all, counted as stored: packed integer codes, float16
        scales and zero points (biases stay float and are not counted). Each
        weight matrix (each layer, direction and side of a recurrent layer
        apart) takes the form of least error its bytes buy: the matrix itself
        at 8, 4, 3 or 2 bits, or a low-rank split with 4- or 8-bit factors
        (:mod:`tnlib.quantization`; a convolution's kernel as the matrix of
        its unfolded patches), as a :class:`~tnlib.nn.QuantizedLinear`,
        ``QuantizedConv1d`` / ``2d``, :class:`~tnlib.nn.QuantizedLSTM`,
        :class:`~tnlib.nn.QuantizedGRU` or their cells;
        with ``calibration`` fitted by GPTQ on three folds and judged on the
        held-out fourth, so a byte budget is never worse there than plain
        quantization at the same bytes, and the chosen form then fitted again
        on every row. ``allocation="uniform"`` gives each weight the bytes of its
        share of the weights; ``"global"`` spends them where they remove the
        most change of the model's outputs (with calibration: each matrix's
        squared relative error weighted by its measured sensitivity and
        signal, as the parameter budget does; without, relative errors
        alike). For ``b`` bits per weight pass
        ``b * weights // 8``. Excludes ``compression``, ``truncation`` and
        ``num_cores``; the reports give ``bytes_before``, ``bytes_after``,
        ``byte_budget`` and the form in ``layouts``.
    progress
        Show a progress bar (tqdm, on stderr) over the layers: layers done,
        the one being converted, time left. Off by default.
    example
        One input batch, in the forms ``calibration`` takes (a tensor, a
        tuple of ``forward``'s positional arguments, a dict of its keyword
        arguments, an ``(inputs, targets)`` pair): the converted model is run
        on it once, and an exception or a NaN/inf output puts every original
        module back and raises with the cause; the relative change of its
        outputs from the dense model's is logged (``verbose``), and warned
        about when it exceeds 1. With ``calibration`` and no ``example``, its
        first batch is the one run.
    share
        Structure across layers (with ``compression=`` and the uniform
        allocation). ``"role"`` groups the converted ``nn.Linear`` layers whose
        names differ only in their first index, the layer's (all query
        projections of a transformer, all its first feed-forward matrices;
        ``blocks.0.2`` with ``blocks.1.2``, not with ``blocks.0.0``) and share
        ``in_features``; a list of lists of names gives the groups. Each group
        is fitted as :class:`~tnlib.nn.SharedBasisLinear` layers on one basis
        with the group's summed budget (in the pooled input metric with
        ``calibration``, each layer's coefficients in its own), and kept only
        where its pooled error, on held-out calibration rows (on the weights
        without calibration), is below that of the per-matrix forms; each
        member's report says both. With calibration the groups so kept must
        also move the whole model's outputs less than the per-matrix forms
        on held-out calibration batches (one in four of the first eight,
        which the fits do not see), or none is kept; the reports say
        which, and what is kept is fitted again on every batch, those
        included. Default ``None``: no sharing.
    verbose
        Show on stderr what is logged at ``INFO`` on the ``tnlib.nn`` logger
        during this call: each phase (recording Grams, the global
        allocation, the check run) and each layer with its time and report.
        The records are emitted either way, for an application's own
        logging configuration; ``verbose`` only adds a stderr handler for
        the call. Off by default.

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
    >>> tiny, reports = tnlib.nn.compress(net, bytes=(256 * 256 + 256 * 10) // 2)   # 4 bits per weight
    >>> type(tiny[0]).__name__, sum(r.bytes_after for r in reports) <= (256 * 256 + 256 * 10) // 2
    ('QuantizedLinear', True)
    """
    total = _check_budgets(model, bytes, truncation, compression, num_cores, objective)
    given = truncation
    truncation = tnlib.truncation.check_truncation(truncation)
    targets = select_targets(model, layers)
    if total is None and compression is None and given is None:
        raise ValueError("compress needs a target: compression= (a ratio of weights), bytes= (stored bytes) or a "
                         "truncation; for an exact conversion (it stores more than the dense layers) pass "
                         "tnlib.Truncation()")
    if total is not None:
        targets = _linear_targets(model, targets, layers is not None)
    check_materialized(model, targets)
    _check_weights(model, targets)
    if calibration is not None or allocation == "global":
        _refuse_complex(model, targets)
    _check_allocation(allocation, compression if total is None else total)
    groups = _check_share(model, targets, share, compression, total, allocation)
    goal = _check_objective(objective, tolerance)
    if calibration is not None and total is None and compression is None and (truncation is None
                                                                              or truncation.is_exact):
        raise ValueError("calibration needs compression= or a truncation: an exact conversion has nothing to fit")
    if example is not None:
        _check_example(model, example)
    recorded = _within_memory(model, targets) if calibration is not None else []
    twice = allocation == "global" and calibration is not None and total is None  # validated against uniform
    judged = twice or (bool(groups) and calibration is not None)  # the model's outputs judge on held-out batches
    with tracking(progress, verbose, len(targets) * (2 if twice else 1)) as track:
        track.phase("compress: %d layer(s) to convert: %s", len(targets), ", ".join(targets))
        kept: list[Any] = []  # the first batches read: the sensitivities of a global budget, the check of the result
        held: list[Any] = []  # of those, the ones the fits never see: a global split is judged against uniform there
        if calibration is not None:  # a uniform budget needs only the first, for the check of the result
            calibration = keeping(calibration, kept, MAX_BATCHES if judged else 1, held if judged else None)
            track.phase("recording the input Grams of %d layer(s) from the calibration batches", len(recorded))
        grams = record_folds(model, recorded, calibration) if calibration is not None else {}
        # every layer is converted before any is replaced: a failure leaves the model whole
        if total is not None:
            built, reports = _quantize_layers(model, targets, grams, total, allocation, track, kept)
        else:
            every = functools.partial(_every_row, model, recorded, grams, held)  # the Grams of every batch
            convert = functools.partial(_parameter_layers, model, targets, truncation, compression, num_cores,
                                        goal=goal, allocation=allocation, track=track)
            built, reports = convert(grams, kept=kept, held=held, every=every)
            if groups:
                built, reports = _sharing(model, groups, (built, reports), grams, kept, held, track,
                                          functools.partial(convert, kept=(), held=(), every=None), every)
        check = example if example is not None else kept[0] if kept else None
        dense = _outputs(model, check) if check is not None else None  # before an in-place conversion changes it
        out = model if inplace else copy.deepcopy(model)
        undo = []
        for name, build in built:  # a failure above leaves the model whole; a module used at several places: one
            original = out.get_submodule(name)  # new layer takes every place
            undo += replace_everywhere(out, original, build(original))
        settle_parents(out)
        if check is not None:
            _compare(out, check, dense, undo, "the example" if example is not None else "the first calibration batch",
                     track)
        track.close(len(reports))
    _warn_if_larger(reports)
    if total is not None:
        spent = sum(r.byte_budget or 0 for r in reports)
        return out, [dataclasses.replace(r, share=r.byte_budget / spent) if r.byte_budget and spent else r
                     for r in reports]
    whole = sum(r.budget or 0 for r in reports)
    return out, [dataclasses.replace(r, share=r.budget / whole) if r.budget and whole else r for r in reports]


Built = list[tuple[str, Callable[[nn.Module], nn.Module]]]
"""Per converted module name, what builds its replacement from the module."""


def _within_memory(model: nn.Module, targets: list[str]) -> list[str]:
    """The targets whose inputs calibration records (a lookup has none) and whose input Grams fit in half this
    machine's memory, the largest left out first: those are converted without calibration (in weight space), with
    a warning naming them."""
    recorded = [t for t in targets if _records(model.get_submodule(t))]
    kept, dropped = affordable(model, recorded)
    if dropped:
        need = gram_bytes(model, dropped)
        detail = ", ".join(f"{n!r} ({need[n] / 2**30:.1f} GiB)" for n in dropped[:5])
        warn_at_caller(f"the input Grams of {len(dropped)} layer(s) would not fit in half this machine's memory: "
                       f"{detail}{' ...' if len(dropped) > 5 else ''}; they are converted without calibration (in "
                       "weight space), the others with it")
    return kept


def _check_weights(model: nn.Module, targets: Sequence[str]) -> None:
    """Every weight of every target usable (data, entries, finite), or an error naming the layer."""
    for name in targets:
        module = model.get_submodule(name)
        source = source_of(module)
        assert source is not None  # a target
        names = {id(p): pname for pname, p in module.named_parameters()}
        held = {id(p): p for p, _ in source.parameters_of(module).values()}  # an attention's in_proj_weight too
        for key, p in held.items():
            check_weight(p, f"layer {name!r} {names.get(key, 'weight')}")


def _refuse_complex(model: nn.Module, targets: Sequence[str]) -> None:
    """Calibration and the global budget work in real metrics: a complex weight is refused, named."""
    for name in targets:
        source = source_of(model.get_submodule(name))
        assert source is not None
        if any(w.is_complex() for w in source.weights(model.get_submodule(name)).values()):
            raise ValueError(f"layer {name!r} has a complex weight: calibration and allocation='global' fit real "
                             "weights; compress it without them (a truncation or compression= per matrix)")


def _check_budgets(model: Any, bytes: Any, truncation: Any, compression: Any, num_cores: Any,
                   objective: Any) -> int | None:
    """Validate the model's type and the budget options; return the byte budget (``None`` for the MPO route)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total = None
    if bytes is not None:
        total = byte_budget(bytes)
        check_byte_options(truncation, compression, num_cores, objective)
    if compression is not None:
        tnlib.truncation.check_compression(compression)
    if num_cores is not None:
        positive_int("num_cores", num_cores)
    return total


def _mpo_layers(model: nn.Module, targets: Sequence[str], truncation: tnlib.Truncation | None,
                compression: float | None, num_cores: int | None, grams: dict[str, dict[str, GramFolds]],
                shares: dict[str, dict[str, int]] | None, goal: tnlib.Objective, track: Progress,
                fixed: Mapping[str, dict[str, tnlib.MPO]] | None = None
                ) -> tuple[Built, list[LayerReport], dict[str, dict[str, tnlib.MPO]]]:
    """Every target's weights as MPOs (a layout chooser's fit at each budget), what builds its layer, reports, and
    the MPOs by layer. With ``fixed`` (such MPOs, by layer and weight), a weight with calibration is fitted again in
    ``fixed``'s layout, bond dimensions and shrinkage, no search or choice made: the same form on these rows."""
    has_budget = compression is not None or (truncation is not None and truncation.max_params is not None)
    built: Built = []
    reports = []
    chosen: dict[str, dict[str, tnlib.MPO]] = {}
    for name in targets:
        track.step(name)
        module = model.get_submodule(name)
        source = source_of(module)
        assert source is not None
        budgets = None if shares is None else shares[name]
        mpos, budget = _decompose_layer(name, module, source, truncation, compression, num_cores,
                                        grams.get(name, {}), budgets, goal, None if fixed is None else fixed.get(name))
        chosen[name] = mpos
        report = layer_report(name, source, module, mpos, grams.get(name, {}), budget if has_budget else None)
        network = _network_instead(module, source, report, budget if has_budget and num_cores is None else None,
                                   grams.get(name, {}).get("weight"))
        if network is not None:  # the convolution's Tucker-2 or CP network: less error at the same weights
            reports.append(network_report(name, module, network, budget))
            built.append((name, network.build))
        else:
            reports.append(report)
            built.append((name, functools.partial(_built, source, mpos)))
        track.done(name, reports[-1])
    return built, reports, chosen


def _linear_targets(model: nn.Module, targets: list[str], named: bool) -> list[str]:
    """The targets a byte budget converts; the others stay dense with a warning (refused when named)."""

    def kind(module: nn.Module) -> str:
        source = source_of(module)
        assert source is not None  # a target
        return source.kind

    kept, others = byte_targets(targets, {t: kind(model.get_submodule(t)) for t in targets}, named)
    if others:
        warn_at_caller(f"bytes= converts nn.Linear, nn.Conv1d/2d, nn.LSTM, nn.GRU, their cells and "
                       f"nn.MultiheadAttention; {len(others)} other "
                       "layer(s) stay dense: "
                       f"{', '.join(others[:5])}{' ...' if len(others) > 5 else ''}")
    return kept


def _quantize_layers(model: nn.Module, targets: Sequence[str], grams: dict[str, dict[str, GramFolds]], total: int,
                     allocation: str, track: Progress, batches: Sequence[Any] = ()) -> tuple[Built, list[LayerReport]]:
    """Every target's weights as the quantized forms a byte budget of ``total`` buys (``_bytes``), and reports:
    each weight matrix (one of a linear layer; one per layer, direction and side of a recurrent one) is a
    candidate of its own, named by :func:`weight_key`."""
    weights: dict[str, tuple[str, str, torch.Tensor]] = {}  # key -> (module name, weight name, matrix)
    keys: dict[str, list[str]] = {}  # module name -> its weights' keys
    kinds: dict[str, str] = {}
    candidates = {}
    for name in targets:
        track.step(name)
        module = model.get_submodule(name)
        source = source_of(module)
        assert source is not None
        kinds[name], keys[name] = source.kind, []
        for wname, w in source.weights(module).items():
            if w.is_complex():
                raise ValueError(f"layer {name!r} has a complex weight ({w.dtype}); bytes= quantizes real weights")
            key = weight_key(name, wname)
            weights[key] = (name, wname, w)
            keys[name].append(key)
            candidates[key] = forms_of(w, grams.get(name, {}).get(wname))
        track.done(name, f"{sum(len(candidates[k]) for k in keys[name])} candidate forms judged")
    sizes = {key: w.numel() for key, (_, _, w) in weights.items()}
    weighted = importance(model, {k: (n, wn) for k, (n, wn, _) in weights.items()}, grams, batches) \
        if allocation == "global" and batches else None
    track.phase("choosing one form per weight for %d bytes (%s)", total, allocation)
    chosen, budgets = choose_forms(candidates, sizes, total, allocation, weighted)
    built: Built = []
    reports = []
    for name in targets:
        parts = []
        for k in keys[name]:
            _, wname, w = weights[k]
            folds = grams.get(name, {}).get(wname)
            parts.append((w, refitted(chosen[k], w, folds), folds))
        factors = {weights[k][1]: form.factors for k, (_, form, _) in zip(keys[name], parts)}
        built.append((name, functools.partial(_quantized, factors=factors)))
        reports.append(byte_report(name, kinds[name], parts, sum(budgets[k] for k in keys[name])))
        track.phase("layer %s: %r", name, reports[-1])
    return built, reports


def _quantized(original: nn.Module, factors: Mapping[str, Sequence[Any]]) -> nn.Module:
    if isinstance(original, nn.MultiheadAttention):
        return build_quantized_attention(original, factors)
    if isinstance(original, nn.RNNBase):
        return build_quantized_rnn(original, factors)
    if isinstance(original, (nn.LSTMCell, nn.GRUCell)):
        return build_quantized_cell(original, factors)
    if isinstance(original, (nn.Conv1d, nn.Conv2d)):
        return build_quantized_conv(original, factors["weight"])
    return build_quantized(original, factors["weight"])


def _built(source: Source, mpos: dict[str, tnlib.MPO], original: nn.Module) -> nn.Module:
    return source.build(original, mpos)


def _sharing(model: nn.Module, groups: list[list[str]], alone: tuple[Built, list[LayerReport]],
             grams: dict[str, dict[str, GramFolds]], kept: Sequence[Any], held: Sequence[Any], track: Progress,
             convert: Callable[[dict[str, dict[str, GramFolds]]], tuple[Built, list[LayerReport]]],
             every: Callable[[], dict[str, dict[str, GramFolds]]]) -> tuple[Built, list[LayerReport]]:
    """The per-matrix conversion ``alone`` with the groups whose shared basis errs less, by their layers' pooled
    errors; with calibration, kept only if that also moves the whole model's outputs less on held-out batches.
    Batches held out for that are then added to the Grams (``every``) and what was kept is fitted again on all
    of them (``convert``, the per-matrix conversion, and the kept groups): no fit is left without them."""
    track.phase("%d group(s) of layers tried on one shared basis each", len(groups))
    shared = apply_sharing(model, groups, alone[0], alone[1], grams, track.phase)
    none_kept = shared[0] == alone[0]
    label, note = ("shared bases", "") if not kept or none_kept else _better_of(
        model, {"shared bases": shared, "per-matrix forms": alone}, held or kept, bool(held), track, "sharing")
    if not held:
        return _noted(shared if label == "shared bases" else alone, note)
    track.phase("refitting on every calibration batch, the %d held out for the check included", len(held))
    grams = every()
    track.extend(len(alone[1]))
    refit = convert(grams)
    if none_kept:  # the groups' verdicts (on the fits of fewer rows) stay in the notes
        said = {r.name: r.note for r in shared[1]}
        return refit[0], [dataclasses.replace(r, note=said.get(r.name, r.note)) for r in refit[1]]
    if label == "per-matrix forms":
        return _noted(refit, note)
    return _noted(apply_sharing(model, groups, refit[0], refit[1], grams, track.phase), note)


def _check_share(model: nn.Module, targets: list[str], share: Any, compression: float | None, total: int | None,
                 allocation: str) -> list[list[str]]:
    """The groups of ``share=`` among ``targets``, refused in words without a uniform parameter budget."""
    if share is not None and (compression is None or total is not None or allocation != "uniform"):
        raise ValueError("share= needs compression= (a parameter budget) with allocation='uniform': each group's "
                         f"budget is its members' uniform shares; got compression={compression!r}, "
                         f"bytes={total!r}, allocation={allocation!r}")
    return sharing_groups(model, targets, share)


def _network_instead(module: Any, source: Source, report: LayerReport, budget: int | None,
                     folds: GramFolds | None) -> ConvChoice | None:
    """For a real ``nn.Conv1d`` / ``nn.Conv2d`` with a searched budget: its Tucker-2 or CP form when that has less
    error than the MPO (judged alike: on held-out patch rows with calibration, on the kernel without)."""
    if source.kind not in ("Conv1d", "Conv2d") or budget is None or module.weight.is_complex():
        return None
    choice = conv_choice(module, budget, folds)
    if choice is None:
        return None
    mine = report.held_out_error if report.held_out_error is not None else (
        report.output_error if report.output_error is not None else report.relative_error)
    return choice if choice.judged < mine else None


def _parameter_layers(model: nn.Module, targets: Sequence[str], truncation: tnlib.Truncation | None,
                      compression: float | None, num_cores: int | None, grams: dict[str, dict[str, GramFolds]],
                      goal: tnlib.Objective, allocation: str, kept: Sequence[Any], held: Sequence[Any],
                      track: Progress, every: Callable[[], dict[str, dict[str, GramFolds]]] | None = None
                      ) -> tuple[Built, list[LayerReport]]:
    """The MPO (or Tucker-2 / CP) layers of a parameter budget: uniform shares, or a global allocation, which with
    calibration batches is kept only where it moves the model's outputs less than the uniform split (on the
    ``held`` batches no fit saw, or on ``kept`` when none was held out)."""
    shares = None
    if allocation == "global":
        assert compression is not None
        track.phase("allocating %g x fewer weights over all layers (global budget)", compression)
        shares = global_budgets(model, targets, truncation, compression, grams, kept)
    built, reports, forms = _mpo_layers(model, targets, truncation, compression, num_cores, grams, shares, goal,
                                        track)
    if shares is None or not kept:
        return built, reports
    track.phase("the uniform split too, to validate the global one on the model's outputs")
    u_built, u_reports, uniform_forms = _mpo_layers(model, targets, truncation, compression, num_cores, grams, None,
                                                    goal, track)
    candidates = {"global": (built, reports), "uniform": (u_built, u_reports)}
    label, note = _better_of(model, candidates, held or kept, bool(held), track, "allocation")
    if held and every is not None:  # the forms kept, fitted again with the held-out batches' rows too
        track.phase("refitting the %s split's forms on every calibration batch, the %d held out included", label,
                    len(held))
        track.extend(len(targets))
        built, reports, _ = _mpo_layers(model, targets, truncation, compression, num_cores, every(),
                                        shares if label == "global" else None, goal, track,
                                        forms if label == "global" else uniform_forms)
        judged = {r.name: r.held_out_error for r in candidates[label][1]}  # the forms' choice, on held-out rows
        candidates[label] = built, [dataclasses.replace(r, held_out_error=judged.get(r.name, r.held_out_error))
                                    for r in reports]
    return _noted(candidates[label], note)


def _better_of(model: nn.Module, candidates: dict[str, tuple[Built, list[LayerReport]]], batches: Sequence[Any],
               unseen: bool, track: Progress, what: str) -> tuple[str, str]:
    """Of two candidate conversions (the first preferred on a tie), the label of the one that moves the whole
    model's outputs less on ``batches`` (a sum of layer errors is a proxy; ``unseen``: no fit saw them), and a
    note saying which and by how much."""
    dense = [_outputs(model, b) for b in batches]
    change = {}
    for label, (built, _) in candidates.items():
        trial = copy.deepcopy(model)
        for name, build in built:
            original = trial.get_submodule(name)
            replace_everywhere(trial, original, build(original))
        settle_parents(trial)
        try:
            moved = [_outputs(trial, b) for b in batches]
        except Exception:  # noqa: BLE001 - a candidate that does not run loses; the final check names the cause
            change[label] = math.inf
            continue
        change[label] = _output_change([t for d in dense for t in d], [t for m in moved for t in m])
    first, second = candidates
    keep, other = (first, second) if change[first] <= change[second] else (second, first)
    where = "held-out" if unseen else "fitted (too few to hold one out)"
    note = (f"{what} {keep}: the model's outputs moved {change[keep]:.3g} (relative) on {len(batches)} {where} "
            f"calibration batch(es), {other} {change[other]:.3g}")
    track.phase("%s", note)
    return keep, note


def _noted(conversion: tuple[Built, list[LayerReport]], note: str) -> tuple[Built, list[LayerReport]]:
    """``conversion`` with ``note`` added to every report's note."""
    built, reports = conversion
    return built, [dataclasses.replace(r, note="; ".join(n for n in (r.note, note) if n)) for r in reports]


def _every_row(model: nn.Module, names: Sequence[str], grams: dict[str, dict[str, GramFolds]],
               held: Sequence[Any]) -> dict[str, dict[str, GramFolds]]:
    """``grams`` with the rows of the ``held`` batches (withheld from the fits to judge the whole model) added,
    their samples dealt round-robin into the folds as the others were."""
    extra = record_folds(model, names, held)
    return {name: {w: folds.plus(extra[name][w]) if w in extra.get(name, {}) else folds
                   for w, folds in by_weight.items()} for name, by_weight in grams.items()}


def _compare(out: nn.Module, batch: Any, dense: list[torch.Tensor] | None, undo: list[tuple[nn.Module, str, Any]],
             what: str, track: Progress) -> None:
    """Run the converted model on ``batch`` (:func:`_check_runs`) and log how far its outputs moved from the
    dense model's ``dense``; warn when they moved more than their own size."""
    track.phase("running the compressed model on %s", what)
    change = _output_change(dense, _check_runs(out, batch, undo, what))
    track.phase("its outputs differ from the dense model's by %.4g (relative) on %s", change, what)
    if change > 1.0:
        warn_at_caller(f"the compressed model's outputs differ from the dense model's by {change:.3g} (relative) "
                       f"on {what}: more than the outputs themselves; compress less, or with calibration")


def _outputs(model: nn.Module, batch: Any) -> list[torch.Tensor]:
    """The floating-point outputs of ``model`` (in ``eval()``, without gradients) on ``batch``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [t for t in _tensors(run_batch(model, batch)) if t.is_floating_point()]
    finally:
        model.train(was_training)


def _output_change(dense: Any, compressed: list[torch.Tensor]) -> float:
    """``||y_compressed - y_dense|| / ||y_dense||`` over all floating outputs (0 when there are none)."""
    pairs = [(a, b) for a, b in zip(dense or [], compressed) if a.shape == b.shape]
    num = sum(float((b.double() - a.double()).square().sum()) for a, b in pairs)
    den = sum(float(a.double().square().sum()) for a, _ in pairs)
    return math.sqrt(num / den) if den > 0 else 0.0


def _check_example(model: nn.Module, example: Any) -> None:
    """The dense model runs on ``example`` (before any work), or a ``ValueError`` says the example does not fit."""
    try:
        _outputs(model, example)
    except Exception as exc:  # noqa: BLE001 - any failure of the dense model on it: the example is wrong
        raise ValueError(f"example does not fit the model: the dense model fails on it ({type(exc).__name__}: "
                         f"{exc}); give one input batch the model takes") from None


def _check_runs(model: nn.Module, batch: Any, undo: list[tuple[nn.Module, str, Any]],
                what: str) -> list[torch.Tensor]:
    """Run the converted ``model`` once on ``batch`` (``what`` names it) and return its floating outputs; on an
    error or a non-finite output, put every original module back and raise naming the cause (nothing is left half
    converted)."""
    outs: list[torch.Tensor] = []
    try:
        outs = _outputs(model, batch)
        bad = [t for t in outs if not bool(torch.isfinite(t).all())]
        problem = f"its output holds NaN or inf ({len(bad)} tensor(s))" if bad else None
    except Exception as exc:  # noqa: BLE001 - any failure of the converted model is reported with its cause
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        for parent, child, original in reversed(undo):
            setattr(parent, child, original)
        raise ValueError(f"the compressed model does not run on {what} ({problem}); "
                         "the model was left as it was: leave the layer that breaks it out with layers=[...]")
    return outs


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _warn_if_larger(reports: Sequence[LayerReport]) -> None:
    before = sum(r.params_before for r in reports)
    after = sum(r.params_after for r in reports)
    if after > before:
        warn_at_caller(f"the converted layers store {after} weights where the dense ones stored {before} "
                       f"({after / before:.2f}x): an exact conversion is larger; pass compression= or a truncation")


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


def _check_allocation(allocation: Any, budget: float | None) -> None:
    if allocation not in ("uniform", "global"):
        raise ValueError(f"allocation must be 'uniform' or 'global', got {allocation!r}")
    if allocation == "global" and budget is None:
        raise ValueError("allocation='global' shares the budget of a compression ratio or of bytes: pass "
                         "compression= or bytes=")


def _refitted(w: torch.Tensor, form: tnlib.MPO, folds: GramFolds) -> tnlib.MPO:
    """``w`` fitted in the metric of every row of ``folds`` in the form of ``form``: its layout, bond dimensions and
    shrinkage (the whitened truncated SVD for the truncated SVD's layout)."""
    out_dims = tuple(int(c.shape[1]) for c in form.cores)
    in_dims = tuple(int(c.shape[2]) for c in form.cores)
    bonds = form.bond_dims
    shrinkage = form.report.shrinkage if form.report is not None else None
    metric = tnlib.Metric(folds.gram(), shrinkage=1.0 if shrinkage is None else shrinkage)
    with torch.no_grad():
        return tnlib.MPO.from_matrix(w, out_dims, in_dims, metric=metric,
                                     truncation=tnlib.Truncation(max_bond=bonds[0] if len(bonds) == 1 else bonds))


def _decompose_layer(name: str, module: Any, source: Source, truncation: tnlib.Truncation | None,
                     compression: float | None, num_cores: int | None, folds: dict[str, GramFolds],
                     budgets: dict[str, int] | None = None,
                     objective: tnlib.Objective = tnlib.Objective(),
                     fixed: dict[str, tnlib.MPO] | None = None) -> tuple[dict[str, tnlib.MPO], int]:
    """Every weight of one layer as an MPO (searched layout at a budget, else the source's), and the budget:
    the core's layout chooser (:meth:`tnlib.MPO.from_matrix`) does the rest, in the metric of the folds; a weight
    in ``fixed`` with folds is fitted in their pooled Gram in the form of ``fixed``'s MPO (:func:`_refitted`)."""
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
        if fixed is not None and wname in fixed and wname in folds:
            mpos[wname] = _refitted(wide(w).cpu(), fixed[wname], folds[wname])
            budget += t.max_params if t is not None and t.max_params is not None else w.numel()
            continue
        search = t is not None and t.max_params is not None and num_cores is None
        dims = (None, None) if search else source.layout(module, w, num_cores)
        metric = folds[wname].metric() if wname in folds else None
        with torch.no_grad():
            try:
                mpos[wname] = tnlib.MPO.from_matrix(wide(w).cpu(), dims[0], dims[1], truncation=t,
                                                    metric=metric, objective=objective)
            except tnlib.truncation.BudgetTooSmallError as exc:
                raise ValueError(
                    f"layer {name!r} ({w.shape[0]} x {w.shape[1]} weight) cannot be held in "
                    f"{t.max_params if t is not None else '?'} parameters: {exc}; leave it out with layers=[...] "
                    "or lower compression"
                ) from None
        budget += t.max_params if t is not None and t.max_params is not None else w.numel()
    return mpos, budget


