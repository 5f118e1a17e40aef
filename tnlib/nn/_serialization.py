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

from ._mpo_cells import MPOGRUCell, MPOLSTMCell
from ._mpo_linear import MPOLinear
from ._mpo_rnn import MPOGRU, MPOLSTM
from ._weights import MPOWeights

__all__ = ["save", "load"]

FORMAT = "tnlib.nn"
VERSION = 1

_RNN = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
        "num_directions", "gate_dims")
_FIELDS: dict[type[nn.Module], tuple[str, ...]] = {
    MPOLinear: ("in_features", "out_features", "out_dims", "in_dims"),
    MPOLSTM: _RNN,
    MPOGRU: _RNN,
    MPOLSTMCell: ("input_size", "hidden_size", "gate_dims"),
    MPOGRUCell: ("input_size", "hidden_size", "gate_dims"),
}
_CLASSES = {cls.__name__: cls for cls in _FIELDS}


def _describe(module: nn.Module) -> dict[str, Any]:
    cls = type(module)
    attrs = {f: getattr(module, f) for f in _FIELDS[cls]}
    nones = [n for n, p in module._parameters.items() if p is None]
    return {"class": cls.__name__, "attrs": attrs, "none_params": nones}


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
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = {name: _describe(m) for name, m in model.named_modules() if type(m) in _FIELDS}
    header = {"format": FORMAT, "version": VERSION, "layers": layers}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={FORMAT: json.dumps(header)}))


def _skeleton(spec: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> nn.Module:
    try:
        return _build_skeleton(spec, prefix, tensors)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"invalid tnlib layer description for {prefix.rstrip('.') or 'the model'!r}: {exc}") from None


def _build_skeleton(spec: dict[str, Any], prefix: str, tensors: dict[str, torch.Tensor]) -> nn.Module:
    cls = _CLASSES.get(spec.get("class", ""))
    if cls is None:
        raise ValueError(f"unknown tnlib layer class {spec.get('class')!r} in the file")
    layer = cls.__new__(cls)
    nn.Module.__init__(layer)
    for field in _FIELDS[cls]:
        value = spec["attrs"][field]
        setattr(layer, field, tuple(value) if isinstance(value, list) else value)
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
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
    if cls is MPOLinear:
        object.__setattr__(layer, "bond_masks", None)
    elif issubclass(cls, MPOWeights):  # recurrent layers and cells
        object.__setattr__(layer, "bond_masks", {})
    return layer


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
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        header = json.loads(meta[FORMAT])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{path} holds no tnlib structure header; was it written by tnlib.nn.save?") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("layers"), dict):
        raise ValueError(f"{path} has an invalid tnlib structure header")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise ValueError(f"{path} was written by format version {header.get('version')!r}; upgrade tnlib")
    layers: dict[str, Any] = header["layers"]
    if model is None:
        if "" not in layers:
            raise ValueError(f"{path} holds a model, not one tnlib layer: pass model= (its architecture) to load into")
        root = _skeleton(layers[""], "", tensors)
        root.load_state_dict(tensors, strict=True)
        return root
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    named = dict(model.named_modules())
    for name, spec in layers.items():
        if name == "":
            raise ValueError(f"{path} holds one tnlib layer; load it with model=None")
        if name not in named:
            raise ValueError(f"the file has a layer {name!r} that model does not: is it the same architecture?")
        layer = _skeleton(spec, name + ".", tensors)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    model.load_state_dict(tensors, strict=True)
    return model
