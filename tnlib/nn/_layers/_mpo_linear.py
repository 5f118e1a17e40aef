"""``MPOLinear``: a fully connected layer whose weight is an MPO."""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
from torch import nn

import tnlib
from tnlib._apply import apply_cores
from tnlib.nn._convert._calibration import float64_metric, is_conv1d, record_input
from tnlib.nn._layers._cores import (
    central_index,
    check_linear,
    init_cores,
    masked,
    members,
    mpo_cores,
    parameter_list,
    positive_int,
    size_hint,
    uniform_bonds,
    wide,
)
from tnlib.nn._layers._inference import check_input, weight_operator
from tnlib.nn._layers._kinds import LayerKind, Source, register

__all__ = ["MPOLinear"]


class MPOLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` (``out_features x in_features``) held as MPO cores.

    Cores are ``nn.Parameter`` s of shape ``(left, out_k, in_k, right)``; the
    forward pass contracts the input with them (``tnlib._apply.apply_cores``:
    cached optimal path or two merged halves, whichever costs fewer FLOPs) and
    never forms ``W`` while training. Under ``torch.no_grad()`` it uses a
    cached exact form instead (merged halves, or ``W`` itself when that is no
    larger), rebuilt whenever a core changes (``tnlib/nn/_layers/_inference.py``).
    Under ``torch.compile(fullgraph=True)`` and ``torch.onnx.export`` the
    same form is built inside the graph from the cores
    (``tnlib/nn/_layers/_traced.py``), so an exported file stores the cores.

    Parameters
    ----------
    in_features, out_features
        As ``nn.Linear``.
    in_dims, out_dims
        Factors of ``in_features`` and ``out_features`` (default:
        :func:`tnlib.choose_dims`).
    bond_dim
        Dimension of every bond (capped at what each bond can carry).
    bias
        Add a learnable bias.
    num_cores
        Number of cores when dims are not given.

    Notes
    -----
    Initialisation: Gaussian cores scaled so that the entries of ``W`` have the
    variance of ``nn.Linear``'s default, ``1 / (3 in_features)``; the bias is
    ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` as in ``nn.Linear``.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = tnlib.nn.MPOLinear(256, 128, bond_dim=8)
    >>> layer(torch.randn(4, 256)).shape
    torch.Size([4, 128])
    >>> layer.out_dims, layer.in_dims, layer.bond_dims
    ((4, 4, 8), (4, 8, 8), (8, 8))
    """

    bias: nn.Parameter | None


    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        in_dims: Sequence[int] | None = None,
        out_dims: Sequence[int] | None = None,
        bond_dim: int,
        bias: bool = True,
        num_cores: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("bond_dim", bond_dim)):
            positive_int(name, value)
        self.in_features, self.out_features = in_features, out_features
        self.out_dims, self.in_dims = tnlib.choose_dims(
            (out_features, in_features), out_dims, in_dims, num_cores=num_cores
        )
        bonds = uniform_bonds(self.out_dims, self.in_dims, bond_dim)
        self.cores = parameter_list(
            init_cores(self.out_dims, self.in_dims, bonds, in_features, device=device, dtype=dtype)
        )
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self.bond_masks: list[torch.Tensor] | None = None

    @property
    def bond_dims(self) -> tuple[int, ...]:
        return tuple(int(c.shape[3]) for c in list(self.cores)[:-1])

    def effective_cores(self) -> list[torch.Tensor]:
        """The cores as used in the forward pass (squeezed bond slices zeroed)."""
        return masked(members(self.cores), self.bond_masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features; this MPOLinear expects {self.in_features}")
        params = members(self.cores)
        check_input(x, params[0], "input", "MPOLinear")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        if self.bond_masks:
            params += self.bond_masks
        y = weight_operator(self, "cores", params, self.effective_cores, size_hint(flat.shape[0]))(flat)
        y = y.reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    @property
    def mpo(self) -> tnlib.MPO:
        """The weight as a core :class:`tnlib.MPO` (detached tensors)."""
        return tnlib.MPO([c.detach() for c in self.effective_cores()])

    def dense_weight(self) -> torch.Tensor:
        """The dense weight ``(out_features, in_features)``, formed on request (differentiable)."""
        eye = torch.eye(self.in_features, dtype=self.cores[0].dtype, device=self.cores[0].device)
        return apply_cores(self.effective_cores(), eye).T

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        truncation: tnlib.Truncation | None = None,
        *,
        in_dims: Sequence[int] | Literal["auto"] | None = None,
        out_dims: Sequence[int] | Literal["auto"] | None = None,
        num_cores: int | None = None,
        metric: tnlib.Metric | None = None,
        input_gram: torch.Tensor | None = None,
    ) -> MPOLinear:
        """Decompose a trained ``nn.Linear`` (exact when ``truncation`` is ``None``).

        The decomposition runs in float64 and the cores are cast to the
        layer's dtype. Dims, ``num_cores`` and ``metric`` (a
        :class:`tnlib.Metric`: the Gram ``X^T X / n`` of the layer's inputs,
        for output-space fitting; ``input_gram=C`` is the older spelling of
        ``metric=tnlib.Metric(C)``) are those of
        :meth:`tnlib.MPO.from_matrix`: with a ``max_params`` budget and no
        dims, the layout is searched.
        """
        check_linear(linear)
        weight = linear.weight.detach()
        metric = float64_metric(metric, input_gram)
        with torch.no_grad():
            mpo = tnlib.MPO.from_matrix(wide(weight), out_dims, in_dims, num_cores=num_cores,
                                        truncation=truncation, metric=metric)
        return cls.from_mpo(mpo, linear.bias, dtype=weight.dtype, device=weight.device)

    @classmethod
    def from_mpo(
        cls,
        mpo: tnlib.MPO,
        bias: torch.Tensor | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> MPOLinear:
        """A layer whose weight is ``mpo`` (cores copied, any library), plus an optional ``bias``.

        Examples
        --------
        >>> import numpy as np, torch, tnlib, tnlib.nn
        >>> W = np.random.default_rng(0).standard_normal((32, 64))
        >>> layer = tnlib.nn.MPOLinear.from_mpo(tnlib.layouts(W, max_params=600).mpo, dtype=torch.float32)
        >>> layer(torch.randn(2, 64)).shape
        torch.Size([2, 32])
        """
        if not isinstance(mpo, tnlib.MPO):
            raise TypeError(f"mpo must be a tnlib.MPO, got {type(mpo).__name__}")
        ref = torch.empty(0, dtype=dtype or torch.get_default_dtype(), device=device)
        if bias is not None:
            ref = torch.empty(0, dtype=dtype or bias.dtype, device=device or bias.device)
        m, n = mpo.shape
        cores = mpo_cores(mpo, (m, n), ref, "mpo")
        if bias is not None and tuple(bias.shape) != (m,):
            raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({m},) for an MPO of shape {(m, n)}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = n, m
        layer.out_dims, layer.in_dims = tuple(mpo.out_dims), tuple(mpo.in_dims)
        layer.cores = parameter_list(cores)
        if bias is None:
            layer.register_parameter("bias", None)
        else:
            layer.bias = nn.Parameter(bias.detach().to(ref.dtype).to(ref.device).clone())
        layer.bond_masks = None
        return layer

    def to_linear(self) -> nn.Linear:
        """A dense ``nn.Linear`` with the same function."""
        c0 = self.cores[0]
        lin = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device=c0.device, dtype=c0.dtype
        )
        with torch.no_grad():
            lin.weight.copy_(self.dense_weight())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def set_trainable(self, which: Literal["all", "auxiliary", "central"] = "all") -> None:
        """Train all cores, only the auxiliary ones, or only the central one (MPOP)."""

        if which not in ("all", "auxiliary", "central"):
            raise ValueError(f"which={which!r} is invalid; expected 'all', 'auxiliary' or 'central'")
        c = central_index(self)
        for k, p in enumerate(self.cores):
            p.requires_grad_(which == "all" or (which == "central") == (k == c))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, out_dims={self.out_dims}, "
            f"in_dims={self.in_dims}, bond_dims={self.bond_dims}, bias={self.bias is not None}"
        )


def _from_dense(module: Any, mpos: dict[str, tnlib.MPO]) -> MPOLinear:
    ref = next(module.parameters())
    return MPOLinear.from_mpo(mpos["weight"], module.bias, dtype=ref.dtype, device=ref.device)


def _conv1d_sizes(module: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    w = getattr(module, "weight")  # transformers' Conv1D: y = x W + b, W stored (in, out)
    return {"in_features": int(w.shape[0]), "out_features": int(w.shape[1])}


register(LayerKind(
    MPOLinear,
    (Source("Conv1D", is_conv1d, _from_dense, "transformers' Conv1D", record=record_input,
            as_matrix=lambda w: w.T, sizes=_conv1d_sizes),
     Source("Linear", lambda m: isinstance(m, nn.Linear), _from_dense, "nn.Linear", record=record_input)),
    ("in_features", "out_features", "out_dims", "in_dims"),
    ("in_features", "out_features"),
    lambda layer: torch.zeros(1, layer.in_features, dtype=layer.cores[0].dtype),
))
