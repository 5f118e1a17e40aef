"""``MPOConv1d``, ``MPOConv2d`` and ``MPOEmbedding``: a convolution kernel and an embedding table held as MPOs.

The kernel of a convolution is the matrix ``(out_channels, in_channels * kh * kw)`` that multiplies
unfolded patches (``torch.nn.functional.unfold``), so it is an MPO like any weight. A kernel of the
truncated SVD's layout (two cores, all rows in one) runs as two convolutions, ``kh x kw`` from ``in``
to ``rank`` channels then ``1 x 1`` to ``out``: ``rank (in kh kw + out)`` multiply-adds per output
pixel instead of ``out in kh kw``, and the kernel is never formed (:func:`kernels`). Any other kernel
is formed from the cores (``out * in * kh * kw`` entries) and run as one convolution. Without
gradients either form is built once and kept until a parameter changes (:func:`conv_form`).

An embedding table ``(num_embeddings, embedding_dim)`` is an MPO whose row
legs factor the index: a lookup contracts, for every index, the cores at its digits, so the table is
never formed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import tnlib
from tnlib._backend import capturing
from tnlib._legs import cores_to_matrix
from tnlib.nn._convert._calibration import float64_metric, record_patches
from tnlib.nn._layers._cores import masked, members, mpo_cores, parameter_list, wide
from tnlib.nn._layers._inference import form_key
from tnlib.nn._layers._kinds import LayerKind, Source, register

__all__ = ["MPOConv1d", "MPOConv2d", "conv_probe", "conv_form", "kernels", "low_rank_kernel"]


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)


class _MPOConv(nn.Module):
    """A convolution whose kernel ``(out_channels, in_channels * prod(kernel_size))`` is held as MPO cores."""

    _spatial = 0
    _dense: Any = nn.Module
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | tuple[int, ...]
    out_dims: tuple[int, ...]
    in_dims: tuple[int, ...]
    cores: nn.ParameterList
    bias: nn.Parameter | None
    bond_masks: list[torch.Tensor] | None  # bonds squeezed by MPOP (tnlib.nn.DimensionSqueezer)

    def __init__(self) -> None:
        name = type(self).__name__
        raise TypeError(
            f"build an {name} with {name}.from_conv{self._spatial}d(conv, ...) or {name}.from_mpo(mpo, conv)"
        )

    @classmethod
    def from_mpo(cls, mpo: tnlib.MPO, conv: Any) -> Any:
        """A layer with ``conv``'s settings and bias whose kernel matrix is ``mpo``."""
        cls._check(conv)
        n = cls._spatial
        shape = (conv.out_channels, conv.in_channels * math.prod(conv.kernel_size))
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_channels, layer.out_channels = conv.in_channels, conv.out_channels
        layer.kernel_size = _tuple(conv.kernel_size, n)
        layer.stride, layer.dilation = _tuple(conv.stride, n), _tuple(conv.dilation, n)
        layer.padding = conv.padding if isinstance(conv.padding, str) else _tuple(conv.padding, n)
        layer.out_dims, layer.in_dims = tuple(mpo.out_dims), tuple(mpo.in_dims)
        layer.cores = parameter_list(mpo_cores(mpo, shape, conv.weight, "mpo"))
        layer.bond_masks = None
        if conv.bias is None:
            layer.register_parameter("bias", None)
        else:
            layer.bias = nn.Parameter(conv.bias.detach().clone())
        return layer

    @classmethod
    def _from_conv(cls, conv: Any, truncation: tnlib.Truncation | None, out_dims: Sequence[int] | None,
                   in_dims: Sequence[int] | None, num_cores: int | None, metric: tnlib.Metric | None,
                   input_gram: torch.Tensor | None) -> Any:
        cls._check(conv)
        w = wide(conv.weight).reshape(conv.out_channels, -1)
        checked = float64_metric(metric, input_gram)
        with torch.no_grad():
            mpo = tnlib.MPO.from_matrix(w.cpu(), out_dims, in_dims, num_cores=num_cores, truncation=truncation,
                                        metric=checked)
        return cls.from_mpo(mpo, conv)

    @classmethod
    def _check(cls, conv: Any) -> None:
        if not isinstance(conv, cls._dense):
            raise TypeError(f"conv must be a torch.nn.Conv{cls._spatial}d, got {type(conv).__name__}")
        if conv.groups != 1:
            raise ValueError(f"{cls.__name__} holds a full kernel; conv has groups={conv.groups} (grouped or "
                             "depthwise); leave this layer out")
        if conv.padding_mode != "zeros":
            raise ValueError(f"{cls.__name__} pads with zeros; conv has padding_mode={conv.padding_mode!r}")

    @property
    def mpo(self) -> tnlib.MPO:
        """The kernel matrix as a core :class:`tnlib.MPO` (detached)."""
        return tnlib.MPO([c.detach() for c in self.cores])

    @property
    def num_weights(self) -> int:
        """Stored kernel entries (the cores), bias excluded."""
        return sum(c.numel() for c in self.cores)

    def kernel(self) -> torch.Tensor:
        """The dense kernel ``(out, in, *kernel_size)``, formed from the cores (differentiable)."""
        matrix = cores_to_matrix(masked(list(self.cores), self.bond_masks))
        return matrix.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv2d if self._spatial == 2 else F.conv1d
        traced = torch.is_grad_enabled() or capturing()
        first, last = kernels(self, masked(members(self.cores), self.bond_masks)) if traced else conv_form(self)
        if last is None:
            return conv(x, first, self.bias, self.stride, self.padding, self.dilation)
        return conv(conv(x, first, None, self.stride, self.padding, self.dilation), last, self.bias)

    def _to_dense(self) -> Any:
        c0 = self.cores[0]
        conv = self._dense(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                           padding=self.padding, dilation=self.dilation, bias=self.bias is not None,
                           device=c0.device, dtype=c0.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.kernel())
            if self.bias is not None and conv.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, out_dims={self.out_dims}, "
                f"in_dims={self.in_dims}, bond_dims={tuple(int(c.shape[3]) for c in list(self.cores)[:-1])}")


