"""Integer-coded matrices held as buffers of a module: stored, dequantized on the fly, exported as ONNX QDQ nodes.

A layer that stores weights as :class:`tnlib.quantization.QuantizedMatrix`
values (:class:`~tnlib.nn.QuantizedLinear`, the quantized recurrent layers)
derives from :class:`QuantizedStore` and says which matrices it holds
(:meth:`QuantizedStore.stored_matrices`: a name, a shape and a
:class:`tnlib.Quantization` each). Matrix ``name`` lives in four buffers:
``{name}_codes`` (packed ``bits`` to a code), ``{name}_scales`` (float16, one per
group), ``{name}_zeros`` (packed) and ``{name}_exponent`` (the int16 power of two
the scales are multiplied by), exactly the bytes :func:`tnlib.nn.stored_bytes`
counts. :meth:`QuantizedStore.matrix` dequantizes one in the caller's dtype;
while :func:`onnx_dequantize` exports, it is an ONNX ``DequantizeLinear`` node on
the codes instead, so the file holds the codes, not a float weight.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from tnlib.quantization import Quantization, QuantizedMatrix, pack

__all__ = ["QuantizedStore", "store_matrix", "dequantize", "unpack_codes", "onnx_dequantize", "QDQ_OPSET"]

QDQ_OPSET = 21
"""The ONNX opset of ``DequantizeLinear`` with ``block_size`` (group-wise scales): what a quantized layer exports
at."""

class QuantizedStore(nn.Module):
    """Base of the layers whose weights are stored as integer codes (see the module docstring)."""

    def stored_matrices(self) -> list[tuple[str, tuple[int, int], Quantization]]:
        """``(name, shape, quantization)`` of every stored matrix."""
        raise NotImplementedError

    def matrix(self, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Stored matrix ``name`` in ``dtype`` on ``device``; a ``DequantizeLinear`` node while exporting."""
        shape, q = next((s, q) for n, s, q in self.stored_matrices() if n == name)
        if hasattr(self, f"onnx_{name}_codes"):  # only while onnx_dequantize exports
            codes, scales, zeros = (getattr(self, f"onnx_{name}_{part}") for part in ("codes", "scales", "zeros"))
            w = torch.onnx.ops.symbolic(
                "DequantizeLinear", (codes, scales, zeros),
                attrs={"axis": 1, "block_size": shape[1] // scales.shape[1]},
                dtype=torch.float32, shape=shape, version=QDQ_OPSET)
            return w.to(dtype)
        return dequantize(getattr(self, f"{name}_codes"), getattr(self, f"{name}_scales"),
                          getattr(self, f"{name}_zeros"), getattr(self, f"{name}_exponent"), shape, q, dtype, device)

    @property
    def codes_device(self) -> torch.device:
        """The device the codes are on."""
        return getattr(self, f"{self.stored_matrices()[0][0]}_codes").device

    def onnx_buffers(self) -> dict[str, torch.Tensor]:
        """The codes and zero points unpacked to ``uint8`` and the scales times their power of two as float32, by
        buffer name (``onnx_{name}_codes`` ...: what :meth:`matrix` reads while exporting); empty when a scale is
        not a float32 number (a float64 weight far beyond float32's range: the layer then exports its dequantized
        weights)."""
        out = {}
        for name, shape, q in self.stored_matrices():
            rows, cols = shape
            groups = q.groups(shape)
            codes, zeros = getattr(self, f"{name}_codes"), getattr(self, f"{name}_zeros")
            scales, exponent = getattr(self, f"{name}_scales"), getattr(self, f"{name}_exponent")
            out[f"onnx_{name}_codes"] = _unpacked(codes, q.bits, rows * cols).to(torch.uint8).reshape(rows, cols)
            out[f"onnx_{name}_zeros"] = _unpacked(zeros, q.bits, rows * groups).to(torch.uint8).reshape(rows, groups)
            exact = scales.reshape(rows, groups).to(torch.float64) * torch.exp2(exponent.to(torch.float64))
            out[f"onnx_{name}_scales"] = exact.to(torch.float32)
            if not torch.equal(out[f"onnx_{name}_scales"].to(torch.float64), exact):
                return {}
        return out


def store_matrix(layer: nn.Module, name: str, f: QuantizedMatrix, device: torch.device) -> None:
    """Register ``f`` as buffers ``{name}_codes``, ``_scales``, ``_zeros`` and ``_exponent`` of ``layer``."""
    bits = f.quantization.bits
    layer.register_buffer(f"{name}_codes", torch.from_numpy(pack(f.codes, bits)).to(device))
    layer.register_buffer(f"{name}_scales", torch.from_numpy(np.array(f.scales)).to(device))
    layer.register_buffer(f"{name}_zeros", torch.from_numpy(pack(f.zeros, bits)).to(device))
    layer.register_buffer(f"{name}_exponent", torch.tensor(f.exponent, dtype=torch.int16, device=device))


@contextlib.contextmanager
def onnx_dequantize(model: nn.Module) -> Iterator[int]:
    """While exporting ``model`` to ONNX: every quantized layer in it runs as ``DequantizeLinear`` nodes on its
    codes (unpacked to one byte each here; :func:`tnlib.nn.export_onnx` then stores codes of at most four bits as
    ``UINT4``, two to a byte: ONNX has no 2- or 3-bit type) instead of the float weights the codes stand for, so
    the file holds the codes; yields how many such layers there are. Their extra buffers are removed on exit."""
    layers = [m for m in model.modules() if isinstance(m, QuantizedStore)]
    for layer in layers:
        for key, value in layer.onnx_buffers().items():
            layer.register_buffer(key, value, persistent=False)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            for key in [k for k in layer._buffers if k.startswith("onnx_")]:
                del layer._buffers[key]


def dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, exponent: torch.Tensor,
               shape: tuple[int, int], q: Quantization, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The matrix of ``shape`` that packed ``codes``, float16 ``scales``, packed ``zeros`` and the int16
    ``exponent`` stand for: ``(codes - zeros) * (scales * 2**exponent)``, exact in float32 (a difference of small
    integers times a float16 scaled by a power of two; float64 for a float64 result, whose power of two may lie
    beyond float32's range), then rounded once to ``dtype``. Per call: the unpacking
    and three passes over the matrix; the small per-group factors are formed first."""
    rows, cols = shape
    groups = q.groups(shape)
    work = torch.float64 if dtype == torch.float64 else torch.float32  # a float64 weight may lie far beyond float32
    c = _unpacked(codes, q.bits, rows * cols).reshape(rows, groups, cols // groups)
    z = _unpacked(zeros, q.bits, rows * groups).reshape(rows, groups, 1)
    s = scales.reshape(rows, groups, 1).to(work) * torch.exp2(exponent.to(work))
    w = ((c - z).to(work) * s).reshape(rows, cols)
    return w.to(device=device, dtype=dtype)


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Torch twin of :func:`tnlib.quantization.unpack` (little-endian ``bits``-bit codes in ``uint8`` bytes), as
    ``int32``."""
    return _unpacked(packed, bits, count).to(torch.int32)


def _unpacked(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The codes of :func:`unpack_codes` as ``float32`` (exact: every word is below ``2**24``).

    Whole codes fill a word of three bytes (twelve, eight or six codes of 2, 3 or 4 bits). With
    ``F_t = floor(v 2**-(bits t))`` for a word ``v``, code ``t`` is ``F_t - 2**bits F_(t+1)``: a broadcast
    product, a floor and one subtraction over the words, in floating point (exact, and far faster than integer
    division; ONNX has no shift operator for these tensors).
    """
    need = (count * bits + 7) // 8
    if packed.dtype != torch.uint8 or packed.numel() != need:
        raise ValueError(f"packed codes hold {packed.numel()} {packed.dtype} values; {count} codes of {bits} bits "
                         f"take {need} uint8 bytes")
    flat = packed.reshape(-1).to(torch.float32)
    if bits == 8:
        return flat
    words = -(-need // 3)  # words of three bytes: 24 bits hold whole codes of 2, 3 and 4 bits
    if words * 3 != need:
        flat = torch.nn.functional.pad(flat, (0, words * 3 - need))
    triples = flat.reshape(words, 3)
    flat = triples[:, 0] + 256.0 * triples[:, 1] + 65536.0 * triples[:, 2]
    per_word = 24 // bits
    steps = torch.tensor([2.0 ** -(bits * t) for t in range(per_word + 1)], device=packed.device)  # exact
    floors = torch.floor(flat.reshape(-1, 1) * steps)
    codes = torch.sub(floors[:, :-1], floors[:, 1:], alpha=2**bits)
    return codes.reshape(-1)[:count]
