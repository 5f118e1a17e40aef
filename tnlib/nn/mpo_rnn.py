"""``MPOLSTM``: an ``nn.LSTM`` whose two weight matrices per layer are MPOs (Gao et al. 2020)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

import tnlib
from tnlib._apply import apply_cores

from ._cores import cores_from_matrix, init_cores, masked, parameter_list, positive_int, uniform_bonds
from ._stacking import StackedLSTM, check_lstm, suffix

__all__ = ["MPOLSTM"]


def gate_dims(hidden_size: int, num_cores: int, hidden_dims: Sequence[int] | None = None) -> tuple[int, ...]:
    """Output factors of the stacked ``4H`` gate rows: the factor 4 joins the first leg."""
    if hidden_dims is None:
        dims = tnlib.factorize(hidden_size, num_cores)
    else:
        dims = tuple(int(d) for d in hidden_dims)
        if math.prod(dims) != hidden_size or min(dims) < 1:
            raise ValueError(f"hidden_dims={dims} multiply to {math.prod(dims)} but hidden_size is {hidden_size}")
    return (4 * dims[0], *dims[1:])


class MPOLSTM(StackedLSTM):
    """``nn.LSTM`` with ``W_ih (4H x I)`` and ``W_hh (4H x H)`` as two MPOs per layer and direction.

    Same call signature and outputs as ``nn.LSTM`` (``output, (h_n, c_n)``),
    gate order ``(i, f, g, o)`` and bias layout of ``nn.LSTM``. As in Gao et
    al. (2020), the four gates are stacked along the output and the factor 4
    is folded into the first output leg: the rows of both MPOs factor as
    ``(4 h_1, h_2, ..., h_n)`` with ``H = h_1 ... h_n``.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        As ``nn.LSTM``.
    bond_dim
        Bond dimension of every MPO (capped at what each bond can carry).
    num_cores
        Cores per MPO (default :func:`tnlib.default_num_cores` of the sizes).
    hidden_dims
        Factors of ``hidden_size`` (default balanced).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> lstm = tnlib.nn.MPOLSTM(32, 64, bond_dim=4, num_cores=3)
    >>> out, (h, c) = lstm(torch.randn(7, 2, 32))
    >>> out.shape, h.shape
    (torch.Size([7, 2, 64]), torch.Size([1, 2, 64]))
    """

    bond_masks: dict[str, list[torch.Tensor]]


    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 bond_dim: int = 8, num_cores: int | None = None, hidden_dims: Sequence[int] | None = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        positive_int("bond_dim", bond_dim)
        n = num_cores or tnlib.default_num_cores(4 * hidden_size, max(input_size, hidden_size))
        self.gate_dims = gate_dims(hidden_size, n, hidden_dims)
        n = len(self.gate_dims)
        self.in_dims: dict[str, tuple[int, ...]] = {}
        for layer in range(num_layers):
            for d in range(self.num_directions):
                for kind, fan_in in (("ih", self.layer_input_size(layer)), ("hh", hidden_size)):
                    name = f"cores_{kind}" + suffix(layer, d)
                    in_dims = tnlib.factorize(fan_in, n)
                    bonds = uniform_bonds(self.gate_dims, in_dims, bond_dim)
                    cores = init_cores(self.gate_dims, in_dims, bonds, hidden_size, device=device, dtype=dtype)
                    setattr(self, name, parameter_list(cores))
        self.init_biases(device, dtype)
        self.bond_masks = {}

    def mpo_names(self) -> list[str]:
        return [f"cores_{kind}" + suffix(layer, d) for layer in range(self.num_layers)
                for d in range(self.num_directions) for kind in ("ih", "hh")]

    def effective_cores(self, name: str) -> list[torch.Tensor]:
        return masked(list(getattr(self, name)), self.bond_masks.get(name))

    def operators(self, layer: int, direction: int):
        ih = self.effective_cores("cores_ih" + suffix(layer, direction))
        hh = self.effective_cores("cores_hh" + suffix(layer, direction))
        return (lambda x: apply_cores(ih, x)), (lambda h: apply_cores(hh, h))

    def mpo(self, name: str) -> tnlib.MPO:
        """One weight as a core :class:`tnlib.MPO`, e.g. ``mpo("cores_hh_l0")``."""
        if name not in self.mpo_names():
            raise ValueError(f"{name!r} is not one of {self.mpo_names()}")
        return tnlib.MPO([c.detach() for c in self.effective_cores(name)])

    def dense_weights(self, layer: int, direction: int):
        out = []
        for kind in ("ih", "hh"):
            cores = self.effective_cores(f"cores_{kind}" + suffix(layer, direction))
            n_in = self.layer_input_size(layer) if kind == "ih" else self.hidden_size
            eye = torch.eye(n_in, dtype=cores[0].dtype, device=cores[0].device)
            out.append(apply_cores(cores, eye).T)
        return tuple(out)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, truncation: tnlib.Truncation | None = None, *,
                  num_cores: int | None = None, hidden_dims: Sequence[int] | None = None) -> MPOLSTM:
        """Convert a trained ``nn.LSTM`` (exact when ``truncation`` is ``None``)."""
        check_lstm(lstm)
        self = cls.__new__(cls)
        StackedLSTM.__init__(self)
        self._setup_like(lstm)
        n = num_cores or tnlib.default_num_cores(4 * lstm.hidden_size, max(lstm.input_size, lstm.hidden_size))
        self.gate_dims = gate_dims(lstm.hidden_size, n, hidden_dims)
        n = len(self.gate_dims)
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    w = getattr(lstm, f"weight_{kind}" + suffix(layer, d))
                    cores, _ = cores_from_matrix(w, self.gate_dims, tnlib.factorize(w.shape[1], n), truncation)
                    setattr(self, f"cores_{kind}" + suffix(layer, d), parameter_list(cores))
        self.copy_biases(lstm)
        self.bond_masks = {}
        return self
