"""``QuantizedLinear``: a fully connected layer whose weight is stored as integer codes (or a low-rank pair of them)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

import tnlib
from tnlib.nn._convert._calibration import float64_metric
from tnlib.nn._layers._cores import check_linear, positive_int
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._quantized_store import QuantizedStore, store_matrix
from tnlib.quantization import Quantization, QuantizedMatrix, quantize, quantize_low_rank

__all__ = ["QuantizedLinear", "build_quantized", "quantized_factors", "device_of"]


class QuantizedLinear(QuantizedStore):
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
        _fill(self, ref, quantized_factors(ref.weight.detach(), quantization, rank, None))

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
        _fill(self, linear, quantized_factors(linear.weight.detach(), quantization, rank, gram))
        return self

    @property
    def factor_shapes(self) -> tuple[tuple[int, int], ...]:
        """Shapes of the stored matrices: ``((out, in),)``, or ``((out, rank), (rank, in))``."""
        if self.rank is None:
            return ((self.out_features, self.in_features),)
        return ((self.out_features, self.rank), (self.rank, self.in_features))

    def stored_matrices(self) -> list[tuple[str, tuple[int, int], Quantization]]:
        q = Quantization(self.bits, self.group_size)
        return [(name, shape, q) for name, shape in zip(_names(self.rank), self.factor_shapes)]

    def _matrices(self, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        return [self.matrix(name, dtype, device) for name, _, _ in self.stored_matrices()]

    def dense_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight the codes stand for (``out x in``), in ``dtype`` (default the bias's, float32 without one)."""
        if dtype is None:
            dtype = self.bias.dtype if self.bias is not None else torch.float32
        mats = self._matrices(dtype, self.codes_device)
        return mats[0] if len(mats) == 1 else mats[0] @ mats[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"input has shape {tuple(x.shape)}; expected (..., {self.in_features}) (in_features)")
        y = x
        for m in reversed(self._matrices(x.dtype, x.device)):
            y = y @ m.T
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        form = "" if self.rank is None else f", rank={self.rank}"
        return (f"{self.in_features}, {self.out_features}, bits={self.bits}, group_size={self.group_size}{form}, "
                f"bias={self.bias is not None}")


def _names(rank: int | None) -> tuple[str, ...]:
    return ("weight",) if rank is None else ("U", "V")


def quantized_factors(w: torch.Tensor, quantization: Quantization, rank: int | None,
                      gram: Any) -> list[QuantizedMatrix]:
    """``w`` as one quantized matrix (``rank`` ``None``) or a quantized low-rank pair; GPTQ in ``gram`` when given."""
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
    device = device_of(linear)
    for name, f in zip(_names(layer.rank), factors):
        store_matrix(layer, name, f, device)
    bias = getattr(linear, "bias", None)
    layer.bias = None if bias is None else nn.Parameter(bias.detach().clone())


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU without one)."""
    p = next(module.parameters(), None)
    return torch.device("cpu") if p is None else p.device


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
