"""Which modules :func:`tnlib.nn.compress` converts, and how a converted layer takes the place of every use.

A module can be converted only when its parent uses it by calling it: a
parent that reads ``child.weight`` itself would break. ``nn.MultiheadAttention``
reads its ``out_proj.weight`` and packed ``in_proj_weight``: the attention is
converted as a whole (:class:`~tnlib.nn.MPOMultiheadAttention`), never its
``out_proj`` alone. ``nn.TransformerEncoderLayer``'s fused kernel reads its
children's weights, but only while its attention holds packed dense weights:
its ``linear1`` / ``linear2`` are converted when its ``self_attn`` is too (a
converted attention keeps the layer on its Python path). Any other parent
that reads weights is caught by running the converted model on the first
calibration batch. A weight parameter shared with another module
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




def _owners(model: nn.Module) -> dict[int, list[tuple[str, str, nn.Module]]]:
    """Every parameter of ``model`` (by identity) with each ``(module name, parameter name, module)`` holding it."""
    owners: dict[int, list[tuple[str, str, nn.Module]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((name, pname, module))
    return owners


def _reads_weight(parent: nn.Module, child: str, module: nn.Module, converting: set[int]) -> str | None:
    """Why ``parent`` reads its child ``child``'s weight itself (so converting the child breaks it), or ``None``."""
    if isinstance(parent, nn.MultiheadAttention):
        return f"MultiheadAttention reads {child}.weight itself; only the whole attention can be converted"
    if isinstance(parent, nn.TransformerEncoderLayer) and not isinstance(module, nn.MultiheadAttention):
        attention = parent.self_attn
        if attention._qkv_same_embed_dim is not False and id(attention) not in converting:
            return (f"TransformerEncoderLayer's fused kernel reads {child}.weight while its self_attn holds packed "
                    "dense weights; convert its self_attn too")
    return None


def _blocked(model: nn.Module, module: nn.Module, names: Sequence[str],
             owners: dict[int, list[tuple[str, str, nn.Module]]], converting: set[int]) -> str | None:
    """Why converting ``module`` (known by ``names``) would break or grow ``model``, or ``None``; ``converting``:
    the ids of the modules converted with it."""
    for name in names:
        reason = _reads_weight(_parent(model, name), name.rpartition(".")[2], module, converting)
        if reason is not None:
            return reason
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
    if isinstance(module, nn.MultiheadAttention) and (module.bias_k is not None or module.add_zero_attn):
        return "add_bias_kv or add_zero_attn, which MPOMultiheadAttention does not support"
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
    converting: set[int] = set()
    inside: set[int] = set()  # the modules inside a converted one (an attention's out_proj): part of it
    for name, module in model.named_modules():
        if not name or id(module) in inside:
            continue
        if source_of(module) is None:
            reason = _not_accepted(module)
            if reason is not None:
                dense.append(f"{name!r} ({reason})")
            continue
        if isinstance(module, nn.Embedding):
            continue  # only when named: tables are often tied to an output layer
        reason = _blocked(model, module, uses[id(module)], owners, converting)
        if reason is None:
            chosen.append(name)
            converting.add(id(module))
            inside.update(id(m) for m in module.modules() if m is not module)
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
    converting = {id(named[n]) for n in layers}
    for n in layers:
        outer = [m for m in layers if m != n and n.startswith(m + ".")]
        if outer:
            raise ValueError(f"layers names {n!r} and {outer[0]!r}, which holds it and is converted as a whole; "
                             f"name one of them")
        module = named[n]
        if source_of(module) is None:
            why = _not_accepted(module)
            raise TypeError(
                f"layer {n!r} is a {type(module).__name__}"
                + (f" with {why}" if why else "")
                + f"; only {describe_supported()} can be compressed"
            )
        reason = _blocked(model, module, uses[id(module)], owners, converting)
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
    """Put ``layer`` at every place ``model`` uses ``original``, in its mode (a model in ``eval()`` stays so: an
    attention's or a stacked LSTM's dropout stays off); returns ``(parent, child, original)`` to undo."""
    layer.train(original.training)
    undo = []
    for parent in list(model.modules()):
        for child, sub in list(parent._modules.items()):  # every name: named_children() skips a repeated module
            if sub is original:
                setattr(parent, child, layer)
                undo.append((parent, child, original))
    return undo
