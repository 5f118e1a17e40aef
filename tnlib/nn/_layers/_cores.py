"""Shared helpers: MPO cores as parameters, their initialisation, bond masks; low-rank and TT factors."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import optimization_hint

import tnlib
from tnlib._backend import check_finite
from tnlib._checks import check_int


def positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a positive int (NumPy ints too, never a bool): ``TypeError`` for another
    type, ``ValueError`` below 1, both naming ``name`` (:func:`tnlib._checks.check_int`)."""
    return check_int(name, value, 1)


def init_bias(module: nn.Module, name: str, size: int, hidden_size: int, enabled: bool, device=None,
              dtype=None) -> None:
    """torch's recurrent bias ``U(-1/sqrt(H), 1/sqrt(H))`` of ``size`` entries as ``module.<name>`` (or ``None``)."""
    if not enabled:
        module.register_parameter(name, None)
        return
    bound = 1.0 / math.sqrt(hidden_size)
    setattr(module, name, nn.Parameter(torch.empty(size, device=device, dtype=dtype).uniform_(-bound, bound)))


def copy_bias(module: nn.Module, name: str, source: torch.Tensor | None) -> None:
    """A copy of a trained bias as ``module.<name>`` (``None`` stays ``None``)."""
    if source is None:
        module.register_parameter(name, None)
    else:
        setattr(module, name, nn.Parameter(source.detach().clone()))


def check_linear(linear: object) -> nn.Linear:
    """``linear`` if it is an ``nn.Linear`` with a usable weight (:func:`check_weight`), else an error naming it."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    check_weight(linear.weight, "linear.weight")
    return linear


def check_weight(weight: torch.Tensor, what: str) -> None:
    """Refuse a weight with no data (``meta``), no entries, or NaN / inf entries, naming it as ``what``."""
    if weight.device.type == "meta":
        raise ValueError(f"{what} is on torch's 'meta' device and has no data; load the weights first")
    if weight.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(weight.shape)}); there is nothing to compress")
    check_finite(weight.detach(), what)


def central_index(cores: Any) -> int:
    """Index of the central tensor: the core with the most parameters (middle on ties).

    ``cores`` is a sequence of tensors or a module holding them as ``.cores``
    (an :class:`~tnlib.nn.MPOLinear`).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> cores = [torch.zeros(1, 4, 4, 8), torch.zeros(8, 4, 4, 8), torch.zeros(8, 4, 4, 1)]
    >>> tnlib.nn.central_index(cores)
    1
    """
    if isinstance(cores, nn.Module) and hasattr(cores, "cores"):
        cores = list(cores.cores)  # type: ignore[arg-type]
    sizes = [int(c.numel()) for c in cores]
    if not sizes:
        raise ValueError("cores is empty: a central tensor needs at least one core")
    top = max(sizes)
    candidates = [k for k, s in enumerate(sizes) if s == top]
    middle = (len(sizes) - 1) / 2
    return min(candidates, key=lambda k: abs(k - middle))


def uniform_bonds(out_dims: Sequence[int], in_dims: Sequence[int], bond_dim: int) -> list[int]:
    """``bond_dim`` on every bond, capped at the largest rank each bond can carry.

    Raises ``ValueError`` when no bond can reach ``bond_dim`` at all.
    """
    site = [o * i for o, i in zip(out_dims, in_dims)]
    n = len(site)
    limits = [min(math.prod(site[: k + 1]), math.prod(site[k + 1 :])) for k in range(n - 1)]
    if limits and bond_dim > max(limits):
        raise ValueError(
            f"bond_dim={bond_dim} cannot be reached: with out_dims={tuple(out_dims)} and "
            f"in_dims={tuple(in_dims)} the largest bond is {max(limits)}"
        )
    return [min(bond_dim, lim) for lim in limits]


def init_cores(out_dims, in_dims, bonds, fan_in, *, device=None, dtype=None) -> list[torch.Tensor]:
    """Gaussian cores whose product has entries of variance ``1 / (3 fan_in)``.

    That is the variance of ``nn.Linear``'s default weights
    (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), so an MPO layer drops into a
    model with the same output scale. With core ``k`` drawn from
    ``N(0, s_k^2)``, an entry of the matrix is a sum of ``prod(bonds)``
    products, so its variance is ``prod(s_k^2) * prod(bonds)``; every core gets
    ``s_k^2 = (1 / (3 fan_in) / prod(bonds)) ** (1/n)``.
    """
    n = len(out_dims)
    target = 1.0 / (3.0 * fan_in)
    var = (target / math.prod(bonds)) ** (1.0 / n) if bonds else target
    full = [1, *bonds, 1]
    return [
        torch.randn(full[k], out_dims[k], in_dims[k], full[k + 1], device=device, dtype=dtype) * math.sqrt(var)
        for k in range(n)
    ]


def cores_from_matrix(weight: torch.Tensor, out_dims, in_dims, truncation) -> tuple[list[torch.Tensor], tnlib.MPO]:
    """Decompose a weight (in float64 for accuracy) and return cores in its dtype."""
    with torch.no_grad():
        mpo = tnlib.MPO.from_matrix(wide(weight), out_dims, in_dims, truncation=truncation)
    return [c.to(weight.dtype) for c in mpo.cores], mpo


def mpo_cores(mpo: Any, shape: tuple[int, int], like: torch.Tensor, name: str) -> list[torch.Tensor]:
    """The cores of a :class:`tnlib.MPO` of a ``shape`` weight as tensors of ``like``'s dtype and device."""
    if not isinstance(mpo, tnlib.MPO):
        raise TypeError(f"{name} must be a tnlib.MPO, got {type(mpo).__name__}")
    if tuple(mpo.shape) != tuple(shape) or math.prod(mpo.out_dims) != shape[0] or math.prod(mpo.in_dims) != shape[1]:
        raise ValueError(
            f"{name} is an MPO of shape {tuple(mpo.shape)} (dims {mpo.out_dims} x {mpo.in_dims}); "
            f"expected an unpadded MPO of the weight's shape {tuple(shape)}"
        )
    host = [np.ascontiguousarray(c) if isinstance(c, np.ndarray) else c for c in mpo.cores]
    return [torch.as_tensor(c).to(device=like.device, dtype=like.dtype).clone() for c in host]


