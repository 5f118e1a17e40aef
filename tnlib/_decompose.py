"""The decomposition route of a validated matrix in a fixed layout: cores and a report, no container.

``decompose(a, out_dims, in_dims, truncation, svd, factor)``:

1. a ``dask.array`` goes out of core (:mod:`tnlib._out_of_core`), block by block;
2. otherwise the matrix is zero-padded to ``(prod(out_dims), prod(in_dims))``
   when it is smaller, its legs are interleaved (:mod:`tnlib._legs`) and the
   interleaved tensor is decomposed by :func:`tnlib._sweeps.tt_decompose`
   (exact QR sweeps, per-bond TT-SVD, or the global budget);
3. with the factor of an input Gram (``factor``), the weight-space truncation
   is refitted in the metric of the inputs (:mod:`tnlib._metric_fit`) and
   the report holds the measured errors in both norms.

:meth:`tnlib.MPO.from_matrix` validates once, chooses the layout (or has
:mod:`tnlib._search` choose it, which calls this route for every layout it
fits) and wraps the result; nothing here builds an ``MPO``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import array_api_compat

from . import _metric_fit as metric_fit
from ._backend import far_exponent, itemsize, namespace, prod, scalar
from ._canonical import orthonormalize
from ._legs import cores_to_matrix, cores_to_sites, interleave, num_params, site_dims, sites_to_cores
from ._out_of_core import is_dask, mpo_sites_from_dask
from ._sweeps import tt_decompose
from .metric import GramFactor, svd_rank
from .truncation import Truncation, TruncationReport

__all__ = [
    "Decomposition", "decompose", "check_padding", "prefix_projector", "svd_layout", "measured_error", "far_exponent",
    "scaled_back",
]


class Decomposition(NamedTuple):
    """MPO cores ``(left, out, in, right)``, their report, and the orthogonality centre."""

    cores: list[Any]
    report: TruncationReport
    center: int | None


def check_padding(shape: tuple[int, int], out_dims: Sequence[int], in_dims: Sequence[int], like: Any) -> None:
    """Refuse a padding that would build an array far larger than the matrix."""
    padded = (prod(out_dims), prod(in_dims))
    if padded != shape and padded[0] * padded[1] > max(4 * shape[0] * shape[1], 2**20):
        raise ValueError(
            f"padding the {shape[0]} x {shape[1]} matrix to out_dims={tuple(out_dims)} x in_dims={tuple(in_dims)} "
            f"would build a {padded[0]} x {padded[1]} array "
            f"({padded[0] * padded[1] * itemsize(like) / 2**30:.3g} GiB); "
            "pass dims whose products are close to the shape"
        )


def _pad(a: Any, rows: int, cols: int) -> Any:
    m, n = (int(d) for d in a.shape)
    if (m, n) == (rows, cols):
        return a
    xp = namespace(a)
    dev = array_api_compat.device(a)
    a = xp.concat([a, xp.zeros((rows - m, n), dtype=a.dtype, device=dev)], axis=0)
    return xp.concat([a, xp.zeros((rows, cols - n), dtype=a.dtype, device=dev)], axis=1)


def prefix_projector(dims: Sequence[int], count: int, like: Any) -> list[Any]:
    """MPO cores ``(left, d, d, right)`` of the diagonal projector onto the first ``count`` of ``prod(dims)``
    multi-indices (C order): the padding's complement, of bond dimension at most 2.

    The indicator ``i < count`` is an automaton over the digits of ``i``
    (most significant first) with two states, *equal so far* to the digits of
    ``count - 1`` and *already below*; a digit above the bound's rejects.
    """
    xp = namespace(like)
    dev = array_api_compat.device(like)
    bound, digits = count - 1, []
    for d in reversed(dims):
        bound, digit = divmod(bound, int(d))
        digits.append(digit)
    digits.reverse()
    n = len(dims)
    cores = []
    for k, (d, l) in enumerate(zip(dims, digits)):
        t = [[[0.0, 0.0] for _ in range(d)] for _ in range(2)]  # t[state_in][digit][state_out]
        for x in range(d):
            t[0][x][0] = 1.0 if x == l else 0.0
            t[0][x][1] = 1.0 if x < l else 0.0
            t[1][x][1] = 1.0
        rows = t[:1] if k == 0 else t
        if k == n - 1:
            table = [[[s[x][0] + s[x][1]] for x in range(d)] for s in rows]
        else:
            table = rows
        ind = xp.asarray(table, dtype=like.dtype, device=dev)  # (left, d, right)
        eye = xp.eye(d, dtype=like.dtype, device=dev)
        cores.append(ind[:, :, None, :] * eye[None, :, :, None])
    return cores


def scaled_back(fit: Decomposition, exponent: int) -> Decomposition:
    """A decomposition of ``a * 2**-exponent`` as one of ``a``: the last core and the report scaled back."""
    cores = list(fit.cores)
    cores[-1] = cores[-1] * 2.0**exponent
    return Decomposition(cores, fit.report.scaled(2.0**exponent), fit.center)


def decompose(
    a: Any,
    out_dims: Sequence[int],
    in_dims: Sequence[int],
    truncation: Truncation | None,
    svd: str,
    factor: GramFactor | None = None,
) -> Decomposition:
    """The MPO cores of a validated matrix ``a`` in the layout ``out_dims x in_dims`` (see the module docstring)."""
    out_dims, in_dims = tuple(out_dims), tuple(in_dims)
    if is_dask(a):
        assert truncation is not None  # from_matrix's check_out_of_core_truncation gives one
        cores, report = mpo_sites_from_dask(a, out_dims, in_dims, truncation, svd)
        return Decomposition(cores, report, len(cores) - 1)
    a = _pad(a, prod(out_dims), prod(in_dims))
    sites, report = tt_decompose(interleave(a, out_dims, in_dims), site_dims(out_dims, in_dims), truncation, svd)
    cores = sites_to_cores(sites, out_dims, in_dims)
    base = Decomposition(cores, report, len(cores) - 1)
    return base if factor is None else refit(a, base, truncation, factor)


def refit(a: Any, base: Decomposition, truncation: Truncation | None, factor: GramFactor) -> Decomposition:
    """The weight-space decomposition ``base`` of ``a`` refitted in the metric of ``factor`` (same bonds)."""
    assert truncation is not None  # from_matrix refuses input_gram without one
    cores = base.cores
    exponent = far_exponent(a)
    if exponent:  # the refit measures errors in the metric: at unit scale they neither under- nor overflow
        unit = _refit(a * 2.0**-exponent, [c * 2.0**-exponent if k == len(cores) - 1 else c
                                          for k, c in enumerate(cores)], base.report, truncation, factor)
        return scaled_back(unit, exponent)
    return _refit(a, cores, base.report, truncation, factor)


def is_svd_layout(out_dims: Sequence[int], in_dims: Sequence[int]) -> bool:
    """The truncated SVD's layout ``out (M, 1) x in (1, N)``: every row in the first core, every column in the last."""
    return len(out_dims) == 2 and out_dims[1] == 1 and in_dims[0] == 1


