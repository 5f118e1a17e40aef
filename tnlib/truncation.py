r"""How to truncate: one frozen value, and the one place its rules are applied.

Every truncation in tnlib goes through :func:`select_rank` (one bond) or
:func:`tnlib.allocate_bonds` (a global parameter budget over all bonds). Given the
singular values :math:`s_1 \ge s_2 \ge \dots \ge s_r` of an unfolding, with
weights :math:`p_k = s_k^2 / \sum_j s_j^2`, :class:`Truncation` keeps the
smallest :math:`\chi` that satisfies every criterion that is set:

* ``cutoff``: :math:`s_k \ge \mathrm{cutoff}\cdot s_1` for every kept :math:`k`;
* ``max_discarded``: :math:`\sum_{k>\chi} p_k \le \mathrm{max\_discarded}`;
* ``max_entropy_loss``: the von Neumann entropy of the kept, renormalised
  spectrum is at least :math:`(1-\mathrm{max\_entropy\_loss})\,S` with
  :math:`S = -\sum_k p_k \ln p_k`;

then caps it at ``max_bond`` and raises it to ``min_bond`` (never above the
number of singular values). With none of the three criteria set, every
singular value is kept up to ``max_bond``.

The discarded weight of a bond is :math:`\epsilon_k^2 = \sum_{j>\chi} s_j^2`
(absolute). A sequential sweep obeys
:math:`\|A - A_{TT}\|_F \le \sqrt{\sum_k \epsilon_k^2}` (Oseledets, SIAM J.
Sci. Comput. 33, 2011, Thm 2.2), with equality when the sweep runs over a
canonical form, as tnlib's do.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Sequence

import numpy as np

from ._backend import namespace, scalar
from ._checks import check_fraction, check_int, is_int, is_real

__all__ = [
    "Truncation",
    "TruncatedSVD",
    "TruncationReport",
    "SketchCertificate",
    "BudgetTooSmallError",
    "check_truncation",
    "check_compression",
    "with_compression",
    "select_rank",
    "with_error_check",
]


class BudgetTooSmallError(ValueError):
    """``Truncation.max_params`` cannot hold even the smallest network of the layouts allowed."""


def _floating_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` (a NumPy dtype or name, or a torch dtype) as a NumPy floating or complex dtype."""
    name = str(dtype).removeprefix("torch.") if type(dtype).__module__.startswith("torch") else dtype
    try:
        resolved = np.dtype(name)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in ("float32", "float64", "complex64", "complex128"):
        raise TypeError(
            f"Truncation.default(dtype={dtype!r}) is invalid; expected a floating or complex dtype tnlib "
            "computes in: float32, float64, complex64 or complex128"
        )
    return resolved


def _check_int(name: str, value: Any, minimum: int) -> None:
    check_int(f"Truncation.{name}", value, minimum)


def _check_fraction(name: str, value: Any, upper: float, closed: bool) -> None:
    check_fraction(f"Truncation.{name}", value, upper, closed=closed)


