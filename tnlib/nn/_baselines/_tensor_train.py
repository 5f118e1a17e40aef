"""MPS tensor trains (Murua et al. 2020): the weight as one chain with all input
legs on the first sites and all output legs on the last, so a single middle
bond separates input from output; inference contracts the input sites first.

* :class:`TTLinear`: an ``nn.Linear`` in that form.
* :class:`TTLSTM`: both LSTM weight matrices in that form.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tnlib._apply import apply_input_first
from tnlib._backend import capturing
from tnlib.nn._layers._cores import check_linear, input_first_tt, positive_int
from tnlib.nn._layers._stacking import StackedLSTM, check_lstm, suffix
from tnlib.nn._layers._traced import apply_input_first_traced

__all__ = ["TTLinear", "TTLSTM"]



def _input_first(cores, num_in: int, flat: torch.Tensor) -> torch.Tensor:
    """The MPS tensor-train product: the core kernel eagerly, fixed torch operations under graph capture."""
    if capturing():
        return apply_input_first_traced(cores, num_in, flat)
    return apply_input_first(cores, num_in, flat)

class TTLinear(nn.Module):
    """``nn.Linear`` whose weight is an input-first MPS tensor train of bond ``bond_dim``.

    ``W`` (``out x in``) is read as the tensor ``T[j_1..j_n, i_1..i_m]``
    (input factors first) and stored as an MPS; the bond between the last
    input site and the first output site separates input from output. A new
    layer truncates a default ``nn.Linear`` weight and rescales the train to
    that weight's norm, so its entries keep the default variance
    ``1 / (3 in_features)`` at any bond (as MPO layers do);
    :meth:`from_linear` is a plain decomposition.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = tnlib.nn.TTLinear(64, 32, bond_dim=4)
    >>> layer(torch.randn(5, 64)).shape
    torch.Size([5, 32])
    >>> exact = tnlib.nn.TTLinear.from_linear(torch.nn.Linear(64, 32), bond_dim=64)
    """

    def __init__(self, in_features: int, out_features: int, bond_dim: int, *, num_cores: int = 2,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        ref = nn.Linear(positive_int("in_features", in_features), positive_int("out_features", out_features),
                        bias=bias, device=device, dtype=dtype)
        self._build(ref, bond_dim, num_cores, keep_norm=True)

    def _build(self, linear: nn.Linear, bond_dim: int, num_cores: int, keep_norm: bool = False) -> None:
        positive_int("bond_dim", bond_dim)
        positive_int("num_cores", num_cores)
        self.in_features, self.out_features, self.bond_dim = linear.in_features, linear.out_features, bond_dim
        self.in_dims, self.out_dims, self.cores = input_first_tt(linear.weight, bond_dim, num_cores,
                                                                 keep_norm=keep_norm)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features; this TTLinear expects {self.in_features}")
        lead = x.shape[:-1]
        y = _input_first(list(self.cores), len(self.in_dims), x.reshape(-1, self.in_features))
        y = y.reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, bond_dim: int, *, num_cores: int = 2) -> TTLinear:
        """Decompose a trained ``nn.Linear`` (exact once ``bond_dim`` reaches the full ranks)."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._build(check_linear(linear), bond_dim, num_cores)
        return self

    def extra_repr(self) -> str:
        bonds = tuple(int(c.shape[2]) for c in list(self.cores)[:-1])
        return f"{self.in_features}, {self.out_features}, bond_dims={bonds}, in_dims={self.in_dims}, " \
               f"out_dims={self.out_dims}, params={sum(math.prod(c.shape) for c in self.cores)}"
class TTLSTM(StackedLSTM):
    """``nn.LSTM`` whose weights are MPS tensor trains with the input legs first (Murua et al. 2020).

    ``W[i, j]`` (``4H x N``) is reshaped to the tensor ``T[j_1..j_n, i_1..i_m]``
    and stored as an MPS of bond ``bond_dim``: the bond between the last input
    site and the first output site separates input from output, so this is a
    tensor-train-structured low-rank form. Inference contracts the input sites
    with ``x`` first, then expands through the output sites. A new layer
    truncates default ``nn.LSTM`` weights and rescales each train to its
    weight's norm, so the entries keep the default variance at any bond;
    :meth:`from_lstm` is a plain decomposition.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> lstm = torch.nn.LSTM(16, 32)
    >>> tt = tnlib.nn.TTLSTM.from_lstm(lstm, bond_dim=4)
    >>> out, (h, c) = tt(torch.randn(5, 2, 16))
    >>> out.shape, tnlib.nn.count_parameters(tt) < tnlib.nn.count_parameters(lstm)
    (torch.Size([5, 2, 32]), True)
    """

    def __init__(self, input_size: int, hidden_size: int, bond_dim: int, *, num_cores: int = 2,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        ref = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                      device=device, dtype=dtype)
        self._build(ref, bond_dim, num_cores, keep_norm=True)

    def _build(self, lstm: nn.LSTM, bond_dim: int, num_cores: int, keep_norm: bool = False) -> None:
        positive_int("bond_dim", bond_dim)
        self.bond_dim, self.num_cores = bond_dim, num_cores
        self.site_dims: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    name = f"{kind}" + suffix(layer, d)
                    in_dims, out_dims, cores = input_first_tt(getattr(lstm, "weight_" + name), bond_dim, num_cores,
                                                              keep_norm=keep_norm)
                    self.site_dims[name] = (in_dims, out_dims)
                    setattr(self, "tt_" + name, cores)
        self.copy_biases(lstm)

    def _operator(self, name: str):
        cores = list(getattr(self, "tt_" + name))
        k = len(self.site_dims[name][0])
        return lambda x: _input_first(cores, k, x)

    def operators(self, layer: int, direction: int, rows: int | None = None):
        return self._operator("ih" + suffix(layer, direction)), self._operator("hh" + suffix(layer, direction))

    def dense_weights(self, layer: int, direction: int):
        out = []
        for kind in ("ih", "hh"):
            name = kind + suffix(layer, direction)
            n_in = math.prod(self.site_dims[name][0])
            ref = getattr(self, "tt_" + name)[0]
            out.append(self._operator(name)(torch.eye(n_in, dtype=ref.dtype, device=ref.device)).T)
        return tuple(out)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, bond_dim: int, *, num_cores: int = 2) -> TTLSTM:
        """Decompose a trained ``nn.LSTM``'s weights into input-first tensor trains."""
        check_lstm(lstm)
        self = cls.__new__(cls)
        StackedLSTM.__init__(self)
        self._setup_like(lstm)
        self._build(lstm, bond_dim, num_cores)
        return self
