"""Balanced factorisation of dimensions, and padding to factorable sizes.

An MPO of a matrix with ``M`` rows and ``N`` columns needs ``M`` and ``N``
written as products of ``n`` factors each, one per core. :func:`factorize`
finds the most balanced such product. A factorisation is *usable* when its
largest factor is at most ``max(8, 2 * ceil(n ** (1 / k)))``: at most twice
the ideal ``n ** (1/k)``, with anything up to 8 accepted. A prime such as
1021 has none; padding with zeros to a nearby usable size (1024) fixes that.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

from ._checks import check_int, is_int

__all__ = ["factorize", "default_num_cores", "is_usable", "padded_size", "choose_dims", "divisors"]


def divisors(n: int) -> list[int]:
    """The divisors of ``n`` in ascending order (trial division up to ``sqrt(n)``)."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def _key(factors: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(factors, reverse=True))


@lru_cache(maxsize=4096)
def _balanced(n: int, k: int, lowest: int) -> tuple[int, ...] | None:
    if k == 1:
        return (n,) if n >= lowest else None
    best = None
    for d in divisors(n):
        if d < lowest:
            continue
        if d**k > n:
            break
        rest = _balanced(n // d, k - 1, d)
        if rest is not None:
            candidate = (d, *rest)
            if best is None or _key(candidate) < _key(best):
                best = candidate
    return best


MAX_CORES = 32
"""At most this many cores: an MPO's dense form has two legs per core, and NumPy arrays at most 64 axes."""

MAX_FACTORED = 2**48
"""Sizes above this are not factored by trial division (it would take minutes); pass dims."""


def _check_positive_int(name: str, value: object) -> int:
    return check_int(name, value, 1)


def factorize(n: int, num_factors: int) -> tuple[int, ...]:
    """The most balanced ``num_factors`` integers whose product is ``n``.

    Balanced means the largest factor is as small as possible, then the
    second largest, and so on. Factors come in ascending order; 1s appear
    when ``n`` has too few prime factors.

    Parameters
    ----------
    n
        The number to factor, ``>= 1``.
    num_factors
        How many factors, ``>= 1``.

    Examples
    --------
    >>> import tnlib
    >>> tnlib.factorize(1024, 4)
    (4, 4, 8, 8)
    >>> tnlib.factorize(784, 4)
    (4, 4, 7, 7)
    >>> tnlib.factorize(1021, 2)
    (1, 1021)
    """
    n = _check_positive_int("n", n)
    num_factors = _check_positive_int("num_factors", num_factors)
    if num_factors > MAX_CORES:
        raise ValueError(f"num_factors={num_factors} is invalid; expected at most {MAX_CORES}")
    if n > MAX_FACTORED:
        raise ValueError(f"n={n} is too large to factor (above 2**48); pass the factors (dims) yourself")
    result = _balanced(n, num_factors, 1)
    assert result is not None  # (1, ..., 1, n) always exists
    return result


def is_usable(factors: Sequence[int]) -> bool:
    """Whether a factorisation is balanced enough for an MPO (module docstring)."""
    n = math.prod(factors)
    k = len(factors)
    limit = max(8, 2 * math.ceil(n ** (1.0 / k) - 1e-9))
    return max(factors) <= limit


def padded_size(n: int, num_factors: int) -> int:
    """The smallest size ``>= n`` with a usable factorisation into ``num_factors``.

    Examples
    --------
    >>> import tnlib
    >>> tnlib.padded_size(1021, 4)
    1024
    """
    n = _check_positive_int("n", n)
    num_factors = _check_positive_int("num_factors", num_factors)
    m = n
    while not is_usable(factorize(m, num_factors)):
        m += 1
    return m


def default_num_cores(rows: int, cols: int) -> int:
    """Number of cores ``from_matrix`` uses when neither dims nor ``num_cores`` are given.

    ``max(2, ceil(log2(max(rows, cols)) / 3))``: factors of about 8, so a
    4096 x 4096 matrix gets 4 cores of (8, 8) legs, a 784 x 256 one 4 cores.

    Examples
    --------
    >>> import tnlib
    >>> tnlib.default_num_cores(4096, 4096), tnlib.default_num_cores(784, 256)
    (4, 4)
    """
    return max(2, math.ceil(math.log2(max(rows, cols, 1)) / 3))


def check_dims(name: str, dims: Any) -> tuple[int, ...]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {dims!r}")
    if len(dims) == 0:
        raise ValueError(f"{name} must hold at least one factor, got {tuple(dims)!r}")
    out = []
    for d in dims:
        if not is_int(d):
            raise TypeError(f"{name}={tuple(dims)!r} is invalid; expected positive ints, got {d!r}")
        if int(d) < 1:
            raise ValueError(f"{name}={tuple(dims)!r} is invalid; expected positive ints")
        out.append(int(d))
    return tuple(out)


def choose_dims(
    shape: tuple[int, int],
    out_dims: Sequence[int] | None = None,
    in_dims: Sequence[int] | None = None,
    *,
    num_cores: int | None = None,
    pad: bool = False,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ``(out_dims, in_dims)`` that :meth:`tnlib.MPO.from_matrix` uses for ``shape``.

    Given dims are checked against ``shape = (M, N)`` (with ``pad=True`` their
    product may exceed it); missing ones are the most balanced factorization
    with as many factors as the other, or ``num_cores``, or
    :func:`default_num_cores`. Raises ``ValueError`` naming the argument when
    the dims do not fit or a size has no usable factorization (suggesting
    ``pad=True``).

    Examples
    --------
    >>> import tnlib
    >>> tnlib.choose_dims((1024, 512))
    ((4, 4, 8, 8), (4, 4, 4, 8))
    >>> tnlib.choose_dims((1021, 16), pad=True)
    ((4, 4, 8, 8), (2, 2, 2, 2))
    """
    given = {
        "out_dims": None if out_dims is None else check_dims("out_dims", out_dims),
        "in_dims": None if in_dims is None else check_dims("in_dims", in_dims),
    }
    if num_cores is not None:
        check_int("num_cores", num_cores, 1)
    if num_cores is not None and int(num_cores) > MAX_CORES:
        raise ValueError(
            f"num_cores={num_cores} is invalid; expected at most {MAX_CORES} (an MPO's dense form has two legs "
            "per core and NumPy arrays at most 64 axes)"
        )
    if given["out_dims"] is not None and given["in_dims"] is not None:
        if len(given["out_dims"]) != len(given["in_dims"]):
            raise ValueError(
                f"out_dims has {len(given['out_dims'])} factors but in_dims has "
                f"{len(given['in_dims'])}; an MPO needs one out and one in leg per core"
            )
    lengths = [len(d) for d in given.values() if d is not None]
    n = lengths[0] if lengths else int(num_cores or default_num_cores(*shape))
    if num_cores is not None and int(num_cores) != n:
        raise ValueError(f"num_cores={num_cores} but the given dims have {n} factors; drop one of them")
    resolved = []
    for (name, dims), size, axis in zip(given.items(), shape, ("rows", "columns")):
        if dims is None:
            dims = factorize(size, n)
            if not is_usable(dims):
                target = padded_size(size, n)
                if not pad:
                    raise ValueError(
                        f"matrix has {size} {axis}, which has no balanced factorization into "
                        f"{n} factors (best: {dims}); pass pad=True to zero-pad to {target} = "
                        f"{' x '.join(map(str, factorize(target, n)))}, or give {name} explicitly"
                    )
                dims = factorize(target, n)
        else:
            p = math.prod(dims)
            if p != size and not (pad and p > size):
                hint = " or pad=True to zero-pad" if p > size else ""
                raise ValueError(
                    f"{name}={dims} multiply to {p} but matrix has {size} {axis}; pass factors "
                    f"whose product is {size}, {name}=None to choose them{hint}"
                )
        resolved.append(dims)
    return resolved[0], resolved[1]
