"""``MPOLSTMCell`` and ``MPOGRUCell``: ``nn.LSTMCell`` / ``nn.GRUCell`` with MPO weights.

Production models often run a cell inside their own loop (a streaming
voice-activity detector, a decoder); these are drop-in replacements with the
same call signature, the same gate layout and bias names as torch's, exact
without truncation. One step is :func:`tnlib.rnn.lstm_cell` /
:func:`tnlib.rnn.gru_cell`, the update the sequence layers use too; at
inference (no gradients), where it is faster at the batch size called - a
small hidden size at batch 1 - the step runs as torch's fused cell on the
rebuilt dense matrices instead (the same function, up to rounding).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

import tnlib
from tnlib._backend import capturing
from tnlib.nn._convert._calibration import record_cell
from tnlib.nn._layers._cores import copy_bias, init_bias, members, positive_int, size_hint
from tnlib.nn._layers._inference import check_input, form_key, fused_is_faster
from tnlib.nn._layers._kinds import LayerKind, Source, register
from tnlib.nn._layers._mpo_rnn import gate_layout, gates_layout
from tnlib.nn._layers._weights import MPOWeights, named_cores, searched, weight_lists
from tnlib.rnn import gru_cell, lstm_cell

__all__ = ["MPOLSTMCell", "MPOGRUCell", "prepare_step", "dense_cell"]


class _MPOCell(MPOWeights, nn.Module):
    gates: ClassVar[int] = 4
    dense_type: ClassVar[type[nn.Module]] = nn.LSTMCell

    input_size: int
    hidden_size: int
    cores_ih: nn.ParameterList
    cores_hh: nn.ParameterList
    bias_ih: nn.Parameter | None
    bias_hh: nn.Parameter | None

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, bond_dim: int = 8,
                 num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self._sizes(input_size, hidden_size)
        positive_int("bond_dim", bond_dim)
        self._layout(num_cores, hidden_dims)
        h = self.hidden_size
        for kind, fan_in in (("ih", self.input_size), ("hh", h)):
            self._init_mpo(f"cores_{kind}", fan_in, bond_dim, h, device, dtype)
        for kind in ("ih", "hh"):  # after the cores, in torch's order (state_dict keys, random draws)
            init_bias(self, f"bias_{kind}", self.gates * h, h, bias, device, dtype)
        self.bond_masks = {}

    @classmethod
    def _from_cell(cls, cell: Any, truncation, num_cores, hidden_dims, mpos) -> Any:
        expected = cls.dense_type
        if not isinstance(cell, expected):
            raise TypeError(f"cell must be a torch.nn.{expected.__name__}, got {type(cell).__name__}")
        dense: Any = cell
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._sizes(dense.input_size, dense.hidden_size)
        self._layout(num_cores, hidden_dims)
        mpos = self._check_mpos(mpos)
        for kind in ("ih", "hh"):
            self._convert_mpo(f"cores_{kind}", getattr(dense, f"weight_{kind}"), truncation, mpos,
                              searched(truncation, num_cores, hidden_dims))
            copy_bias(self, f"bias_{kind}", getattr(dense, f"bias_{kind}"))
        self.bond_masks = {}
        return self

    def _sizes(self, input_size: int, hidden_size: int) -> None:
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size

    def _layout(self, num_cores: int | None, hidden_dims: Sequence[int] | None) -> None:
        self.gate_dims = gate_layout(self.gates, self.input_size, self.hidden_size, num_cores, hidden_dims)

    def mpo_names(self) -> list[str]:
        return ["cores_ih", "cores_hh"]

    def dense_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._dense("cores_ih", self.input_size), self._dense("cores_hh", self.hidden_size)

    def to_dense(self) -> nn.Module:
        """The dense ``nn.LSTMCell`` / ``nn.GRUCell`` computing the same function."""
        return dense_cell(self, *self.dense_weights())

    def _prepare(self, input: torch.Tensor, hx: Any, states: int):
        return prepare_step(self, input, hx, states, members(self.cores_ih)[0])

    def _step(self, x: torch.Tensor, parts: list[torch.Tensor]) -> Any:
        """One step: torch's fused cell on the dense matrices where that is faster (:func:`fused_is_faster`;
        inference only), else :meth:`_python_step` on the weights' own forms."""
        if torch.is_grad_enabled() or capturing():
            batch = size_hint(x.shape[0])
            return self._python_step(x, parts, self._operator("cores_ih", batch), self._operator("cores_hh", batch))
        params = self._form_params("cores_ih") + self._form_params("cores_hh")
        key, entry = form_key(params), self.__dict__.get("_fused_cell")
        if entry is None or entry[0] != key:  # new, or a parameter changed: the forms and choices are rebuilt
            choices: dict[int, bool] = {}
            entry = self.__dict__["_fused_cell"] = (key, self._plan("cores_ih"), self._plan("cores_hh"), choices)
        _, f_ih, f_hh, choices = entry  # choices: the per-batch answers of fused_is_faster, read without its closures
        batch = int(x.shape[0])
        choice = choices.get(batch)
        if choice is None:
            choice = choices[batch] = fused_is_faster(("fused cell", batch), f_ih, f_hh, x, parts[0],
                                                      lambda: self._fused_step(x, parts, f_ih, f_hh),
                                                      lambda: self._python_step(x, parts, f_ih, f_hh))
        return self._fused_step(x, parts, f_ih, f_hh) if choice else self._python_step(x, parts, f_ih, f_hh)

    def _fused_step(self, x: torch.Tensor, parts: list[torch.Tensor], f_ih: Any, f_hh: Any) -> Any:
        if self.gates == 4:
            return torch.lstm_cell(x, parts, f_ih.matrix(), f_hh.matrix(), self.bias_ih, self.bias_hh)
        return torch.gru_cell(x, parts[0], f_ih.matrix(), f_hh.matrix(), self.bias_ih, self.bias_hh)

    def _python_step(self, x: torch.Tensor, parts: list[torch.Tensor], f_ih: Any, f_hh: Any) -> Any:
        """One step on the weights' own forms ``f_ih``, ``f_hh`` (``v -> v @ W^T``) by
        :func:`tnlib.rnn.lstm_cell` / :func:`tnlib.rnn.gru_cell`."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


def dense_cell(cell: Any, w_ih: torch.Tensor, w_hh: torch.Tensor) -> nn.Module:
    """The dense ``cell.dense_type`` (``nn.LSTMCell`` / ``nn.GRUCell``) with the weights ``w_ih``, ``w_hh`` (their
    dtype and device) and ``cell``'s biases."""
    dense: Any = cell.dense_type(cell.input_size, cell.hidden_size, bias=cell.bias_ih is not None,
                                 device=w_ih.device, dtype=w_ih.dtype)
    with torch.no_grad():
        dense.weight_ih.copy_(w_ih)
        dense.weight_hh.copy_(w_hh)
        if cell.bias_ih is not None and cell.bias_hh is not None:
            dense.bias_ih.copy_(cell.bias_ih)
            dense.bias_hh.copy_(cell.bias_hh)
    return dense


