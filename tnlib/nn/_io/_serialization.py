"""Save and load models holding tnlib layers: safetensors plus a structure header, never pickle.

A compressed layer's parameter shapes depend on the weights it was made from
(layout, bond dimensions), so a fresh model cannot take its ``state_dict``.
:func:`save` writes every tensor of the model to a ``.safetensors`` file and,
in the file's metadata, which modules are tnlib layers and the settings that
rebuild them; :func:`load` rebuilds those layers (inside the model you pass,
e.g. a fresh instance of the original architecture, or on their own) and
loads every tensor, strictly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tnlib._files import atomic_write
from tnlib._optional import optional
from tnlib.nn._layers._attention import settle_parents
from tnlib.nn._layers._kinds import LayerKind, attributes, kind_of_layer, kinds, source_of

__all__ = ["save", "load"]

FORMAT = "tnlib.nn"
VERSION = 1

def _kind_named(name: Any) -> LayerKind | None:
    return next((k for k in kinds() if k.layer.__name__ == name), None)


def _describe(module: nn.Module) -> dict[str, Any]:
    cls = type(module)
    kind = kind_of_layer(module)
    assert kind is not None  # save describes registered layers only
    attrs = {f: getattr(module, f) for f in kind.fields}
    nones = [n for n, p in module._parameters.items() if p is None]
    spec = {"class": cls.__name__, "attrs": attrs, "none_params": nones}
    buffers = [n for n, b in module._buffers.items() if b is not None]
    if buffers:
        spec["buffers"] = buffers
    return spec


def save(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s tensors and the structure of its tnlib layers to ``path`` (safetensors).

    Examples
    --------
    >>> import tempfile, torch, tnlib.nn
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    >>> small, _ = tnlib.nn.compress(net, compression=4)
    >>> path = tempfile.mkdtemp() + "/small.safetensors"
    >>> tnlib.nn.save(small, path)
    >>> back = tnlib.nn.load(path, model=torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
    ...                                                     torch.nn.Linear(64, 4)))
    >>> x = torch.randn(2, 64)
    >>> bool(torch.equal(back(x), small(x)))
    True
    """
    save_file = optional("safetensors.torch", "torch", "tnlib.nn.save").save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = {name: _describe(m) for name, m in model.named_modules() if kind_of_layer(m) is not None}
    header = {"format": FORMAT, "version": VERSION, "layers": layers}
    tensors, tied = _untied(model.state_dict())
    if tied:
        header["tied"] = tied
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={FORMAT: json.dumps(header)}))


def _untied(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors to write, each shared tensor once (tied weights: an embedding and an output layer), and
    ``{key: the key it is tied to}`` for the others."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    tied: dict[str, str] = {}
    for key, value in state.items():
        identity = (value.data_ptr(), tuple(value.shape), tuple(value.stride()))
        if value.numel() and identity in seen:
            tied[key] = seen[identity]
            continue
        seen[identity] = key
        tensors[key] = value.detach().contiguous().cpu()
    return tensors, tied


def _retie(tensors: dict[str, torch.Tensor], tied: Any, path: Path) -> None:
    """Put every tied key back, as the tensor it is tied to."""
    if not isinstance(tied, dict) or not all(isinstance(k, str) and v in tensors for k, v in tied.items()):
        raise ValueError(f"{path} has an invalid tnlib structure header (its tied tensors)")
    for key, target in tied.items():
        tensors[key] = tensors[target]


def _skeleton(spec: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> nn.Module:
    try:
        return _build_skeleton(spec, prefix, tensors)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"invalid tnlib layer description for {prefix.rstrip('.') or 'the model'!r}: {exc}") from None


def _build_skeleton(spec: dict[str, Any], prefix: str, tensors: dict[str, torch.Tensor]) -> nn.Module:
    kind = _kind_named(spec.get("class", ""))
    if kind is None:
        raise ValueError(f"unknown tnlib layer class {spec.get('class')!r} in the file")
    cls = kind.layer
    layer = cls.__new__(cls)
    nn.Module.__init__(layer)
    for field in kind.fields:
        value = spec["attrs"][field]
        setattr(layer, field, tuple(value) if isinstance(value, list) else value)
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    for name in spec.get("buffers", []):  # stored integers and scales: never trained
        if not isinstance(name, str) or name not in own:
            raise KeyError(f"buffer {name!r} named in the header is not in the file")
        layer.register_buffer(name, torch.empty_like(own.pop(name)))
    lists: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in own.items():
        head, _, rest = key.partition(".")
        if rest.isdigit():
            lists.setdefault(head, {})[int(rest)] = value
        elif not rest:
            setattr(layer, head, nn.Parameter(torch.empty_like(value)))
    for head, items in lists.items():
        setattr(layer, head, nn.ParameterList([nn.Parameter(torch.empty_like(items[k])) for k in sorted(items)]))
    for name in spec.get("none_params", []):
        layer.register_parameter(name, None)
    object.__setattr__(layer, "bond_masks", kind.empty_masks())
    _check_dims_fields(kind, layer)
    return layer


def _dims_value(layer: nn.Module, field: str) -> tuple[int, ...]:
    """A saved ``*_dims`` field of ``layer``: a tuple of positive ints, or a ``TypeError`` naming it."""
    value = getattr(layer, field)
    if not isinstance(value, tuple) or not value or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value):
        raise TypeError(f"{field}={value!r}; expected a tuple of positive ints")
    return value


