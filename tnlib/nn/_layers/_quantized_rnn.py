"""``QuantizedLSTM`` and ``QuantizedGRU``: recurrent layers whose weight matrices are stored as integer codes.

Each ``W_ih`` and ``W_hh`` of every layer and direction is one quantized
matrix or a quantized low-rank pair ``U V`` (:mod:`tnlib.quantization`), each
with its own bits, group size and rank, held as buffers by
:class:`~tnlib.nn._layers._quantized_store.QuantizedStore`; the biases stay
float parameters. Inference dequantizes the matrices once per call and runs
torch's fused recurrent kernel (a low-rank input weight as ``x V^T`` with ``U``
as the kernel's input weight, never multiplied out); while a graph is
captured (``torch.compile``, ONNX export) the recurrence runs step by step on
the same matrices, as ``DequantizeLinear`` nodes in an exported file.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib._backend import capturing
from tnlib.nn._convert._calibration import float64_metric
from tnlib.nn._layers._cores import check_weight
from tnlib.nn._layers._kinds import LayerKind, register
from tnlib.nn._layers._quantized_linear import device_of, quantized_factors
from tnlib.nn._layers._quantized_store import QuantizedStore, store_matrix
from tnlib.nn._layers._stacking import StackedGRU, StackedLSTM, StackedRNN, check_gru, check_lstm, fused_recurrence
from tnlib.quantization import Quantization, QuantizedMatrix

__all__ = ["QuantizedLSTM", "QuantizedGRU", "build_quantized_rnn", "check_rnn", "QUANTIZED_RNN_KINDS"]

QUANTIZED_RNN_KINDS = ("LSTM", "GRU")
"""The dense recurrent modules a byte budget stores as quantized recurrent layers."""


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


class _QuantizedStack(QuantizedStore, StackedRNN):
    """The stored matrices of a quantized recurrent layer; per weight of :meth:`StackedRNN.weight_names` (torch's
    order) its ``bits``, ``group_sizes`` and ``ranks`` (``None``: the matrix itself)."""

    bits: tuple[int, ...]
    group_sizes: tuple[int | None, ...]
    ranks: tuple[int | None, ...]

    def _shape(self, kind: str, layer: int) -> tuple[int, int]:
        return self.gates * self.hidden_size, self.layer_input_size(layer) if kind == "ih" else self.hidden_size

    def _names(self, k: int, kind: str, sfx: str) -> list[str]:
        base = kind + sfx
        return [base] if self.ranks[k] is None else [base + "_U", base + "_V"]

    def stored_matrices(self) -> list[tuple[str, tuple[int, int], Quantization]]:
        out = []
        for k, (kind, layer, _, sfx) in enumerate(self.weight_names()):
            rows, cols = self._shape(kind, layer)
            q, rank = Quantization(self.bits[k], self.group_sizes[k]), self.ranks[k]
            shapes = [(rows, cols)] if rank is None else [(rows, rank), (rank, cols)]
            out += [(name, shape, q) for name, shape in zip(self._names(k, kind, sfx), shapes)]
        return out

    def _dtype(self) -> torch.dtype:
        """The float dtype of the weights the codes stand for: that of the empty buffer ``weight_dtype``, which
        ``.to()`` / ``.double()`` convert with the biases (a layer without biases keeps its dtype so)."""
        return self.get_buffer("weight_dtype").dtype

    def _pair(self, layer: int, direction: int, dtype: torch.dtype,
              device: torch.device) -> tuple[_Matrices, _Matrices]:
        found = []
        for k, (kind, lay, d, sfx) in enumerate(self.weight_names()):
            if (lay, d) == (layer, direction):
                found.append(_Matrices([self.matrix(n, dtype, device) for n in self._names(k, kind, sfx)]))
        return found[0], found[1]

    def operators(self, layer: int, direction: int, rows: int | None = None) -> tuple[_Matrices, _Matrices]:
        return self._pair(layer, direction, self._dtype(), self.codes_device)

    def dense_weights(self, layer: int, direction: int) -> tuple[torch.Tensor, torch.Tensor]:
        f_ih, f_hh = self._pair(layer, direction, self._dtype(), self.codes_device)
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
        bits, groups, ranks = [], [], []
        device = device_of(rnn)
        for kind, layer, _, sfx in self.weight_names():
            key = f"weight_{kind}{sfx}"
            fs = _checked(key, factors.get(key), self._shape(kind, layer))
            q = fs[0].quantization
            bits.append(q.bits)
            groups.append(q.group_size)
            ranks.append(None if len(fs) == 1 else int(fs[0].shape[1]))
            names = [kind + sfx] if len(fs) == 1 else [kind + sfx + "_U", kind + sfx + "_V"]
            for name, f in zip(names, fs):
                store_matrix(self, name, f, device)
        self.bits, self.group_sizes, self.ranks = tuple(bits), tuple(groups), tuple(ranks)
        dtype = rnn.get_parameter("weight_ih_l0").dtype
        self.register_buffer("weight_dtype", torch.empty(0, dtype=dtype, device=device))
        self.copy_biases(rnn)

    @classmethod
    def _quantized(cls, rnn: nn.RNNBase, quantization: Quantization, rank: int | None,
                   metrics: Mapping[str, tnlib.Metric] | None) -> Any:
        if metrics is not None and not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must map weight names (weight_ih_l0, ...) to tnlib.Metric, got "
                            f"{type(metrics).__name__}")
        what = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
        names = [n for n, _ in rnn.named_parameters() if n.startswith("weight")]
        for name in names:
            check_weight(getattr(rnn, name), f"{what}.{name}")
        unknown = sorted(set(metrics or {}) - set(names))
        if unknown:
            raise ValueError(f"metrics names {unknown}, which are not weights of this {type(rnn).__name__} "
                             f"(its weights: {names})")
        factors = {}
        for name in names:
            metric = float64_metric((metrics or {}).get(name))
            gram = None if metric is None else metric.gram.numpy()
            w = getattr(rnn, name).detach()
            if rank is not None and rank > min(w.shape):
                raise ValueError(f"rank={rank} exceeds min{tuple(w.shape)} of {name}; pass at most {min(w.shape)}")
            try:
                factors[name] = quantized_factors(w, quantization, rank, gram)
            except ValueError as exc:
                raise ValueError(f"{what}.{name}: {exc}") from None
        self = cls.__new__(cls)
        StackedRNN.__init__(self)
        self._fill(rnn, factors)
        return self

    def extra_repr(self) -> str:
        forms = sorted({f"int{b}" + (f" g{g}" if g else " per row") + (f" rank {r}" if r else "")
                        for b, g, r in zip(self.bits, self.group_sizes, self.ranks)})
        return f"{super().extra_repr()}, forms=[{', '.join(forms)}]"


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