def svd_layout(a: Any, budget: int, truncation: Truncation, factor: GramFactor) -> list[Any]:
    """The whitened truncated SVD at ``budget`` parameters as the cores of layout ``out (M, 1) x in (1, N)``."""
    xp = namespace(a)
    m, n = (int(d) for d in a.shape)
    left, right = metric_fit.whitened_svd(a, svd_rank((m, n), budget, truncation.cap), factor)
    r = left.shape[1]
    return [xp.reshape(left, (1, m, 1, r)), xp.reshape(right, (r, 1, n, 1))]


def _refit(
    a: Any, cores: list[Any], report: TruncationReport, truncation: Truncation, factor: GramFactor
) -> Decomposition:
    """Refit a weight-space truncation of ``a`` in the metric of the Gram (same bonds), with measured errors.

    A truncated-SVD layout is the whitened SVD (the optimum in the shrunk
    metric: sweeps could not improve it); every other layout starts from the
    weight-space fit and ALS sweeps in the shrunk metric polish it. The
    better of the weight-space fit and the refitted one in the selection
    metric (held-out rows, else the fit's own) is kept, so no layout ends
    worse there than its weight-space fit.
    """
    out_dims = tuple(int(c.shape[1]) for c in cores)
    in_dims = tuple(int(c.shape[2]) for c in cores)
    if is_svd_layout(out_dims, in_dims):
        params = num_params(cores)
        budget = truncation.max_params if truncation.max_params is not None else params
        start = cores_to_sites(svd_layout(a, min(budget, params), truncation, factor))
        fitted = sites_to_cores(orthonormalize(start, len(start) - 1, None), out_dims, in_dims)
    else:
        sites = metric_fit.fit_in_metric(cores_to_sites(cores), a, factor.metric, out_dims, in_dims)
        fitted = sites_to_cores(sites, out_dims, in_dims)
    w_plain, w_fitted = cores_to_matrix(cores), cores_to_matrix(fitted)
    fitted_error, plain_error = metric_fit.relative_errors_in(a, [w_fitted, w_plain], factor.selection)
    if fitted_error <= plain_error:
        cores, w_hat, selected = fitted, w_fitted, fitted_error
    else:
        w_hat, selected = w_plain, plain_error  # the weight-space cores are left-canonical already
    xp = namespace(a)
    bonds = tuple(int(c.shape[3]) for c in cores[:-1])
    full = report.full_bond_dims if len(report.full_bond_dims) == len(bonds) else bonds
    refitted = TruncationReport(
        bonds,
        full,
        (float("nan"),) * len(bonds),
        scalar(xp.linalg.vector_norm(a)),
        truncation,
        error=scalar(xp.linalg.vector_norm(a - w_hat)),
        output_error=metric_fit.output_error(a, w_hat, factor),
        held_out_error=None if factor.held_out is None else selected,  # the selection Gram is the held-out one
        shrinkage=factor.shrinkage,
    )
    return Decomposition(cores, refitted, len(cores) - 1)


def measured_error(a: Any, cores: Sequence[Any]) -> float:
    """The relative weight-space error ``||A - A_hat|| / ||A||`` of MPO cores of an unpadded matrix ``a``."""
    xp = namespace(a)
    norm = scalar(xp.linalg.vector_norm(a))
    error = scalar(xp.linalg.vector_norm(a - cores_to_matrix(cores)))
    return error / norm if norm > 0 else 0.0
