"""``QuantizedLinear``: a fully connected layer whose weight is stored as integer codes (or a low-rank pair of them)."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

import tnlib
from tnlib.nn._convert._calibration import float64_metric
from tnlib.nn._layers._cores import check_linear, positive_int
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.quantization import Quantization, QuantizedMatrix, pack, quantize, quantize_low_rank

__all__ = ["QuantizedLinear", "build_quantized", "dequantize", "unpack_codes", "onnx_dequantize", "QDQ_OPSET"]

QDQ_OPSET = 21
"""The ONNX opset of ``DequantizeLinear`` with ``block_size`` (group-wise scales): what a quantized layer exports
at."""

_QDQ: contextvars.ContextVar[bool] = contextvars.ContextVar("tnlib_onnx_qdq", default=False)


class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored in ``bits`` per entry: one quantized matrix, or ``U V`` at ``rank``.

    The weight is held as buffers (never trained): the codes packed ``bits`` to a
    code (``uint8``), one float16 scale and one packed zero point per group of
    ``group_size`` inputs (:mod:`tnlib.quantization`). :func:`tnlib.nn.stored_bytes`
    counts exactly those bytes. The forward pass dequantizes on the fly in the
    input's dtype and never keeps the dense weight.

    Parameters
    ----------
    in_features, out_features
        As ``nn.Linear``.
    quantization
        Bits and group size (:class:`tnlib.Quantization`).
    rank
        ``None``: the weight itself is quantized; an int: ``W ~ U V`` with
        ``U`` (``out x rank``) and ``V`` (``rank x in``) quantized.
    bias
        Add a learnable float bias.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> dense = torch.nn.Linear(128, 64)
    >>> q = tnlib.nn.QuantizedLinear.from_linear(dense, tnlib.Quantization(bits=8, group_size=None))
    >>> x = torch.randn(4, 128)
    >>> bool((q(x) - dense(x)).abs().max() < 0.01)
    True
    >>> tnlib.nn.stored_bytes(q) < tnlib.nn.stored_bytes(dense) / 3       # 1 byte per weight, float32 bias
    True
    >>> low = tnlib.nn.QuantizedLinear.from_linear(dense, tnlib.Quantization(bits=4, group_size=32), rank=32)
    >>> low.factor_shapes
    ((64, 32), (32, 128))
    """

    in_features: int
    out_features: int
    bits: int
    group_size: int | None
    rank: int | None
    bias: nn.Parameter | None

    def __init__(self, in_features: int, out_features: int, quantization: Quantization = Quantization(), *,
                 rank: int | None = None, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        ref = nn.Linear(positive_int("in_features", in_features), positive_int("out_features", out_features),
                        bias=bias, device=device, dtype=dtype)
        _fill(self, ref, _factors(ref.weight.detach(), quantization, rank, None))

    @classmethod
    def from_linear(cls, linear: nn.Linear, quantization: Quantization = Quantization(), *,
                    rank: int | None = None, metric: tnlib.Metric | None = None) -> QuantizedLinear:
        """Quantize a trained ``nn.Linear`` (round-to-nearest; GPTQ in ``metric.gram`` when a metric is given).

        With ``rank`` the weight is split as :func:`tnlib.quantize_low_rank` does
        (the whitened truncated SVD, then both factors quantized and the outer
        one refitted).
        """
        check_linear(linear)
        metric = float64_metric(metric)
        gram = None if metric is None else metric.gram.numpy()
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        _fill(self, linear, _factors(linear.weight.detach(), quantization, rank, gram))
        return self

    @property
    def factor_shapes(self) -> tuple[tuple[int, int], ...]:
        """Shapes of the stored matrices: ``((out, in),)``, or ``((out, rank), (rank, in))``."""
        if self.rank is None:
            return ((self.out_features, self.in_features),)
        return ((self.out_features, self.rank), (self.rank, self.in_features))

    def _matrices(self, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        q = Quantization(self.bits, self.group_size)
        out = []
        for name, shape in zip(_names(self.rank), self.factor_shapes):
            out.append(dequantize(getattr(self, f"{name}_codes"), getattr(self, f"{name}_scales"),
                                  getattr(self, f"{name}_zeros"), getattr(self, f"{name}_exponent"), shape, q,
                                  dtype, device))
        return out

    def dense_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight the codes stand for (``out x in``), in ``dtype`` (default the bias's, float32 without one)."""
        if dtype is None:
            dtype = self.bias.dtype if self.bias is not None else torch.float32
        mats = self._matrices(dtype, self.codes_device)
        return mats[0] if len(mats) == 1 else mats[0] @ mats[1]

    @property
    def codes_device(self) -> torch.device:
        return getattr(self, f"{_names(self.rank)[0]}_codes").device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"input has shape {tuple(x.shape)}; expected (..., {self.in_features}) (in_features)")
        qdq = _QDQ.get() and hasattr(self, f"onnx_{_names(self.rank)[0]}_codes")
        mats = self._qdq_nodes(x.dtype) if qdq else self._matrices(x.dtype, x.device)
        y = x
        for m in reversed(mats):
            y = y @ m.T
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def _qdq_nodes(self, dtype: torch.dtype) -> list[torch.Tensor]:
        """While :func:`onnx_dequantize` exports: each stored matrix as an ONNX ``DequantizeLinear`` node on the
        unpacked ``uint8`` codes, float32 scales and ``uint8`` zero points (its buffers ``onnx_*``)."""
        out = []
        for name, (rows, cols) in zip(_names(self.rank), self.factor_shapes):
            codes, scales, zeros = (getattr(self, f"onnx_{name}_{part}") for part in ("codes", "scales", "zeros"))
            w = torch.onnx.ops.symbolic(
                "DequantizeLinear", (codes, scales, zeros), attrs={"axis": 1, "block_size": cols // scales.shape[1]},
                dtype=torch.float32, shape=(rows, cols), version=QDQ_OPSET)
            out.append(w.to(dtype))
        return out

    def _onnx_buffers(self) -> dict[str, torch.Tensor]:
        """The codes and zero points unpacked to ``uint8`` and the scales times their power of two as float32,
        by buffer name (what :meth:`_qdq_nodes` reads); empty when a scale is not a float32 number (a float64
        weight far beyond float32's range: the layer then exports its dequantized weight)."""
        q = Quantization(self.bits, self.group_size)
        out = {}
        for name, shape in zip(_names(self.rank), self.factor_shapes):
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

    def extra_repr(self) -> str:
        form = "" if self.rank is None else f", rank={self.rank}"
        return (f"{self.in_features}, {self.out_features}, bits={self.bits}, group_size={self.group_size}{form}, "
                f"bias={self.bias is not None}")


@contextlib.contextmanager
def onnx_dequantize(model: nn.Module) -> Iterator[int]:
    """While exporting ``model`` to ONNX: every :class:`QuantizedLinear` in it runs as ``DequantizeLinear`` nodes
    on its codes (unpacked to one byte each here; :func:`tnlib.nn.export_onnx` then stores codes of at most four
    bits as ``UINT4``, two to a byte: ONNX has no 2- or 3-bit type) instead of the float weight the codes stand
    for, so the file holds the codes; yields how many such layers there are. Their extra buffers are removed on
    exit."""
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    for layer in layers:
        for key, value in layer._onnx_buffers().items():
            layer.register_buffer(key, value, persistent=False)
    token = _QDQ.set(True)
    try:
        yield len(layers)
    finally:
        _QDQ.reset(token)
        for layer in layers:
            for key in [k for k in layer._buffers if k.startswith("onnx_")]:
                del layer._buffers[key]


def _names(rank: int | None) -> tuple[str, ...]:
    return ("weight",) if rank is None else ("U", "V")


def _factors(w: torch.Tensor, quantization: Quantization, rank: int | None, gram: Any) -> list[QuantizedMatrix]:
    if not isinstance(quantization, Quantization):
        raise TypeError(f"quantization must be a tnlib.Quantization, got {type(quantization).__name__}")
    if w.is_complex():
        raise TypeError(f"the weight has dtype {w.dtype}; QuantizedLinear stores real weights")
    m = w.detach().to(device="cpu", dtype=torch.float64).numpy()
    if rank is None:
        return [quantize(m, quantization, gram=gram)]
    return list(quantize_low_rank(m, positive_int("rank", rank), quantization, gram=gram))


def _fill(layer: QuantizedLinear, linear: nn.Module, factors: Sequence[QuantizedMatrix]) -> None:
    """Set ``layer``'s sizes, buffers and bias from ``factors`` and the dense ``linear`` (or GPT-2 ``Conv1D``)."""
    q = factors[0].quantization
    out_features, in_features = factors[0].shape[0], factors[-1].shape[1]
    layer.in_features, layer.out_features = int(in_features), int(out_features)
    layer.bits, layer.group_size = q.bits, q.group_size
    layer.rank = None if len(factors) == 1 else int(factors[0].shape[1])
    device = _device_of(linear)
    for name, f in zip(_names(layer.rank), factors):
        layer.register_buffer(f"{name}_codes", torch.from_numpy(pack(f.codes, q.bits)).to(device))
        layer.register_buffer(f"{name}_scales", torch.from_numpy(np.array(f.scales)).to(device))
        layer.register_buffer(f"{name}_zeros", torch.from_numpy(pack(f.zeros, q.bits)).to(device))
        layer.register_buffer(f"{name}_exponent", torch.tensor(f.exponent, dtype=torch.int16, device=device))
    bias = getattr(linear, "bias", None)
    layer.bias = None if bias is None else nn.Parameter(bias.detach().clone())


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return torch.device("cpu") if p is None else p.device


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


def build_quantized(linear: nn.Module, factors: Sequence[QuantizedMatrix]) -> QuantizedLinear:
    """A :class:`QuantizedLinear` holding ``factors`` (one matrix, or ``U``, ``V``) with ``linear``'s bias."""
    layer = QuantizedLinear.__new__(QuantizedLinear)
    nn.Module.__init__(layer)
    _fill(layer, linear, factors)
    return layer


def _probe(layer: QuantizedLinear) -> torch.Tensor:
    dtype = layer.bias.dtype if layer.bias is not None else torch.float32
    return torch.zeros(1, layer.in_features, dtype=dtype)


register(LayerKind(
    QuantizedLinear,
    (),
    ("in_features", "out_features", "bits", "group_size", "rank"),
    ("in_features", "out_features"),
    _probe,
    mpo_weights=lambda layer: [],
    also_replaces=("Linear", "Conv1D"),
))
