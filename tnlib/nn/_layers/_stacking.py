"""The ``nn.LSTM`` / ``nn.GRU`` interface shared by every compressed recurrent layer.

Subclasses store, per layer and direction, an input-to-hidden and a
hidden-to-hidden operator and biases named as in ``nn.LSTM``
(``bias_ih_l0``, ``bias_hh_l0_reverse``, ...); this base runs
:func:`tnlib.lstm_forward`'s recurrence for each and handles layers, directions,
``batch_first``, dropout between layers, initial states and unbatched input.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from tnlib._apply import WeightPlan
from tnlib._backend import capturing
from tnlib._checks import check_fraction
from tnlib._recurrence import gru_sequence, input_gates, lstm_sequence
from tnlib.nn._layers._cores import copy_bias, init_bias, positive_int, size_hint
from tnlib.nn._layers._inference import check_input, fused_is_faster


def suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


class StackedRNN(nn.Module):
    """Base of the compressed recurrent layers: layers, directions, ``batch_first``,
    dropout between layers, initial states and unbatched input, as in torch.

    Subclasses fix the cell (``gates`` rows per hidden unit: 4 for an LSTM,
    3 for a GRU) and provide the two weight operators of every layer and
    direction (:meth:`operators`); biases are named as in torch
    (``bias_ih_l0``, ``bias_hh_l0_reverse``, ...).
    """

    gates: ClassVar[int] = 4
    cell_name: ClassVar[str] = "LSTM"

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
        for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        dropout = check_fraction("dropout", dropout, 1.0)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1

    def _setup_like(self, rnn: nn.RNNBase) -> None:
        """:meth:`_setup` with the sizes and options of a trained ``nn.LSTM`` / ``nn.GRU``."""
        self._setup(
            rnn.input_size,
            rnn.hidden_size,
            rnn.num_layers,
            rnn.bias,
            rnn.batch_first,
            float(rnn.dropout),
            rnn.bidirectional,
        )

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size * self.num_directions

    def weight_names(self) -> list[tuple[str, int, int, str]]:
        """``(kind, layer, direction, suffix)`` of every weight matrix, in torch's order."""
        return [(kind, layer, d, suffix(layer, d)) for layer in range(self.num_layers)
                for d in range(self.num_directions) for kind in ("ih", "hh")]

    def init_biases(self, device=None, dtype=None) -> None:
        for kind, _, _, sfx in self.weight_names():
            init_bias(self, f"bias_{kind}" + sfx, self.gates * self.hidden_size, self.hidden_size, self.bias,
                      device, dtype)

    def copy_biases(self, rnn: nn.Module) -> None:
        for kind, _, _, sfx in self.weight_names():
            copy_bias(self, f"bias_{kind}" + sfx, getattr(rnn, f"bias_{kind}" + sfx) if self.bias else None)

    def operators(self, layer: int, direction: int, rows: int | None = None) -> tuple[Callable, Callable]:
        """``(x -> x W_ih^T, h -> h W_hh^T)`` of one layer and direction; ``rows`` is how many rows each
        will multiply in this forward pass (steps x batch), which a captured graph uses to choose the
        form of the weights."""
        raise NotImplementedError

    def dense_weights(self, layer: int, direction: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _run_layer(self, x, f_ih, f_hh, b_ih, b_hh, state, reverse: bool):
        """One layer and direction over the sequence: ``(output, final state)``; while a graph is captured,
        always the recurrence on the operators (the traceable forms of :mod:`tnlib.nn._layers._traced`)."""
        fused = None if capturing() else _fused_dense(x, f_ih, f_hh, b_ih, b_hh, state, reverse, self.gates)
        if fused is not None:
            return fused
        return _python(x, f_ih, f_hh, b_ih, b_hh, state, reverse, self.gates)

    def _time_major(self, input: Any) -> tuple[torch.Tensor, bool]:
        """The input as ``(T, B, I)`` and whether it was unbatched, checked as torch checks it."""
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise TypeError(
                f"{type(self).__name__} takes padded tensors, not a PackedSequence; unpack it with "
                "torch.nn.utils.rnn.pad_packed_sequence (and mask the padded steps)"
            )
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        unbatched = input.dim() == 2
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must be (T, B, {self.input_size}) or unbatched (T, {self.input_size}), "
                f"got shape {tuple(input.shape)}"
            )
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has {x.shape[-1]} features; this {self.cell_name} expects {self.input_size}")
        ref = next(self.parameters(), None)  # a quantized layer without biases has none: any float dtype is taken
        if ref is not None:
            check_input(x, ref, "input", type(self).__name__)
        if x.shape[0] == 0:
            raise ValueError(f"input has no time steps (shape {tuple(input.shape)}); give at least one")
        return x, unbatched

    def _initial_states(self, x: torch.Tensor, hx: Any, unbatched: bool) -> list[torch.Tensor]:
        """``[h0]`` or ``[h0, c0]`` as ``(layers * directions, B, H)``, zeros by default, checked."""
        batch = x.shape[1]
        states = self.num_layers * self.num_directions
        lstm = self.gates == 4
        if hx is None:
            return [x.new_zeros(states, batch, self.hidden_size)] * (2 if lstm else 1)
        parts = [h.unsqueeze(1) if unbatched else h for h in (list(hx) if lstm else [hx])]
        for p in parts:
            if tuple(p.shape) != (states, batch, self.hidden_size):
                raise ValueError(
                    f"hx has shape {tuple(p.squeeze(1).shape) if unbatched else tuple(p.shape)}; expected "
                    f"{(states, self.hidden_size) if unbatched else (states, batch, self.hidden_size)}"
                )
            check_input(p, x, "hx", type(self).__name__)
        return parts

    def forward(self, input: torch.Tensor, hx: Any = None):
        x, unbatched = self._time_major(input)
        batch = x.shape[1]
        lstm = self.gates == 4
        parts = self._initial_states(x, hx, unbatched)
        finals: list[list[torch.Tensor]] = [[] for _ in parts]
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                f_ih, f_hh = self.operators(layer, d, size_hint(x.shape[0] * batch))
                b_ih, b_hh = getattr(self, "bias_ih" + suffix(layer, d)), getattr(self, "bias_hh" + suffix(layer, d))
                k = layer * self.num_directions + d
                state = tuple(p[k] for p in parts) if lstm else parts[0][k]
                out, final = self._run_layer(x, f_ih, f_hh, b_ih, b_hh, state, bool(d))
                outs.append(out)
                for store, value in zip(finals, final if lstm else (final,)):
                    store.append(value)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        stacked = [torch.stack(f) for f in finals]
        if unbatched:
            x, stacked = x.squeeze(1), [f.squeeze(1) for f in stacked]
        else:
            x = x.transpose(0, 1) if self.batch_first else x
        return x, (tuple(stacked) if lstm else stacked[0])

    def to_dense(self) -> nn.Module:
        """The dense ``nn.LSTM`` / ``nn.GRU`` computing the same function."""
        ref = self.dense_weights(0, 0)[0]  # the weights' dtype and device
        kind = nn.LSTM if self.gates == 4 else nn.GRU
        dense = kind(
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
                    getattr(dense, "weight_ih" + suffix(layer, d)).copy_(w_ih)
                    getattr(dense, "weight_hh" + suffix(layer, d)).copy_(w_hh)
                    if self.bias:
                        for kind_ in ("ih", "hh"):
                            getattr(dense, f"bias_{kind_}" + suffix(layer, d)).copy_(
                                getattr(self, f"bias_{kind_}" + suffix(layer, d))
                            )
        return dense

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
            f"batch_first={self.batch_first}, bidirectional={self.bidirectional}"
        )