def masked(cores: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    """Cores with squeezed bond slices zeroed (MPOP dimension squeezing)."""
    if not masks:
        return list(cores)
    out = []
    n = len(cores)
    for k, c in enumerate(cores):
        if k > 0:
            c = c * masks[k - 1].reshape(-1, 1, 1, 1)
        if k < n - 1:
            c = c * masks[k].reshape(1, 1, 1, -1)
        out.append(c)
    return out


def members(params: nn.ParameterList) -> list[torch.Tensor]:
    """The parameters of a ``ParameterList`` in order, read from its dictionary (``list(params)`` goes
    through ``__getitem__`` per entry, tens of microseconds on a hot path)."""
    return [p for p in params._parameters.values() if p is not None]


def parameter_list(cores: Sequence[torch.Tensor]) -> nn.ParameterList:
    """Cores as parameters, each a contiguous copy: a converted layer computes bit for bit what the same
    layer loaded from a file computes (products of strided views round differently)."""
    return nn.ParameterList([nn.Parameter(c.detach().clone(memory_format=torch.contiguous_format)) for c in cores])


def low_rank_factors(weight: torch.Tensor, rank: int, *, keep_norm: bool = False) -> tuple[nn.Parameter, nn.Parameter]:
    """``(U, V)`` with ``U V`` the best rank-``rank`` approximation of ``weight`` (SVD in float64, balanced).

    ``keep_norm=True`` (a new layer from a random reference) rescales the product to the Frobenius norm of
    ``weight``, so its entries keep the reference's variance instead of shrinking with the rank.
    """
    w = wide(weight)
    r = tnlib.truncated_svd(w, tnlib.Truncation(max_bond=rank, min_bond=rank))
    s = r.S * (torch.linalg.vector_norm(w) / torch.linalg.vector_norm(r.S)) if keep_norm else r.S
    root = torch.sqrt(s)
    return nn.Parameter((r.U * root).to(weight.dtype)), nn.Parameter((root[:, None] * r.Vh).to(weight.dtype))


def input_first_tt(weight: torch.Tensor, bond_dim: int, num_cores: int, *, keep_norm: bool = False):
    """``(in_dims, out_dims, cores)``: ``weight`` (out x in) as an MPS with the input legs first, bond capped.

    ``keep_norm=True`` (a new layer from a random reference) rescales the last core, the centre of the
    left-canonical chain, so that the train has the Frobenius norm of ``weight``: its entries keep the
    reference's variance instead of shrinking with the bond.
    """
    in_dims = tnlib.factorize(weight.shape[1], num_cores)
    out_dims = tnlib.factorize(weight.shape[0], num_cores)
    tensor = wide(weight).T.reshape(*in_dims, *out_dims)
    mps = tnlib.MPS.from_dense(tensor, truncation=tnlib.Truncation(max_bond=bond_dim))
    if keep_norm:
        cores = list(mps.cores)
        cores[-1] = cores[-1] * (torch.linalg.vector_norm(tensor) / torch.linalg.vector_norm(cores[-1]))
        mps = tnlib.MPS(cores)
    return in_dims, out_dims, nn.ParameterList([nn.Parameter(c.to(weight.dtype).clone()) for c in mps.cores])



def size_hint(size: Any) -> int:
    """A size as an int for a cost choice (which form applies a weight fastest at this batch): a size left
    symbolic by ``torch.export`` gives its example's value without fixing the graph to it (``int()`` would)."""
    return int(optimization_hint(size)) if isinstance(size, torch.SymInt) else int(size)


def wide(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` detached in the precision it is decomposed in: float64, or complex128 for a complex weight (its
    imaginary part kept)."""
    return weight.detach().to(torch.complex128 if weight.is_complex() else torch.float64)
