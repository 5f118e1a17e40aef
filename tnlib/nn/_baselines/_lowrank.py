"""Low-rank factorisation ``W ~ U V`` by truncated SVD (Eckart-Young optimal).

* :class:`LowRankLinear`: ``y = (x V^T) U^T + b``, an ``nn.Linear`` of rank ``rank``.
* :class:`LowRankLSTM`: ``W_ih``, ``W_hh`` or both factored (Winata et al. 2019).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from tnlib.nn._layers._cores import check_linear, low_rank_factors, positive_int
from tnlib.nn._layers._stacking import StackedLSTM, check_lstm, suffix

__all__ = ["LowRankLinear", "LowRankLSTM"]


class LowRankLinear(nn.Module):
    """``y = (x V^T) U^T + b``: a rank-``rank`` ``nn.Linear``.

    A new layer is the rank-``rank`` part of a default ``nn.Linear`` weight
    rescaled to that weight's norm, so its entries keep the default variance
    ``1 / (3 in_features)`` at any rank; :meth:`from_linear` is the plain
    truncated SVD.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> dense = torch.nn.Linear(64, 32)
    >>> low = tnlib.nn.LowRankLinear.from_linear(dense, rank=32)   # full rank: exact
    >>> bool(torch.allclose(low(torch.ones(2, 64)), dense(torch.ones(2, 64)), atol=1e-5))
    True
    >>> tnlib.nn.LowRankLinear(64, 32, rank=4).U.shape
    torch.Size([32, 4])
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        ref = nn.Linear(positive_int("in_features", in_features), positive_int("out_features", out_features),
                        bias=bias, device=device, dtype=dtype)
        self._factorise(ref, rank, keep_norm=True)

    def _factorise(self, linear: nn.Linear, rank: int, keep_norm: bool = False) -> None:
        w = linear.weight.detach()
        if positive_int("rank", rank) > min(w.shape):
            raise ValueError(f"rank={rank} exceeds min{tuple(w.shape)} of the weight")
        self.in_features, self.out_features, self.rank = linear.in_features, linear.out_features, rank
        self.U, self.V = low_rank_factors(w, rank, keep_norm=keep_norm)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.V.T) @ self.U.T
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """Best rank-``rank`` approximation (truncated SVD) of a trained ``nn.Linear``."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._factorise(check_linear(linear), rank)
        return self

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, rank={self.rank}, bias={self.bias is not None}"


class LowRankLSTM(StackedLSTM):
    """``nn.LSTM`` with ``W ~ U V`` (rank ``rank``) for ``W_ih``, ``W_hh`` or both.

    ``which="ih"`` factorises only the input-to-hidden matrices, ``"hh"`` only
    the hidden-to-hidden ones (the other stays dense), ``"both"`` both. A new
    layer factorises default ``nn.LSTM`` weights rescaled to their norms (the
    default variance at any rank); :meth:`from_lstm` is the plain truncated
    SVD.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> lstm = torch.nn.LSTM(16, 32)
    >>> small = tnlib.nn.LowRankLSTM.from_lstm(lstm, rank=4)
    >>> out, (h, c) = small(torch.randn(5, 2, 16))
    >>> out.shape, tnlib.nn.count_parameters(small) < tnlib.nn.count_parameters(lstm)
    (torch.Size([5, 2, 32]), True)
    """

    def __init__(self, input_size: int, hidden_size: int, rank: int, *, which: Literal["ih", "hh", "both"] = "both",
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self._check(rank, which)
        ref = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                      device=device, dtype=dtype)
        self._factorise(ref, rank, which, keep_norm=True)

    def _check(self, rank: int, which: str) -> None:
        if which not in ("ih", "hh", "both"):
            raise ValueError(f"which={which!r} is invalid; expected 'ih', 'hh' or 'both'")
        positive_int("rank", rank)
        self.rank, self.which = rank, which

    def _factorise(self, lstm: nn.LSTM, rank: int, which: str, keep_norm: bool = False) -> None:
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    w = getattr(lstm, f"weight_{kind}" + suffix(layer, d)).detach()
                    name = f"{kind}" + suffix(layer, d)
                    if which in (kind, "both"):
                        if rank > min(w.shape):
                            raise ValueError(f"rank={rank} exceeds min{tuple(w.shape)} of weight_{name}")
                        u, v = low_rank_factors(w, rank, keep_norm=keep_norm)
                        setattr(self, "U_" + name, u)
                        setattr(self, "V_" + name, v)
                    else:
                        setattr(self, "W_" + name, nn.Parameter(w.clone()))
        self.copy_biases(lstm)

    def _matrix(self, kind: str, layer: int, d: int) -> Any:
        name = f"{kind}" + suffix(layer, d)
        if self.which in (kind, "both"):
            u, v = getattr(self, "U_" + name), getattr(self, "V_" + name)
            return lambda x: (x @ v.T) @ u.T
        w = getattr(self, "W_" + name)
        return lambda x: x @ w.T

    def operators(self, layer: int, direction: int, rows: int | None = None):
        return self._matrix("ih", layer, direction), self._matrix("hh", layer, direction)

    def dense_weights(self, layer: int, direction: int):
        out = []
        for kind in ("ih", "hh"):
            name = f"{kind}" + suffix(layer, direction)
            if self.which in (kind, "both"):
                out.append(getattr(self, "U_" + name) @ getattr(self, "V_" + name))
            else:
                out.append(getattr(self, "W_" + name))
        return tuple(out)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, rank: int, which: Literal["ih", "hh", "both"] = "both") -> LowRankLSTM:
        """Truncated SVD of a trained ``nn.LSTM``'s weights (optimal rank-``rank`` in Frobenius norm)."""
        check_lstm(lstm)
        self = cls.__new__(cls)
        StackedLSTM.__init__(self)
        self._setup_like(lstm)
        self._check(rank, which)
        self._factorise(lstm, rank, which)
        return self
