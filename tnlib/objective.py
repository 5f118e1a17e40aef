"""What a layout is chosen for: the least error, or the fewest multiply-adds within a tolerance of it."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ._checks import check_fraction, check_int

__all__ = ["Objective"]

KINDS = ("error", "latency")


@dataclasses.dataclass(frozen=True)
class Objective:
    """How :meth:`tnlib.MPO.from_matrix` (and :func:`tnlib.nn.compress`) choose among searched layouts.

    Parameters
    ----------
    kind : {"error", "latency"}
        ``"error"`` (default): the layout of least error (on held-out rows
        when the metric has them). ``"latency"``: among the layouts whose
        error is within ``tolerance`` of the least, the one of fewest
        multiply-adds per call of ``batch`` rows in its cheapest exact form
        (two merged halves or the dense matrix).
    tolerance : float in [0, 1)
        The relative error margin a faster layout may lose (default 2 %).
    batch : int or None
        Rows per call the cost is counted at, the building of the form
        included; ``None`` (default): per row, the form built once.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.kron(np.random.default_rng(0).standard_normal((16, 16)), np.ones((4, 4)))
    >>> budget = tnlib.Truncation(max_params=2000)
    >>> fast = tnlib.MPO.from_matrix(W, truncation=budget, objective=tnlib.Objective("latency", tolerance=0.05))
    >>> fast.num_params <= 2000
    True
    >>> tnlib.Objective("speed")
    Traceback (most recent call last):
    ...
    ValueError: Objective.kind='speed' is invalid; expected 'error' or 'latency'
    """

    kind: Literal["error", "latency"] = "error"
    tolerance: float = 0.02
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Objective.kind={self.kind!r} is invalid; expected 'error' or 'latency'")
        object.__setattr__(self, "tolerance", check_fraction("Objective.tolerance", self.tolerance))
        if self.batch is not None:
            object.__setattr__(self, "batch", check_int("Objective.batch", self.batch, 1))


def check_objective(objective: Any) -> Objective:
    """``objective`` (``None``: the least error) as an :class:`Objective`, or a ``TypeError`` naming it."""
    if objective is None:
        return Objective()
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a tnlib.Objective or None, got {type(objective).__name__}; "
                        "e.g. tnlib.Objective('latency', tolerance=0.02)")
    return objective