def prepare_step(cell: Any, input: torch.Tensor, hx: Any, states: int,
                 ref: torch.Tensor | None) -> tuple[bool, torch.Tensor, list[torch.Tensor]]:
    """A cell's ``input`` and ``hx`` checked as torch checks them (``ref``: a tensor of the weights' dtype and
    device, ``None`` to take any float dtype): ``(unbatched, x (B, I), [h] or [h, c])``, zeros by default."""
    if input.dim() not in (1, 2):
        raise ValueError(f"input must be (B, {cell.input_size}) or ({cell.input_size},), got {tuple(input.shape)}")
    if input.shape[-1] != cell.input_size:
        raise ValueError(f"input has {input.shape[-1]} features; this cell expects {cell.input_size}")
    if ref is not None:
        check_input(input, ref, "input", type(cell).__name__)
    unbatched = input.dim() == 1
    x = input.unsqueeze(0) if unbatched else input
    if hx is None:
        parts = [x.new_zeros(x.shape[0], cell.hidden_size)] * states
    else:
        parts = list(hx) if states == 2 else [hx]
        parts = [p.unsqueeze(0) if unbatched else p for p in parts]
        for p in parts:
            check_input(p, x, "hx", type(cell).__name__)
            if tuple(p.shape) != (x.shape[0], cell.hidden_size):
                raise ValueError(
                    f"hx has shape {tuple(p.shape[1:]) if unbatched else tuple(p.shape)}; expected "
                    f"{(cell.hidden_size,) if unbatched else (x.shape[0], cell.hidden_size)}"
                )
    return unbatched, x, parts


