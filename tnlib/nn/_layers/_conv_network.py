"""What the convolutions run as three small convolutions share (Tucker-2 and CP networks): the dense settings they
keep, the checks of the convolution they replace, the forward pass, their parameters and their registration."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._mpo_conv import conv_probe

__all__ = ["ConvNetwork", "start_network", "as_parameter", "register_network"]

_SETTINGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")


class ConvNetwork(nn.Module):
    """A convolution as ``first`` (``1 x 1``, ``in`` to some channels), ``middle`` (the kernel's taps, with the
    dense layer's stride, padding and dilation; ``middle_groups`` groups) and ``last`` (``1 x 1`` to ``out``, with
    the bias): the kernel is never formed."""

    dense_type: type[nn.Module] = nn.Conv2d
    middle_groups: Callable[[Any], int] = staticmethod(lambda layer: 1)
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any
    dilation: tuple[int, ...]
    first: nn.Parameter
    last: nn.Parameter
    bias: nn.Parameter | None

    def middle(self) -> nn.Parameter:
        raise NotImplementedError

    @classmethod
    def _checked(cls, given: Any, network: str) -> Any:
        """``given`` as the convolution a network of this class replaces, or a refusal in words."""
        dense = cls.dense_type
        if not isinstance(given, dense):
            raise TypeError(f"conv must be a torch.nn.{dense.__name__}, got {type(given).__name__}")
        if given.groups != 1 or given.padding_mode != "zeros":
            raise ValueError(f"conv has groups={given.groups}, padding_mode={given.padding_mode!r}; a {network} "
                             "network replaces a convolution with groups=1 and zero padding")
        return given

    @property
    def num_weights(self) -> int:
        """Stored weights (biases excluded)."""
        return self.first.numel() + self.middle().numel() + self.last.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv1d if self.dense_type is nn.Conv1d else F.conv2d
        y = conv(x, self.first)
        y = conv(y, self.middle(), None, self.stride, self.padding, self.dilation, self.middle_groups(self))
        return conv(y, self.last, self.bias)

    def settings_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}")


def start_network(cls: type[ConvNetwork], conv: Any) -> Any:
    """A ``cls`` layer with ``conv``'s settings and bias, its factors still to be set."""
    self = cls.__new__(cls)
    nn.Module.__init__(self)
    self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
    self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
    self.padding, self.dilation = conv.padding, tuple(conv.dilation)
    self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
    return self


def as_parameter(a: np.ndarray, like: torch.Tensor, *shape: int) -> nn.Parameter:
    """``a`` reshaped to ``shape`` as a parameter in ``like``'s dtype and on its device."""
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device, dtype=like.dtype)
                        .reshape(*shape))


def register_network(classes: tuple[tuple[type[ConvNetwork], str], ...], rank_field: str) -> None:
    """Register each ``(class, dense kind)``: saved with the dense settings and ``rank_field``, replacing its
    dense kind at load."""
    for cls, replaces in classes:
        register(LayerKind(
            cls,
            (),
            (*_SETTINGS, rank_field),
            _SETTINGS,
            lambda layer: conv_probe(layer, layer.first.dtype),
            mpo_weights=lambda layer: [],
            also_replaces=(replaces,),
        ))