@dataclass(frozen=True)
class Truncation:
    """How to truncate bonds; all criteria are optional and combine with AND.

    Parameters
    ----------
    max_bond
        Cap on every bond dimension, or one cap per bond (a sequence with
        one int per bond ``0 .. n-2``, as TensorLy's ``rank=`` or t3f's
        ``max_tt_rank=``; e.g. the result of :func:`tnlib.allocate_bonds`,
        which is how an allocation is applied).
    cutoff
        Drop singular values ``s_k < cutoff * s_max``; in ``[0, 1)``.
    max_discarded
        Keep the smallest ``chi`` whose discarded weight
        ``sum_{k>chi} s_k^2 / sum_k s_k^2`` is at most this; in ``[0, 1)``.
    max_entropy_loss
        Keep the smallest ``chi`` whose kept, renormalised spectrum has a von
        Neumann entropy of at least ``(1 - max_entropy_loss)`` times the full
        one; in ``[0, 1]``.
    max_params
        A budget for a whole MPS/MPO: all bond dimensions are chosen together
        (see :func:`tnlib.allocate_bonds`) so that ``num_params <= max_params``.
        For :func:`truncated_svd` the two factors ``U S`` and ``Vh`` count
        ``chi * (m + n)`` parameters.
    min_bond
        Never keep fewer singular values than this (nor more than exist).
    max_relative_error
        A global accuracy for a whole MPS/MPO: ``||A - A_tt||_F <= eps ||A||_F``
        (ttpy's and tntorch's ``eps``). The exact spectra of all bonds are
        computed and the error budget is split over the bonds by tnlib
        (greedy by weight per parameter saved), not by the user. For
        :func:`truncated_svd`, the same as ``max_discarded = eps**2``. In ``[0, 1)``.
        With a ``max_bond`` too small for it, the result keeps every value the
        caps allow (the least error they permit), warns, and its report's
        ``unmet`` says by how much the guarantee is missed.
    degeneracy_tol
        Never cut inside a multiplet: when the last kept and the first
        dropped singular values differ by at most ``degeneracy_tol`` relative
        to the larger, the cut moves down to the multiplet's start (as
        TeNPy's ``degeneracy_tol``). When the first multiplet itself is
        longer than the cut allows, the cut stays where it was: ``max_bond``
        and ``min_bond`` are never broken, and neither is
        ``max_relative_error`` (where moving the cuts down would exceed the
        error, they stay inside the multiplets). In ``[0, 1)``.

    Examples
    --------
    >>> import tnlib
    >>> tnlib.Truncation(max_bond=32, cutoff=1e-10)
    Truncation(max_bond=32, cutoff=1e-10)
    >>> tnlib.Truncation(cutoff=1.5)
    Traceback (most recent call last):
    ...
    ValueError: Truncation.cutoff=1.5 is invalid; expected a float in [0, 1)
    """

    max_bond: int | tuple[int, ...] | None = None
    cutoff: float | None = None
    max_discarded: float | None = None
    max_entropy_loss: float | None = None
    max_params: int | None = None
    min_bond: int = 1
    degeneracy_tol: float | None = None
    max_relative_error: float | None = None

    def __post_init__(self) -> None:
        _check_int("min_bond", self.min_bond, 1)
        # NumPy scalars become Python numbers, so a Truncation always saves as JSON.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and is_real(value) and not isinstance(value, (int, float)):
                object.__setattr__(self, f.name, int(value) if is_int(value) else float(value))
        self._check_max_bond()
        if self.cutoff is not None:
            _check_fraction("cutoff", self.cutoff, 1.0, closed=False)
        if self.max_discarded is not None:
            _check_fraction("max_discarded", self.max_discarded, 1.0, closed=False)
        if self.max_entropy_loss is not None:
            _check_fraction("max_entropy_loss", self.max_entropy_loss, 1.0, closed=True)
        if self.max_params is not None:
            _check_int("max_params", self.max_params, 1)
        if self.degeneracy_tol is not None:
            _check_fraction("degeneracy_tol", self.degeneracy_tol, 1.0, closed=False)
        if self.max_relative_error is not None:
            _check_fraction("max_relative_error", self.max_relative_error, 1.0, closed=False)
            if self.max_params is not None:
                raise ValueError(
                    "Truncation.max_relative_error and max_params both choose every bond; set one of them"
                )

    def _check_max_bond(self) -> None:
        caps: Any = self.max_bond
        if getattr(caps, "ndim", None) == 1 and hasattr(caps, "tolist"):
            object.__setattr__(self, "max_bond", tuple(caps.tolist()))  # e.g. allocate_bonds' NumPy caps
        if isinstance(self.max_bond, Sequence) and not isinstance(self.max_bond, (str, bytes)):
            if len(self.max_bond) == 0:
                raise ValueError("Truncation.max_bond=() is invalid; give one cap per bond, or an int for all")
            caps = tuple(check_int(f"Truncation.max_bond[{k}]", c, 1) for k, c in enumerate(self.max_bond))
            object.__setattr__(self, "max_bond", caps)
            if min(caps) < self.min_bond:
                raise ValueError(
                    f"Truncation.max_bond={caps} has a cap below min_bond={self.min_bond}; "
                    "expected every cap >= min_bond"
                )
        elif self.max_bond is not None:
            _check_int("max_bond", self.max_bond, 1)
            object.__setattr__(self, "max_bond", int(self.max_bond))
            if self.max_bond < self.min_bond:
                raise ValueError(
                    f"Truncation.max_bond={self.max_bond} is below "
                    f"min_bond={self.min_bond}; expected max_bond >= min_bond"
                )

    NOISE_FACTOR: ClassVar[int] = 16
    """:meth:`default` drops singular values below ``NOISE_FACTOR * eps * s_max``."""

    @classmethod
    def default(cls, dtype: Any = "float64") -> Truncation:
        """Drop what is numerically zero in ``dtype``, keep everything else.

        A relative ``cutoff`` of ``16 eps`` (``eps`` the machine epsilon of
        ``dtype``: 3.6e-15 for float64, 1.9e-6 for float32; complex dtypes use
        their real part's): an SVD computed in ``dtype`` cannot resolve smaller
        singular values from rounding, so what this drops is rounding noise
        and the result's relative error stays at the rounding level of
        ``dtype``. ``tnlib decompose`` uses it unless given a truncation or
        ``--exact``; :meth:`tnlib.MPO.from_matrix` and the other constructors
        stay exact without a truncation (pass this for a smaller exact-looking
        chain).

        Parameters
        ----------
        dtype
            A floating or complex dtype: a NumPy dtype or its name, or a torch
            dtype (``torch.float32``).

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> tnlib.Truncation.default("float32")
        Truncation(cutoff=1.9073486328125e-06)
        >>> x = np.linspace(0, 1, 512)
        >>> kernel = np.exp(-3 * (x[:, None] - x[None, :]) ** 2)   # smooth: numerical rank ~ 10
        >>> mpo = tnlib.MPO.from_matrix(kernel, (8, 8, 8), (8, 8, 8), truncation=tnlib.Truncation.default())
        >>> mpo.bond_dims, mpo.num_params < kernel.size // 40
        ((10, 7), True)
        >>> bool(np.linalg.norm(kernel - mpo.to_matrix()) < 1e-14 * np.linalg.norm(kernel))
        True
        """
        return cls(cutoff=cls.NOISE_FACTOR * float(np.finfo(_floating_dtype(dtype)).eps))

    @property
    def cap(self) -> int | None:
        """The single bond cap (``max_bond`` when it is one int); ``TypeError`` for per-bond caps."""
        if isinstance(self.max_bond, tuple):
            raise TypeError("this truncation has one cap per bond; use for_bond(k, num_bonds) first")
        return self.max_bond

    def __repr__(self) -> str:
        fields = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"Truncation({', '.join(fields)})"

    CRITERIA: ClassVar[tuple[str, ...]] = (
        "max_bond", "cutoff", "max_discarded", "max_entropy_loss", "max_params", "max_relative_error",
    )
    """The fields that can drop a singular value (``min_bond`` and ``degeneracy_tol`` only adjust them)."""

    @property
    def criteria(self) -> tuple[str, ...]:
        """The criteria that are set, in the order of :attr:`CRITERIA`.

        >>> import tnlib
        >>> tnlib.Truncation(max_bond=8, cutoff=1e-10).criteria
        ('max_bond', 'cutoff')
        """
        return tuple(name for name in self.CRITERIA if getattr(self, name) is not None)

    @property
    def value_criteria(self) -> tuple[str, ...]:
        """The set fields whose effect depends on singular values, not shapes alone: every criterion but
        ``max_bond``, and ``degeneracy_tol``. A route whose ranks are fixed by shapes (traced, variational,
        randomized rounding) refuses these by name.

        >>> import tnlib
        >>> tnlib.Truncation(max_bond=8, cutoff=1e-10).value_criteria
        ('cutoff',)
        """
        fields = [name for name in self.criteria if name != "max_bond"]
        return tuple(fields + (["degeneracy_tol"] if self.degeneracy_tol is not None else []))

    @property
    def chain_criteria(self) -> tuple[str, ...]:
        """The set criteria that allocate every bond at once from the exact chain's spectra (``max_params``,
        ``max_relative_error``), which a route that sees one bond at a time (out of core) cannot honour."""
        return tuple(name for name in ("max_params", "max_relative_error") if getattr(self, name) is not None)

    @property
    def is_exact(self) -> bool:
        """True when no criterion can drop a singular value."""
        return not self.criteria

    def for_bond(self, bond: int, num_bonds: int) -> Truncation:
        """The truncation of bond ``bond`` of a chain with ``num_bonds`` bonds (its own cap when caps are per bond)."""
        if not isinstance(self.max_bond, tuple):
            return self
        if len(self.max_bond) != num_bonds:
            raise ValueError(
                f"Truncation.max_bond has {len(self.max_bond)} caps but the chain has {num_bonds} bonds; "
                "give one cap per bond"
            )
        return dataclasses.replace(self, max_bond=self.max_bond[bond])

    def bond_caps(self, num_bonds: int) -> tuple[int | None, ...]:
        """The cap of every bond ``0 .. num_bonds-1`` (``None``: uncapped); checks the count of per-bond caps."""
        if isinstance(self.max_bond, tuple):
            self.for_bond(0, num_bonds)  # the count
            return self.max_bond
        return (self.max_bond,) * num_bonds

    def after(self, bonds: int) -> Truncation:
        """The truncation of the bonds left after the first ``bonds`` are decomposed (per-bond caps shift)."""
        if isinstance(self.max_bond, tuple):
            return dataclasses.replace(self, max_bond=self.max_bond[bonds:])
        return self

    @property
    def needs_full_spectrum(self) -> bool:
        """True when a criterion needs every singular value, not only the leading ones."""
        return self.max_entropy_loss is not None or self.max_bond is None