def _check_dims_fields(kind: Any, layer: nn.Module) -> None:
    """Saved site dims are tuples of positive ints, and ``out_dims`` / ``in_dims`` are the saved cores' output /
    input legs, so a header edited to other dims is refused at load."""
    if "gate_dims" in kind.fields:  # how the gates factor; the cores' own layout may differ (a searched one)
        _dims_value(layer, "gate_dims")
    for field, axis in (("out_dims", 1), ("in_dims", 2)):
        if field not in kind.fields:
            continue
        dims = _dims_value(layer, field)
        for name, cores in kind.mpo_weights(layer):
            found = tuple(int(c.shape[axis]) for c in cores)
            if found != dims:
                raise TypeError(f"{field}={dims} but the saved cores {name!r} have legs {found}")


def load(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Rebuild the tnlib layers saved in ``path`` and load every tensor.

    Parameters
    ----------
    path
        A file written by :func:`save`.
    model
        The architecture to load into, e.g. a fresh instance of the model
        that was compressed: its modules at the saved names are replaced by
        the rebuilt tnlib layers. ``None`` when the saved model *is* one
        tnlib layer.

    Returns
    -------
    torch.nn.Module
        ``model`` (modified) or the rebuilt layer, with every tensor loaded
        (``load_state_dict(strict=True)``).

    Examples
    --------
    >>> import os, tempfile, torch, tnlib.nn
    >>> layer = tnlib.nn.MPOLinear(16, 16, bond_dim=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "layer.safetensors")
    >>> tnlib.nn.save(layer, path)
    >>> again = tnlib.nn.load(path)
    >>> x = torch.randn(3, 16)
    >>> bool(torch.equal(again(x), layer(x)))
    True
    """
    path = Path(path)
    tensors, meta = _read(path)
    layers, tied = _layers(meta, path)
    _retie(tensors, tied, path)
    if model is None:
        if "" not in layers:
            raise ValueError(f"{path} holds a model, not one tnlib layer: pass model= (its architecture) to load into")
        root = _skeleton(layers[""], "", tensors)
        _load_state(root, tensors, path)
        _probe(root, "", path)
        return root
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    return _load_into(model, layers, tensors, path, tied)


def _layers(meta: dict[str, str], path: Path) -> tuple[dict[str, Any], Any]:
    """The layer descriptions of a file's tnlib header, checked, and its tied tensors."""
    try:
        header = json.loads(meta[FORMAT])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ValueError(f"{path} holds no tnlib structure header; was it written by tnlib.nn.save?") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("layers"), dict):
        raise ValueError(f"{path} has an invalid tnlib structure header")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise ValueError(f"{path} was written by format version {header.get('version')!r}; upgrade tnlib")
    return header["layers"], header.get("tied", {})


