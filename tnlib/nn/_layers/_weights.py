"""Named MPO weights: what every recurrent MPO layer, sequence or cell, holds and does with its weights.

A holder keeps one ``nn.ParameterList`` of cores ``(left, out, in, right)``
per weight matrix, under the names :meth:`MPOWeights.mpo_names` lists
(``cores_ih``, ``cores_hh_l0_reverse``, ...), and per name the bond masks
that MPOP squeezing writes (:class:`tnlib.nn.DimensionSqueezer`). Biases are
those of torch's layers, drawn or copied by ``_cores.init_bias`` and
``_cores.copy_bias``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

import tnlib
from tnlib._apply import WeightPlan, apply_cores
from tnlib.nn._layers._cores import (
    cores_from_matrix,
    init_cores,
    masked,
    members,
    mpo_cores,
    parameter_list,
    uniform_bonds,
)
from tnlib.nn._layers._inference import inference_form, weight_operator

__all__ = ["MPOWeights", "named_cores", "weight_lists", "searched"]


def searched(truncation: tnlib.Truncation | None, *layout: Any) -> bool:
    """Whether a conversion searches each weight's layout: a ``max_params`` budget and no layout given (every one
    of ``layout``, the caller's ``num_cores`` / ``hidden_dims``, ``None``), as :meth:`tnlib.MPO.from_matrix` and
    :func:`tnlib.nn.compress` do."""
    return truncation is not None and truncation.max_params is not None and all(x is None for x in layout)


class MPOWeights:
    """Mixin of the recurrent MPO layers (:class:`~tnlib.nn.MPOLSTM`, :class:`~tnlib.nn.MPOGRU` and the cells).

    The host is an ``nn.Module`` that sets :attr:`gate_dims` (the row factors
    of every weight, the gate factor in the first) and lists its weights in
    :meth:`mpo_names`.
    """

    bond_masks: dict[str, list[torch.Tensor]]
    gate_dims: tuple[int, ...]

    def mpo_names(self) -> list[str]:
        """The names of the weights held as MPOs."""
        raise NotImplementedError

    def _init_mpo(self, name: str, fan_in: int, bond_dim: int, hidden_size: int, device=None, dtype=None) -> None:
        """A new weight of ``fan_in`` columns: Gaussian cores of ``bond_dim`` with nn.LSTM's output scale."""
        in_dims = tnlib.factorize(fan_in, len(self.gate_dims))
        bonds = uniform_bonds(self.gate_dims, in_dims, bond_dim)
        cores = init_cores(self.gate_dims, in_dims, bonds, hidden_size, device=device, dtype=dtype)
        setattr(self, name, parameter_list(cores))

    def _check_mpos(self, mpos: Mapping[str, Any] | None) -> dict[str, Any]:
        mpos = dict(mpos or {})
        unknown = set(mpos) - set(self.mpo_names())
        if unknown:
            raise ValueError(f"mpos names {sorted(unknown)}, which are not weights of this layer: {self.mpo_names()}")
        return mpos

    def _convert_mpo(self, name: str, w: torch.Tensor, truncation: tnlib.Truncation | None,
                     mpos: Mapping[str, Any], search: bool = False) -> None:
        """A trained weight ``w``: the given MPO where ``mpos`` names it, else decomposed in the layout searched at
        ``truncation``'s budget (``search``, see :func:`searched`) or in the gate layout."""
        if name in mpos:
            cores = mpo_cores(mpos[name], (int(w.shape[0]), int(w.shape[1])), w, name)
        elif search:
            cores, _ = cores_from_matrix(w, None, None, truncation)
        else:
            in_dims = tnlib.factorize(int(w.shape[1]), len(self.gate_dims))
            cores, _ = cores_from_matrix(w, self.gate_dims, in_dims, truncation)
        setattr(self, name, parameter_list(cores))

    def effective_cores(self, name: str) -> list[torch.Tensor]:
        """The cores of weight ``name`` with its bond masks applied (differentiable)."""
        return masked(members(getattr(self, name)), self.bond_masks.get(name))

    def mpo(self, name: str) -> tnlib.MPO:
        """One weight as a core :class:`tnlib.MPO` (detached), e.g. ``mpo("cores_hh_l0")``."""
        if name not in self.mpo_names():
            raise ValueError(f"{name!r} is not one of {self.mpo_names()}")
        return tnlib.MPO([c.detach() for c in self.effective_cores(name)])

    def _operator(self, name: str, rows: int | None = None):
        """``x -> x @ W^T`` for one weight: core-wise with gradients, a cached merged form without (no
        per-core loop in the recurrence), a traceable form under graph capture."""
        return weight_operator(self, name, self._form_params(name), lambda: self.effective_cores(name), rows)

    def _plan(self, name: str) -> WeightPlan:
        """The cached inference form of one weight (for callers that checked they are not capturing a graph
        and need no gradients)."""
        return inference_form(self, name, self._form_params(name), lambda: self.effective_cores(name))

    def _form_params(self, name: str) -> list[torch.Tensor]:
        """What the cached form of weight ``name`` is built from: its cores and bond masks (read from the
        module's dictionaries, not through ``nn.Module.__getattr__``: this runs on every inference call)."""
        return [*members(self._modules[name]), *self.bond_masks.get(name, ())]  # type: ignore[attr-defined]

    def _dense(self, name: str, fan_in: int) -> torch.Tensor:
        """The dense weight ``(rows, fan_in)`` of ``name``, formed on request."""
        cores: Sequence[torch.Tensor] = self.effective_cores(name)
        eye = torch.eye(fan_in, dtype=cores[0].dtype, device=cores[0].device)
        return apply_cores(list(cores), eye).T


def named_cores(mpos: Mapping[str, Any]) -> dict[str, Any]:
    """The MPOs of a dense recurrent module's weights (``weight_ih_l0``, ...) by the names its MPO layer holds
    them under (``cores_ih_l0``, ...)."""
    return {"cores_" + n.removeprefix("weight_"): m for n, m in mpos.items()}


def weight_lists(layer: Any) -> list[tuple[str, Any]]:
    """Every MPO weight of a recurrent MPO layer as ``(name, ParameterList of cores)``."""
    return [(name, getattr(layer, name)) for name in layer.mpo_names()]