def check_compression(compression: Any, name: str = "compression") -> float:
    """A compression ratio: a finite real number ``>= 1`` (``TypeError`` for another type, ``ValueError`` else)."""
    if not is_real(compression):
        raise TypeError(f"{name} must be a real number >= 1 (a compression ratio), got {compression!r}")
    value = float(compression)
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError(f"{name}={compression!r} is invalid; expected a finite ratio >= 1")
    return value


def with_compression(truncation: Truncation | None, size: int, compression: float) -> Truncation:
    """``truncation`` (or none) with the budget of ``size`` entries stored ``compression`` times smaller:
    ``max_params = max(1, floor(size / compression))``; the ratio is checked by :func:`check_compression`."""
    budget = max(1, int(size / check_compression(compression)))
    return dataclasses.replace(truncation or Truncation(), max_params=budget)


def check_truncation(truncation: Any) -> Truncation | None:
    if truncation is None or isinstance(truncation, Truncation):
        return truncation
    raise TypeError(
        f"truncation must be a tnlib.Truncation or None, got "
        f"{type(truncation).__name__}; e.g. tnlib.Truncation(max_bond=16)"
    )


class TruncatedSVD(NamedTuple):
    """Result of :func:`truncated_svd`: ``matrix ~ U @ diag(S) @ Vh``.

    Attributes
    ----------
    U : array, shape (m, chi)
        Orthonormal columns.
    S : array, shape (chi,)
        Kept singular values, real and descending.
    Vh : array, shape (chi, n)
        Orthonormal rows.
    discarded : float
        Discarded weight ``sum_{k > chi} s_k^2`` (absolute, squared Frobenius
        norm of ``matrix - U diag(S) Vh``).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> A = np.random.default_rng(0).standard_normal((6, 4))
    >>> U, S, Vh, discarded = tnlib.truncated_svd(A, tnlib.Truncation(max_bond=2))
    >>> U.shape, S.shape, Vh.shape
    ((6, 2), (2,), (2, 4))
    >>> bool(np.isclose(np.linalg.norm(A - U @ np.diag(S) @ Vh) ** 2, discarded))
    True
    """

    U: Any
    S: Any
    Vh: Any
    discarded: float