_HEAD = 32  # steps timed to choose between the fused kernel and the Python recurrence


def _fused_dense(x, f_ih, f_hh, b_ih, b_hh, state, reverse: bool, gates: int):
    """Inference by torch's own fused recurrence (the kernel behind ``nn.LSTM`` / ``nn.GRU``) on the dense
    matrices, where that is the faster exact form; else ``None`` (the Python recurrence on the MPOs' forms).

    When both weights' cheapest forms are their dense matrices it always is. Otherwise the fused kernel on
    the rebuilt matrices saves the ~20 small operations per step of the Python recurrence, which at batch 1
    and a small hidden size cost more than the multiply-adds the MPO saves: the two are timed once on the
    first steps (up to ``_HEAD``: the fused kernel's fixed cost is about that of 10 Python steps), per batch
    size and sequence length up to ``_HEAD``, and the choice is kept with the weights' cached forms (a changed parameter
    rebuilds them and chooses again). Either way the result is the same function, up to rounding.
    """
    if torch.is_grad_enabled() or not (isinstance(f_ih, WeightPlan) and isinstance(f_hh, WeightPlan)):
        return None
    steps = min(int(x.shape[0]), _HEAD)
    head = x[:steps]
    fused = fused_is_faster(("fused recurrence", int(x.shape[1]), steps), f_ih, f_hh, x.reshape(-1, x.shape[-1]),
                            state[0] if gates == 4 else state,
                            lambda: _fused(head, f_ih, f_hh, b_ih, b_hh, state, gates),
                            lambda: _python(head, f_ih, f_hh, b_ih, b_hh, state, False, gates))
    if not fused:
        return None
    out, final = _fused(x.flip(0) if reverse else x, f_ih, f_hh, b_ih, b_hh, state, gates)
    return (out.flip(0) if reverse else out), final


