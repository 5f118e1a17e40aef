"""``QuantizedMultiheadAttention``: ``nn.MultiheadAttention`` with its four projections stored as integer codes.

Each of the query, key, value and output projections is one quantized matrix
or a quantized low-rank pair ``U V`` (:mod:`tnlib.quantization`), with its own
bits, group size and rank (:class:`~tnlib.nn._layers._quantized_rnn.QuantizedWeights`);
the biases stay float parameters, packed as torch's. The call signature, masks
and outputs are torch's (:class:`~tnlib.nn._layers._attention.ProjectedAttention`);
each projection dequantizes its codes per call (an ONNX ``DequantizeLinear``
node while exporting), a low-rank pair applied as ``(x V^T) U^T``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib.nn._layers._attention import PROJECTIONS, ProjectedAttention, attention_weights, check_mha
from tnlib.nn._layers._cores import copy_bias
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._quantized_rnn import QuantizedWeights, quantized_weights
from tnlib.quantization import Quantization, QuantizedMatrix

__all__ = ["QuantizedMultiheadAttention", "build_quantized_attention"]


class QuantizedMultiheadAttention(QuantizedWeights, ProjectedAttention):
    """``nn.MultiheadAttention`` whose four projections are stored as integer codes (or low-rank pairs of them):
    torch's call signature, masks and outputs.

    Build one with :meth:`from_mha`, or let :func:`tnlib.nn.compress` with ``bytes=`` choose each projection's
    form. ``bits``, ``group_sizes`` and ``ranks`` hold one entry per projection (query, key, value, output).

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).eval()
    >>> q = tnlib.nn.QuantizedMultiheadAttention.from_mha(mha, tnlib.Quantization(bits=8, group_size=None))
    >>> x = torch.randn(2, 5, 64)
    >>> bool((q(x, x, x)[0] - mha(x, x, x)[0]).abs().max() < 0.01), q.bits
    (True, (8, 8, 8, 8))
    """

    def weight_entries(self) -> list[tuple[str, str, tuple[int, int]]]:
        return [(p, p.removeprefix("weight_"), shape) for p, shape in zip(PROJECTIONS, self.shapes())]

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention, quantization: Quantization = Quantization(), *,
                 rank: int | None = None,
                 metrics: Mapping[str, tnlib.Metric] | None = None) -> QuantizedMultiheadAttention:
        """Quantize a trained ``nn.MultiheadAttention``: every projection at ``quantization`` (and ``rank``: a
        low-rank pair of that rank), by GPTQ in the Gram of ``metrics[name]`` (``weight_q``, ``weight_k``,
        ``weight_v``, ``weight_out``: the rows each projection multiplies) where given, else by rounding."""
        check_mha(mha)
        factors = quantized_weights(mha, "mha", quantization, rank, metrics, attention_weights(mha))
        return build_quantized_attention(mha, factors)

    def product(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return self._weight(PROJECTIONS[k], x.dtype, x.device)(x)

    def reference(self) -> torch.Tensor:
        return self.get_buffer("weight_dtype")

    def to_dense(self) -> nn.MultiheadAttention:
        """The ``nn.MultiheadAttention`` computing the same function (the dequantized projections)."""
        dtype, device = self._dtype(), self.codes_device
        return self.dense_attention([self._weight(p, dtype, device).dense() for p in PROJECTIONS])

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}, "
                f"batch_first={self.batch_first}, {self._forms()}")


def build_quantized_attention(mha: nn.MultiheadAttention,
                              factors: Mapping[str, Sequence[QuantizedMatrix]]) -> QuantizedMultiheadAttention:
    """The quantized twin of ``mha`` holding ``factors`` per projection name (``weight_q`` ...), with its biases."""
    check_mha(mha)
    self = QuantizedMultiheadAttention.__new__(QuantizedMultiheadAttention)
    nn.Module.__init__(self)
    self._settings(mha.embed_dim, mha.num_heads, mha.dropout, mha.kdim, mha.vdim, mha.batch_first)
    self._store(mha, factors)
    copy_bias(self, "in_proj_bias", mha.in_proj_bias)
    copy_bias(self, "out_proj_bias", mha.out_proj.bias)
    return self.train(mha.training)


def _probe(layer: Any) -> tuple[torch.Tensor, ...]:
    return layer.probe()


register(LayerKind(
    QuantizedMultiheadAttention, (),
    ("embed_dim", "kdim", "vdim", "num_heads", "head_dim", "dropout", "batch_first", "bits", "group_sizes", "ranks"),
    ("embed_dim", "kdim", "vdim", "num_heads", "batch_first"),
    _probe, mpo_weights=lambda layer: [], also_replaces=("MultiheadAttention",),
))
