"""Structure across layers: groups of same-role linear layers given one shared basis (Basis Sharing), kept per
group only where that errs less than the per-matrix forms at the same weights.

``compress(..., share="role")`` groups the converted ``nn.Linear`` layers whose
names differ only in their first index, the layer's (``encoder.layer.0.attention.self.query``,
``encoder.layer.1.attention.self.query``, ...; ``blocks.0.2`` and ``blocks.1.2``, not ``blocks.0.0``)
and that share ``in_features``;
``share=[[names], ...]`` names the groups. Each group's budget is the sum of
its members' per-matrix budgets, so the shared basis (``rank (in + sum out)``
weights) has the largest
rank that fits. It is judged like the per-matrix forms: the members' relative
errors pooled by their signals ``tr(W C W^T)``, on the held-out calibration
rows with calibration, on the weights without; the group is kept only where
it errs less.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from tnlib.metric import shrunk
from tnlib.nn._convert._calibration import GramFolds
from tnlib.nn._convert._layer_report import LayerReport
from tnlib.nn._layers._shared_basis import build_member, shared_basis, shared_parameter, shared_params
from tnlib.quantization import relative_error

__all__ = ["sharing_groups", "SharedGroup", "shared_group", "apply_sharing"]

_INDEX = re.compile(r"(?<![^.])\d+(?![^.])")  # a whole dotted part that is a number: a layer index


def sharing_groups(model: nn.Module, targets: Sequence[str], share: Any) -> list[list[str]]:
    """The groups ``share`` asks for among ``targets``: ``"role"`` (names equal up to their first index, plain
    ``nn.Linear`` layers of one ``in_features``, two or more), or explicit lists of names (checked)."""
    if share is None:
        return []
    linear = {t: m for t in targets if type(m := model.get_submodule(t)) is nn.Linear and not m.weight.is_complex()}
    if isinstance(share, str):
        if share != "role":
            raise ValueError(f"share must be 'role', a list of groups of layer names, or None; got {share!r}")
        roles: dict[tuple, list[str]] = {}
        for name, m in linear.items():
            if _INDEX.search(name):
                roles.setdefault((_INDEX.sub("*", name, count=1), m.in_features), []).append(name)
        return [names for names in roles.values() if len(names) >= 2]
    if not isinstance(share, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in share):
        raise TypeError(f"share must be 'role', a list of groups of layer names, or None; got {type(share).__name__}")
    return _named_groups(share, linear)


def _named_groups(share: Sequence[Sequence[Any]], linear: dict[str, nn.Linear]) -> list[list[str]]:
    """Groups given by name, checked: two or more converted ``nn.Linear`` layers each, of one ``in_features``, no
    layer in two groups."""
    groups, seen = [], set()
    for k, group in enumerate(share):
        names = [str(n) for n in group]
        if len(names) < 2:
            raise ValueError(f"share[{k}] has {len(names)} layer(s); a shared basis needs two or more")
        for n in names:
            if n not in linear:
                raise ValueError(f"share[{k}] names {n!r}, which is not a real nn.Linear being converted")
            if n in seen:
                raise ValueError(f"share[{k}] names {n!r}, which is already in another group")
            seen.add(n)
        sizes = sorted({linear[n].in_features for n in names})
        if len(sizes) > 1:
            raise ValueError(f"share[{k}] mixes in_features {sizes}; the layers of a group share their input size")
        groups.append(names)
    return groups


@dataclass(frozen=True, eq=False)
class SharedGroup:
    """One group's shared basis, its coefficients and errors, and the per-matrix forms' error it is judged
    against (``judged`` / ``alone``: the pooled errors compared)."""

    names: tuple[str, ...]
    basis: np.ndarray
    coefficients: tuple[np.ndarray, ...]
    weight_errors: tuple[float, ...]
    fit_errors: tuple[float | None, ...]
    held_errors: tuple[float | None, ...]
    judged: float
    alone: float
    where: str

    @property
    def rank(self) -> int:
        return int(self.basis.shape[0])


def _pooled(errors: Sequence[float], signals: Sequence[float]) -> float:
    total = sum(signals)
    return math.sqrt(sum(e * e * s for e, s in zip(errors, signals)) / total) if total > 0 else 0.0


def _weight(model: nn.Module, name: str) -> np.ndarray:
    w: Any = model.get_submodule(name).weight
    return w.detach().to(device="cpu", dtype=torch.float64).numpy()


def shared_group(model: nn.Module, names: Sequence[str], reports: dict[str, LayerReport],
                 grams: dict[str, dict[str, GramFolds]]) -> SharedGroup | None:
    """The shared basis of ``names`` at the sum of their per-matrix budgets, judged against their ``reports``
    (``None``: no rank fits, or a member has no budget)."""
    budgets = [reports[n].budget for n in names]
    if any(b is None for b in budgets):
        return None
    ws = [_weight(model, n) for n in names]
    n_in, outs = ws[0].shape[1], [w.shape[0] for w in ws]
    rank = min(sum(b for b in budgets if b is not None) // shared_params(n_in, outs, 1), n_in, sum(outs))
    if rank < 1:
        return None
    folds = [f for n in names if (f := grams.get(n, {}).get("weight")) is not None]
    split = [f.fit_and_held() for f in folds] if len(folds) == len(names) else None
    fits = None if split is None else [fit for fit, _ in split]
    usable = fits is not None and all(np.trace(f) > 0 for f in fits)
    basis, coefficients = shared_basis(ws, [shrunk(f) for f in fits] if usable and fits is not None else None, rank)
    approx = [c @ basis for c in coefficients]
    weight = tuple(relative_error(w, a) for w, a in zip(ws, approx))
    on_fit = tuple(None if fits is None else relative_error(w, a, f) for w, a, f in zip(ws, approx, fits or ws))
    held: list[np.ndarray | None] = [None] * len(ws) if split is None else [h for _, h in split]
    on_held = tuple(None if h is None else relative_error(w, a, h) for w, a, h in zip(ws, approx, held))
    if all(h is not None for h in held):
        signals = [float(np.sum((w @ h) * w)) for w, h in zip(ws, held)]
        mine, theirs, where = on_held, [reports[n].held_out_error for n in names], "held-out calibration rows"
    elif fits is not None:
        signals = [float(np.sum((w @ f) * w)) for w, f in zip(ws, fits)]
        mine, theirs, where = on_fit, [reports[n].output_error for n in names], "calibration rows"
    else:
        signals = [float(np.sum(w * w)) for w in ws]
        mine, theirs, where = weight, [reports[n].relative_error for n in names], "the weights"
    if any(e is None for e in (*mine, *theirs)):
        return None
    judged = _pooled([float(e) for e in mine if e is not None], signals)
    alone = _pooled([float(e) for e in theirs if e is not None], signals)
    return SharedGroup(tuple(names), basis, tuple(coefficients), weight, on_fit, on_held, judged, alone, where)


def apply_sharing(model: nn.Module, groups: Sequence[Sequence[str]], built: list[tuple[str, Callable]],
                  reports: list[LayerReport], grams: dict[str, dict[str, GramFolds]],
                  log: Callable[..., None]) -> tuple[list[tuple[str, Callable]], list[LayerReport]]:
    """``built`` and ``reports`` with every group whose shared basis errs less than its per-matrix forms replaced
    by :class:`~tnlib.nn.SharedBasisLinear` layers on one basis; each member's report says what was compared."""
    by_name = {r.name: r for r in reports}
    builders = dict(built)
    for names in groups:
        group = shared_group(model, names, by_name, grams)
        if group is None:
            continue
        verdict = (f"shared basis of {len(names)} layers, rank {group.rank}: pooled error {group.judged:.4g} on "
                   f"{group.where}, per-matrix forms {group.alone:.4g}")
        log("%s (%s): %s", names[0], "kept" if group.judged < group.alone else "not kept", verdict)
        if group.judged >= group.alone:
            for n in names:
                by_name[n] = replace(by_name[n], note="; ".join(x for x in (by_name[n].note, "not " + verdict) if x))
            continue
        holder: list[nn.Parameter] = []
        basis_params = group.basis.size
        for k, n in enumerate(names):
            builders[n] = _member_builder(group, k, holder)
            r = by_name[n]
            own = group.coefficients[k].size + (basis_params // len(names) + (basis_params % len(names) if k == 0
                                                                                 else 0))
            w: Any = model.get_submodule(n).weight
            by_name[n] = replace(
                r, params_after=own, relative_error=group.weight_errors[k], entropies=(),
                output_error=group.fit_errors[k], held_out_error=group.held_errors[k],
                layouts=(f"shared basis rank {group.rank} with {', '.join(m for m in names if m != n)}",),
                note="; ".join(x for x in (r.note, verdict) if x), macs=group.rank * (w.shape[0] + w.shape[1]),
                bytes_after=own * w.element_size())
    return [(n, builders[n]) for n, _ in built], [by_name[r.name] for r in reports]


def _member_builder(group: SharedGroup, k: int, holder: list[nn.Parameter]) -> Callable[[nn.Module], nn.Module]:
    """Builds member ``k`` from the module it replaces; the first member built makes the one basis parameter."""
    def build(original: Any) -> nn.Module:
        if not holder:
            holder.append(shared_parameter(group.basis, original.weight))
        return build_member(original, holder[0], group.coefficients[k])
    return build
