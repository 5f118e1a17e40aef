"""``QuantizedConv1d`` and ``QuantizedConv2d``: a convolution whose kernel is stored as integer codes.

The kernel is the matrix ``(out_channels, in_channels * prod(kernel_size))``
that multiplies unfolded patches; it is stored as one quantized matrix, or as a
quantized low-rank pair ``U V`` that runs as two convolutions (the kernel
``V`` from ``in`` to ``rank`` channels with the layer's stride, padding and
dilation, then ``1 x 1`` with ``U``), never multiplied out. ``groups=1`` and
zero padding, as the MPO convolutions.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import tnlib
from tnlib.nn._convert._calibration import float64_metric
from tnlib.nn._layers._cores import check_weight
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._mpo_conv import conv_probe
from tnlib.nn._layers._quantized_linear import device_of, quantized_factors
from tnlib.nn._layers._quantized_store import QuantizedStore, store_matrix
from tnlib.quantization import Quantization, QuantizedMatrix

__all__ = ["QuantizedConv1d", "QuantizedConv2d", "build_quantized_conv"]


class _QuantizedConv(QuantizedStore):
    """A convolution whose kernel matrix is stored as codes (see the module docstring)."""

    _spatial = 0
    _dense: Any = nn.Module
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: str | tuple[int, ...]
    dilation: tuple[int, ...]
    bits: int
    group_size: int | None
    rank: int | None
    bias: nn.Parameter | None

    @classmethod
    def _from(cls, conv: Any, quantization: Quantization, rank: int | None, metric: tnlib.Metric | None) -> Any:
        cls._check(conv)
        w = conv.weight.detach().reshape(conv.out_channels, -1)
        checked = float64_metric(metric)
        gram = None if checked is None else checked.gram.numpy()
        try:
            factors = quantized_factors(w, quantization, rank, gram)
        except ValueError as exc:
            raise ValueError(f"conv.weight as a {tuple(w.shape)} matrix: {exc}") from None
        return _assembled(cls, conv, factors)

    @classmethod
    def _check(cls, conv: Any) -> None:
        if not isinstance(conv, cls._dense):
            raise TypeError(f"conv must be a torch.nn.Conv{cls._spatial}d, got {type(conv).__name__}")
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"{cls.__name__} holds a full kernel padded with zeros; conv has groups={conv.groups}, "
                             f"padding_mode={conv.padding_mode!r}: leave this layer out")
        check_weight(conv.weight, "conv.weight")

    @property
    def factor_shapes(self) -> tuple[tuple[int, int], ...]:
        """Shapes of the stored matrices: ``((out, in * taps),)``, or ``((out, rank), (rank, in * taps))``."""
        cols = self.in_channels * math.prod(self.kernel_size)
        if self.rank is None:
            return ((self.out_channels, cols),)
        return ((self.out_channels, self.rank), (self.rank, cols))

    def stored_matrices(self) -> list[tuple[str, tuple[int, int], Quantization]]:
        q = Quantization(self.bits, self.group_size)
        names = ("weight",) if self.rank is None else ("U", "V")
        return [(name, shape, q) for name, shape in zip(names, self.factor_shapes)]

    def _dtype(self) -> torch.dtype:
        return self.get_buffer("weight_dtype").dtype

    def kernel(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dense kernel ``(out, in, *kernel_size)`` the codes stand for, in ``dtype`` (default the weights')."""
        mats = [self.matrix(n, dtype or self._dtype(), self.codes_device) for n, _, _ in self.stored_matrices()]
        w = mats[0] if len(mats) == 1 else mats[0] @ mats[1]
        return w.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv2d if self._spatial == 2 else F.conv1d
        mats = [self.matrix(n, x.dtype, x.device) for n, _, _ in self.stored_matrices()]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if len(mats) == 1:
            return conv(x, mats[0].reshape(self.out_channels, self.in_channels, *self.kernel_size), bias,
                        self.stride, self.padding, self.dilation)
        rank = int(mats[0].shape[1])
        first = mats[1].reshape(rank, self.in_channels, *self.kernel_size)
        last = mats[0].reshape(self.out_channels, rank, *(1,) * self._spatial)
        return conv(conv(x, first, None, self.stride, self.padding, self.dilation), last, bias)

    def extra_repr(self) -> str:
        form = "" if self.rank is None else f", rank={self.rank}"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"bits={self.bits}, group_size={self.group_size}{form}")


