"""Compress a whole model: every chosen ``nn.Linear`` / ``nn.LSTM`` becomes its MPO form."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

import tnlib

from .mpo_linear import MPOLinear
from .mpo_rnn import MPOLSTM

__all__ = ["compress", "LayerReport"]


@dataclass(frozen=True)
class LayerReport:
    """What :func:`compress` did to one layer.

    Attributes
    ----------
    name : str
        The module's name in the model.
    kind : str
        ``"Linear"`` or ``"LSTM"``.
    params_before, params_after : int
        Weight entries (biases excluded) of the original and of the MPO layer.
    relative_error : float
        ``||W - W_mpo||_F / ||W||_F`` over all the layer's weight matrices.
    entropies : tuple of tuple of float
        Von Neumann entropy of every bond of every MPO of the layer.
    """

    name: str
    kind: str
    params_before: int
    params_after: int
    relative_error: float
    entropies: tuple[tuple[float, ...], ...]

    @property
    def compression_ratio(self) -> float:
        return self.params_before / self.params_after


def _truncation_for(weight: torch.Tensor, truncation, compression) -> tnlib.Truncation | None:
    if compression is None:
        return truncation
    budget = max(1, int(weight.numel() / compression))
    if truncation is None:
        return tnlib.Truncation(max_params=budget)
    import dataclasses

    return dataclasses.replace(truncation, max_params=budget)


def compress(
    model: nn.Module,
    truncation: tnlib.Truncation | None = None,
    *,
    compression: float | None = None,
    layers: Sequence[str] | None = None,
    inplace: bool = False,
    num_cores: int | None = None,
) -> tuple[nn.Module, list[LayerReport]]:
    """Replace ``nn.Linear`` and ``nn.LSTM`` modules by MPO layers.

    Parameters
    ----------
    model
        Any module (for example one just loaded from a ``state_dict``).
    truncation
        Applied to every weight matrix (``None``: exact).
    compression
        Instead of (or on top of) ``truncation``: a parameter budget of
        ``weight.numel() / compression`` per weight matrix.
    layers
        Names (as in ``model.named_modules()``) of the modules to convert;
        default every ``nn.Linear`` and ``nn.LSTM``.
    inplace
        Modify ``model`` instead of a deep copy.
    num_cores
        Cores per MPO (default from the sizes).

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
    """
    if compression is not None and not compression >= 1.0:
        raise ValueError(f"compression={compression!r} is invalid; expected a ratio >= 1")
    named = dict(model.named_modules())
    if layers is None:
        targets = [n for n, m in named.items() if isinstance(m, (nn.Linear, nn.LSTM)) and n]
        if isinstance(model, (nn.Linear, nn.LSTM)):
            raise ValueError("model is itself a Linear/LSTM; use MPOLinear.from_linear or MPOLSTM.from_lstm")
    else:
        targets = list(layers)
        for n in targets:
            if n not in named:
                raise ValueError(
                    f"layers names {n!r}, which is not a module of the model; modules: {[k for k in named if k][:12]}"
                )
            if not isinstance(named[n], (nn.Linear, nn.LSTM)):
                raise TypeError(
                    f"layer {n!r} is a {type(named[n]).__name__}; only nn.Linear and nn.LSTM can be compressed"
                )
    out = model if inplace else copy.deepcopy(model)
    reports = []
    for name in targets:
        module = out.get_submodule(name)
        if isinstance(module, nn.Linear):
            t = _truncation_for(module.weight, truncation, compression)
            new = MPOLinear.from_linear(module, t, num_cores=num_cores)
            pairs = [(module.weight, new.dense_weight())]
            mpos = [new.mpo]
            replacement: nn.Module = new
        else:
            weights = [p for n, p in module.named_parameters() if n.startswith("weight_")]
            t = _truncation_for(weights[0], truncation, compression)
            if compression is not None:  # budget per matrix: the smallest one sets it
                t = _truncation_for(min(weights, key=lambda w: w.numel()), truncation, compression)
            assert isinstance(module, nn.LSTM)
            new_lstm = MPOLSTM.from_lstm(module, t, num_cores=num_cores)
            dense = [
                w
                for layer in range(new_lstm.num_layers)
                for d in range(new_lstm.num_directions)
                for w in new_lstm.dense_weights(layer, d)
            ]
            pairs = list(zip(weights, dense))
            mpos = [new_lstm.mpo(n) for n in new_lstm.mpo_names()]
            replacement = new_lstm
        with torch.no_grad():
            num = sum(float(torch.linalg.vector_norm((a - b).double())) ** 2 for a, b in pairs)
            den = sum(float(torch.linalg.vector_norm(a.double())) ** 2 for a, _ in pairs)
        before = sum(a.numel() for a, _ in pairs)
        after = sum(m.num_params for m in mpos)
        ent = tuple(tuple(float(v) for v in m.entropies()) for m in mpos)
        reports.append(
            LayerReport(
                name,
                "Linear" if isinstance(module, nn.Linear) else "LSTM",
                before,
                after,
                (num / den) ** 0.5 if den else 0.0,
                ent,
            )
        )
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, replacement)
    return out, reports
