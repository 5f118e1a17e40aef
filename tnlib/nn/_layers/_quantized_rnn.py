"""``QuantizedLSTM``, ``QuantizedGRU`` and their cells: recurrent weight matrices stored as integer codes.

Each ``W_ih`` and ``W_hh`` of every layer and direction is one quantized
matrix or a quantized low-rank pair ``U V`` (:mod:`tnlib.quantization`), each
with its own bits, group size and rank, held as buffers by
:class:`~tnlib.nn._layers._quantized_store.QuantizedStore`; the biases stay
float parameters. Inference dequantizes the matrices once per call and runs
torch's fused recurrent kernel (a low-rank input weight as ``x V^T`` with ``U``
as the kernel's input weight, never multiplied out); while a graph is
captured (``torch.compile``, ONNX export) the recurrence runs step by step on
the same matrices, as ``DequantizeLinear`` nodes in an exported file.
``QuantizedLSTMCell`` / ``QuantizedGRUCell`` store ``weight_ih`` and
``weight_hh`` so and run one step as torch's fused cell.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib._backend import capturing
from tnlib.nn._convert._calibration import float64_metric
from tnlib.nn._layers._cores import check_weight, copy_bias
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._mpo_cells import dense_cell, prepare_step
from tnlib.nn._layers._quantized_linear import device_of, quantized_factors
from tnlib.nn._layers._quantized_store import QuantizedStore, store_matrix
from tnlib.nn._layers._stacking import (
    StackedGRU,
    StackedLSTM,
    StackedRNN,
    check_gru,
    check_lstm,
    fused_recurrence,
    suffix,
)
from tnlib.quantization import Quantization, QuantizedMatrix
from tnlib.rnn import gru_cell, lstm_cell

__all__ = ["QuantizedLSTM", "QuantizedGRU", "QuantizedLSTMCell", "QuantizedGRUCell", "QuantizedWeights",
           "quantized_weights", "build_quantized_rnn", "build_quantized_cell", "check_rnn"]


class _Matrices:
    """``x -> x W^T`` for a stored ``W`` given as ``[W]`` or ``[U, V]`` (``W = U V``)."""

    def __init__(self, mats: list[torch.Tensor]) -> None:
        self.mats = mats

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for m in reversed(self.mats):
            x = x @ m.T
        return x

    def dense(self) -> torch.Tensor:
        return self.mats[0] if len(self.mats) == 1 else self.mats[0] @ self.mats[1]


class QuantizedWeights(QuantizedStore):
    """Several weight matrices of one layer, each stored with its own ``bits``, ``group_sizes`` and ``ranks``
    entry (``None``: the matrix itself, else a pair ``U V``), in the order of :meth:`weight_entries`."""

    bits: tuple[int, ...]
    group_sizes: tuple[int | None, ...]
    ranks: tuple[int | None, ...]

    def weight_entries(self) -> list[tuple[str, str, tuple[int, int]]]:
        """``(torch's parameter name, buffer name, shape)`` of every weight matrix, in torch's order."""
        raise NotImplementedError

    def _names(self, k: int, base: str) -> list[str]:
        return [base] if self.ranks[k] is None else [base + "_U", base + "_V"]

    def stored_matrices(self) -> list[tuple[str, tuple[int, int], Quantization]]:
        out = []
        for k, (_, base, (rows, cols)) in enumerate(self.weight_entries()):
            q, rank = Quantization(self.bits[k], self.group_sizes[k]), self.ranks[k]
            shapes = [(rows, cols)] if rank is None else [(rows, rank), (rank, cols)]
            out += [(name, shape, q) for name, shape in zip(self._names(k, base), shapes)]
        return out

    def _dtype(self) -> torch.dtype:
        """The float dtype of the weights the codes stand for: that of the empty buffer ``weight_dtype``, which
        ``.to()`` / ``.double()`` convert with the biases (a layer without biases keeps its dtype so)."""
        return self.get_buffer("weight_dtype").dtype

    def _weight(self, param: str, dtype: torch.dtype, device: torch.device) -> _Matrices:
        k, base = next((k, b) for k, (p, b, _) in enumerate(self.weight_entries()) if p == param)
        return _Matrices([self.matrix(n, dtype, device) for n in self._names(k, base)])

    def _store(self, module: nn.Module, factors: Mapping[str, Sequence[QuantizedMatrix]]) -> None:
        """The stored matrices from ``factors`` (by torch's weight name) and the float dtype of ``module``'s
        weights (its first parameter whose own name holds ``weight``: ``weight_ih_l0``, ``in_proj_weight``)."""
        bits, groups, ranks = [], [], []
        device = device_of(module)
        for param, base, shape in self.weight_entries():
            fs = _checked(param, factors.get(param), shape)
            q = fs[0].quantization
            bits.append(q.bits)
            groups.append(q.group_size)
            ranks.append(None if len(fs) == 1 else int(fs[0].shape[1]))
            names = [base] if len(fs) == 1 else [base + "_U", base + "_V"]
            for name, f in zip(names, fs):
                store_matrix(self, name, f, device)
        self.bits, self.group_sizes, self.ranks = tuple(bits), tuple(groups), tuple(ranks)
        dtype = next(p for n, p in module.named_parameters() if "weight" in n.rpartition(".")[2]).dtype
        self.register_buffer("weight_dtype", torch.empty(0, dtype=dtype, device=device))

    def _forms(self) -> str:
        forms = sorted({f"int{b}" + (f" g{g}" if g else " per row") + (f" rank {r}" if r else "")
                        for b, g, r in zip(self.bits, self.group_sizes, self.ranks)})
        return f"forms=[{', '.join(forms)}]"


def quantized_weights(module: nn.Module, what: str, quantization: Quantization, rank: int | None,
                      metrics: Mapping[str, tnlib.Metric] | None,
                      weights: Mapping[str, torch.Tensor] | None = None) -> dict[str, list[QuantizedMatrix]]:
    """Every weight of ``module`` (named ``what`` in errors; ``weights`` by name when given, else its parameters
    named ``weight*``) quantized at ``quantization`` (and ``rank``), by GPTQ in the Gram of ``metrics[name]`` where
    given. Every weight is checked before any is quantized."""
    if weights is None:
        weights = {n: p for n, p in module.named_parameters() if n.startswith("weight")}
    names = list(weights)
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must map weight names ({', '.join(names[:2])}, ...) to tnlib.Metric, got "
                        f"{type(metrics).__name__}")
    for name in names:
        check_weight(weights[name], f"{what}.{name}")
    unknown = sorted(set(metrics or {}) - set(names))
    if unknown:
        raise ValueError(f"metrics names {unknown}, which are not weights of this {type(module).__name__} "
                         f"(its weights: {names})")
    factors = {}
    for name in names:
        metric = float64_metric((metrics or {}).get(name))
        gram = None if metric is None else metric.gram.numpy()
        w = weights[name].detach()
        if rank is not None and rank > min(w.shape):
            raise ValueError(f"rank={rank} exceeds min{tuple(w.shape)} of {name}; pass at most {min(w.shape)}")
        try:
            factors[name] = quantized_factors(w, quantization, rank, gram)
        except ValueError as exc:
            raise ValueError(f"{what}.{name}: {exc}") from None
    return factors


class _QuantizedStack(QuantizedWeights, StackedRNN):
    """A quantized recurrent layer: per weight of :meth:`StackedRNN.weight_names` (torch's order) one entry of
    ``bits``, ``group_sizes`` and ``ranks``."""

    def weight_entries(self) -> list[tuple[str, str, tuple[int, int]]]:
        rows = self.gates * self.hidden_size
        return [(f"weight_{kind}{sfx}", kind + sfx,
                 (rows, self.layer_input_size(layer) if kind == "ih" else self.hidden_size))
                for kind, layer, _, sfx in self.weight_names()]

    def operators(self, layer: int, direction: int, rows: int | None = None) -> tuple[_Matrices, _Matrices]:
        sfx = suffix(layer, direction)
        dtype, device = self._dtype(), self.codes_device
        return self._weight("weight_ih" + sfx, dtype, device), self._weight("weight_hh" + sfx, dtype, device)

    def dense_weights(self, layer: int, direction: int) -> tuple[torch.Tensor, torch.Tensor]:
        f_ih, f_hh = self.operators(layer, direction)
        return f_ih.dense(), f_hh.dense()

    def _run_layer(self, x, f_ih, f_hh, b_ih, b_hh, state, reverse: bool):
        """torch's fused kernel on the dequantized matrices (a low-rank input weight applied to every step at
        once first); the step-by-step recurrence while a graph is captured."""
        if capturing():
            return super()._run_layer(x, f_ih, f_hh, b_ih, b_hh, state, reverse)
        seq = x.flip(0) if reverse else x
        mats = [m.to(x.dtype) for m in f_ih.mats]
        if len(mats) == 2:
            seq = seq @ mats[1].T
        out, final = fused_recurrence(seq, mats[0].contiguous(), f_hh.dense().to(x.dtype), b_ih, b_hh, state,
                                      self.gates)
        return (out.flip(0) if reverse else out), final

    def _fill(self, rnn: nn.RNNBase, factors: Mapping[str, Sequence[QuantizedMatrix]]) -> None:
        """Sizes from ``rnn``, the stored matrices from ``factors`` (by weight name: ``weight_ih_l0`` ...), the
        biases copied."""
        self._setup_like(rnn)
        self._store(rnn, factors)
        self.copy_biases(rnn)

    @classmethod
    def _quantized(cls, rnn: nn.RNNBase, quantization: Quantization, rank: int | None,
                   metrics: Mapping[str, tnlib.Metric] | None) -> Any:
        factors = quantized_weights(rnn, "lstm" if isinstance(rnn, nn.LSTM) else "gru", quantization, rank, metrics)
        self = cls.__new__(cls)
        StackedRNN.__init__(self)
        self._fill(rnn, factors)
        return self

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._forms()}"


def _checked(key: str, fs: Sequence[QuantizedMatrix] | None, shape: tuple[int, int]) -> Sequence[QuantizedMatrix]:
    """The factors of weight ``key``: one matrix of ``shape`` or a pair ``U V`` with one quantization."""
    if fs is None:
        raise ValueError(f"no quantized factors for {key}")
    fs = list(fs)
    got = tuple(int(f.shape[0]) for f in fs[:1]) + tuple(int(f.shape[1]) for f in fs[-1:])
    inner_ok = len(fs) == 1 or (len(fs) == 2 and fs[0].shape[1] == fs[1].shape[0])
    if not fs or len(fs) > 2 or got != shape or not inner_ok or len({f.quantization for f in fs}) != 1:
        raise ValueError(f"the factors of {key} have shapes {[tuple(f.shape) for f in fs]}; expected one "
                         f"{shape} matrix or a pair (rows, r), (r, cols) with one quantization")
    return fs


class QuantizedLSTM(_QuantizedStack, StackedLSTM):
    """``nn.LSTM`` with every weight matrix stored as integer codes (or a low-rank pair of them).

    Same call signature and outputs as ``nn.LSTM`` (``output, (h_n, c_n)``),
    gate order and biases (float parameters) as torch's. Each of
    ``weight_ih_l0``, ``weight_hh_l0``, ... is stored with its own bits, group
    size and rank (``bits``, ``group_sizes``, ``ranks``: one entry per weight,
    in torch's order); :func:`tnlib.nn.stored_bytes` counts the codes, the
    float16 scales and the zero points. Built by :meth:`from_lstm` or by
    :func:`tnlib.nn.compress` with ``bytes=``.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> lstm = torch.nn.LSTM(64, 128, num_layers=2)
    >>> q = tnlib.nn.QuantizedLSTM.from_lstm(lstm, tnlib.Quantization(bits=8, group_size=None))
    >>> x = torch.randn(5, 3, 64)
    >>> bool((q(x)[0] - lstm(x)[0]).abs().max() < 0.01)
    True
    >>> tnlib.nn.stored_bytes(q) < tnlib.nn.stored_bytes(lstm) / 3
    True
    """

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, quantization: Quantization = Quantization(), *, rank: int | None = None,
                  metrics: Mapping[str, tnlib.Metric] | None = None) -> QuantizedLSTM:
        """Quantize a trained ``nn.LSTM``: every weight round-to-nearest, or GPTQ in the Gram of
        ``metrics[name]`` where given (``{"weight_ih_l0": tnlib.Metric(gram), ...}``, e.g. from
        :func:`tnlib.nn.record_grams`); with ``rank``, every weight as :func:`tnlib.quantize_low_rank` splits it."""
        check_lstm(lstm)
        return cls._quantized(lstm, quantization, rank, metrics)


class QuantizedGRU(_QuantizedStack, StackedGRU):
    """``nn.GRU`` with every weight matrix stored as integer codes (or a low-rank pair of them).

    Same call signature and outputs as ``nn.GRU`` (``output, h_n``); stored
    as :class:`QuantizedLSTM` is.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> gru = torch.nn.GRU(32, 64, batch_first=True)
    >>> q = tnlib.nn.QuantizedGRU.from_gru(gru, tnlib.Quantization(bits=4, group_size=32))
    >>> x = torch.randn(2, 7, 32)
    >>> bool((q(x)[0] - gru(x)[0]).abs().max() < 0.1)
    True
    >>> q.bits, q.ranks
    ((4, 4), (None, None))
    """

    @classmethod
    def from_gru(cls, gru: nn.GRU, quantization: Quantization = Quantization(), *, rank: int | None = None,
                 metrics: Mapping[str, tnlib.Metric] | None = None) -> QuantizedGRU:
        """Quantize a trained ``nn.GRU``, as :meth:`QuantizedLSTM.from_lstm` does."""
        check_gru(gru)
        return cls._quantized(gru, quantization, rank, metrics)


class _QuantizedCell(QuantizedWeights):
    """A quantized ``nn.LSTMCell`` / ``nn.GRUCell``: ``weight_ih`` and ``weight_hh`` each with its own entry of
    ``bits``, ``group_sizes`` and ``ranks``; one step is torch's fused cell on the dequantized matrices
    (:func:`tnlib.rnn.lstm_cell` / :func:`tnlib.rnn.gru_cell` on them while a graph is captured)."""

    gates: ClassVar[int] = 4
    dense_type: ClassVar[type[nn.Module]] = nn.LSTMCell
    input_size: int
    hidden_size: int
    bias_ih: nn.Parameter | None
    bias_hh: nn.Parameter | None

    def weight_entries(self) -> list[tuple[str, str, tuple[int, int]]]:
        rows = self.gates * self.hidden_size
        return [("weight_ih", "ih", (rows, self.input_size)), ("weight_hh", "hh", (rows, self.hidden_size))]

    @classmethod
    def _quantized(cls, cell: nn.Module, quantization: Quantization, rank: int | None,
                   metrics: Mapping[str, tnlib.Metric] | None) -> Any:
        if not isinstance(cell, cls.dense_type):
            raise TypeError(f"cell must be a torch.nn.{cls.dense_type.__name__}, got {type(cell).__name__}")
        factors = quantized_weights(cell, "cell", quantization, rank, metrics)
        return build_quantized_cell(cell, factors)

    def dense_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        dtype, device = self._dtype(), self.codes_device
        return self._weight("weight_ih", dtype, device).dense(), self._weight("weight_hh", dtype, device).dense()

    def to_dense(self) -> nn.Module:
        """The dense ``nn.LSTMCell`` / ``nn.GRUCell`` computing the same function."""
        return dense_cell(self, *self.dense_weights())

    def _step(self, input: torch.Tensor, hx: Any, states: int) -> Any:
        unbatched, x, parts = prepare_step(self, input, hx, states, self.bias_ih)
        f_ih, f_hh = (self._weight(p, x.dtype, x.device) for p in ("weight_ih", "weight_hh"))
        out: Any
        if capturing():
            gates_in = f_ih(x)
            if states == 2:
                if self.bias_ih is not None and self.bias_hh is not None:
                    gates_in = gates_in + (self.bias_ih + self.bias_hh)
                out = lstm_cell(gates_in, parts[0], parts[1], f_hh, xp=torch)
            else:
                out = gru_cell(gates_in if self.bias_ih is None else gates_in + self.bias_ih, parts[0], f_hh,
                               self.bias_hh, xp=torch)
        elif states == 2:
            out = torch.lstm_cell(x, parts, f_ih.dense(), f_hh.dense(), self.bias_ih, self.bias_hh)
        else:
            out = torch.gru_cell(x, parts[0], f_ih.dense(), f_hh.dense(), self.bias_ih, self.bias_hh)
        if not unbatched:
            return out
        return tuple(o.squeeze(0) for o in out) if states == 2 else out.squeeze(0)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}, {self._forms()}"


class QuantizedLSTMCell(_QuantizedCell):
    """``nn.LSTMCell`` with ``weight_ih`` and ``weight_hh`` stored as integer codes (or low-rank pairs of them):
    ``forward(input, hx) -> (h, c)``, torch's call signature, gate order and biases.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> cell = torch.nn.LSTMCell(32, 64)
    >>> q = tnlib.nn.QuantizedLSTMCell.from_lstm_cell(cell, tnlib.Quantization(bits=8, group_size=None))
    >>> x, h, c = torch.randn(3, 32), torch.randn(3, 64), torch.randn(3, 64)
    >>> bool((q(x, (h, c))[0] - cell(x, (h, c))[0]).abs().max() < 0.01)
    True
    """

    @classmethod
    def from_lstm_cell(cls, cell: nn.LSTMCell, quantization: Quantization = Quantization(), *,
                       rank: int | None = None,
                       metrics: Mapping[str, tnlib.Metric] | None = None) -> QuantizedLSTMCell:
        """Quantize a trained ``nn.LSTMCell`` (``metrics`` by weight name, ``weight_ih`` / ``weight_hh``, as
        :meth:`QuantizedLSTM.from_lstm` takes them)."""
        return cls._quantized(cell, quantization, rank, metrics)

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        return self._step(input, hx, 2)


class QuantizedGRUCell(_QuantizedCell):
    """``nn.GRUCell`` with ``weight_ih`` and ``weight_hh`` stored as integer codes: ``forward(input, hx) -> h``.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> cell = torch.nn.GRUCell(32, 64)
    >>> q = tnlib.nn.QuantizedGRUCell.from_gru_cell(cell, tnlib.Quantization(bits=4, group_size=32))
    >>> q(torch.randn(3, 32)).shape, q.bits
    (torch.Size([3, 64]), (4, 4))
    """

    gates = 3
    dense_type = nn.GRUCell

    @classmethod
    def from_gru_cell(cls, cell: nn.GRUCell, quantization: Quantization = Quantization(), *,
                      rank: int | None = None, metrics: Mapping[str, tnlib.Metric] | None = None) -> QuantizedGRUCell:
        """Quantize a trained ``nn.GRUCell``, as :meth:`QuantizedLSTMCell.from_lstm_cell` does."""
        return cls._quantized(cell, quantization, rank, metrics)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        return self._step(input, hx, 1)


def build_quantized_cell(cell: nn.Module, factors: Mapping[str, Sequence[QuantizedMatrix]]) -> nn.Module:
    """The quantized twin of ``cell`` (an ``nn.LSTMCell`` or ``nn.GRUCell``) holding ``factors`` per weight name
    (``weight_ih``, ``weight_hh``), with its biases."""
    cls: Any = QuantizedLSTMCell if isinstance(cell, nn.LSTMCell) else QuantizedGRUCell
    if not isinstance(cell, cls.dense_type):
        raise TypeError(f"cell must be a torch.nn.LSTMCell or GRUCell, got {type(cell).__name__}")
    self = cls.__new__(cls)
    nn.Module.__init__(self)
    self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
    self._store(cell, factors)
    for kind in ("ih", "hh"):
        copy_bias(self, f"bias_{kind}", getattr(cell, f"bias_{kind}"))
    return self


def build_quantized_rnn(rnn: nn.RNNBase, factors: Mapping[str, Sequence[QuantizedMatrix]]) -> nn.Module:
    """The quantized twin of ``rnn`` (an ``nn.LSTM`` or ``nn.GRU``) holding ``factors`` per weight name."""
    cls: Any = QuantizedLSTM if isinstance(check_rnn(rnn), nn.LSTM) else QuantizedGRU
    self = cls.__new__(cls)
    StackedRNN.__init__(self)
    self._fill(rnn, factors)
    return self


def check_rnn(rnn: Any) -> nn.RNNBase:
    """``rnn`` if it is an ``nn.LSTM`` (without projections) or an ``nn.GRU``, else an error naming it."""
    return check_lstm(rnn) if isinstance(rnn, nn.LSTM) else check_gru(rnn)


_FIELDS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
           "num_directions", "bits", "group_sizes", "ranks")
_SIZES = ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first")


def _probe(layer: Any) -> torch.Tensor:
    return torch.zeros(1, 1, layer.input_size, dtype=layer._dtype())


for _cls, _kind in ((QuantizedLSTM, "LSTM"), (QuantizedGRU, "GRU")):
    register(LayerKind(_cls, (), _FIELDS, _SIZES, _probe, mpo_weights=lambda layer: [], also_replaces=(_kind,)))


def _cell_probe(layer: Any) -> torch.Tensor:
    return torch.zeros(1, layer.input_size, dtype=layer._dtype())


for _cell, _kind in ((QuantizedLSTMCell, "LSTMCell"), (QuantizedGRUCell, "GRUCell")):
    register(LayerKind(_cell, (), ("input_size", "hidden_size", "bits", "group_sizes", "ranks"),
                       ("input_size", "hidden_size"), _cell_probe, mpo_weights=lambda layer: [],
                       also_replaces=(_kind,)))
