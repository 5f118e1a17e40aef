"""MPOP (Liu et al., ACL 2021): fine-tune only the auxiliary tensors, squeeze bond dimensions.

An MPO's *central tensor* is the core holding the most parameters (the middle
one for balanced dims); the others are *auxiliary*. :func:`freeze_central`
leaves only the auxiliary tensors trainable. :class:`DimensionSqueezer`
shrinks bond dimensions step by step during fine-tuning: each MPO is brought
to its canonical form, truncated by an SVD sweep to the new bond, written
back, and the bond slices beyond the cut are masked to zero from then on, so
parameter shapes (and the optimizer's state) stay as they were.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

import tnlib
from tnlib._checks import check_int
from tnlib.nn._layers._cores import central_index, masked
from tnlib.nn._layers._kinds import LayerKind, kind_of_layer, kinds

__all__ = ["central_index", "freeze_central", "DimensionSqueezer"]


def _check_cap(cap: Any, where: str) -> int:
    """A bond cap of the schedule: a positive int (``None`` is handled by the caller: no change)."""
    return check_int(where, cap, 1)


def _mpo_parameter_lists(module: nn.Module) -> Iterator[tuple[Any, LayerKind, str, nn.ParameterList]]:
    """Every MPO weight in ``module``: ``(layer, its kind, weight name, cores)`` for every registered tnlib layer."""
    for sub in module.modules():
        kind = kind_of_layer(sub)
        if kind is not None:
            for name, cores in kind.mpo_weights(sub):
                yield sub, kind, name, cores


def _none_found(module: nn.Module) -> ValueError:
    names = ", ".join(k.layer.__name__ for k in kinds())
    return ValueError(f"{type(module).__name__} holds no MPO layer ({names})")


def freeze_central(module: nn.Module) -> int:
    """Freeze the central tensor of every MPO in ``module``; returns the trainable parameter count left.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = tnlib.nn.MPOLinear(256, 256, bond_dim=16, bias=False)
    >>> total = sum(p.numel() for p in layer.parameters())
    >>> left = tnlib.nn.freeze_central(layer)
    >>> left < total
    True
    """
    found = False
    for _, _, _, cores in _mpo_parameter_lists(module):
        found = True
        c = central_index(list(cores))
        for k, p in enumerate(cores):
            p.requires_grad_(k != c)
    if not found:
        raise _none_found(module)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class DimensionSqueezer:
    """Shrink the bond dimensions of every MPO in a module on a schedule.

    Parameters
    ----------
    module
        Holds MPO layers: any of tnlib's (:class:`MPOLinear`, :class:`MPOLSTM`,
        :class:`MPOGRU`, the cells, :class:`MPOConv1d`, :class:`MPOConv2d`,
        :class:`MPOEmbedding`).
    schedule
        ``{step: max_bond}`` or a callable ``step -> max_bond or None``.
        Call :meth:`step` once per training step (after ``optimizer.step()``).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = tnlib.nn.MPOLinear(64, 64, bond_dim=8, num_cores=3, bias=False)
    >>> squeezer = tnlib.nn.DimensionSqueezer(layer, {0: 6, 10: 4})
    >>> [squeezer.step() for _ in range(12)][-1]
    4
    >>> [int(m.sum()) for m in layer.bond_masks]      # bonds in use; parameter shapes are unchanged
    [4, 4]
    """

    def __init__(self, module: nn.Module, schedule: Mapping[int, int] | Callable[[int], int | None]) -> None:
        if not list(_mpo_parameter_lists(module)):
            raise _none_found(module)
        if not callable(schedule):
            schedule = dict(schedule)
            for step, cap in schedule.items():
                _check_cap(cap, f"schedule[{step!r}]")
        self.module = module
        self.schedule = schedule if callable(schedule) else schedule.get
        self.t = 0
        self.current: int | None = None

    def step(self) -> int | None:
        """Advance one step; squeeze when the schedule names a bond. Returns the bond in force."""
        bond = self.schedule(self.t)
        if bond is not None:
            _check_cap(bond, f"schedule({self.t})")
        self.t += 1
        if bond is not None and bond != self.current:
            self.squeeze(int(bond))
        return self.current

    @torch.no_grad()
    def squeeze(self, max_bond: int) -> None:
        """Truncate every MPO to ``max_bond`` now (canonical form, SVD sweep, mask)."""
        for owner, kind, name, cores in _mpo_parameter_lists(self.module):
            masks = kind.masks(owner, name)
            current = [c.detach() for c in cores]
            mpo = tnlib.MPO(masked(current, masks))
            small = mpo.canonicalize(central_index(current)).truncate(tnlib.Truncation(max_bond=max_bond))
            new_masks = []
            for k, (param, core) in enumerate(zip(cores, small.cores)):
                padded = torch.zeros_like(param)
                padded[: core.shape[0], :, :, : core.shape[3]] = core.to(param.dtype)
                param.copy_(padded)
                if k < len(cores) - 1:
                    m = torch.zeros(param.shape[3], dtype=param.dtype, device=param.device)
                    m[: core.shape[3]] = 1
                    new_masks.append(m)
            kind.set_masks(owner, name, new_masks)
        self.current = max_bond
