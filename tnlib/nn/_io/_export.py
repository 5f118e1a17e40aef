"""ONNX export of compressed models, with MPO layers stored as their cores.

``torch.onnx.export`` (the ``torch.export``-based exporter) captures a tnlib
layer through the traceable kernels of :mod:`tnlib.nn._layers._traced`: the merged
halves of every MPO weight are built in the graph from the cores, so the
file holds the cores, not the dense matrix. :func:`export_onnx` adds what a
deployment needs on top: it refuses a model in training mode, keeps the
graph optimiser from folding cores into larger merged tensors, and drops the
per-node source-location metadata (about a kilobyte a node), so the file is
close to the stored size of the parameters. A :class:`~tnlib.nn.QuantizedLinear`
exports as ``DequantizeLinear`` nodes on its codes (``UINT4``, two to a byte,
for 2-, 3- and 4-bit codes, else ``UINT8``; opset 21 for group-wise scales), not
as its dequantized float weight. onnxruntime then
runs it with no torch installed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from tnlib._optional import optional
from tnlib.nn._layers._quantized_store import QDQ_OPSET, QuantizedStore, onnx_dequantize

__all__ = ["export_onnx"]

# Constant folding may create tensors of at most this many elements: shapes and
# scalars fold, merges of cores (which would store more than the cores) do not.
_FOLD_LIMIT = 64


def _tensors(args: Any, name: str) -> list[torch.Tensor]:
    if isinstance(args, torch.Tensor):
        return [args]
    if isinstance(args, (tuple, list)):
        out = []
        for a in args:
            out.extend(_tensors(a, name))
        return out
    raise TypeError(f"{name} must hold torch tensors (nested tuples allowed), got {type(args).__name__}")


_RECURRENT = ("LSTM", "GRU", "MPOLSTM", "MPOGRU")


def _batch_axes(model: nn.Module, flat: list[torch.Tensor], given: Sequence[int] | None) -> list[int]:
    """The batch axis of every input tensor (``batch_axes``, or the default for ``model``), validated."""
    if given is None:
        time_major = type(model).__name__ in _RECURRENT and not getattr(model, "batch_first", False)
        given = [1 if time_major else 0] * len(flat)
    given = list(given)
    if len(given) != len(flat):
        raise ValueError(f"batch_axes has {len(given)} entries for {len(flat)} input tensors; expected one per tensor")
    for k, (axis, t) in enumerate(zip(given, flat)):
        if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < max(t.ndim, 1):
            raise ValueError(f"batch_axes[{k}]={axis!r} is not an axis of input {k} (shape {tuple(t.shape)})")
    return given


def _dynamic(args: Any, axes: Any) -> tuple[Any, Any]:
    """``args`` with a batch of 1 repeated to 2, and their ``dynamic_shapes``: one ``Dim("batch")`` each."""
    if isinstance(args, torch.Tensor):
        axis = next(axes)
        if args.shape[axis] == 1:
            args = torch.cat([args, args], dim=axis)
        return args, {axis: torch.export.Dim("batch")}
    pairs = [_dynamic(a, axes) for a in args]
    return type(args)(p[0] for p in pairs), type(args)(p[1] for p in pairs)


def _nibbles(proto: Any, onnx: Any) -> None:
    """Store the codes and zero points of every ``DequantizeLinear`` node whose values all fit in four bits (a 2-,
    3- or 4-bit layer) as ``UINT4``, two to a byte, in place of the exporter's ``UINT8``."""
    consumers: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    initializers = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        found = [initializers.get(node.input[0]), initializers.get(node.input[2])]
        tensors = [t for t in found if t is not None]
        if len(tensors) != 2 or any(t.data_type != onnx.TensorProto.UINT8 or consumers[t.name] != 1 for t in tensors):
            continue
        values = [onnx.numpy_helper.to_array(t) for t in tensors]
        if any(v.size and int(v.max()) > 15 for v in values):
            continue
        for t, v in zip(tensors, values):
            flat = v.astype(np.uint8).reshape(-1)
            flat = np.append(flat, np.uint8(0)) if flat.size % 2 else flat
            packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()  # low nibble first
            t.CopyFrom(onnx.helper.make_tensor(t.name, onnx.TensorProto.UINT4, list(v.shape), packed, raw=True))


