"""Singular-value spectra per bond, entropies, and the error/compression trade-off.

A :class:`Spectrum` holds the exact Schmidt values of every bond of an MPS or
MPO (from its canonical form) as NumPy arrays on the host: it is a small
analysis object for tables, plots and files, whatever the array library of
the network. A :class:`Tradeoff` holds the relative error of an MPO against
its compression ratio over a range of bond dimensions.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._backend import as_array, capturing, is_tracer, to_host
from ._canonical import schmidt_values
from ._chain import Chain, check_alpha, check_index, site_cores
from ._checks import check_int, is_real
from ._entropy import renyi_entropy
from .mpo import MPO
from .truncation import Truncation

__all__ = ["Spectrum", "spectrum", "Tradeoff", "tradeoff"]


def _entropy(s: np.ndarray, alpha: float) -> float:
    return float(renyi_entropy(np.asarray(s, dtype=np.float64), alpha))


@dataclass(frozen=True)
class Spectrum:
    """Schmidt values of every bond of a tensor network.

    Attributes
    ----------
    singular_values : tuple of 1-D float64 arrays
        One per bond ``0 .. n-2``, descending.
    phys_dims : tuple of int
        Physical dimension of every site (``out * in`` for an MPO).
    kind : str
        ``"MPS"`` or ``"MPO"``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((64, 64))
    >>> spec = tnlib.spectrum(W, out_dims=(4, 4, 4), in_dims=(4, 4, 4))
    >>> spec.bond_dims
    (16, 16)
    >>> spec.entropies().shape, spec.effective_ranks().shape
    ((2,), (2,))
    """

    singular_values: tuple[np.ndarray, ...]
    phys_dims: tuple[int, ...]
    kind: str = "MPS"

    def __post_init__(self) -> None:
        for s in self.singular_values:
            s.setflags(write=False)

    @property
    def num_bonds(self) -> int:
        return len(self.singular_values)

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """Number of Schmidt values of every bond."""
        return tuple(len(s) for s in self.singular_values)

    def entropies(self, alpha: float = 1.0) -> np.ndarray:
        """Von Neumann (``alpha=1``) or Renyi entropy of every bond (natural log)."""
        alpha = check_alpha(alpha)
        return np.array([_entropy(s, alpha) for s in self.singular_values])

    def effective_ranks(self, alpha: float = 1.0) -> np.ndarray:
        """``exp(S)`` of every bond: how many Schmidt values effectively matter."""
        return np.exp(self.entropies(alpha))

    def error_curve(self, bond: int) -> np.ndarray:
        """Relative error of keeping ``chi = 1, 2, ...`` values at ``bond`` alone.

        ``curve[chi - 1] = sqrt(sum_{j >= chi} s_j^2 / sum_j s_j^2)``, the error
        of truncating only that bond (exact, since the values are Schmidt values).
        """

        k = check_index("bond", bond, self.num_bonds, "bonds")
        s2 = np.asarray(self.singular_values[k], dtype=np.float64) ** 2
        total = s2.sum()
        tail = np.concatenate([np.cumsum(s2[::-1])[::-1][1:], [0.0]])
        return np.sqrt(tail / total) if total > 0 else np.zeros_like(tail)

    def rank_for_error(self, bond: int, max_error: float) -> int:
        """Smallest ``chi`` at ``bond`` whose :meth:`error_curve` is at most ``max_error``."""
        if not (is_real(max_error) and 0.0 <= float(max_error) <= 1.0):
            raise ValueError(f"max_error={max_error!r} is invalid; expected a relative error in [0, 1]")
        curve = self.error_curve(bond)
        return int(np.argmax(curve <= max_error)) + 1

    def __repr__(self) -> str:
        ent = ", ".join(f"{e:.3g}" for e in self.entropies())
        return f"Spectrum({self.kind}, {self.num_bonds + 1} sites, bond_dims={self.bond_dims}, entropies=({ent}))"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"

    def __str__(self) -> str:
        lines = [
            f"Spectrum of an {self.kind} with {self.num_bonds + 1} sites",
            f"{'bond':>5} {'dim':>6} {'s_max':>11} {'s_min':>11} {'entropy':>9} "
            f"{'renyi-2':>9} {'exp(S)':>8} {'chi@1%':>7}",
        ]
        ent, ren = self.entropies(), self.entropies(2.0)
        for k, s in enumerate(self.singular_values):
            lines.append(
                f"{k:>5} {len(s):>6} {s[0]:>11.4g} {s[-1]:>11.4g} {ent[k]:>9.4f} "
                f"{ren[k]:>9.4f} {math.exp(ent[k]):>8.2f} {self.rank_for_error(k, 0.01):>7}"
            )
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Singular values per bond (log scale) and the entropy profile; returns the Figure.

        ``ax``: ``None`` (a new figure with both panels), one Axes (singular
        values only) or a pair of Axes. Needs matplotlib (the ``plot`` extra).
        """
        from ._plot import plot_spectrum

        return plot_spectrum(self, ax)


