"""``SharedBasisLinear``: a linear layer ``W = C B`` whose basis ``B`` is one parameter shared with the other layers
of its group (Basis Sharing, Wang et al., ICLR 2025)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from tnlib.nn._layers._kinds import LayerKind, register

__all__ = ["SharedBasisLinear", "shared_basis", "shared_params", "build_shared", "shared_parameter", "build_member"]


class SharedBasisLinear(nn.Module):
    """``nn.Linear`` whose weight ``W (out, in)`` is ``C B``: coefficients ``C (out, rank)`` of its own and a basis
    ``B (rank, in)`` shared with the other layers of its group (the same :class:`torch.nn.Parameter`).

    Same-role matrices of different layers (all query projections of a
    transformer, all its first feed-forward matrices) see inputs of the same
    space; one basis of that space serves them all, so a group of ``n``
    layers stores ``rank (in + sum out)`` weights where ``n`` separate
    low-rank factors store ``rank (n in + sum out)``: at the same weights the
    shared basis keeps a larger rank (Wang et al., ICLR 2025, "Basis Sharing:
    cross-layer parameter sharing for large language model compression").
    The forward pass is ``(x B^T) C^T + b``; the weight is never formed.
    ``save``/``load``, ONNX export and ``torch.compile`` keep one basis.

    Build a group with :meth:`from_linears`, or let
    ``tnlib.nn.compress(..., share="role")`` group the layers and keep a group
    only where it errs less than the per-matrix forms at the same weights.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layers = [torch.nn.Linear(64, 32) for _ in range(4)]
    >>> shared = tnlib.nn.SharedBasisLinear.from_linears(layers, rank=16)
    >>> shared[0].basis is shared[3].basis, shared[0](torch.randn(5, 64)).shape
    (True, torch.Size([5, 32]))
    >>> sum(p.numel() for p in torch.nn.ModuleList(shared).parameters() if p.dim() == 2)   # 16 * (64 + 4 * 32)
    3072
    """

    in_features: int
    out_features: int
    rank: int
    basis: nn.Parameter
    coefficients: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self) -> None:
        raise TypeError("build SharedBasisLinear layers with SharedBasisLinear.from_linears(linears, rank=...) or "
                        "tnlib.nn.compress(model, compression=..., share='role')")

    @classmethod
    def from_linears(cls, linears: Sequence[nn.Linear], rank: int, *,
                     grams: Sequence[Any] | None = None) -> list[SharedBasisLinear]:
        """One layer per ``linears[i]``, all holding one basis of ``rank`` rows.

        Without ``grams`` the basis is the leading right singular vectors of the stacked weights ``[W_1; ...;
        W_n]`` (least Frobenius error over the group). With ``grams`` (each layer's input Gram ``X^T X / m``,
        ``in x in``, positive definite: shrink it first) the basis is fitted in the pooled metric
        ``C = mean C_i`` (``[W_1; ...] L`` with ``C = L L^T``) and each layer's coefficients in its own metric
        (least squares given the basis), as :func:`shared_basis` does.
        """
        linears = list(linears)
        if len(linears) < 2 or not all(isinstance(m, nn.Linear) for m in linears):
            raise TypeError("linears must be two or more torch.nn.Linear layers, got "
                            f"{[type(m).__name__ for m in linears]}")
        sizes = {m.in_features for m in linears}
        if len(sizes) != 1:
            raise ValueError(f"linears must share in_features to share a basis, got {sorted(sizes)}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if any(m.weight.is_complex() for m in linears):
            raise ValueError("linears must hold real weights; a shared basis is fitted to real matrices")
        ws = [m.weight.detach().to(device="cpu", dtype=torch.float64).numpy() for m in linears]
        if any(not np.isfinite(w).all() for w in ws):
            raise ValueError("linears must hold finite weights")
        host = None
        if grams is not None:
            n = ws[0].shape[1]
            host = [np.asarray(torch.as_tensor(g).detach().to(device="cpu", dtype=torch.float64)) for g in grams]
            if len(host) != len(ws) or any(g.shape != (n, n) for g in host):
                raise ValueError(f"grams must be one ({n}, {n}) Gram per layer, got "
                                 f"{[tuple(g.shape) for g in host]}")
            if any(not np.isfinite(g).all() for g in host):
                raise ValueError("grams must be finite")
        try:
            basis, coefficients = shared_basis(ws, host, rank)
        except np.linalg.LinAlgError:
            raise ValueError("grams must be positive definite (their mean, and each with the basis): shrink them, "
                             "e.g. (1 - s) C + s tr(C)/n I with s = tnlib.metric.SHRINKAGE") from None
        return build_shared(linears, basis, coefficients)

    @property
    def num_weights(self) -> int:
        """Stored weights of this layer's own coefficients plus the whole shared basis (biases excluded)."""
        return self.coefficients.numel() + self.basis.numel()

    def dense_weight(self) -> torch.Tensor:
        """``W = C B`` (formed on request only)."""
        return self.coefficients @ self.basis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features; this SharedBasisLinear expects {self.in_features}")
        return F.linear(F.linear(x, self.basis), self.coefficients, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.bias is not None}")


def shared_params(in_features: int, outs: Sequence[int], rank: int) -> int:
    """Weights of a group of layers sharing a basis of ``rank`` rows: ``rank (in + sum out)``."""
    return rank * (in_features + sum(outs))


def shared_basis(ws: Sequence[np.ndarray], grams: Sequence[np.ndarray] | None,
                 rank: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(B, [C_i])`` with ``W_i ~ C_i B`` for real ``ws[i] (out_i, in)``: ``B (r, in)``, ``C_i (out_i, r)``, ``r``
    the smaller of ``rank`` and the stack's sides.

    Without ``grams``: the truncated SVD of the stack ``[W_1; ...; W_n]``. With ``grams`` (positive definite,
    ``in x in``): ``B = V_r^T L^{-1}`` from the SVD of ``[W_1; ...] L``, ``L L^T`` the pooled ``mean C_i`` (the
    basis that serves the group best in its average metric), then ``C_i = W_i C_i B^T (B C_i B^T)^{-1}``, each
    layer's least squares in its own metric given that basis.
    """
    stacked = np.concatenate([np.asarray(w, dtype=np.float64) for w in ws], axis=0)
    r = min(rank, *stacked.shape)
    if grams is None:
        _, _, vt = np.linalg.svd(stacked, full_matrices=False)
        basis = vt[:r]
        return basis, [w @ basis.T for w in ws]
    pooled = sum(grams[1:], grams[0]) / len(grams)
    factor = np.linalg.cholesky((pooled + pooled.T) / 2)
    _, _, vt = np.linalg.svd(stacked @ factor, full_matrices=False)
    basis = scipy.linalg.solve_triangular(factor, vt[:r].T, lower=True, trans="T").T  # V_r^T L^{-1}
    coefficients = []
    for w, g in zip(ws, grams):
        projected = basis @ g  # B C_i
        coefficients.append(scipy.linalg.solve(projected @ basis.T, projected @ w.T, assume_a="pos").T)
    return basis, coefficients


def build_shared(linears: Sequence[Any], basis: np.ndarray, coefficients: Sequence[np.ndarray]
                 ) -> list[SharedBasisLinear]:
    """The :class:`SharedBasisLinear` of each of ``linears``, holding one :class:`torch.nn.Parameter` ``basis``
    (in the first layer's dtype and device) and its ``coefficients[i]``."""
    shared = shared_parameter(basis, linears[0].weight)
    return [build_member(linear, shared, c) for linear, c in zip(linears, coefficients)]


def shared_parameter(basis: np.ndarray, like: torch.Tensor) -> nn.Parameter:
    """``basis`` as a parameter in the dtype and on the device of ``like``."""
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(basis)).to(device=like.device, dtype=like.dtype))


def build_member(linear: Any, shared: nn.Parameter, coefficients: np.ndarray) -> SharedBasisLinear:
    """The :class:`SharedBasisLinear` of ``linear`` on the basis parameter ``shared``."""
    w = linear.weight
    layer = SharedBasisLinear.__new__(SharedBasisLinear)
    nn.Module.__init__(layer)
    layer.in_features, layer.out_features, layer.rank = linear.in_features, linear.out_features, int(shared.shape[0])
    layer.basis = shared
    layer.coefficients = nn.Parameter(
        torch.from_numpy(np.ascontiguousarray(coefficients)).to(device=w.device, dtype=w.dtype))
    layer.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
    layer.train(linear.training)
    return layer


register(LayerKind(
    SharedBasisLinear,
    (),
    ("in_features", "out_features", "rank"),
    ("in_features", "out_features"),
    lambda layer: torch.zeros(1, layer.in_features, dtype=layer.basis.dtype),
    mpo_weights=lambda layer: [],
    also_replaces=("Linear",),
))
