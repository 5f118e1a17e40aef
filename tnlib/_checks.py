"""Checks of scalar arguments at the public boundary, with errors that name them.

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain
``isinstance(x, int)``; every check here refuses it. NumPy integers and
floats are accepted and returned as Python numbers, so a value stored in a
result (and later saved as JSON) is always a plain ``int`` or ``float``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_int", "is_real", "check_int", "check_real", "check_positive", "check_fraction"]


def is_int(value: Any) -> bool:
    """True for an integer that is not a ``bool`` (``int``, ``numpy.int64``, ...)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def is_real(value: Any) -> bool:
    """True for a real number that is not a ``bool`` (ints included)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_int(name: str, value: Any, minimum: int | None = 1, *, error: type[Exception] = ValueError) -> int:
    """``value`` as a Python ``int``; ``TypeError`` if it is not one, ``error`` if below ``minimum``.

    >>> check_int("bond_dim", 3)
    3
    >>> check_int("bond_dim", 0)
    Traceback (most recent call last):
    ...
    ValueError: bond_dim=0 is invalid; expected an int >= 1
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise error(f"{name}={value} is invalid; expected an int >= {minimum}")
    return int(value)


def check_real(name: str, value: Any) -> float:
    """``value`` as a Python ``float``; ``TypeError`` unless it is a real number (not ``bool``)."""
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """``value`` as a Python ``float`` if it is a finite real number ``> 0``; ``TypeError`` for another type,
    ``ValueError`` for zero, a negative number, NaN or inf.

    >>> check_positive("lr", 1e-3)
    0.001
    >>> check_positive("lr", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: lr=inf is invalid; expected a finite number > 0
    """
    number = check_real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number > 0")
    return number


def check_fraction(name: str, value: Any, upper: float = 1.0, *, closed: bool = False) -> float:
    """``value`` as a Python ``float`` in ``[0, upper)`` (``[0, upper]`` when ``closed``): ``TypeError`` unless
    it is a real number, ``ValueError`` outside the interval (NaN included).

    >>> check_fraction("cutoff", 1e-10)
    1e-10
    >>> check_fraction("cutoff", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: cutoff=1.0 is invalid; expected a float in [0, 1)
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a float, got {value!r}")
    number = float(value)
    ok = 0.0 <= number <= upper if closed else 0.0 <= number < upper
    if not ok:  # also catches NaN
        interval = f"[0, {upper:g}]" if closed else f"[0, {upper:g})"
        raise ValueError(f"{name}={number!r} is invalid; expected a float in {interval}")
    return number