class MPOConv2d(_MPOConv):
    """A 2-D convolution whose kernel ``(out_channels, in_channels * kh * kw)`` is held as MPO cores.

    Build it from a trained ``nn.Conv2d`` with :meth:`from_conv2d` (exact without truncation) or from an
    MPO with :meth:`from_mpo`; :meth:`to_conv2d` gives the dense layer back. A low-rank kernel (the
    truncated SVD's layout, which ``compress`` most often chooses) runs as a ``kh x kw`` convolution to
    ``rank`` channels and a ``1 x 1`` one, never forming the kernel; any other is formed from the cores and
    run as one convolution (once, without gradients). ``groups=1`` and ``padding_mode="zeros"`` (the
    common convolution); other settings are refused.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> conv = torch.nn.Conv2d(16, 32, 3, padding=1)
    >>> exact = tnlib.nn.MPOConv2d.from_conv2d(conv)
    >>> x = torch.randn(2, 16, 8, 8)
    >>> bool(torch.allclose(exact(x), conv(x), atol=1e-5))
    True
    >>> small = tnlib.nn.MPOConv2d.from_conv2d(conv, tnlib.Truncation(max_bond=4))
    >>> small.num_weights < conv.weight.numel()
    True
    """

    _spatial = 2
    _dense = nn.Conv2d

    @classmethod
    def from_conv2d(
        cls,
        conv: nn.Conv2d,
        truncation: tnlib.Truncation | None = None,
        *,
        out_dims: Sequence[int] | None = None,
        in_dims: Sequence[int] | None = None,
        num_cores: int | None = None,
        metric: tnlib.Metric | None = None,
        input_gram: torch.Tensor | None = None,
    ) -> MPOConv2d:
        """Decompose a trained ``nn.Conv2d``'s kernel matrix (float64, then cast to the layer's dtype).

        ``metric`` holds the Gram ``P^T P / n`` of the unfolded input patches (``in * kh * kw``
        features; :func:`tnlib.nn.record_grams` records it), for output-space fitting
        (``input_gram=C`` is the older spelling of ``metric=tnlib.Metric(C)``); the other
        arguments are those of :meth:`tnlib.MPO.from_matrix`.
        """
        return cls._from_conv(conv, truncation, out_dims, in_dims, num_cores, metric, input_gram)

    def to_conv2d(self) -> nn.Conv2d:
        """A dense ``nn.Conv2d`` with the same function."""
        return self._to_dense()


