"""The behaviour MPS and MPO share: an immutable chain of cores.

Leg conventions live in :mod:`tnlib._canonical`; this module only adapts the
containers to the site-core algorithms there and validates user input.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import warnings
from typing import Any, Literal, Sequence, TypeVar

import array_api_compat
import numpy as np

from . import _algebra as algebra
from . import _fixed_rank as fixed_rank
from ._backend import as_array, check_finite, check_floating, namespace, prod, scalar, times_power_of_two, to_host
from ._canonical import normalized, orthonormalize, schmidt_values, spread_exponent, unit_cores
from ._checks import check_int, is_real
from ._entropy import renyi_entropy
from ._jax import register_if_jax
from ._rounding import randomized_round
from ._sweeps import truncate_chain
from .svd import check_svd, thin_svd
from .truncation import Truncation, TruncationReport, check_truncation

MAX_DENSE_SIZE = 2**28
"""Largest number of entries ``to_dense`` / ``to_matrix`` build unless told otherwise."""

_Self = TypeVar("_Self", bound="Chain")


def _fixed_bond_truncation(truncation: Any, algorithm: str) -> Truncation:
    """The checked ``truncation`` of an algorithm that fits chains of bonds ``max_bond`` (variational,
    randomized): ``ValueError`` naming the criteria it cannot honour."""
    checked = check_truncation(truncation)
    if checked is None or checked.max_bond is None:
        raise ValueError(
            f"algorithm={algorithm!r} needs truncation.max_bond (the bond dimension to fit); got {truncation!r}"
        )
    other = checked.value_criteria
    if other:
        raise ValueError(
            f"algorithm={algorithm!r} gives a chain of fixed bond dimension max_bond and cannot honour "
            f"{', '.join(other)}; use algorithm='svd' for those criteria"
        )
    return checked


def _check_bonds(arrays: Sequence[Any]) -> None:
    if arrays[0].shape[0] != 1:
        raise ValueError(
            f"cores[0] has left bond {arrays[0].shape[0]}; the boundary bonds must have size 1"
        )
    if arrays[-1].shape[-1] != 1:
        raise ValueError(
            f"cores[{len(arrays) - 1}] has right bond {arrays[-1].shape[-1]}; "
            "the boundary bonds must have size 1"
        )
    for k in range(len(arrays) - 1):
        if arrays[k].shape[-1] != arrays[k + 1].shape[0]:
            raise ValueError(
                f"bond {k} does not match: cores[{k}] has right bond {arrays[k].shape[-1]} "
                f"but cores[{k + 1}] has left bond {arrays[k + 1].shape[0]}"
            )


def validate_cores(cores: Any, legs: int, kind: str, leg_names: str) -> tuple[Any, ...]:
    """Check a user's cores: a non-empty sequence of same-library, same-dtype,
    finite arrays with ``legs`` legs whose bonds match and whose ends are 1."""
    if isinstance(cores, (str, bytes)) or not isinstance(cores, Sequence):
        raise TypeError(
            f"cores must be a sequence of arrays with legs {leg_names}, got {type(cores).__name__}"
        )
    if len(cores) == 0:
        raise ValueError(f"cores must hold at least one core; got an empty {type(cores).__name__}")
    arrays = tuple(as_array(c, f"cores[{k}]") for k, c in enumerate(cores))
    try:
        namespace(*arrays)
    except TypeError as exc:
        raise TypeError(f"cores mix array libraries ({exc}); give every core the same one") from None
    for k, c in enumerate(arrays):
        if c.ndim != legs:
            raise ValueError(
                f"cores[{k}] has shape {tuple(c.shape)}; an {kind} core has {legs} legs {leg_names}"
            )
        if 0 in c.shape:
            raise ValueError(f"cores[{k}] has shape {tuple(c.shape)}; every leg must have size >= 1")
        check_floating(c, f"cores[{k}]")
        if c.dtype != arrays[0].dtype:
            raise TypeError(
                f"cores[{k}] has dtype {c.dtype} but cores[0] has {arrays[0].dtype}; "
                "give every core the same dtype"
            )
    _check_bonds(arrays)
    for k, c in enumerate(arrays):
        check_finite(c, f"cores[{k}]")
    return arrays


def check_index(name: str, value: Any, size: int, what: str) -> int:
    """An int in ``[-size, size)``, normalised to ``[0, size)``."""
    value = check_int(name, value, None)
    if not -size <= value < size:
        valid = f"0..{size - 1} (or -{size}..-1)" if size else "none: there are no bonds"
        raise ValueError(f"{name}={value} is out of range; this chain has {size} {what}: {valid}")
    return int(value) % size


def check_indices(indices: Any, dims: Sequence[int], name: str) -> np.ndarray:
    """Index tuples as a NumPy ``int64`` array of shape ``(batch, len(dims))``, each in range."""
    host = to_host(as_array(indices, name))
    if host.ndim == 1 and len(dims) == 1:
        host = host[:, None]
    if host.ndim != 2 or host.shape[1] != len(dims):
        raise ValueError(
            f"{name} has shape {tuple(host.shape)}; expected (batch, {len(dims)}): one index tuple per row"
        )
    if host.size and not np.issubdtype(host.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {host.dtype}")
    idx = host.astype(np.int64, copy=False)
    bounds = np.asarray(dims, dtype=np.int64)
    bad = (idx < 0) | (idx >= bounds)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise IndexError(
            f"{name}[{row}, {col}] = {int(idx[row, col])} is out of range for a leg of size {dims[col]}"
        )
    return idx


def check_alpha(alpha: Any) -> float:
    if not is_real(alpha):
        raise TypeError(f"alpha must be a real number > 0, got {alpha!r}")
    alpha = float(alpha)
    if not alpha > 0:  # also NaN
        raise ValueError(f"alpha={alpha} is invalid; expected alpha > 0 (1 for von Neumann)")
    return alpha


def check_max_size(size: int, max_size: Any, what: str, itemsize: int) -> None:
    check_int("max_size", max_size, 1)
    if size > max_size:
        raise ValueError(
            f"{what} would build an array of {size} entries ({size * itemsize / 2**30:.3g} GiB), "
            f"above max_size={max_size}; pass max_size={size} to allow it"
        )


def _scaled_report(report: TruncationReport, exponent: int) -> TruncationReport:
    """The report of a chain truncated at unit scale, stated for the chain ``2**exponent`` times larger
    (relative weights kept exactly; absolute ones may under- or overflow, as the true values do)."""
    factor = math.ldexp(1.0, exponent) if -1074 <= exponent <= 1023 else (math.inf if exponent > 0 else 0.0)
    if math.isfinite(factor) and factor > 0.0:
        return report.scaled(factor)
    rel = report.relative_discarded
    return dataclasses.replace(report, discarded=tuple(d * factor * factor for d in report.discarded),
                               norm=report.norm * factor, error=None, relative=rel)


def _flatten(chain: Chain) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A chain as JAX pytree leaves (its cores) and static data."""
    return chain._cores, chain._static()


