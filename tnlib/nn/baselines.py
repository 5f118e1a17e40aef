"""The baselines MPO compression is compared against, at matched parameter counts.

* Magnitude pruning (one-shot, and gradual with the polynomial schedule of
  Zhu and Gupta 2017) through ``torch.nn.utils.prune``.
* Low-rank factorisation ``W ~ U V`` by truncated SVD of ``W_ih``, ``W_hh``
  or both (Winata et al. 2019): :class:`LowRankLSTM`.
* MPS tensor trains (Murua et al. 2020): the weight as one chain with all input
  legs on the first sites and all output legs on the last, so a single middle
  bond separates input from output; inference contracts the input sites
  first: :class:`TTLSTM`.

Parameter counts are measured from modules (:func:`count_parameters`), and
:func:`match_compression` finds each method's setting for a target ratio by
building the modules.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune

from tnlib.apply import apply_input_first

from ._cores import input_first_tt, low_rank_factors
from ._recurrent import StackedLSTM, check_lstm, suffix

__all__ = [
    "prune_magnitude",
    "GradualPruner",
    "LowRankLSTM",
    "TTLSTM",
    "count_parameters",
    "match_compression",
]


def _weight_names(module: nn.Module) -> list[str]:
    if isinstance(module, nn.Linear):
        return ["weight"]
    if isinstance(module, nn.LSTM):
        return [name for name, _ in module.named_parameters() if name.startswith("weight_")] or [
            name[: -len("_orig")] for name, _ in module.named_parameters() if name.startswith("weight_")
        ]
    raise TypeError(f"module must be a torch.nn.Linear or torch.nn.LSTM, got {type(module).__name__}")


def _pruned_names(module: nn.Module) -> list[str]:
    names = []
    for name, _ in module.named_parameters():
        if name.startswith("weight"):
            names.append(name[: -len("_orig")] if name.endswith("_orig") else name)
    return names


def prune_magnitude(module: nn.Module, sparsity: float) -> nn.Module:
    """Zero the ``sparsity`` fraction of smallest-magnitude entries of every weight matrix.

    Uses ``torch.nn.utils.prune.l1_unstructured`` per weight (biases are
    kept), so masks are registered in the usual way; call
    ``torch.nn.utils.prune.remove`` to make them permanent.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity!r} is invalid; expected a float in [0, 1)")
    for name in _pruned_names(module) if _is_pruned(module) else _weight_names(module):
        _prune_to(module, name, sparsity)
    return module


def _is_pruned(module: nn.Module) -> bool:
    return any(name.endswith("_orig") for name, _ in module.named_parameters())


def _prune_to(module: nn.Module, name: str, sparsity: float) -> None:
    weight = getattr(module, name)
    target = int(round(sparsity * weight.numel()))
    already = int((weight == 0).sum()) if hasattr(module, name + "_mask") else 0
    extra = max(0, target - already)
    prune.l1_unstructured(module, name, amount=extra)


class GradualPruner:
    """Gradual magnitude pruning with the polynomial schedule of Zhu and Gupta (2017).

    ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))**3`` for
    ``t_0 <= t <= t_1``, applied every ``frequency`` steps; call :meth:`step`
    once per training step (after ``optimizer.step()``).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = torch.nn.Linear(32, 32)
    >>> pruner = tnlib.nn.GradualPruner(layer, final_sparsity=0.9, end_step=10)
    >>> for _ in range(11):
    ...     _ = pruner.step()
    >>> round(float((layer.weight == 0).float().mean()), 2)
    0.9
    """

    def __init__(self, module: nn.Module, final_sparsity: float, *, end_step: int, begin_step: int = 0,
                 initial_sparsity: float = 0.0, frequency: int = 1) -> None:
        if not 0.0 <= initial_sparsity <= final_sparsity < 1.0:
            raise ValueError(f"expected 0 <= initial_sparsity <= final_sparsity < 1, got "
                             f"{initial_sparsity!r} and {final_sparsity!r}")
        if end_step <= begin_step or frequency < 1:
            raise ValueError(f"expected begin_step < end_step and frequency >= 1, got {begin_step}, {end_step}, {frequency}")
        _weight_names(module)
        self.module, self.final, self.initial = module, final_sparsity, initial_sparsity
        self.begin, self.end, self.frequency = begin_step, end_step, frequency
        self.t = 0

    def sparsity(self, t: int) -> float:
        if t < self.begin:
            return 0.0
        frac = min(1.0, (t - self.begin) / (self.end - self.begin))
        return self.final + (self.initial - self.final) * (1.0 - frac) ** 3

    def step(self) -> float:
        """Advance one step; prune if the schedule says so. Returns the sparsity in force."""
        s = self.sparsity(self.t)
        if self.t >= self.begin and ((self.t - self.begin) % self.frequency == 0 or self.t >= self.end):
            prune_magnitude(self.module, s)
        self.t += 1
        return s