class MPOLSTMCell(_MPOCell):
    """``nn.LSTMCell`` with ``W_ih (4H x I)`` and ``W_hh (4H x H)`` as MPOs: ``forward(input, hx) -> (h, c)``.

    Parameters
    ----------
    input_size, hidden_size, bias
        As ``nn.LSTMCell``'s.
    bond_dim
        Bond dimension of both MPOs of a new cell (capped at what each bond can carry).
    num_cores, hidden_dims
        Cores per MPO and factors of ``hidden_size`` (default balanced); the gate factor joins the first.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> cell = torch.nn.LSTMCell(16, 32)
    >>> mpo_cell = tnlib.nn.MPOLSTMCell.from_lstm_cell(cell)          # exact
    >>> x, h, c = torch.randn(3, 16), torch.randn(3, 32), torch.randn(3, 32)
    >>> bool(torch.allclose(mpo_cell(x, (h, c))[0], cell(x, (h, c))[0], atol=1e-5))
    True
    """

    gates = 4
    dense_type = nn.LSTMCell

    @classmethod
    def from_lstm_cell(cls, cell: nn.LSTMCell, truncation: tnlib.Truncation | None = None, *,
                       num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                       mpos: Mapping[str, tnlib.MPO] | None = None) -> MPOLSTMCell:
        """Convert a trained ``nn.LSTMCell`` (exact when ``truncation`` is ``None``); ``mpos``
        (``{"cores_ih": mpo, "cores_hh": mpo}``) are used as they are; at a ``max_params`` budget without
        ``num_cores`` / ``hidden_dims`` each weight's layout is searched (:meth:`MPOLSTM.from_lstm`)."""
        return cls._from_cell(cell, truncation, num_cores, hidden_dims, mpos)

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        unbatched, x, parts = self._prepare(input, hx, 2)
        h, c = self._step(x, parts)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)

    def _python_step(self, x: torch.Tensor, parts: list[torch.Tensor], f_ih: Any,
                     f_hh: Any) -> tuple[torch.Tensor, torch.Tensor]:
        gates_in = f_ih(x)
        if self.bias_ih is not None and self.bias_hh is not None:
            gates_in = gates_in + (self.bias_ih + self.bias_hh)
        return lstm_cell(gates_in, parts[0], parts[1], f_hh, xp=torch)


class MPOGRUCell(_MPOCell):
    """``nn.GRUCell`` with ``W_ih (3H x I)`` and ``W_hh (3H x H)`` as MPOs: ``forward(input, hx) -> h``.

    The parameters are those of :class:`MPOLSTMCell` (``input_size``,
    ``hidden_size``, ``bias`` as ``nn.GRUCell``'s).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> cell = torch.nn.GRUCell(16, 32)
    >>> mpo_cell = tnlib.nn.MPOGRUCell.from_gru_cell(cell)            # exact
    >>> x, h = torch.randn(3, 16), torch.randn(3, 32)
    >>> bool(torch.allclose(mpo_cell(x, h), cell(x, h), atol=1e-5))
    True
    """

    gates = 3
    dense_type = nn.GRUCell

    @classmethod
    def from_gru_cell(cls, cell: nn.GRUCell, truncation: tnlib.Truncation | None = None, *,
                      num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                      mpos: Mapping[str, tnlib.MPO] | None = None) -> MPOGRUCell:
        """Convert a trained ``nn.GRUCell`` (exact when ``truncation`` is ``None``), as
        :meth:`MPOLSTMCell.from_lstm_cell` converts a cell."""
        return cls._from_cell(cell, truncation, num_cores, hidden_dims, mpos)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        unbatched, x, parts = self._prepare(input, hx, 1)
        h = self._step(x, parts)
        return h.squeeze(0) if unbatched else h

    def _python_step(self, x: torch.Tensor, parts: list[torch.Tensor], f_ih: Any, f_hh: Any) -> torch.Tensor:
        gates_in = f_ih(x)
        if self.bias_ih is not None:
            gates_in = gates_in + self.bias_ih
        return gru_cell(gates_in, parts[0], f_hh, self.bias_hh, xp=torch)


def _probe(layer: Any) -> torch.Tensor:
    return torch.zeros(1, layer.input_size, dtype=layer.cores_ih[0].dtype)


register(LayerKind(
    MPOLSTMCell,
    (Source("LSTMCell", lambda m: isinstance(m, nn.LSTMCell),
            lambda m, mpos: MPOLSTMCell.from_lstm_cell(m, mpos=named_cores(mpos)), "nn.LSTMCell", gates_layout(4),
            record_cell),),
    ("input_size", "hidden_size", "gate_dims"), ("input_size", "hidden_size"), _probe, weight_lists, named_masks=True,
))
register(LayerKind(
    MPOGRUCell,
    (Source("GRUCell", lambda m: isinstance(m, nn.GRUCell),
            lambda m, mpos: MPOGRUCell.from_gru_cell(m, mpos=named_cores(mpos)), "nn.GRUCell", gates_layout(3),
            record_cell),),
    ("input_size", "hidden_size", "gate_dims"), ("input_size", "hidden_size"), _probe, weight_lists, named_masks=True,
))
