"""``TuckerConv2d``: a convolution as a Tucker-2 network, run as three small convolutions that never form the kernel."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tnlib.nn._layers._cores import positive_int, wide
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._mpo_conv import conv_probe

__all__ = ["TuckerConv2d", "tucker2", "tucker_params", "build_tucker"]

_SWEEPS = 10  # alternating refinements of the two channel factors after the truncated HOSVD


class TuckerConv2d(nn.Module):
    """``nn.Conv2d`` whose kernel ``W (out, in, kh, kw)`` is ``U_out . G . U_in^T``: channel factors and a small core.

    The forward pass is three convolutions: ``1 x 1`` from ``in`` to ``rank_in``
    channels (``U_in^T``), the ``kh x kw`` core from ``rank_in`` to ``rank_out``
    (stride, padding and dilation as the original), ``1 x 1`` from ``rank_out`` to
    ``out`` (``U_out``, with the bias). The kernel is never formed, so a smaller
    layer also runs fewer multiply-adds per output pixel: ``in rank_in +
    rank_in rank_out kh kw + rank_out out`` against ``in out kh kw``
    (Kim et al., ICLR 2016, "Compression of deep convolutional neural networks
    for fast and low power mobile applications").

    Build it with :meth:`from_conv2d`: the truncated HOSVD of the kernel
    along its two channel legs, refined by alternating sweeps (HOOI), the
    fit of least Frobenius error at those ranks that the sweeps reach.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> conv = torch.nn.Conv2d(64, 128, 3, padding=1)
    >>> small = tnlib.nn.TuckerConv2d.from_conv2d(conv, ranks=(32, 16))
    >>> small(torch.randn(2, 64, 16, 16)).shape
    torch.Size([2, 128, 16, 16])
    >>> small.macs_per_pixel, 64 * 128 * 9                  # multiply-adds per output pixel: 7.6x fewer
    (9728, 73728)
    >>> exact = tnlib.nn.TuckerConv2d.from_conv2d(conv, ranks=(128, 64))   # full ranks: the same function
    >>> x = torch.randn(1, 64, 8, 8)
    >>> bool(torch.allclose(exact(x), conv(x), atol=1e-4))
    True
    """

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any
    dilation: tuple[int, ...]
    ranks: tuple[int, int]
    first: nn.Parameter
    core: nn.Parameter
    last: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self) -> None:
        raise TypeError("build a TuckerConv2d with TuckerConv2d.from_conv2d(conv, ranks=(rank_out, rank_in))")

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, ranks: tuple[int, int]) -> TuckerConv2d:
        """The Tucker-2 network of ``conv``'s kernel at ``ranks = (rank_out, rank_in)``."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"conv has groups={conv.groups}, padding_mode={conv.padding_mode!r}; a Tucker-2 "
                             "network replaces a convolution with groups=1 and zero padding")
        if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
            raise ValueError(f"ranks must be (rank_out, rank_in), got {ranks!r}")
        r_out, r_in = positive_int("ranks[0]", ranks[0]), positive_int("ranks[1]", ranks[1])
        if r_out > conv.out_channels or r_in > conv.in_channels:
            raise ValueError(f"ranks={tuple(ranks)} exceed the channels (out={conv.out_channels}, "
                             f"in={conv.in_channels}) of the convolution")
        return build_tucker(conv, tucker2(wide(conv.weight).cpu().numpy(), r_out, r_in))

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel of the three convolutions."""
        kh, kw = self.kernel_size
        return tucker_params(self.out_channels, self.in_channels, kh, kw, *self.ranks)

    @property
    def num_weights(self) -> int:
        """Stored weights (biases excluded)."""
        return self.first.numel() + self.core.numel() + self.last.numel()

    def dense_weight(self) -> torch.Tensor:
        """The kernel ``(out, in, kh, kw)`` the three factors stand for."""
        return torch.einsum("or,rskl,si->oikl", self.last[:, :, 0, 0], self.core, self.first[:, :, 0, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.first)
        y = F.conv2d(y, self.core, None, self.stride, self.padding, self.dilation)
        return F.conv2d(y, self.last, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, ranks={self.ranks}")


def tucker2(w: np.ndarray, r_out: int, r_in: int, sweeps: int = _SWEEPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U_out, G, U_in)`` with ``W ~ G x_0 U_out x_1 U_in`` for a kernel ``W (out, in, kh, kw)``: the truncated
    HOSVD along the two channel legs, then ``sweeps`` alternating refinements (HOOI), each factor the leading
    left singular vectors of ``W`` projected on the other."""
    out, n = w.shape[:2]

    def leading(m: np.ndarray, r: int) -> np.ndarray:
        u, _, _ = np.linalg.svd(m, full_matrices=False)
        return u[:, :r]

    u_in = leading(np.moveaxis(w, 1, 0).reshape(n, -1), r_in)
    u_out = leading(w.reshape(out, -1), r_out)
    for _ in range(sweeps if (r_out < out or r_in < n) else 0):
        u_out = leading(np.einsum("oikl,is->oskl", w, u_in).reshape(out, -1), r_out)
        u_in = leading(np.moveaxis(np.einsum("oikl,or->rikl", w, u_out), 1, 0).reshape(n, -1), r_in)
    core = np.einsum("oikl,or,is->rskl", w, u_out.conj(), u_in.conj())
    return u_out, core, u_in


def tucker_params(out: int, n: int, kh: int, kw: int, r_out: int, r_in: int) -> int:
    """Weights of a Tucker-2 network of ranks ``(r_out, r_in)`` of an ``(out, n, kh, kw)`` kernel."""
    return n * r_in + r_in * r_out * kh * kw + r_out * out


def build_tucker(conv: nn.Conv2d, factors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TuckerConv2d:
    """The :class:`TuckerConv2d` of ``conv`` holding ``factors = (U_out, G, U_in)`` (from :func:`tucker2`)."""
    u_out, core, u_in = factors
    w = conv.weight
    self = TuckerConv2d.__new__(TuckerConv2d)
    nn.Module.__init__(self)
    self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
    self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
    self.padding, self.dilation = conv.padding, tuple(conv.dilation)
    self.ranks = (int(core.shape[0]), int(core.shape[1]))

    def like(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=w.device, dtype=w.dtype)

    self.first = nn.Parameter(like(u_in.T)[:, :, None, None])
    self.core = nn.Parameter(like(core))
    self.last = nn.Parameter(like(u_out)[:, :, None, None])
    self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
    return self


def _probe(layer: Any) -> torch.Tensor:
    return conv_probe(layer, layer.core.dtype)


register(LayerKind(
    TuckerConv2d,
    (),
    ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "ranks"),
    ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation"),
    _probe,
    mpo_weights=lambda layer: [],
    also_replaces=("Conv2d",),
))