@dataclass(frozen=True)
class SketchCertificate:
    """The a posteriori certificate of a randomized (sketched) decomposition.

    A sketched TT-SVD (``svd="randomized"``, or ``"auto"`` when it is certified) measures what it
    discarded from an independent Gaussian test sketch of every sketched bond: :attr:`error_bound`
    bounds the true relative error ``||A - A_tt||_F / ||A||_F`` with probability at least
    :attr:`probability` over the random test matrices, for every input.

    Attributes
    ----------
    error_estimate : float
        The relative error ``||A - A_tt||_F / ||A||_F`` as measured (the report's ``relative_error_bound``).
    error_bound : float
        An upper bound on the relative error that holds with probability at least :attr:`probability`.
    probability : float
        The probability that :attr:`error_bound` holds (``1 - 1e-3``).
    probes : int
        Columns of the test sketch per sketched bond.
    power_iterations : tuple of int
        Steps of subspace iteration each bond needed (0: two passes of its unfolding).
    sketched : tuple of bool
        Which bonds were sketched (the others, small, were factored exactly).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((1024, 1024))
    >>> mpo = tnlib.MPO.from_matrix(W, (32, 32), (32, 32), truncation=tnlib.Truncation(max_bond=16),
    ...                             svd="randomized")
    >>> cert = mpo.report.certificate
    >>> err = np.linalg.norm(W - mpo.to_matrix()) / np.linalg.norm(W)
    >>> bool(err <= cert.error_bound), cert.probability
    (True, 0.999)
    """

    error_estimate: float
    error_bound: float
    probability: float
    probes: int
    power_iterations: tuple[int, ...]
    sketched: tuple[bool, ...]

    def __str__(self) -> str:
        return (f"sketched: relative error {self.error_estimate:.3g}, <= {self.error_bound:.3g} with probability "
                f"{self.probability:g} ({self.probes} test columns per bond)")