def _refuse_traced(obj: Any, what: str) -> None:
    """A spectrum or a trade-off curve holds NumPy values: a traced input (``jax.jit``, ``torch.compile``) is
    refused in words rather than failing deep inside the host transfer."""
    arrays = list(obj.cores) if isinstance(obj, Chain) else [obj]
    if any(is_tracer(a) for a in arrays) or capturing(*arrays):
        raise TypeError(f"{what} reads the singular values onto the host (NumPy), which a traced value cannot "
                        "give: call it outside jax.jit / torch.compile, or use chain.singular_values(bond), "
                        "which traces")


def spectrum(
    obj: Any,
    out_dims: Sequence[int] | None = None,
    in_dims: Sequence[int] | None = None,
    *,
    num_cores: int | None = None,
    pad: bool = False,
) -> Spectrum:
    """The exact Schmidt spectra of every bond of an MPS, an MPO, or a dense matrix.

    A matrix is first decomposed exactly (no truncation: a spectrum is the
    whole spectrum) by :meth:`tnlib.MPO.from_matrix` with ``out_dims``,
    ``in_dims``, ``num_cores`` and ``pad``. One canonicalisation and one SVD
    sweep give every bond.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((16, 16))
    >>> spec = tnlib.spectrum(W, (4, 4), (4, 4))
    >>> spec.bond_dims, spec.kind
    ((16,), 'MPO')
    """
    _refuse_traced(obj, "spectrum")
    if isinstance(obj, Chain):
        if out_dims is not None or in_dims is not None or num_cores is not None or pad:
            raise ValueError("out_dims, in_dims, num_cores and pad apply only to a dense matrix")
        chain = obj
    else:
        chain = MPO.from_matrix(as_array(obj, "matrix"), out_dims, in_dims, num_cores=num_cores, pad=pad)
    values = schmidt_values(site_cores(chain), chain.center)
    phys = tuple(int(c.shape[1]) for c in site_cores(chain))
    host = tuple(np.array(to_host(s), dtype=np.float64) for s in values)
    return Spectrum(host, phys, type(chain).__name__)


