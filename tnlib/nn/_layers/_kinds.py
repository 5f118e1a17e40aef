"""The registry of layer kinds: one record per tnlib layer, registered next to its class.

A :class:`LayerKind` says everything the rest of :mod:`tnlib.nn` needs to know
about one tnlib layer class: the dense modules it replaces (each a
:class:`Source`: how to recognise it, how its weights read as the matrices of
``x W^T``, their layout without a search, how calibration records the inputs
of those matrices, how the tnlib layer is built from their MPOs), the fields
:func:`tnlib.nn.save` writes, the sizes a loaded layer must agree on with the
module it replaces, a zero input that probes a loaded layer, and where its MPO
cores and bond masks are (what MPOP freezes and squeezes). :func:`compress`,
calibration, serialization, :func:`freeze_central`,
:class:`DimensionSqueezer`, ``SUPPORTED`` and ``LayerReport.kind`` all read
it, so a new layer kind is one module that defines the layer and calls
:func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

import tnlib

__all__ = ["attributes", "Source", "LayerKind", "register", "kinds", "sources", "source_of", "kind_of_layer",
           "balanced", "describe_supported"]

Layout = Callable[[Any, torch.Tensor, "int | None"], "tuple[tuple[int, ...], tuple[int, ...]]"]
Recorder = Callable[[Any, str, nn.Module, tuple, dict], None]


def _rows_by_rest(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def attributes(module: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    """The attributes ``names`` of ``module`` (``None`` where it has none): the sizes two layers must share."""
    return {n: getattr(module, n, None) for n in names}


def balanced(module: Any, w: torch.Tensor, num_cores: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The default layout: the most balanced factors of both sides (:func:`tnlib.choose_dims`)."""
    return tnlib.choose_dims((int(w.shape[0]), int(w.shape[1])), num_cores=num_cores)


@dataclass(frozen=True)
class Source:
    """A dense module type that a tnlib layer replaces.

    ``kind`` names it (``LayerReport.kind``); ``matches`` recognises it;
    ``build(module, mpos)`` makes the tnlib layer from the MPOs of its weight
    matrices (by parameter name); ``layout(module, matrix, num_cores)`` gives
    their dims without a layout search; ``record(accumulator, name, module,
    args, kwargs)`` adds the rows every weight matrix multiplies to the
    calibration accumulator (``None``: a lookup, nothing to record);
    ``as_matrix`` reads a weight parameter (or its gradient) as the matrix of
    ``x W^T``; ``sizes(module)`` the sizes a saved layer must agree on;
    ``supported`` the phrase ``SUPPORTED`` lists it by.
    """

    kind: str
    matches: Callable[[nn.Module], bool]
    build: Callable[[Any, dict[str, tnlib.MPO]], nn.Module]
    supported: str
    layout: Layout = balanced
    record: Recorder | None = None
    as_matrix: Callable[[torch.Tensor], torch.Tensor] = _rows_by_rest
    sizes: Callable[[nn.Module, Sequence[str]], dict[str, Any]] | None = None

    def weights(self, module: Any) -> dict[str, torch.Tensor]:
        """The module's weight matrices by parameter name (detached)."""
        return {n: self.as_matrix(p.detach()) for n, p in module.named_parameters() if n.startswith("weight")}

    def parameters_of(self, module: Any) -> dict[str, tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        """Per weight of :meth:`weights`, the parameter holding it and how a tensor of that parameter's shape (its
        gradient) reads as the weight's matrix."""
        return {n: (p, self.as_matrix) for n, p in module.named_parameters() if n.startswith("weight")}

    def sizes_of(self, module: nn.Module, names: Sequence[str]) -> dict[str, Any]:
        """The size attributes ``names`` of a module of this source."""
        if self.sizes is not None:
            return self.sizes(module, names)
        return attributes(module, names)


@dataclass(frozen=True)
class LayerKind:
    """One tnlib layer class and what the rest of :mod:`tnlib.nn` needs to know about it.

    ``fields`` are the attributes :func:`tnlib.nn.save` writes (the rest is
    tensors); ``sizes`` the attributes a loaded layer must share with the
    module it replaces; ``probe(layer)`` a zero input of one sample;
    ``mpo_weights(layer)`` its MPO cores as ``(name, ParameterList)`` pairs;
    ``named_masks``: its ``bond_masks`` is a dict by weight name (else one
    list for its single MPO); ``also_replaces``: kinds of dense module it
    replaces without being built from MPOs (a quantized layer).
    """

    layer: type[nn.Module]
    sources: tuple[Source, ...]
    fields: tuple[str, ...]
    sizes: tuple[str, ...]
    probe: Callable[[Any], "torch.Tensor | tuple[torch.Tensor, ...]"]
    mpo_weights: Callable[[Any], list[tuple[str, nn.ParameterList]]] = field(
        default=lambda layer: [("cores", layer.cores)])
    named_masks: bool = False
    also_replaces: tuple[str, ...] = ()

    @property
    def replaces(self) -> tuple[str, ...]:
        """The class names of the modules a saved layer of this kind may replace at load (itself included)."""
        return tuple(s.kind for s in self.sources) + self.also_replaces + (self.layer.__name__,)

    def masks(self, layer: Any, name: str) -> list[torch.Tensor] | None:
        """The bond masks of weight ``name`` of ``layer`` (``None``: no bond squeezed)."""
        return layer.bond_masks.get(name) if self.named_masks else layer.bond_masks

    def set_masks(self, layer: Any, name: str, masks: list[torch.Tensor]) -> None:
        if self.named_masks:
            layer.bond_masks[name] = masks
        else:
            layer.bond_masks = masks

    def empty_masks(self) -> dict[str, list[torch.Tensor]] | None:
        """The bond masks of a layer nothing was squeezed in."""
        return {} if self.named_masks else None


_KINDS: list[LayerKind] = []


def register(kind: LayerKind) -> LayerKind:
    """Add ``kind`` to the registry (once per layer class; a source kind name only once)."""
    if any(k.layer is kind.layer for k in _KINDS):
        raise ValueError(f"{kind.layer.__name__} is registered already")
    taken = {s.kind for k in _KINDS for s in k.sources}
    clash = [s.kind for s in kind.sources if s.kind in taken]
    if clash:
        raise ValueError(f"source kind(s) {clash} are registered already")
    _KINDS.append(kind)
    return kind


def kinds() -> tuple[LayerKind, ...]:
    """Every registered layer kind, in the order of registration."""
    return tuple(_KINDS)


def sources() -> tuple[tuple[Source, LayerKind], ...]:
    """Every dense source with its layer kind."""
    return tuple((s, k) for k in _KINDS for s in k.sources)


def source_of(module: nn.Module) -> Source | None:
    """The source that ``module`` is (the first that matches), or ``None`` when tnlib cannot replace it."""
    return next((s for s, _ in sources() if s.matches(module)), None)


def kind_of_layer(layer: nn.Module) -> LayerKind | None:
    """The kind of a tnlib layer (by its exact class), or ``None`` for any other module."""
    return next((k for k in _KINDS if type(layer) is k.layer), None)


def describe_supported() -> str:
    """The dense modules tnlib can replace (registered so far), as a phrase in the order of their kind names."""
    phrases = [s.supported for s, _ in sorted(sources(), key=lambda sk: sk[0].kind.lower())]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1] if len(phrases) > 1 else "".join(phrases)