def _fused(seq, f_ih, f_hh, b_ih, b_hh, state, gates: int):
    """torch's fused recurrence on the two weights. An input weight held as a low-rank product ``W = A B`` (the
    truncated SVD's layout) is not rebuilt: the kernel runs on the inputs ``x B^T`` (``rank`` features, one
    product for every step at once) with ``A`` as its input weight, the same function with the input side's
    multiply-adds cut to ``rank (in + gates H)`` per row."""
    merged = f_ih.merged
    if merged is not None and merged.nl == 1 and merged.mr == 1:
        seq, w_ih = seq @ merged.right, merged.left.T.contiguous()
    else:
        w_ih = f_ih.matrix()
    return fused_recurrence(seq, w_ih, f_hh.matrix(), b_ih, b_hh, state, gates)


def fused_recurrence(seq, w_ih, w_hh, b_ih, b_hh, state, gates: int):
    """torch's fused LSTM (``gates`` 4) or GRU (3) kernel, one layer and direction, over ``seq`` ``(T, B, I)``
    with the dense ``w_ih`` ``(gates H x I)``, ``w_hh`` and biases (``None``: none) from ``state``:
    ``(output, final state)``."""
    params = [w_ih, w_hh] + ([] if b_ih is None else [b_ih, b_hh])
    if gates == 4:
        out, h, c = torch.lstm(seq, (state[0][None], state[1][None]), params, b_ih is not None, 1, 0.0, False,
                               False, False)
        return out, (h[0], c[0])
    out, h = torch.gru(seq, state[None], params, b_ih is not None, 1, 0.0, False, False, False)
    return out, h[0]


def _python(x, f_ih, f_hh, b_ih, b_hh, state, reverse: bool, gates: int):
    """The recurrence step by step in Python, on the operators' own forms (the inputs were checked by
    :meth:`StackedRNN.forward`: the core's recurrence without :func:`tnlib.lstm_forward`'s checks)."""
    if gates == 4:
        bias = None if b_ih is None else b_ih + b_hh
        return lstm_sequence(torch, input_gates(torch, x, f_ih, bias), f_hh, state[0], state[1], reverse)
    return gru_sequence(torch, input_gates(torch, x, f_ih, b_ih), f_hh, b_hh, state, reverse)


class StackedLSTM(StackedRNN):
    """Base of the compressed LSTMs: ``forward(input, hx=None) -> output, (h_n, c_n)``."""

    gates = 4
    cell_name = "LSTM"

    def to_lstm(self) -> nn.LSTM:
        """A dense ``nn.LSTM`` computing the same function."""
        dense = self.to_dense()
        assert isinstance(dense, nn.LSTM)
        return dense


class StackedGRU(StackedRNN):
    """Base of the compressed GRUs: ``forward(input, hx=None) -> output, h_n``."""

    gates = 3
    cell_name = "GRU"

    def to_gru(self) -> nn.GRU:
        """A dense ``nn.GRU`` computing the same function."""
        dense = self.to_dense()
        assert isinstance(dense, nn.GRU)
        return dense


def check_lstm(lstm: Any) -> nn.LSTM:
    if not isinstance(lstm, nn.LSTM):
        raise TypeError(f"lstm must be a torch.nn.LSTM, got {type(lstm).__name__}")
    if getattr(lstm, "proj_size", 0):
        raise ValueError("LSTMs with proj_size > 0 are not supported")
    return lstm


def check_gru(gru: Any) -> nn.GRU:
    if not isinstance(gru, nn.GRU):
        raise TypeError(f"gru must be a torch.nn.GRU, got {type(gru).__name__}")
    return gru