def build_chain(cls: type[_Self], cores: Sequence[Any], center: int | None, report: TruncationReport | None) -> _Self:
    """A chain of type ``cls`` from trusted cores (validated by the caller), no copies."""
    obj = cls.__new__(cls)
    obj._init(cores, center, report)
    return obj


def rebuild(chain: _Self, center: int | None, report: TruncationReport | None) -> _Self:
    """The same cores (no copy) with a stated orthogonality centre and report; trusts its caller."""
    obj = copy.copy(chain)
    obj._init(chain.cores, center, report)
    return obj


def site_cores(chain: Chain) -> list[Any]:
    """The cores of an MPS or MPO as three-leg site cores ``(left, phys, right)``."""
    return chain._sites()


class Chain:
    """An immutable chain of cores; subclasses fix the number of legs."""

    __slots__ = ("_cores", "_center", "_report")
    _kind = "chain"

    _cores: tuple[Any, ...]
    _center: int | None
    _report: TruncationReport | None

    def _init(self, cores: Sequence[Any], center: int | None, report: TruncationReport | None) -> None:
        # NumPy cores are C-contiguous (no negative strides), so torch.from_numpy and friends take them
        self._cores = tuple(
            c if not array_api_compat.is_numpy_array(c) or c.flags.c_contiguous else c.copy(order="C")
            for c in cores
        )
        self._center = center
        self._report = report
        if self._cores:
            register_if_jax(type(self), self._cores[0], _flatten, type(self)._from_leaves)

    # -- JAX pytrees: the cores are the leaves, the rest is static ----------
    def _static(self) -> tuple[Any, ...]:
        return (self._center, self._report)

    @classmethod
    def _from_leaves(cls: type[_Self], static: tuple[Any, ...], leaves: Sequence[Any]) -> _Self:
        obj = cls.__new__(cls)
        obj._init(list(leaves), static[0], static[1])
        return obj

    # -- adapters to site cores (left, phys, right) --------------------------
    def _sites(self) -> list[Any]:
        raise NotImplementedError

    def _with_sites(self: _Self, sites: Sequence[Any], center: int | None, report: TruncationReport | None) -> _Self:
        raise NotImplementedError

    # -- properties ----------------------------------------------------------
    @property
    def cores(self) -> tuple[Any, ...]:
        """The cores, a tuple of arrays."""
        return self._cores

    @property
    def num_sites(self) -> int:
        """Number of cores."""
        return len(self._cores)

    def __len__(self) -> int:
        return len(self._cores)

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """Dimensions of the ``n - 1`` inner bonds; bond ``k`` joins cores ``k`` and ``k+1``."""
        return tuple(int(c.shape[0]) for c in self._cores[1:])

    @property
    def num_params(self) -> int:
        """Total number of entries in the cores."""
        return sum(prod(c.shape) for c in self._cores)

    @property
    def dtype(self) -> Any:
        """The cores' dtype."""
        return self._cores[0].dtype

    @property
    def center(self) -> int | None:
        """Orthogonality centre, or ``None`` when the chain is not known to be canonical."""
        return self._center

    @property
    def report(self) -> TruncationReport | None:
        """Report of the truncation (or exact decomposition) that made this chain, or ``None``."""
        return self._report

    # -- canonical forms -----------------------------------------------------
    def canonicalize(self: _Self, center: int = -1) -> _Self:
        """A new chain in mixed canonical form with orthogonality centre ``center``.

        Cores left of ``center`` become left-orthonormal and cores right of it
        right-orthonormal, by QR sweeps; ``center=0`` gives the
        right-canonical form, ``center=-1`` the left-canonical one. Only the
        cores between the old and the new centre are touched when the centre
        is known. The represented tensor does not change.
        """
        c = check_index("center", center, self.num_sites, "cores")
        return self._with_sites(orthonormalize(self._sites(), c, self._center), c, self._report)

    def truncate(self: _Self, truncation: Truncation, *, svd: str = "auto", center: int = -1) -> _Self:
        """Compress by one SVD sweep from the right-canonical form.

        Every step of the sweep sees exact Schmidt values, so the squared
        error is the sum of the discarded weights in the new :attr:`report`.
        ``max_params`` allocates all bonds together (:func:`tnlib.allocate_bonds`).
        The result is in mixed canonical form with centre ``center`` (default
        the last core: left-canonical); the report is kept. The sweep runs at
        unit scale, so cores at 1e+-100 or long chains truncate as they would
        at scale 1; a chain whose norm itself is beyond floating range comes
        back with its scale shared by the cores and no centre.
        """
        checked = check_truncation(truncation)
        if checked is None:
            raise TypeError("truncation must be a tnlib.Truncation, got None")
        check_svd(svd)
        if fixed_rank.traced(*self._cores):  # under jax.jit / torch.compile: ranks from shapes, no report
            caps = fixed_rank.fixed_caps(checked, self.num_sites - 1, "truncate")
            sites = fixed_rank.truncate_fixed(self._sites(), self._center, caps, checked.min_bond)
            return self._with_sites(sites, self.num_sites - 1, None)._centered(center)
        # at unit scale: no under- or overflow
        sites, exponent = normalized(self._sites(), self.num_sites - 1, self._center)
        sites, report = truncate_chain(sites, self.num_sites - 1, checked, svd)
        if not exponent:
            return self._with_sites(sites, self.num_sites - 1, report)._centered(center)
        report = _scaled_report(report, exponent)
        if abs(exponent) < 960:  # the scale back into the centre (a power of two: exact)
            sites[-1] = sites[-1] * (2.0 ** exponent)
            return self._with_sites(sites, self.num_sites - 1, report)._centered(center)
        # a norm beyond floating range: no canonical centre can hold it; the cores share the scale
        share, extra = divmod(exponent, len(sites))
        sites = [c * (2.0 ** (share + (1 if k < extra else 0))) for k, c in enumerate(sites)]
        return self._with_sites(sites, None, report)

    # -- spectra -------------------------------------------------------------
    def singular_values(self, bond: int) -> Any:
        """Schmidt values across ``bond``, descending, in the cores' namespace.

        Computed from the mixed canonical form with centre ``bond`` (exact,
        whatever the chain's history): the singular values of the centre core
        unfolded as ``(left * phys, right)``. For an MPO the physical leg is
        ``(out, in)``. The values are computed at unit scale and scaled back:
        a chain whose norm is beyond float range gives ``inf`` (or 0) for the
        values beyond it, as :meth:`norm` does, never NaN; :meth:`entropies`
        and :meth:`log_norm` hold at any scale.
        """
        k = check_index("bond", bond, self.num_sites - 1, "bonds")
        xp = namespace(*self._cores)
        if fixed_rank.traced(*self._cores):
            return schmidt_values(self._sites(), self._center)[k]  # traced values cannot be rescaled
        # at unit scale (2**e times the chain), then scaled back: exact in range, inf / 0 only beyond it
        sites, e = normalized(self._sites(), k, self._center)
        left, phys, right = sites[k].shape
        return times_power_of_two(thin_svd(xp.reshape(sites[k], (left * phys, right)))[1], e)

    def entropy(self, bond: int, alpha: float = 1.0) -> Any:
        """Entanglement entropy across ``bond`` (natural log), a 0-d array.

        ``p = s**2 / sum(s**2)`` for the Schmidt values ``s``; von Neumann
        ``-sum p ln p`` for ``alpha=1``, Renyi ``ln(sum p**alpha)/(1-alpha)``
        otherwise (``alpha=inf`` gives ``-ln max p``).
        """
        alpha = check_alpha(alpha)
        return renyi_entropy(self.singular_values(bond), alpha)

    def entropies(self, alpha: float = 1.0) -> Any:
        """Entropy of every bond ``0 .. n-2`` from one sweep, a 1-D array."""
        alpha = check_alpha(alpha)
        xp = namespace(*self._cores)
        # entropies do not depend on the scale
        if fixed_rank.traced(*self._cores):  # traced values cannot be rescaled (the scale is read from them)
            sites, center = self._sites(), self._center
        else:
            sites, _ = normalized(self._sites(), self.num_sites - 1, self._center)
            center = self.num_sites - 1
        spectra = schmidt_values(sites, center)
        if not spectra:
            return xp.real(xp.zeros((0,), dtype=self.dtype, device=array_api_compat.device(self._cores[0])))
        # one padded array, one vectorised pass: zeros carry no weight
        width = max(int(s.shape[0]) for s in spectra)
        padded = [s if s.shape[0] == width else
                  xp.concat([s, xp.zeros((width - s.shape[0],), dtype=s.dtype, device=array_api_compat.device(s))])
                  for s in spectra]
        return renyi_entropy(xp.stack(padded), alpha)

    # -- algebra -------------------------------------------------------------
    def _signature(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _check_same_library(self, other: Chain, op: str) -> None:
        """Refuse a binary operation on chains of two array libraries, naming both."""
        try:
            namespace(*self._cores, *other._cores)
        except TypeError:
            both = (f"both {type(self).__name__}s" if type(other) is type(self)
                    else f"the {type(self).__name__} and the {type(other).__name__}")
            raise TypeError(
                f"{op} needs {both} in one array library, got "
                f"{type(self._cores[0]).__module__}.{type(self._cores[0]).__name__} and "
                f"{type(other._cores[0]).__module__}.{type(other._cores[0]).__name__}; convert one first"
            ) from None

    def _check_same_legs(self, other: Any, op: str) -> None:
        if type(other) is not type(self):
            raise TypeError(
                f"{op} needs two {type(self).__name__}s, got {type(self).__name__} and "
                f"{type(other).__name__}"
            )
        self._check_same_library(other, op)
        if self._signature() != other._signature() or self.num_sites != other.num_sites:
            raise ValueError(
                f"{op} needs matching legs: {self._describe()} vs {other._describe()}"
            )

    def norm(self) -> Any:
        """Frobenius norm (2-norm of the state), from the centre of the canonical form, a ``float``.

        Computed as ``exp(log_norm())``: it underflows to 0 or overflows to
        ``inf`` only when the norm itself is beyond float range, not when its
        square is (see :meth:`log_norm`). For cores in an autograd graph (torch
        tensors that require grad) or traced by JAX, a 0-d array of the cores'
        library instead, differentiable (the norm of the centre core after QR
        sweeps, not rescaled).
        """
        if fixed_rank.traced(*self._cores) or any(getattr(c, "requires_grad", False) for c in self._cores):
            chain = self._measured()
            sites = orthonormalize(chain._sites(), chain.num_sites - 1, chain._center)
            xp = namespace(*sites)
            return xp.linalg.vector_norm(xp.reshape(sites[-1], (-1,)))
        log = self.log_norm()
        return math.inf if log > 709.78 else math.exp(log)

    def _measured(self: _Self) -> _Self:
        """The chain whose norm is this one's (an MPO drops its padding)."""
        return self

    def log_norm(self) -> float:
        """``ln ||self||`` without forming the norm's square: the centre core of the canonical form
        (one QR sweep when no centre is known), scaled by its largest entry before the sum of squares.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> tiny = tnlib.MPS.from_dense(np.full((2, 2, 2), 1e-170))
        >>> round(float(tiny.log_norm() / np.log(10)), 6), tiny.norm() > 0
        (-169.548455, True)
        """
        xp = namespace(*self._cores)
        # 2**exponent * chain, centre O(1)
        sites, exponent = normalized(self._sites(), self.num_sites - 1, self._center)
        core = sites[-1]
        peak = scalar(xp.max(xp.abs(core)))
        if peak == 0.0:
            return -math.inf
        return exponent * math.log(2.0) + math.log(peak) + math.log(scalar(xp.linalg.vector_norm(core / peak)))

    def inner(self, other: _Self) -> Any:
        """``<self|other> = sum conj(self) * other`` (for MPOs ``tr(A^H B)``), a 0-d array."""
        self._check_same_legs(other, "inner")
        return algebra.inner(self._sites(), other._sites())

    def conj(self: _Self) -> _Self:
        """Complex conjugate of every core (canonical form preserved)."""
        xp = namespace(*self._cores)
        return self._with_sites([xp.conj(c) for c in self._sites()], self._center, None)

    def __add__(self: _Self, other: _Self) -> _Self:
        """Sum of two chains with the same legs; bond dimensions add (direct sum)."""
        if not isinstance(other, Chain):
            return NotImplemented
        self._check_same_legs(other, "+")
        return self._with_sites(algebra.direct_sum(self._sites(), other._sites()), None, None)

    def __sub__(self: _Self, other: _Self) -> _Self:
        if not isinstance(other, Chain):
            return NotImplemented
        return self + (-1.0) * other

    def __neg__(self: _Self) -> _Self:
        return (-1.0) * self

    def hadamard(self: _Self, other: _Self, truncation: Truncation | None = None) -> _Self:
        """Elementwise (Hadamard) product with a chain of the same legs; bonds multiply.

        With ``truncation`` the product is compressed (:meth:`truncate`); ``self * other`` is the
        same without it.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
        >>> p = tnlib.MPS.from_dense(a) * tnlib.MPS.from_dense(b)
        >>> bool(np.allclose(p.to_dense(), a * b))
        True
        """
        self._check_same_legs(other, "hadamard")
        a, b = self._sites(), other._sites()
        concrete = not (fixed_rank.traced(*a, *b) or any(getattr(c, "requires_grad", False) for c in (*a, *b)))
        exponent = 0
        if concrete:  # each factor at unit scale, the product's scale spread over its cores: no core overflows
            (a, ea), (b, eb) = unit_cores(a), unit_cores(b)
            exponent = ea + eb
        product = algebra.hadamard(a, b)
        out = self._with_sites(spread_exponent(product, exponent) if exponent else product, None, None)
        return out if truncation is None else out.truncate(truncation)

    def sum(self) -> Any:
        """Sum of all entries, a 0-d array, from the cores (the dense tensor is never formed)."""
        return algebra.entry_sum(self._sites())

    def __mul__(self: _Self, scalar: Any) -> _Self:
        """Multiply by a number or a 0-d array of the cores' library (differentiable in it): scales the centre
        core (or core 0), keeping the canonical form. With a chain of the same legs: :meth:`hadamard`."""
        if isinstance(scalar, Chain):
            return self.hadamard(scalar)  # type: ignore[arg-type]  # _check_same_legs refuses other kinds
        xp = namespace(*self._cores)
        if array_api_compat.is_array_api_obj(scalar) and not isinstance(scalar, numbers.Number):
            scalar = self._array_scalar(scalar, xp)
        elif isinstance(scalar, bool) or not isinstance(scalar, numbers.Number):
            return NotImplemented
        k = 0 if self._center is None else self._center
        sites = self._sites()
        core = sites[k]
        complex_scalar = isinstance(scalar, complex) or (
            not isinstance(scalar, numbers.Number) and xp.isdtype(scalar.dtype, "complex floating"))
        if complex_scalar and not xp.isdtype(core.dtype, "complex floating"):
            dtype = xp.complex64 if core.dtype == xp.float32 else xp.complex128
            sites = [xp.astype(c, dtype) for c in sites]
        sites[k] = sites[k] * scalar
        return self._with_sites(sites, self._center, None)

    __rmul__ = __mul__

    def _check_array_library(self, array: Any, what: str, hint: str) -> None:
        """Refuse an array of another library than the cores', naming both."""
        try:
            namespace(array, *self._cores)
        except TypeError:
            raise TypeError(
                f"{what} is a {type(array).__module__}.{type(array).__name__} but the {type(self).__name__}'s "
                f"cores are {type(self._cores[0]).__module__}.{type(self._cores[0]).__name__}; {hint}"
            ) from None

    def _array_scalar(self, scalar: Any, xp: Any) -> Any:
        """A 0-d numeric array of the cores' library, as the factor of :meth:`__mul__`."""
        name = type(self).__name__
        if getattr(scalar, "ndim", None) != 0:
            raise TypeError(
                f"an {name} can be multiplied by a number or a 0-d array, got an array of shape "
                f"{tuple(scalar.shape)}; use @ for products with vectors and operators"
            )
        self._check_array_library(scalar, "the factor", "give it in the cores' library (or as a Python number)")
        if not xp.isdtype(scalar.dtype, ("real floating", "complex floating", "integral")):
            raise TypeError(f"an {name} can be multiplied by a numeric 0-d array, got dtype {scalar.dtype}")
        return scalar

    def __truediv__(self: _Self, scalar: Any) -> _Self:
        if isinstance(scalar, bool) or not isinstance(scalar, numbers.Number):
            return NotImplemented
        if scalar == 0:
            raise ZeroDivisionError("cannot divide a tensor network by 0")
        return self * (1.0 / scalar)  # type: ignore[operator]  # a non-zero numbers.Number

    def compress(
        self: _Self,
        truncation: Truncation,
        algorithm: Literal["svd", "variational", "randomized"] = "svd",
        *,
        sweeps: int = 10,
        tol: float = 1e-10,
        svd: str = "auto",
        method: Literal["svd", "variational"] | None = None,
        center: int = -1,
    ) -> _Self:
        """Compress, returning a new chain with a :attr:`report`.

        ``algorithm="svd"`` is :meth:`truncate`: one SVD sweep from the
        canonical form, any :class:`~tnlib.Truncation`, with the SVD method
        named by ``svd``. ``algorithm="variational"``
        fits a chain with bonds ``min(max_bond, current)`` by one-site
        alternating least squares (``sweeps`` at most, stopping when the squared
        error improves by less than ``tol`` times the squared norm); it needs
        ``truncation.max_bond`` and is cheaper when the current bonds are much
        larger than ``max_bond`` (after a product). Its report gives the
        measured error (``report.error``, also ``report.error_bound``); its
        per-bond ``discarded`` weights are NaN, as a fit discards nothing
        bond by bond.

        ``algorithm="randomized"`` rounds to bonds ``max_bond`` without
        orthogonalizing first (randomize-then-orthogonalize, Al Daas et al.
        2023: :mod:`tnlib._rounding`): a random chain sketches every unfolding,
        and the chain's own Gram environments choose the kept directions. The
        result is an orthogonal projection of the input, so its report's
        ``certificate`` states the exact relative error (up to rounding,
        ``probability`` 1). It needs ``max_bond`` alone; on flat spectra it
        keeps a worse subspace than the SVD sweep (see ``docs/randomized.md``).

        ``center`` chooses the canonical form of the result (default the
        last core). ``method=`` is the former name of ``algorithm=``; it still works and
        warns (``DeprecationWarning``), and will be removed in the next release.
        """
        if method is not None:
            warnings.warn(
                "compress(method=...) is deprecated; use compress(algorithm=...) "
                "(svd= names the SVD method)",
                DeprecationWarning,
                stacklevel=2,
            )
            algorithm = method
        if algorithm == "svd":
            return self.truncate(truncation, svd=svd, center=center)
        if algorithm == "randomized":
            return self._randomized_round(truncation, center)
        check_int("sweeps", sweeps, 1)
        if not (is_real(tol) and tol >= 0):
            raise ValueError(f"tol={tol!r} is invalid; expected a real number >= 0")
        if algorithm != "variational":
            raise ValueError(f"algorithm={algorithm!r} is invalid; expected 'svd', 'variational' or 'randomized'")
        checked = _fixed_bond_truncation(truncation, "variational")
        sites = self._sites()
        n = len(sites)
        bonds = self._fit_bonds(checked)
        fitted, err2, norm2, _ = algebra.fit(sites, bonds, sweeps=sweeps, tol=tol)
        report = TruncationReport(
            tuple(int(c.shape[2]) for c in fitted[:-1]),
            self.bond_dims,
            (float("nan"),) * (n - 1),  # a fit has no per-bond discarded weights
            norm2**0.5,
            checked,
            error=err2**0.5,
        )
        return self._with_sites(fitted, n - 1, report)._centered(center)

    def _fit_bonds(self, truncation: Truncation) -> list[int]:
        """The bonds a fixed-bond algorithm gives: ``max_bond``, at most the current bonds and the ranks the
        physical dimensions on either side allow."""
        phys = [int(c.shape[1]) for c in self._sites()]
        bonds = []
        for k, cap in enumerate(truncation.bond_caps(self.num_sites - 1)):
            assert cap is not None
            bonds.append(min(cap, self.bond_dims[k], prod(phys[: k + 1]), prod(phys[k + 1 :])))
        return bonds

    def _randomized_round(self: _Self, truncation: Truncation, center: int) -> _Self:
        """``compress(algorithm="randomized")``: :mod:`tnlib._rounding` at unit scale."""
        checked = _fixed_bond_truncation(truncation, "randomized")
        c = check_index("center", center, self.num_sites, "cores")
        if fixed_rank.traced(*self._cores):
            raise TypeError("algorithm='randomized' reads its certificate from values; it cannot run under "
                            "jax.jit or torch.compile (use algorithm='svd', which has a fixed-rank route)")
        n = self.num_sites
        caps = self._fit_bonds(checked)
        rounded, exponent, full, relative, log2_norm, certificate = randomized_round(self._sites(), caps)
        scale = 2.0**log2_norm if log2_norm < 1000 else math.inf  # the input's norm
        report = TruncationReport(tuple(int(x.shape[2]) for x in rounded[:-1]), full,
                                  tuple(r * scale * scale for r in relative), scale, checked,
                                  relative=relative, certificate=certificate)
        if abs(exponent) < 960:
            rounded[-1] = rounded[-1] * (2.0**exponent)
            result = self._with_sites(rounded, n - 1, report)
        else:  # beyond floating range: the cores share the scale, as truncate does
            share, extra = divmod(exponent, n)
            result = self._with_sites([x * (2.0 ** (share + (1 if k < extra else 0))) for k, x in enumerate(rounded)],
                                      None, report)
            return result
        return result._centered(c)

    def _centered(self: _Self, center: int) -> _Self:
        """This left-canonical result moved to ``center`` (nothing to do for the last core)."""
        c = check_index("center", center, self.num_sites, "cores")
        return self if c == self.num_sites - 1 else self.canonicalize(c)

    def expand_bonds(self: _Self, bond_dims: Sequence[int]) -> _Self:
        """The same tensor with bonds padded by zeros to ``bond_dims`` (each at least the current one).

        Useful as the start of a fit or of training at a larger bond. The
        canonical form is not kept (``center`` is ``None``).

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> mps = tnlib.MPS.from_dense(np.arange(8.0).reshape(2, 2, 2))
        >>> big = mps.expand_bonds((4, 4))
        >>> big.bond_dims, bool(np.allclose(big.to_dense(), mps.to_dense()))
        ((4, 4), True)
        """
        if isinstance(bond_dims, (str, bytes)) or not isinstance(bond_dims, Sequence):
            raise TypeError(f"bond_dims must be a sequence of ints, got {bond_dims!r}")
        if len(bond_dims) != self.num_sites - 1:
            raise ValueError(f"bond_dims has {len(bond_dims)} entries; this chain has {self.num_sites - 1} bonds")
        for k, (new, old) in enumerate(zip(bond_dims, self.bond_dims)):
            check_int(f"bond_dims[{k}]", new, 1)
            if new < old:
                raise ValueError(f"bond_dims[{k}]={new} is below the current bond {old}; expand_bonds only grows")
        xp = namespace(*self._cores)
        full = [1, *(int(b) for b in bond_dims), 1]
        sites = []
        for k, core in enumerate(self._sites()):
            left, phys, right = core.shape
            dev = array_api_compat.device(core)
            grow_right = xp.zeros((left, phys, full[k + 1] - right), dtype=core.dtype, device=dev)
            padded = xp.concat([core, grow_right], axis=2)
            grow_left = xp.zeros((full[k] - left, phys, full[k + 1]), dtype=core.dtype, device=dev)
            padded = xp.concat([padded, grow_left], axis=0)
            sites.append(padded)
        return self._with_sites(sites, None, None)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._describe()}, bond_dims={self.bond_dims}, "
            f"dtype={self.dtype}, center={self._center})"
        )

    def _describe(self) -> str:
        raise NotImplementedError