def _load_into(model: nn.Module, layers: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path,
               tied: dict[str, str]) -> nn.Module:
    """Every saved layer rebuilt and checked against ``model`` before the model is touched; then replaced
    and loaded, all or nothing (a failure puts the original modules back); a rebuilt layer's parameter that
    was tied in the saved model (a basis shared by several layers) is the one parameter again."""
    named = dict(model.named_modules())
    built = {}
    for name, spec in layers.items():
        if name == "":
            raise ValueError(f"{path} holds one tnlib layer; load it with model=None")
        if name not in named:
            raise ValueError(f"the file has a layer {name!r} that model does not: is it the same architecture?")
        layer = _skeleton(spec, name + ".", tensors)
        _check_replaces(layer, named[name], name, path)
        built[name] = layer
    replaced = []
    try:
        for name, layer in built.items():
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            replaced.append((parent, child, getattr(parent, child)))
            layer.train(getattr(parent, child).training)  # in the mode of the module it replaces
            setattr(parent, child, layer)
        _load_state(model, tensors, path)
        _share_tied(model, built, tied)
        for name, layer in built.items():
            _probe(layer, name, path)
        settle_parents(model)
    except Exception:
        for parent, child, original in reversed(replaced):
            setattr(parent, child, original)
        raise
    return model


def _share_tied(model: nn.Module, built: dict[str, nn.Module], tied: dict[str, str]) -> None:
    """Make each tied parameter of a rebuilt layer the parameter it is tied to (loading copied equal values into
    separate tensors)."""
    for key, target in tied.items():
        owner, _, name = key.rpartition(".")
        if owner not in built or name not in built[owner]._parameters:
            continue  # tied in the caller's own architecture, which keeps its ties
        source_owner, _, source_name = target.rpartition(".")
        source = model.get_submodule(source_owner)._parameters.get(source_name)
        own = built[owner]._parameters[name]
        if isinstance(source, nn.Parameter) and own is not None and source.shape == own.shape:
            built[owner]._parameters[name] = source


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, from one read of its bytes (a concurrent
    :func:`save` replaces the file whole: the bytes are one version of it, never a mix)."""
    SafetensorError = optional("safetensors", "torch", "tnlib.nn.load").SafetensorError  # noqa: N806
    load_bytes = optional("safetensors.torch", "torch", "tnlib.nn.load").load

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError("the header is longer than the file")
        head = json.loads(data[8 : 8 + size])
        meta = head.get("__metadata__") or {} if isinstance(head, dict) else {}
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    return tensors, meta


def _load_state(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)`` after checking every key and shape first, so that nothing is copied
    into the model unless everything fits (torch copies the matching tensors before it reports the rest)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", wrong))
                 if keys]
        raise ValueError(f"{path} does not fit the model ({'; '.join(parts)}): is it the same architecture?")
    model.load_state_dict(tensors, strict=True)


def _check_replaces(layer: nn.Module, target: nn.Module, name: str, path: Path) -> None:
    """Refuse a saved layer that would replace a module of another kind or size (another architecture)."""
    kind = kind_of_layer(layer)
    assert kind is not None  # built by _skeleton from the registry
    names = kind.sizes
    if type(target).__name__ not in kind.replaces:
        raise ValueError(
            f"{path} has a {type(layer).__name__} at {name!r}, but model has a {type(target).__name__} there "
            f"(expected one of {', '.join(kind.replaces)}): is it the same architecture?"
        )
    source = source_of(target)
    saved = attributes(layer, names)
    have = source.sizes_of(target, names) if source is not None else attributes(target, names)
    if saved != have:
        diff = ", ".join(f"{k}={saved[k]!r} vs {have[k]!r}" for k in names if saved[k] != have[k])
        raise ValueError(f"{path} has a layer {name!r} of other sizes than model's ({diff}): another architecture?")


def _probe(layer: nn.Module, name: str, path: Path) -> None:
    """One forward pass on zeros: a header whose settings disagree with its tensors fails here, at load,
    rather than at the first forward."""
    kind = kind_of_layer(layer)
    assert kind is not None  # built by _skeleton from the registry
    try:
        probe = kind.probe(layer)  # one input, or a tuple of them (an attention's query, key and value)
        with torch.no_grad():
            layer(*probe) if isinstance(probe, tuple) else layer(probe)
    except Exception as exc:  # noqa: BLE001 - any inconsistency of a tampered header
        where = f"layer {name!r}" if name else "the layer"
        raise ValueError(
            f"{path}: {where} does not run with the saved settings ({type(exc).__name__}: {exc})"
        ) from None
