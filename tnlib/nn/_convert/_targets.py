"""Which modules :func:`tnlib.nn.compress` converts, and how a converted layer takes the place of every use.

A module can be converted only when its parent uses it by calling it: a
parent that reads ``child.weight`` itself (``nn.MultiheadAttention`` and its
``out_proj``, the linear layers of ``nn.TransformerEncoderLayer`` /
``nn.TransformerDecoderLayer``, whose fused kernels take the weights) would
break. Any other parent that does so is caught by running the converted
model on the first calibration batch. A weight parameter shared with another module
(an embedding tied to an output layer) would be untied: the other module
keeps the dense copy, and the model grows. Both are left dense by default,
with a warning naming them and why, and refused in words when named in
``layers``. A module used at several places is converted once and the one
new layer takes every place, so the model stays as shared as it was.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from tnlib.nn._layers._kinds import describe_supported, source_of
from tnlib.truncation import warn_at_caller

__all__ = ["select_targets", "check_materialized", "replace_everywhere"]


def _uses(model: nn.Module) -> dict[int, list[str]]:
    """Every name of every module (a module used at several places has several)."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    return names


def _parent(model: nn.Module, name: str) -> nn.Module:
    parent_name = name.rpartition(".")[0]
    return model.get_submodule(parent_name) if parent_name else model


_READS_WEIGHTS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
"""Parents that read their children's ``weight`` directly (torch's fused attention and transformer kernels)."""


def _owners(model: nn.Module) -> dict[int, list[tuple[str, str, nn.Module]]]:
    """Every parameter of ``model`` (by identity) with each ``(module name, parameter name, module)`` holding it."""
    owners: dict[int, list[tuple[str, str, nn.Module]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((name, pname, module))
    return owners


def _blocked(model: nn.Module, module: nn.Module, names: Sequence[str],
             owners: dict[int, list[tuple[str, str, nn.Module]]]) -> str | None:
    """Why converting ``module`` (known by ``names``) would break or grow ``model``, or ``None``."""
    for name in names:
        parent = _parent(model, name)
        if isinstance(parent, _READS_WEIGHTS):
            return (f"{type(parent).__name__} reads {name.rpartition('.')[2]}.weight itself (its fused kernels), "
                    "so a converted layer would break it")
    inside = {id(m) for m in module.modules()}
    for own, param in module.named_parameters(recurse=False):
        for other_name, pname, other in owners[id(param)]:
            if id(other) not in inside:
                return (f"its {own} is tied to {other_name or 'the model'}.{pname}; converting it would "
                        "untie them and keep a dense copy")
    return None


def _not_accepted(module: nn.Module) -> str | None:
    """Why a module that looks convertible is not (a setting no registered kind accepts), or ``None``."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and (module.groups != 1 or module.padding_mode != "zeros"):
        return f"groups={module.groups}, padding_mode={module.padding_mode!r}: an MPO kernel holds one full kernel"
    if isinstance(module, nn.Embedding) and (module.max_norm is not None or module.sparse):
        return "max_norm or sparse gradients, which an MPO table does not support"
    return None


def select_targets(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """The names (one per module) of the modules to convert, validated; what is left dense by default is
    warned about, naming each module and why."""
    uses, owners = _uses(model), _owners(model)
    if layers is None:
        return _default_targets(model, uses, owners)
    return _named_targets(model, layers, uses, owners)


def _default_targets(model: nn.Module, uses: dict[int, list[str]], owners: dict[int, Any]) -> list[str]:
    if source_of(model) is not None:
        raise ValueError(
            f"model is itself a {type(model).__name__}; use MPOLinear.from_linear, MPOLSTM.from_lstm, ... "
            "or pass the model that holds it"
        )
    chosen, dense = [], []
    for name, module in model.named_modules():
        if not name:
            continue
        if source_of(module) is None:
            reason = _not_accepted(module)
            if reason is not None:
                dense.append(f"{name!r} ({reason})")
            continue
        if isinstance(module, nn.Embedding):
            continue  # only when named: tables are often tied to an output layer
        reason = _blocked(model, module, uses[id(module)], owners)
        if reason is None:
            chosen.append(name)
        else:
            dense.append(f"{name!r} ({reason})")
    if dense:
        warn_at_caller(f"compress leaves {len(dense)} layer(s) dense: {'; '.join(dense)}")
    if not chosen:
        warn_at_caller(f"compress found no layer to convert in this {type(model).__name__}: it converts "
                       f"{describe_supported()}")
    return chosen


def _named_targets(model: nn.Module, layers: Any, uses: dict[int, list[str]], owners: dict[int, Any]) -> list[str]:
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of module names, got {layers!r}; e.g. layers=[{layers!r}]")
    if len(set(layers)) != len(layers):
        twice = sorted({n for n in layers if list(layers).count(n) > 1})
        raise ValueError(f"layers names {', '.join(map(repr, twice))} more than once; name each layer once")
    named = dict(model.named_modules(remove_duplicate=False))
    chosen = []
    for n in layers:
        if n not in named:
            raise ValueError(
                f"layers names {n!r}, which is not a module of the model; modules: {[k for k in named if k][:12]}"
            )
        module = named[n]
        if source_of(module) is None:
            why = _not_accepted(module)
            raise TypeError(
                f"layer {n!r} is a {type(module).__name__}"
                + (f" with {why}" if why else "")
                + f"; only {describe_supported()} can be compressed"
            )
        reason = _blocked(model, module, uses[id(module)], owners)
        if reason is not None:
            raise ValueError(f"layer {n!r} cannot be converted: {reason}; leave it out of layers")
        first = uses[id(module)][0]  # one name per module: a module named twice is converted once
        if first not in chosen:
            chosen.append(first)
    return chosen


def check_materialized(model: nn.Module, targets: Sequence[str]) -> None:
    """Refuse layers whose weights have no values (the meta device) before anything is computed."""
    for name in targets:
        meta = [n for n, p in model.get_submodule(name).named_parameters() if p.is_meta]
        if meta:
            raise ValueError(
                f"layer {name!r} has weights on the meta device ({', '.join(meta)}): they hold no values to "
                "compress; load the model's state_dict (or call to_empty() and load) first"
            )


def replace_everywhere(model: nn.Module, original: nn.Module, layer: nn.Module) -> list[tuple[nn.Module, str, Any]]:
    """Put ``layer`` at every place ``model`` uses ``original``; returns ``(parent, child, original)`` to undo."""
    undo = []
    for parent in list(model.modules()):
        for child, sub in list(parent._modules.items()):  # every name: named_children() skips a repeated module
            if sub is original:
                setattr(parent, child, layer)
                undo.append((parent, child, original))
    return undo