@dataclass(frozen=True)
class Tradeoff:
    """Relative error against compression ratio of an MPO over bond caps.

    Attributes
    ----------
    max_bonds, num_params : tuple of int
    compression_ratios, relative_errors : tuple of float
        ``M * N / num_params`` and ``||W - W_mpo||_F / ||W||_F`` (exact: from
        the truncation report of an SVD sweep from the canonical form).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((64, 64))
    >>> curve = tnlib.tradeoff(W, (4, 4, 4), (4, 4, 4), max_bonds=(2, 8, 16))
    >>> curve.max_bonds, curve.relative_errors[-1] < 1e-12
    ((2, 8, 16), True)
    """

    max_bonds: tuple[int, ...]
    num_params: tuple[int, ...]
    compression_ratios: tuple[float, ...]
    relative_errors: tuple[float, ...]

    def max_compression(self, max_error: float) -> tuple[int, float, float] | None:
        """``(max_bond, compression_ratio, relative_error)`` of the most compressed
        point whose error is at most ``max_error``, or ``None``."""
        ok = [k for k, e in enumerate(self.relative_errors) if e <= max_error]
        if not ok:
            return None
        k = max(ok, key=lambda i: self.compression_ratios[i])
        return self.max_bonds[k], self.compression_ratios[k], self.relative_errors[k]

    def __repr__(self) -> str:
        if not self.max_bonds:
            return "Tradeoff(no points)"
        return (f"Tradeoff({len(self.max_bonds)} points, max_bond {min(self.max_bonds)}-{max(self.max_bonds)}, "
                f"ratio {min(self.compression_ratios):.3g}x-{max(self.compression_ratios):.3g}x, relative error "
                f"{min(self.relative_errors):.3g}-{max(self.relative_errors):.3g})")

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"

    def __str__(self) -> str:
        lines = [f"{'max_bond':>8} {'params':>10} {'ratio':>9} {'rel. error':>11}"]
        for row in zip(self.max_bonds, self.num_params, self.compression_ratios, self.relative_errors):
            lines.append(f"{row[0]:>8} {row[1]:>10} {row[2]:>8.2f}x {row[3]:>11.3e}")
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Relative error against compression ratio (log-log); returns the Figure."""
        from ._plot import plot_tradeoff

        return plot_tradeoff(self, ax)


def tradeoff(
    matrix: Any,
    out_dims: Sequence[int] | None = None,
    in_dims: Sequence[int] | None = None,
    *,
    max_bonds: Sequence[int] | None = None,
    num_cores: int | None = None,
    pad: bool = False,
) -> Tradeoff:
    """Error against compression ratio of a matrix's MPO over a range of bond caps.

    The matrix is decomposed exactly once; every point is a truncation of that
    chain (``Truncation(max_bond=chi)``). ``max_bonds`` defaults to powers of 2
    up to the largest exact bond.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> x = np.linspace(0, 1, 64)
    >>> W = np.exp(-(x[:, None] - x[None, :]) ** 2)
    >>> curve = tnlib.tradeoff(W, (4, 4, 4), (4, 4, 4))
    >>> bond, ratio, err = curve.max_compression(0.01)
    >>> err <= 0.01
    True
    """
    _refuse_traced(matrix, "tradeoff")
    if isinstance(matrix, MPO):
        if out_dims is not None or in_dims is not None or num_cores is not None or pad:
            raise ValueError("out_dims, in_dims, num_cores and pad apply only to a dense matrix")
        mpo = matrix
    else:  # the curve starts from the exact MPO: every point is one truncation of it
        mpo = MPO.from_matrix(as_array(matrix, "matrix"), out_dims, in_dims, num_cores=num_cores, pad=pad)
    if max_bonds is None:
        top = max(mpo.bond_dims, default=1)
        max_bonds = [2**k for k in range(int(math.log2(top)) + 1)]
        if max_bonds[-1] != top:
            max_bonds.append(top)
    max_bonds = list(max_bonds)
    if not max_bonds:
        raise ValueError("max_bonds is empty; pass at least one bond dimension, or None for powers of 2")
    for chi in max_bonds:
        check_int("max_bonds entry", chi, 1)
    canon = mpo.canonicalize(0)
    rows = []
    for chi in max_bonds:
        t = canon.truncate(Truncation(max_bond=int(chi)))
        assert t.report is not None  # truncate always reports
        rows.append((int(chi), t.num_params, t.compression_ratio, t.report.relative_error_bound))
    cols = list(zip(*rows))
    return Tradeoff(tuple(cols[0]), tuple(cols[1]), tuple(cols[2]), tuple(cols[3]))
