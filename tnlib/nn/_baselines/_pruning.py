"""Magnitude pruning through ``torch.nn.utils.prune``: one-shot, and gradual with
the polynomial schedule of Zhu and Gupta (2017)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

__all__ = ["prune_magnitude", "GradualPruner"]


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

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = tnlib.nn.prune_magnitude(torch.nn.Linear(20, 10), sparsity=0.75)
    >>> tnlib.nn.count_parameters(layer)
    50
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

    def __init__(
        self,
        module: nn.Module,
        final_sparsity: float,
        *,
        end_step: int,
        begin_step: int = 0,
        initial_sparsity: float = 0.0,
        frequency: int = 1,
    ) -> None:
        if not 0.0 <= initial_sparsity <= final_sparsity < 1.0:
            raise ValueError(
                f"expected 0 <= initial_sparsity <= final_sparsity < 1, got {initial_sparsity!r} and {final_sparsity!r}"
            )
        if end_step <= begin_step or frequency < 1:
            raise ValueError(
                f"expected begin_step < end_step and frequency >= 1, got {begin_step}, {end_step}, {frequency}"
            )
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
