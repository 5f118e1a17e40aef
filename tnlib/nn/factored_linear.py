"""Fully connected baselines for MPO layers: low-rank and MPS tensor-train ``nn.Linear`` s.

Both keep ``nn.Linear``'s interface (``y = x W^T + b``) and can be built
from scratch or from a trained ``nn.Linear``:

* :class:`LowRankLinear`: ``W ~ U V`` with ``U`` (``out x r``), ``V``
  (``r x in``); from a trained layer by truncated SVD (Eckart-Young optimal).
* :class:`TTLinear`: ``W`` as an MPS with the input legs on the first sites
  and the output legs on the last (the tensor-train form of Murua et al.
  2020, as :class:`tnlib.nn.TTLSTM`); inference contracts the input first.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tnlib.apply import apply_input_first

from ._cores import input_first_tt, low_rank_factors

__all__ = ["LowRankLinear", "TTLinear"]


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected a positive int")
    return value


def _linear(linear: object) -> nn.Linear:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    return linear


class LowRankLinear(nn.Module):
    """``y = (x V^T) U^T + b``: a rank-``rank`` ``nn.Linear``.

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
        ref = nn.Linear(_positive("in_features", in_features), _positive("out_features", out_features),
                        bias=bias, device=device, dtype=dtype)
        self._factorise(ref, rank)

    def _factorise(self, linear: nn.Linear, rank: int) -> None:
        w = linear.weight.detach()
        if _positive("rank", rank) > min(w.shape):
            raise ValueError(f"rank={rank} exceeds min{tuple(w.shape)} of the weight")
        self.in_features, self.out_features, self.rank = linear.in_features, linear.out_features, rank
        self.U, self.V = low_rank_factors(w, rank)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.V.T) @ self.U.T
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """Best rank-``rank`` approximation (truncated SVD) of a trained ``nn.Linear``."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._factorise(_linear(linear), rank)
        return self

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, rank={self.rank}, bias={self.bias is not None}"


class TTLinear(nn.Module):
    """``nn.Linear`` whose weight is an input-first MPS tensor train of bond ``bond_dim``.

    ``W`` (``out x in``) is read as the tensor ``T[j_1..j_n, i_1..i_m]``
    (input factors first) and stored as an MPS; the bond between the last
    input site and the first output site separates input from output.

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
        ref = nn.Linear(_positive("in_features", in_features), _positive("out_features", out_features),
                        bias=bias, device=device, dtype=dtype)
        self._build(ref, bond_dim, num_cores)

    def _build(self, linear: nn.Linear, bond_dim: int, num_cores: int) -> None:
        _positive("bond_dim", bond_dim)
        _positive("num_cores", num_cores)
        self.in_features, self.out_features, self.bond_dim = linear.in_features, linear.out_features, bond_dim
        self.in_dims, self.out_dims, self.cores = input_first_tt(linear.weight, bond_dim, num_cores)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features; this TTLinear expects {self.in_features}")
        lead = x.shape[:-1]
        y = apply_input_first(list(self.cores), len(self.in_dims), x.reshape(-1, self.in_features))
        y = y.reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, bond_dim: int, *, num_cores: int = 2) -> TTLinear:
        """Decompose a trained ``nn.Linear`` (exact once ``bond_dim`` reaches the full ranks)."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._build(_linear(linear), bond_dim, num_cores)
        return self

    def extra_repr(self) -> str:
        bonds = tuple(int(c.shape[2]) for c in list(self.cores)[:-1])
        return f"{self.in_features}, {self.out_features}, bond_dims={bonds}, in_dims={self.in_dims}, " \
               f"out_dims={self.out_dims}, params={sum(math.prod(c.shape) for c in self.cores)}"