def export_onnx(
    model: nn.Module,
    args: tuple[Any, ...],
    path: str | os.PathLike,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset_version: int | None = None,
    dynamic_batch: bool = True,
    batch_axes: Sequence[int] | None = None,
) -> Path:
    """Write ``model`` to an ONNX file that onnxruntime runs, MPO weights stored as cores.

    Parameters
    ----------
    model
        A module in eval mode (``model.eval()``): tnlib layers and any torch
        layers around them.
    args
        Example inputs, as a tuple (``(x,)`` or ``(x, (h, c))``); the file
        takes inputs of their shapes, but for the batch size when
        ``dynamic_batch``.
    path
        Where to write the ``.onnx`` file (one file, no external data).
    input_names, output_names, opset_version
        As ``torch.onnx.export``.
    dynamic_batch
        Leave the batch size of every input free in the file (default), so
        that onnxruntime runs it at any batch; ``False``: fixed to the
        example's. An example batch of 1 is repeated to 2 for the trace (a
        size of 1 would be taken for a constant). The sequence length of a
        recurrent layer stays the example's: its loop is unrolled, one step
        per element (export once per length you serve, or export the cell
        and loop around it).
    batch_axes
        The batch axis of every tensor of ``args`` in order (nested tuples
        flattened): default 0, and for a model that is itself an ``LSTM`` /
        ``GRU`` (tnlib's or torch's) without ``batch_first``, 1 for its input
        and its states.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the model is in training mode (dropout and batch statistics would
        be exported as in training).
    TypeError
        If ``model`` is not a module or ``args`` not a tuple of tensors.
    ValueError
        If the model does not run on ``args`` (checked eagerly first), if
        ``batch_axes`` does not name an axis of each input, or if the model
        fixes the batch size itself (``dynamic_batch=False`` exports it so).

    Examples
    --------
    >>> import tempfile, numpy as np, onnxruntime, torch, tnlib.nn
    >>> cell = tnlib.nn.MPOLSTMCell(32, 64, bond_dim=4).eval()
    >>> x, h, c = torch.randn(1, 32), torch.zeros(1, 64), torch.zeros(1, 64)
    >>> path = tnlib.nn.export_onnx(cell, (x, (h, c)), tempfile.mkdtemp() + "/cell.onnx")
    >>> session = onnxruntime.InferenceSession(str(path))
    >>> h1, c1 = session.run(None, {"input": x.numpy(), "hx_0": h.numpy(), "hx_1": c.numpy()})
    >>> bool(np.allclose(h1, cell(x, (h, c))[0].detach().numpy(), atol=1e-5))
    True
    >>> x7, h7, c7 = torch.randn(7, 32), torch.zeros(7, 64), torch.zeros(7, 64)          # another batch size
    >>> h1, c1 = session.run(None, {"input": x7.numpy(), "hx_0": h7.numpy(), "hx_1": c7.numpy()})
    >>> bool(np.allclose(h1, cell(x7, (h7, c7))[0].detach().numpy(), atol=1e-5))
    True
    """
    onnx = optional("onnx", "onnx", "export_onnx")
    onnxscript_optimizer = optional("onnxscript.optimizer", "onnx", "export_onnx")

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError(
            f"model ({type(model).__name__}) is in training mode; call model.eval() before exporting "
            "(dropout and batch statistics would be exported as in training)"
        )
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of example inputs, e.g. (x,), got {type(args).__name__}")
    flat = _tensors(args, "args")
    axes = _batch_axes(model, flat, batch_axes) if dynamic_batch else None
    with torch.no_grad():
        try:  # eagerly first: a wrong example input fails here in the model's own words, not in the tracer's
            model(*args)
        except Exception as exc:  # noqa: BLE001 - whatever the model raises for inputs it cannot take
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args)
            raise ValueError(
                f"args ({shapes}) do not run through {type(model).__name__}: {type(exc).__name__}: {first}"
            ) from None
    quantized = any(isinstance(m, QuantizedStore) for m in model.modules())
    if quantized:
        if opset_version is not None and opset_version < QDQ_OPSET:
            raise ValueError(f"opset_version={opset_version}: quantized layers export as DequantizeLinear nodes with "
                             f"group-wise scales (block_size), which need opset {QDQ_OPSET} or later")
        opset_version = opset_version or QDQ_OPSET
    with torch.no_grad(), warnings.catch_warnings(), onnx_dequantize(model):
        # the exporter warns about its own internals (deprecations of torch APIs it calls)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*_flat_weights.*", category=UserWarning)  # nn.LSTM's own
        # every input's batch is one Dim("batch"): the exporter notes that they share it
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*", category=UserWarning)
        captured: Any = model
        if axes is not None:  # captured here, not by the exporter: its fallbacks would drop a free batch silently
            traced, shapes = _dynamic(args, iter(axes))
            try:
                captured = torch.export.export(model, traced, dynamic_shapes=shapes, strict=False)
            except Exception as exc:  # noqa: BLE001 - torch.export's errors, named for what the user can change
                raise ValueError(
                    f"{type(model).__name__} fixes the batch size (axes {list(axes)} of the inputs), so the file "
                    "cannot leave it free: pass dynamic_batch=False to export at the example's batch, or batch_axes= "
                    f"if the batch is another axis ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})"
                ) from None
        program = torch.onnx.export(
            captured, args, dynamo=True, optimize=False, verbose=False, input_names=input_names,
            output_names=output_names, opset_version=opset_version,
        )
    if program is None:  # pragma: no cover - the torch.export-based exporter always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    onnxscript_optimizer.optimize_ir(program.model, output_size_limit=_FOLD_LIMIT)
    proto = program.model_proto
    if quantized:
        _nibbles(proto, onnx)
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del proto.graph.value_info[:]
    onnx.checker.check_model(proto)
    out = Path(path)
    onnx.save(proto, str(out))
    return out