@dataclass(frozen=True)
class TruncationReport:
    """What a decomposition or truncation sweep kept and discarded, per bond.

    Attributes
    ----------
    bond_dims : tuple of int
        Kept dimension of every bond ``0 .. n-2``.
    full_bond_dims : tuple of int
        Number of singular values each bond had before truncation.
    discarded : tuple of float
        Discarded weight ``eps_k^2`` of each bond (absolute, squared).
    norm : float
        Frobenius norm of the tensor that was decomposed or truncated.
    truncation : Truncation or None
        The settings used (``None``: exact).
    error : float or None
        ``||A - A_tt||_F`` measured directly, when the chain was *fitted*
        (variational compression, data-aware fitting) rather than truncated
        by a sweep; per-bond discarded weights are then not defined and
        ``discarded`` holds NaN.
    output_error : float or None
        For a matrix fitted to an input Gram ``C``: the relative output-space
        error ``||(W - W_tt) L||_F / ||W L||_F`` with ``C = L L^H``, i.e.
        ``||X (W - W_tt)^T|| / ||X W^T||`` on the inputs ``X`` behind ``C``.
    relative : tuple of float or None
        The discarded weights relative to ``norm**2``, kept when the tensor
        was far from unit scale (``discarded`` may then under- or overflow in
        floating point; the error bounds use these).
    held_out_error : float or None
        For a matrix fitted with a held-out Gram: the relative output-space
        error on those rows, which the fit did not see. For a cross
        approximation: the relative error on held-out sampled entries.
    shrinkage : float or None
        For a data-aware fit: the shrinkage ``s`` of the fitting metric
        ``(1 - s) C + s tau I`` (``1``: the weight-space metric).
    cross : tnlib.CrossReport or None
        For a cross approximation (:func:`tnlib.cross`): evaluations, sweeps,
        the error on held-out entries (also ``held_out_error``) and why it
        stopped.
    certificate : tnlib.SketchCertificate or None
        For a randomized (sketched) decomposition: the discarded weights are
        measured, and the certificate bounds the relative error with a stated
        probability.
    unmet : tuple of str
        The guarantees of :attr:`truncation` this result does not meet, each
        with by how much (a ``max_bond`` that caps the bonds below what
        ``max_relative_error`` needs); a :class:`UserWarning` said so too.
    gathered_bytes : int or None
        For an out-of-core decomposition (a dask array or :func:`tnlib.open_npy`
        file): the bytes it gathered into memory (the first unfolding's ``R``
        factor or sketches, its first core and the projected remainder, which
        the rest of the sweep works on in memory); the input itself is only
        read block by block.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((16, 16))
    >>> mpo = tnlib.MPO.from_matrix(W, (4, 4), (4, 4), truncation=tnlib.Truncation(max_bond=8))
    >>> report = mpo.report
    >>> report.bond_dims, report.full_bond_dims
    ((8,), (16,))
    >>> err = float(np.linalg.norm(W - mpo.to_matrix()))
    >>> bool(abs(err - report.error_bound) < 1e-9 * err)
    True
    """

    bond_dims: tuple[int, ...]
    full_bond_dims: tuple[int, ...]
    discarded: tuple[float, ...]
    norm: float
    truncation: Truncation | None = None
    error: float | None = None
    output_error: float | None = None
    relative: tuple[float, ...] | None = None
    held_out_error: float | None = None
    shrinkage: float | None = None
    cross: Any = None
    certificate: SketchCertificate | None = None
    unmet: tuple[str, ...] = ()
    gathered_bytes: int | None = None

    @property
    def error_bound(self) -> float:
        """``sqrt(sum_k eps_k^2) >= ||A - A_tt||_F`` (Oseledets 2011); the measured :attr:`error` when set."""
        if self.error is not None:
            return self.error
        if self.relative is not None:
            return self.norm * math.sqrt(sum(self.relative))
        return math.sqrt(sum(self.discarded))

    @property
    def relative_error_bound(self) -> float:
        """:attr:`error_bound` divided by :attr:`norm` (0 for a zero tensor)."""
        if self.error is None and self.relative is not None:
            return math.sqrt(sum(self.relative))
        return self.error_bound / self.norm if self.norm > 0 else 0.0

    @property
    def relative_error(self) -> float:
        """``||A - A_tt||_F / ||A||_F``: measured where the decomposition measured it (:attr:`error` set), else
        its bound :attr:`relative_error_bound`, which a single SVD sweep meets with equality. The name
        :class:`tnlib.nn.LayerReport` gives the same quantity."""
        return self.relative_error_bound

    @property
    def relative_discarded(self) -> tuple[float, ...]:
        """Discarded weight of each bond relative to ``norm**2``."""
        if self.relative is not None:
            return self.relative
        total = self.norm**2
        return tuple(d / total if total > 0 else 0.0 for d in self.discarded)

    def scaled(self, factor: float) -> TruncationReport:
        """The report of the tensor multiplied by ``factor`` (computed at unit scale, stated at the true one)."""
        rel = self.relative_discarded
        return dataclasses.replace(
            self,
            discarded=tuple(d * factor * factor for d in self.discarded),
            norm=self.norm * factor,
            error=None if self.error is None else self.error * factor,
            relative=rel,
        )

    def __repr__(self) -> str:
        extra = "" if not self.unmet else f", unmet={self.unmet}"
        return (f"TruncationReport(bond_dims={self.bond_dims}, relative_error_bound={self.relative_error_bound:.3g}"
                f"{extra})")

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"

    def __str__(self) -> str:
        lines = [
            f"TruncationReport ({self.truncation!r})" if self.truncation else "TruncationReport (exact)",
            f"{'bond':>5} {'kept':>7} {'of':>7} {'discarded weight':>17} {'relative':>10}",
        ]
        for k, (kept, full, d, rel) in enumerate(
            zip(self.bond_dims, self.full_bond_dims, self.discarded, self.relative_discarded)
        ):
            lines.append(f"{k:>5} {kept:>7} {full:>7} {d:>17.6g} {rel:>10.3g}")
        if self.error is None:
            lines.append(
                f"error bound ||A - A_tt||_F <= {self.error_bound:.6g} "
                f"(relative {self.relative_error_bound:.3g}), ||A||_F = {self.norm:.6g}"
            )
        else:
            lines.append(
                f"fitted: error ||A - A_tt||_F = {self.error:.6g} "
                f"(relative {self.relative_error_bound:.3g}), ||A||_F = {self.norm:.6g}"
            )
        if self.output_error is not None:
            shrunk = "" if self.shrinkage is None else f" (shrinkage {self.shrinkage:.3g})"
            lines.append(f"output-space error ||X (W - W_tt)^T|| / ||X W^T|| = {self.output_error:.3g} "
                         f"on the fit's rows{shrunk}")
        if self.held_out_error is not None:
            lines.append(f"output-space error on held-out rows = {self.held_out_error:.3g}")
        if self.certificate is not None:
            lines.append(str(self.certificate))
        if self.gathered_bytes is not None:
            lines.append(f"out of core: {self.gathered_bytes / 2**20:.3g} MiB gathered into memory")
        lines.extend(f"not met: {u}" for u in self.unmet)
        return "\n".join(lines)


