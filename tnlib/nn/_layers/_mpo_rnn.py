"""``MPOLSTM`` and ``MPOGRU``: ``nn.LSTM`` / ``nn.GRU`` whose two weight matrices per
layer and direction are MPOs (Gao et al. 2020)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib.nn._convert._calibration import record_rnn
from tnlib.nn._layers._cores import positive_int
from tnlib.nn._layers._kinds import LayerKind, Source, register
from tnlib.nn._layers._stacking import StackedGRU, StackedLSTM, StackedRNN, check_gru, check_lstm, suffix
from tnlib.nn._layers._weights import MPOWeights, named_cores, searched, weight_lists

__all__ = ["MPOLSTM", "MPOGRU", "gate_dims", "gate_layout", "gates_layout", "RNN_FIELDS"]


def gate_dims(
    hidden_size: int, num_cores: int, hidden_dims: Sequence[int] | None = None, gates: int = 4
) -> tuple[int, ...]:
    """Output factors of the stacked ``gates * H`` rows: the gate factor joins the first leg."""
    if hidden_dims is None:
        dims = tnlib.factorize(hidden_size, num_cores)
    else:
        dims = tuple(int(d) for d in hidden_dims)
        if math.prod(dims) != hidden_size or min(dims) < 1:
            raise ValueError(f"hidden_dims={dims} multiply to {math.prod(dims)} but hidden_size is {hidden_size}")
    return (gates * dims[0], *dims[1:])


def gate_layout(gates: int, input_size: int, hidden_size: int, num_cores: int | None = None,
                hidden_dims: Sequence[int] | None = None) -> tuple[int, ...]:
    """The row factors of a recurrent weight (``gates * hidden_size`` rows) in the layout of Gao et al. (2020).

    ``num_cores`` (default :func:`tnlib.default_num_cores` of the sizes) factors
    of ``hidden_size`` (or ``hidden_dims``), the gate factor (4 for an LSTM, 3
    for a GRU) folded into the first: the ``out_dims`` of both weights of
    :class:`MPOLSTM`, :class:`MPOGRU` and the cells.

    Examples
    --------
    >>> import tnlib.nn
    >>> tnlib.nn.gate_layout(4, input_size=64, hidden_size=64, num_cores=3)
    (16, 4, 4)
    """
    for name, value in (("gates", gates), ("input_size", input_size), ("hidden_size", hidden_size)):
        positive_int(name, value)
    if num_cores is not None:
        positive_int("num_cores", num_cores)
    n = num_cores or tnlib.default_num_cores(gates * hidden_size, max(input_size, hidden_size))
    return gate_dims(hidden_size, n, hidden_dims, gates)


class _MPOStack(MPOWeights, StackedRNN):
    """The MPO weights of a stacked recurrent layer: one core list per matrix, named
    ``cores_ih_l0``, ``cores_hh_l0_reverse``, ... (``bond_masks`` for MPOP squeezing)."""

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 bond_dim: int = 8, num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        positive_int("bond_dim", bond_dim)
        h = self.hidden_size
        self.gate_dims = gate_layout(self.gates, self.input_size, h, num_cores, hidden_dims)
        for kind, layer, _, sfx in self.weight_names():
            fan_in = self.layer_input_size(layer) if kind == "ih" else h
            self._init_mpo(f"cores_{kind}" + sfx, fan_in, bond_dim, h, device, dtype)
        self.init_biases(device, dtype)
        self.bond_masks = {}

    def _convert(self, rnn: Any, truncation, num_cores, hidden_dims, mpos: Mapping[str, Any] | None) -> None:
        """Weights from a trained ``rnn``: given MPOs where named, else the gate layout."""
        self.gate_dims = gate_layout(self.gates, rnn.input_size, rnn.hidden_size, num_cores, hidden_dims)
        mpos = self._check_mpos(mpos)
        for kind, _, _, sfx in self.weight_names():
            self._convert_mpo(f"cores_{kind}" + sfx, getattr(rnn, f"weight_{kind}" + sfx), truncation, mpos,
                              searched(truncation, num_cores, hidden_dims))
        self.copy_biases(rnn)
        self.bond_masks = {}

    def mpo_names(self) -> list[str]:
        return [f"cores_{kind}" + sfx for kind, _, _, sfx in self.weight_names()]

    def operators(self, layer: int, direction: int, rows: int | None = None):
        sfx = suffix(layer, direction)
        return self._operator("cores_ih" + sfx, rows), self._operator("cores_hh" + sfx, rows)

    def dense_weights(self, layer: int, direction: int):
        sfx = suffix(layer, direction)
        return (self._dense("cores_ih" + sfx, self.layer_input_size(layer)),
                self._dense("cores_hh" + sfx, self.hidden_size))


class MPOLSTM(_MPOStack, StackedLSTM):
    """``nn.LSTM`` with ``W_ih (4H x I)`` and ``W_hh (4H x H)`` as two MPOs per layer and direction.

    Same call signature and outputs as ``nn.LSTM`` (``output, (h_n, c_n)``),
    gate order ``(i, f, g, o)`` and bias layout of ``nn.LSTM``. As in Gao et
    al. (2020), the four gates are stacked along the output and the factor 4
    is folded into the first output leg: the rows of both MPOs factor as
    ``(4 h_1, h_2, ..., h_n)`` with ``H = h_1 ... h_n``.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        As ``nn.LSTM``'s.
    bond_dim
        Bond dimension of every MPO of a new layer (capped at what each bond can carry).
    num_cores
        Cores per MPO (default :func:`tnlib.default_num_cores` of the sizes).
    hidden_dims
        Factors of ``hidden_size`` (default balanced); the first carries the four gates.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> lstm = tnlib.nn.MPOLSTM(32, 64, bond_dim=4, num_cores=3)
    >>> out, (h, c) = lstm(torch.randn(7, 2, 32))
    >>> out.shape, h.shape
    (torch.Size([7, 2, 64]), torch.Size([1, 2, 64]))
    """

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, truncation: tnlib.Truncation | None = None, *,
                  num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                  mpos: Mapping[str, tnlib.MPO] | None = None) -> MPOLSTM:
        """Convert a trained ``nn.LSTM`` (exact when ``truncation`` is ``None``).

        Every weight is decomposed in the gate layout (``num_cores``,
        ``hidden_dims``) with ``truncation``, except those given in ``mpos``
        (``{"cores_hh_l0": mpo, ...}``, any layout, e.g. from
        :func:`tnlib.layouts`), which are used as they are. With a
        ``max_params`` budget and neither ``num_cores`` nor ``hidden_dims``,
        each weight's layout is searched at its budget instead (as
        :meth:`tnlib.MPO.from_matrix`, :meth:`MPOLinear.from_linear` and
        :func:`tnlib.nn.compress` do; the truncated SVD's layout when nothing
        beats it, which runs 2-5x faster than the gate layout at 10x and batch
        1): pass ``num_cores`` for the gate layout of Gao et al.
        """
        check_lstm(lstm)
        self = cls.__new__(cls)
        StackedLSTM.__init__(self)
        self._setup_like(lstm)
        self._convert(lstm, truncation, num_cores, hidden_dims, mpos)
        return self


class MPOGRU(_MPOStack, StackedGRU):
    """``nn.GRU`` with ``W_ih (3H x I)`` and ``W_hh (3H x H)`` as two MPOs per layer and direction.

    Same call signature and outputs as ``nn.GRU`` (``output, h_n``), gate
    order ``(r, z, n)`` and bias layout of ``nn.GRU``; the factor 3 of the
    stacked gates joins the first output leg. The parameters are those of
    :class:`MPOLSTM` (``input_size`` ... ``bidirectional`` as ``nn.GRU``'s;
    ``bond_dim``, ``num_cores``, ``hidden_dims`` of the MPOs).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> gru = torch.nn.GRU(16, 32)
    >>> mpo_gru = tnlib.nn.MPOGRU.from_gru(gru)            # exact
    >>> x = torch.randn(5, 2, 16)
    >>> bool(torch.allclose(mpo_gru(x)[0], gru(x)[0], atol=1e-5))
    True
    """

    @classmethod
    def from_gru(cls, gru: nn.GRU, truncation: tnlib.Truncation | None = None, *,
                 num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                 mpos: Mapping[str, tnlib.MPO] | None = None) -> MPOGRU:
        """Convert a trained ``nn.GRU`` (exact when ``truncation`` is ``None``); ``mpos``, and the layout searched
        at a ``max_params`` budget without ``num_cores`` / ``hidden_dims``, as in :meth:`MPOLSTM.from_lstm`."""
        check_gru(gru)
        self = cls.__new__(cls)
        StackedGRU.__init__(self)
        self._setup_like(gru)
        self._convert(gru, truncation, num_cores, hidden_dims, mpos)
        return self


def gates_layout(gates: int) -> Any:
    """The layout of a recurrent weight without a search (Gao et al.): the gate factor joins the first row leg."""
    def layout(module: Any, w: Any, num_cores: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        rows = gate_layout(gates, module.input_size, module.hidden_size, num_cores, None)
        return rows, tnlib.factorize(int(w.shape[1]), len(rows))
    return layout


RNN_FIELDS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
              "num_directions", "gate_dims")
_RNN_SIZES = ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first")


def _probe(layer: Any) -> torch.Tensor:
    return torch.zeros(1, 1, layer.input_size, dtype=layer.cores_ih_l0[0].dtype)


register(LayerKind(
    MPOLSTM,
    (Source("LSTM", lambda m: isinstance(m, nn.LSTM), lambda m, mpos: MPOLSTM.from_lstm(m, mpos=named_cores(mpos)),
            "nn.LSTM", gates_layout(4), record_rnn),),
    RNN_FIELDS, _RNN_SIZES, _probe, weight_lists, named_masks=True,
))
register(LayerKind(
    MPOGRU,
    (Source("GRU", lambda m: isinstance(m, nn.GRU), lambda m, mpos: MPOGRU.from_gru(m, mpos=named_cores(mpos)),
            "nn.GRU", gates_layout(3), record_rnn),),
    RNN_FIELDS, _RNN_SIZES, _probe, weight_lists, named_masks=True,
))