class MPOConv1d(_MPOConv):
    """A 1-D convolution whose kernel ``(out_channels, in_channels * k)`` is held as MPO cores.

    As :class:`MPOConv2d`, for ``nn.Conv1d`` (audio front ends, temporal convolutions).

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> conv = torch.nn.Conv1d(64, 128, 3, padding=1)
    >>> exact = tnlib.nn.MPOConv1d.from_conv1d(conv)
    >>> x = torch.randn(2, 64, 50)
    >>> bool(torch.allclose(exact(x), conv(x), atol=1e-5)), isinstance(exact.to_conv1d(), torch.nn.Conv1d)
    (True, True)
    """

    _spatial = 1
    _dense = nn.Conv1d

    @classmethod
    def from_conv1d(
        cls,
        conv: nn.Conv1d,
        truncation: tnlib.Truncation | None = None,
        *,
        out_dims: Sequence[int] | None = None,
        in_dims: Sequence[int] | None = None,
        num_cores: int | None = None,
        metric: tnlib.Metric | None = None,
        input_gram: torch.Tensor | None = None,
    ) -> MPOConv1d:
        """Decompose a trained ``nn.Conv1d``'s kernel matrix; see :meth:`MPOConv2d.from_conv2d`."""
        return cls._from_conv(conv, truncation, out_dims, in_dims, num_cores, metric, input_gram)

    def to_conv1d(self) -> nn.Conv1d:
        """A dense ``nn.Conv1d`` with the same function."""
        return self._to_dense()


_CONV_FIELDS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "out_dims", "in_dims")
_CONV_SIZES = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")


def low_rank_kernel(cores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(A, B)`` with ``W = A B`` (``A: (out, r)``, ``B: (r, in * taps)``) when the kernel matrix's cores are the
    truncated SVD's layout (two cores, all rows in one and all columns in the other), else ``None``."""
    if len(cores) != 2:
        return None
    c0, c1 = cores
    if c1.shape[1] == 1 and c0.shape[2] == 1:  # rows in the first core, columns in the second
        return c0[0, :, 0, :], c1[:, 0, :, 0]
    if c0.shape[1] == 1 and c1.shape[2] == 1:  # columns in the first core, rows in the second
        return c1[:, :, 0, 0].T, c0[0, 0, :, :].T
    return None


def kernels(layer: Any, cores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What an MPO convolution with these (masked) ``cores`` runs: ``(first, last)`` for two convolutions
    (``first`` ``(r, in, *kernel_size)`` with the layer's stride, padding and dilation, ``last`` ``(out, r, 1,
    ...)``) when the kernel is a low-rank product that costs fewer multiply-adds that way, else ``(kernel, None)``
    (differentiable and traceable either way)."""
    factors = low_rank_kernel(cores)
    out, n, ones = layer.out_channels, layer.in_channels, (1,) * len(layer.kernel_size)
    if factors is not None:
        a, b = factors
        r, cols = int(a.shape[1]), int(b.shape[1])
        if r * (out + cols) < out * cols:
            return b.reshape(r, n, *layer.kernel_size), a.reshape(out, r, *ones)
    return cores_to_matrix(list(cores)).reshape(out, n, *layer.kernel_size), None


def conv_form(layer: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`kernels` of an MPO convolution for inference without gradients, built once (contiguous) and kept
    with the layer, keyed by the identity, version, device and dtype of its cores and bond masks (an optimizer
    step, a loaded state or a cast rebuilds it; a stale kernel is never used)."""
    params = members(layer.cores) + list(layer.bond_masks or [])
    key = form_key(params)
    cached = layer.__dict__.get("_conv_form")
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        first, last = kernels(layer, [c.detach() for c in masked(members(layer.cores), layer.bond_masks)])
        form = (first.contiguous(), None if last is None else last.contiguous())
    layer.__dict__["_conv_form"] = (key, form)
    return form


def conv_probe(layer: Any, dtype: torch.dtype) -> torch.Tensor:
    """A zero input of one sample large enough for ``layer``'s kernel (what a loaded convolution is run on)."""
    size = [max(8, (k - 1) * d + 1) for k, d in zip(layer.kernel_size, layer.dilation)]
    return torch.zeros(1, layer.in_channels, *size, dtype=dtype)


def _probe(layer: Any) -> torch.Tensor:
    return conv_probe(layer, layer.cores[0].dtype)


def _plain(kind: Any) -> Any:
    """Convolutions that hold one full kernel and pad with zeros (what an MPO kernel replaces)."""
    return lambda m: isinstance(m, kind) and m.groups == 1 and m.padding_mode == "zeros"


register(LayerKind(
    MPOConv2d,
    # the kernel as the (out, in * kh * kw) matrix that multiplies unfolded patches
    (Source("Conv2d", _plain(nn.Conv2d), lambda m, mpos: MPOConv2d.from_mpo(mpos["weight"], m),
            "nn.Conv2d (groups=1, zero padding)", record=record_patches),),
    _CONV_FIELDS, _CONV_SIZES, _probe,
))
register(LayerKind(
    MPOConv1d,
    (Source("Conv1d", _plain(nn.Conv1d), lambda m, mpos: MPOConv1d.from_mpo(mpos["weight"], m),
            "nn.Conv1d (groups=1, zero padding)", record=record_patches),),
    _CONV_FIELDS, _CONV_SIZES, _probe,
))
