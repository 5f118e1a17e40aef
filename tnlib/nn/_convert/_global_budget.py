"""One parameter budget for a whole model: per weight matrix, ranks bought on its (whitened) spectrum, weighted
by how much the model's outputs move per unit of its error (:mod:`tnlib.nn._convert._sensitivity`)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib.metric import gram_factor
from tnlib.nn._convert._calibration import GramFolds
from tnlib.nn._convert._sensitivity import MAX_BATCHES, output_change_per_error
from tnlib.nn._layers._kinds import source_of

__all__ = ["global_budgets", "keeping", "FLOOR", "importance"]

FLOOR = 0.25
"""No weight matrix gets less than this part of its uniform share's rank under one global budget: a matrix the
sensitivities call unimportant on a few calibration batches is not starved to a rank that breaks the model."""


HOLD_EVERY = 4
"""With ``held`` given to :func:`keeping`, every ``HOLD_EVERY``-th of the first batches is held out of the Grams."""


def keeping(batches: Iterable[Any], kept: list[Any], limit: int = MAX_BATCHES,
            held: list[Any] | None = None) -> Iterator[Any]:
    """The batches, the first ``limit`` (by default ``MAX_BATCHES``, all the sensitivities read) also appended
    to ``kept`` as they are read (an endless iterator stays lazy, and the rest are not held). With ``held``, every
    ``HOLD_EVERY``-th of those first batches is appended there too and *not* passed on: rows the fits never see,
    for judging the whole model."""
    for index, batch in enumerate(batches):
        if len(kept) < limit:
            kept.append(batch)
            if held is not None and index % HOLD_EVERY == HOLD_EVERY - 1:
                held.append(batch)
                continue
        yield batch


def global_budgets(model: nn.Module, targets: Sequence[str], truncation: tnlib.Truncation | None,
                    compression: float, grams: dict[str, dict[str, GramFolds]],
                    batches: Sequence[Any] = ()) -> dict[str, dict[str, int]]:
    """Per weight matrix, its part of one budget of ``sum numel / compression``: truncated-SVD ranks chosen by
    :func:`tnlib.budget.allocate_ranks` on the spectra, whitened in the calibrated metric (at the default
    shrinkage), weighted with calibration by each weight's measured effect on the model's outputs
    (:mod:`tnlib.nn._convert._sensitivity`); every matrix keeps at least ``FLOOR`` of its uniform rank."""
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
                whitening = gram_factor(folds.gram())
                target, factor = w64 @ whitening.L, whitening.L_inv
            key = (name, wname)
            keys.append(key)
            params[key], as_matrix[key] = source.parameters_of(module)[wname]
            factors[key] = factor
            spectra.append(torch.linalg.svdvals(target).numpy())
            costs.append(m + n)
            caps.append(max(1, min(m, n, m * n // (m + n))))
            uniform.append(share // (m + n))
            total += share
    sensitivities = output_change_per_error(model, params, as_matrix, factors, batches) if batches else None
    min_rank = truncation.min_bond if truncation is not None else 1
    ranks = tnlib.budget.allocate_ranks(spectra, costs, total, min_rank=min_rank, max_ranks=caps, baseline=uniform,
                                        sensitivities=None if sensitivities is None else
                                        [sensitivities[k] for k in keys],
                                        min_ranks=[int(u * FLOOR) for u in uniform])
    out: dict[str, dict[str, int]] = {name: {} for name in targets}
    for (name, wname), r, c in zip(keys, ranks, costs):
        out[name][wname] = r * c
    return out


def importance(model: nn.Module, weights: Mapping[str, tuple[str, str]], grams: dict[str, dict[str, GramFolds]],
               batches: Sequence[Any]) -> dict[str, float] | None:
    """Per weight (``{key: (module name, weight name)}``), how much the model's outputs move per unit of
    *relative* error of it: its sensitivity (:mod:`tnlib.nn._convert._sensitivity`) times its signal
    ``||W L||_F^2`` in its metric ``C = L L^T``. A byte budget shared by these weights the squared relative errors
    it balances. ``None`` without calibration or when the outputs carry nothing to measure."""
    params: dict[str, Any] = {}
    as_matrix, factors, signals = {}, {}, {}
    for key, (name, wname) in weights.items():
        module = model.get_submodule(name)
        source = source_of(module)
        folds = grams.get(name, {}).get(wname)
        if source is None or folds is None:
            return None
        whitening = gram_factor(folds.gram())
        params[key], as_matrix[key] = source.parameters_of(module)[wname]
        factors[key] = whitening.L_inv
        w64 = as_matrix[key](params[key].detach()).to(torch.float64).cpu()
        signals[key] = float(((w64 @ whitening.L) ** 2).sum())
    sensitivities = output_change_per_error(model, params, as_matrix, factors, batches) if batches else None
    if sensitivities is None:
        return None
    return {key: sensitivities[key] * signals[key] for key in weights}