class QuantizedConv1d(_QuantizedConv):
    """``nn.Conv1d`` with its kernel matrix stored in ``bits`` per entry: one quantized matrix, or ``U V`` at
    ``rank`` run as two convolutions.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> conv = torch.nn.Conv1d(32, 64, 3, padding=1)
    >>> q = tnlib.nn.QuantizedConv1d.from_conv1d(conv, tnlib.Quantization(bits=8, group_size=None))
    >>> x = torch.randn(2, 32, 50)
    >>> bool((q(x) - conv(x)).abs().max() < 0.01)
    True
    >>> tnlib.nn.stored_bytes(q) < tnlib.nn.stored_bytes(conv) / 3
    True
    """

    _spatial = 1
    _dense = nn.Conv1d

    @classmethod
    def from_conv1d(cls, conv: nn.Conv1d, quantization: Quantization = Quantization(), *, rank: int | None = None,
                    metric: tnlib.Metric | None = None) -> QuantizedConv1d:
        """Quantize a trained ``nn.Conv1d``'s kernel matrix (round-to-nearest; GPTQ in ``metric.gram``, the Gram
        of its unfolded input patches, when given); with ``rank`` split as :func:`tnlib.quantize_low_rank` does."""
        return cls._from(conv, quantization, rank, metric)


class QuantizedConv2d(_QuantizedConv):
    """``nn.Conv2d`` with its kernel matrix stored in ``bits`` per entry, as :class:`QuantizedConv1d`.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> conv = torch.nn.Conv2d(16, 32, 3)
    >>> q = tnlib.nn.QuantizedConv2d.from_conv2d(conv, tnlib.Quantization(bits=4, group_size=16), rank=16)
    >>> q.factor_shapes
    ((32, 16), (16, 144))
    >>> q(torch.randn(1, 16, 8, 8)).shape
    torch.Size([1, 32, 6, 6])
    """

    _spatial = 2
    _dense = nn.Conv2d

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, quantization: Quantization = Quantization(), *, rank: int | None = None,
                    metric: tnlib.Metric | None = None) -> QuantizedConv2d:
        """Quantize a trained ``nn.Conv2d``'s kernel matrix, as :meth:`QuantizedConv1d.from_conv1d` does."""
        return cls._from(conv, quantization, rank, metric)


def build_quantized_conv(conv: Any, factors: Sequence[QuantizedMatrix]) -> nn.Module:
    """The quantized twin of ``conv`` (an ``nn.Conv1d`` / ``nn.Conv2d``, ``groups=1``, zero padding) holding
    ``factors`` (its kernel matrix, or ``U``, ``V``), with its settings and bias."""
    cls: Any = QuantizedConv2d if isinstance(conv, nn.Conv2d) else QuantizedConv1d
    cls._check(conv)
    return _assembled(cls, conv, factors)


def _assembled(cls: Any, conv: Any, factors: Sequence[QuantizedMatrix]) -> Any:
    """A ``cls`` layer with the settings and bias of the checked ``conv`` and the stored ``factors``."""
    layer = cls.__new__(cls)
    nn.Module.__init__(layer)
    layer.in_channels, layer.out_channels = conv.in_channels, conv.out_channels
    layer.kernel_size, layer.stride, layer.dilation = (tuple(int(v) for v in getattr(conv, a))
                                                       for a in ("kernel_size", "stride", "dilation"))
    layer.padding = conv.padding if isinstance(conv.padding, str) else tuple(int(v) for v in conv.padding)
    q = factors[0].quantization
    layer.bits, layer.group_size = q.bits, q.group_size
    layer.rank = None if len(factors) == 1 else int(factors[0].shape[1])
    device = device_of(conv)
    for name, f in zip(("weight",) if layer.rank is None else ("U", "V"), factors):
        store_matrix(layer, name, f, device)
    layer.register_buffer("weight_dtype", torch.empty(0, dtype=conv.weight.dtype, device=device))
    layer.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
    return layer


_FIELDS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "bits", "group_size", "rank")
_SIZES = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")


def _probe(layer: Any) -> torch.Tensor:
    return conv_probe(layer, layer._dtype())


for _cls, _kind in ((QuantizedConv1d, "Conv1d"), (QuantizedConv2d, "Conv2d")):
    register(LayerKind(_cls, (), _FIELDS, _SIZES, _probe, mpo_weights=lambda layer: [], also_replaces=(_kind,)))