def with_error_check(report: TruncationReport) -> TruncationReport:
    """``report`` with :attr:`TruncationReport.unmet` naming each guarantee of its truncation that ``max_bond``
    capped away (``max_relative_error`` over the chain, ``max_discarded`` per bond), by how much, and a
    :class:`UserWarning` at the caller saying so. A report that already names them is returned as it is."""
    truncation = report.truncation
    if truncation is None or report.unmet or truncation.max_bond is None:
        return report
    unmet = []
    eps = truncation.max_relative_error
    if eps is not None:
        error = report.relative_error_bound
        if error > eps * (1.0 + 1e-9) + 1e-15:
            unmet.append(f"max_relative_error={eps:g} is not met: the relative error is {error:.3g} "
                         f"({error / eps:.3g}x the guarantee) because max_bond={truncation.max_bond} caps the bonds")
    limit = truncation.max_discarded
    if limit is not None:
        # relative to the whole norm**2, which bounds each bond's own total from above: never a false alarm
        over = [(k, d) for k, d in enumerate(report.relative_discarded) if d > limit * (1.0 + 1e-9) + 1e-300]
        if over:
            k, worst = max(over, key=lambda kd: kd[1])
            unmet.append(f"max_discarded={limit:g} is not met at {len(over)} bond(s): bond {k} discards {worst:.3g} "
                         f"of the weight ({_times(worst, limit)} the guarantee) because max_bond={truncation.max_bond} "
                         "caps the bonds")
    if not unmet:
        return report
    warn_at_caller("; ".join(unmet) + "; raise max_bond or drop it to keep the guarantee")
    return dataclasses.replace(report, unmet=tuple(unmet))


