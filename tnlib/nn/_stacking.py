"""The ``nn.LSTM`` interface shared by every compressed LSTM: layers, directions, states.

Subclasses store, per layer and direction, an input-to-hidden and a
hidden-to-hidden operator and biases named as in ``nn.LSTM``
(``bias_ih_l0``, ``bias_hh_l0_reverse``, ...); this base runs
:func:`tnlib.lstm_forward` for each and handles layers, directions,
``batch_first``, dropout between layers, initial states and unbatched input.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

import tnlib

from ._cores import positive_int


def suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


class StackedLSTM(nn.Module):
    """Base of the compressed LSTMs: ``forward(input, hx=None) -> output, (h_n, c_n)``."""

    input_size: int
    hidden_size: int
    num_layers: int
    num_directions: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool

    def _setup(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
    ) -> None:
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            positive_int(name, value)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} is invalid; expected a float in [0, 1)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1

    def _setup_like(self, lstm: nn.LSTM) -> None:
        """:meth:`_setup` with the sizes and options of a trained ``lstm``."""
        self._setup(
            lstm.input_size,
            lstm.hidden_size,
            lstm.num_layers,
            lstm.bias,
            lstm.batch_first,
            float(lstm.dropout),
            lstm.bidirectional,
        )

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size * self.num_directions

    def init_biases(self, device=None, dtype=None) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    name = f"bias_{kind}" + suffix(layer, d)
                    if self.bias:
                        t = torch.empty(4 * self.hidden_size, device=device, dtype=dtype).uniform_(-bound, bound)
                        setattr(self, name, nn.Parameter(t))
                    else:
                        self.register_parameter(name, None)

    def copy_biases(self, lstm: nn.LSTM) -> None:
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    name = f"bias_{kind}" + suffix(layer, d)
                    if self.bias:
                        setattr(self, name, nn.Parameter(getattr(lstm, name).detach().clone()))
                    else:
                        self.register_parameter(name, None)

    def operators(self, layer: int, direction: int) -> tuple[Callable, Callable]:
        raise NotImplementedError

    def dense_weights(self, layer: int, direction: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        unbatched = input.dim() == 2
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must be (T, B, {self.input_size}) or unbatched (T, {self.input_size}), "
                f"got shape {tuple(input.shape)}"
            )
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has {x.shape[-1]} features; this LSTM expects {self.input_size}")
        batch = x.shape[1]
        states = self.num_layers * self.num_directions
        if hx is None:
            zeros = x.new_zeros(states, batch, self.hidden_size)
            h0, c0 = zeros, zeros
        else:
            h0, c0 = (h.unsqueeze(1) for h in hx) if unbatched else hx
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                f_ih, f_hh = self.operators(layer, d)
                b_ih, b_hh = getattr(self, "bias_ih" + suffix(layer, d)), getattr(self, "bias_hh" + suffix(layer, d))
                bias = None if b_ih is None else b_ih + b_hh
                k = layer * self.num_directions + d
                out, (h, c) = tnlib.lstm_forward(x, f_ih, f_hh, bias, h0[k], c0[k], reverse=bool(d))
                outs.append(out)
                hs.append(h)
                cs.append(c)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        h_n, c_n = torch.stack(hs), torch.stack(cs)
        if unbatched:
            return x.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)

    def to_lstm(self) -> nn.LSTM:
        """A dense ``nn.LSTM`` computing the same function."""
        ref = next(self.parameters())
        lstm = nn.LSTM(
            self.input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            dropout=self.dropout,
            bidirectional=self.bidirectional,
            device=ref.device,
            dtype=ref.dtype,
        )
        with torch.no_grad():
            for layer in range(self.num_layers):
                for d in range(self.num_directions):
                    w_ih, w_hh = self.dense_weights(layer, d)
                    getattr(lstm, "weight_ih" + suffix(layer, d)).copy_(w_ih)
                    getattr(lstm, "weight_hh" + suffix(layer, d)).copy_(w_hh)
                    if self.bias:
                        for kind in ("ih", "hh"):
                            getattr(lstm, f"bias_{kind}" + suffix(layer, d)).copy_(
                                getattr(self, f"bias_{kind}" + suffix(layer, d))
                            )
        return lstm

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
            f"batch_first={self.batch_first}, bidirectional={self.bidirectional}"
        )


def check_lstm(lstm: Any) -> nn.LSTM:
    if not isinstance(lstm, nn.LSTM):
        raise TypeError(f"lstm must be a torch.nn.LSTM, got {type(lstm).__name__}")
    if getattr(lstm, "proj_size", 0):
        raise ValueError("LSTMs with proj_size > 0 are not supported")
    return lstm