class LowRankLSTM(StackedLSTM):
    """``nn.LSTM`` with ``W ~ U V`` (rank ``rank``) for ``W_ih``, ``W_hh`` or both.

    ``which="ih"`` factorises only the input-to-hidden matrices, ``"hh"`` only
    the hidden-to-hidden ones (the other stays dense), ``"both"`` both.
    """

    def __init__(self, input_size: int, hidden_size: int, rank: int, *, which: Literal["ih", "hh", "both"] = "both",
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self._check(rank, which)
        ref = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                      device=device, dtype=dtype)
        self._factorise(ref, rank, which)

    def _check(self, rank: int, which: str) -> None:
        if which not in ("ih", "hh", "both"):
            raise ValueError(f"which={which!r} is invalid; expected 'ih', 'hh' or 'both'")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r} is invalid; expected a positive int")
        self.rank, self.which = rank, which

    def _factorise(self, lstm: nn.LSTM, rank: int, which: str) -> None:
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    w = getattr(lstm, f"weight_{kind}" + suffix(layer, d)).detach()
                    name = f"{kind}" + suffix(layer, d)
                    if which in (kind, "both"):
                        if rank > min(w.shape):
                            raise ValueError(f"rank={rank} exceeds min{tuple(w.shape)} of weight_{name}")
                        u, v = low_rank_factors(w, rank)
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

    def operators(self, layer: int, direction: int):
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
        self._setup(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
                    float(lstm.dropout), lstm.bidirectional)
        self._check(rank, which)
        self._factorise(lstm, rank, which)
        return self


class TTLSTM(StackedLSTM):
    """``nn.LSTM`` whose weights are MPS tensor trains with the input legs first (Murua et al. 2020).

    ``W[i, j]`` (``4H x N``) is reshaped to the tensor ``T[j_1..j_n, i_1..i_m]``
    and stored as an MPS of bond ``bond_dim``: the bond between the last input
    site and the first output site separates input from output, so this is a
    tensor-train-structured low-rank form. Inference contracts the input sites
    with ``x`` first, then expands through the output sites.
    """

    def __init__(self, input_size: int, hidden_size: int, bond_dim: int, *, num_cores: int = 2,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        ref = nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                      device=device, dtype=dtype)
        self._build(ref, bond_dim, num_cores)

    def _build(self, lstm: nn.LSTM, bond_dim: int, num_cores: int) -> None:
        if isinstance(bond_dim, bool) or not isinstance(bond_dim, int) or bond_dim < 1:
            raise ValueError(f"bond_dim={bond_dim!r} is invalid; expected a positive int")
        self.bond_dim, self.num_cores = bond_dim, num_cores
        self.site_dims: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for kind in ("ih", "hh"):
                    name = f"{kind}" + suffix(layer, d)
                    in_dims, out_dims, cores = input_first_tt(getattr(lstm, "weight_" + name), bond_dim, num_cores)
                    self.site_dims[name] = (in_dims, out_dims)
                    setattr(self, "tt_" + name, cores)
        self.copy_biases(lstm)

    def _operator(self, name: str):
        cores = list(getattr(self, "tt_" + name))
        k = len(self.site_dims[name][0])
        return lambda x: apply_input_first(cores, k, x)

    def operators(self, layer: int, direction: int):
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
        self._setup(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
                    float(lstm.dropout), lstm.bidirectional)
        self._build(lstm, bond_dim, num_cores)
        return self


def count_parameters(module: nn.Module, *, weights_only: bool = True) -> int:
    """Non-zero entries of a module's parameters (after pruning masks), measured.

    ``weights_only`` leaves biases out (they are never compressed and every
    method keeps them).
    """
    total = 0
    for name, p in module.named_parameters():
        base = name.rsplit(".", 1)[-1]
        if weights_only and base.startswith("bias"):
            continue
        if base.endswith("_orig"):
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            p = getattr(owner, base[: -len("_orig")])
        total += int(torch.count_nonzero(p.detach()))
    return total


def match_compression(lstm: nn.LSTM, ratio: float, *, num_cores: int = 3) -> dict[str, dict[str, Any]]:
    """Settings of every method that compress ``lstm``'s weights at least ``ratio`` times.

    For each method the largest setting whose *measured* weight count
    (:func:`count_parameters` of the built module) is at most
    ``dense / ratio`` (``None`` when even the smallest setting is larger): ``{"mpo": {"bond_dim", "params"}, "low_rank": {"rank", ...},
    "mps_tt": {"bond_dim", ...}, "pruning": {"sparsity", ...}}``.
    """
    check_lstm(lstm)
    if not ratio >= 1.0:
        raise ValueError(f"ratio={ratio!r} is invalid; expected a number >= 1")
    from .lstm import MPOLSTM

    dense = count_parameters(lstm)
    budget = dense / ratio
    kw = dict(num_layers=lstm.num_layers, bias=lstm.bias, bidirectional=lstm.bidirectional)

    def largest(build, top: int, key: str) -> dict[str, Any] | None:
        best = None
        lo, hi = 1, top
        while lo <= hi:
            mid = (lo + hi) // 2
            try:
                params = count_parameters(build(mid))
            except ValueError:  # a bond no core can carry
                hi = mid - 1
                continue
            if params <= budget:
                best = {key: mid, "params": params}
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    torch_state = torch.random.get_rng_state()
    try:
        settings = {
            "mpo": largest(lambda b: MPOLSTM(lstm.input_size, lstm.hidden_size, bond_dim=b,
                                             num_cores=num_cores, **kw), 4 * lstm.hidden_size, "bond_dim"),
            "low_rank": largest(lambda r: LowRankLSTM(lstm.input_size, lstm.hidden_size, r, **kw),
                                min(lstm.input_size, lstm.hidden_size), "rank"),
            "mps_tt": largest(lambda b: TTLSTM(lstm.input_size, lstm.hidden_size, b, **kw),
                              4 * lstm.hidden_size, "bond_dim"),
        }
    finally:
        torch.random.set_rng_state(torch_state)
    sparsity = 1.0 - 1.0 / ratio
    import copy

    settings["pruning"] = {"sparsity": sparsity, "params": count_parameters(prune_magnitude(copy.deepcopy(lstm), sparsity))}
    return settings