def _times(value: float, limit: float) -> str:
    return f"{value / limit:.3g}x" if limit > 0 else "infinitely many times"


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with the location of the first caller outside tnlib (however deep inside tnlib the cause is)."""
    frame: Any = sys._getframe(1)
    level = 2  # warnings' level of the frame that called this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def select_rank(s: Any, truncation: Truncation | None, total: float | None = None) -> int:
    """Number of singular values of the descending ``s`` that ``truncation`` keeps.

    ``total`` is the full weight ``sum s_k^2`` when ``s`` holds only the
    leading part of a spectrum; ``None`` means ``s`` is complete.
    """
    n = int(s.shape[0])
    if truncation is None:
        return n
    xp = namespace(s)
    peak = scalar(xp.max(s)) if n else 0.0
    if peak > 0.0 and math.isfinite(peak):  # every criterion is relative: decide at unit scale (s^2 of 1e200 overflows)
        s = s / peak
        total = None if total is None else total / peak / peak
    s2 = s * s
    partial = total is not None
    if total is None:
        total = scalar(xp.sum(s2))
    t = truncation
    if total <= 0.0:
        return max(1, min(t.min_bond, n))
    needed = []
    guaranteed = 0
    if t.cutoff is not None:
        needed.append(int(xp.sum(xp.astype(s >= t.cutoff * s[0], xp.int64))))
    if t.max_discarded is not None:
        # tail[k] = sum_{j >= k} s_j^2, summed from the small end (no cancellation), plus the
        # weight beyond a partial spectrum, computed once (0 for a complete one, even when
        # ``total`` and ``sum(s^2)`` differ in their last bit)
        beyond = max(total - scalar(xp.sum(s2)), 0.0) if partial else 0.0
        tail = xp.flip(xp.cumulative_sum(xp.flip(s2, axis=0)), axis=0) + beyond
        needed.append(int(xp.sum(xp.astype(tail > t.max_discarded * total, xp.int64))))
        guaranteed = needed[-1]  # the error guarantee: no move into a multiplet may cut below it
    if t.max_entropy_loss is not None:
        p = s2 / total
        plogp = xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0)
        cp = xp.cumulative_sum(p)
        kept_entropy = -xp.cumulative_sum(plogp) / cp + xp.log(cp)
        ok = kept_entropy >= (1.0 - t.max_entropy_loss) * kept_entropy[-1]
        needed.append(1 + int(xp.argmax(xp.astype(ok, xp.int8))))
    chi = max(needed) if needed else n
    if isinstance(t.max_bond, tuple):
        raise TypeError("select_rank needs the truncation of one bond: call truncation.for_bond(k, num_bonds) first")
    if t.max_bond is not None:
        chi = min(chi, t.max_bond)
    if t.degeneracy_tol is not None and 0 < chi < n:
        moved = _outside_multiplets(s, chi, t.degeneracy_tol)
        chi = moved if moved >= guaranteed else chi
    return max(1, min(max(chi, t.min_bond), n))


def _outside_multiplets(s: Any, chi: int, tol: float) -> int:
    """The nearest cut at or below ``chi`` between two values more than ``tol`` apart (relative); ``chi``
    itself when there is none."""
    values = [float(v) for v in s]
    down = chi
    while down > 0 and values[down - 1] - values[down] <= tol * values[down - 1]:
        down -= 1
    return down if down > 0 else chi
