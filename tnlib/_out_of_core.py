"""TT-SVD of a matrix or tensor held as a ``dask.array``: larger than memory, or spread over a cluster.

The decomposition touches the whole input only in its first step. The first
unfolding ``A_1`` has ``d_1`` rows (``o_1 i_1`` for an MPO) and a huge
number of columns; its left singular vectors come from the ``R`` factor of
the tall-skinny ``A_1^T`` by TSQR (Demmel et al., SIAM J. Sci. Comput. 34,
2012; ``dask.array.linalg.tsqr``), blockwise over the input's chunks, with
only ``R`` (``d_1 x d_1``) gathered. The SVD of ``R^T`` gives ``U_1`` and the
complete first spectrum (so the first bond is truncated exactly as in
memory, and ``||A||_F`` comes with it); the remainder ``U_1^T A_1``
(``chi_1`` rows) is one more blockwise product, gathered into memory, where
the rest of the sweep runs as :func:`tnlib._sweeps.tt_decompose` does.

Memory: every block of ``A_1^T`` takes rows from all ``o_1`` slabs of the
matrix (the first row leg is the most significant), so about ``o_1`` input
blocks are held at a time: give the dask array row chunks of a few MiB
(:func:`open_npy` does). The remainder holds ``chi_1 / d_1`` of the input's
entries: choose a first
site with ``o_1 i_1`` well above the bond (e.g. ``out_dims=(64, ...)``,
``in_dims=(8, ...)`` with ``max_bond=32``: 1/16 of the input). Whatever
scheduler is active runs the blockwise steps: dask's threads by default, a
``dask.distributed`` cluster when a client exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from typing import Any, Sequence

import numpy as np

from ._backend import binary_exponent, check_floating
from ._checks import check_int
from ._legs import contract_sites, deinterleave, interleave_order, site_dims, sites_to_cores
from ._sketched import FAILURE, PROBES, frobenius_confidence, oversampling
from ._sweeps import tt_decompose
from .dims import choose_dims, divisors
from .truncation import SketchCertificate, Truncation, TruncationReport, select_rank, with_error_check

__all__ = [
    "is_dask", "check_dask", "check_out_of_core_truncation", "streaming_dims", "FIRST_SITE_MAX", "STREAMED",
    "mpo_sites_from_dask", "mps_sites_from_dask", "open_npy", "npy_header",
]


def is_dask(x: Any) -> bool:
    """Whether ``x`` is a ``dask.array.Array`` (checked without importing dask)."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "dask") and hasattr(x, "chunks")


def check_dask(x: Any, name: str, ndim: int | None) -> None:
    """Shape and dtype checks of a dask input (its values are checked blockwise, in :func:`first_step`)."""
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got a dask array of shape {tuple(x.shape)}")
    if any(np.isnan(d) for d in x.shape):
        raise ValueError(f"{name} has unknown chunk sizes {x.shape}; call {name}.compute_chunk_sizes() first")
    if 0 in x.shape:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    check_floating(np.empty(0, dtype=x.dtype), name)


def check_out_of_core_truncation(truncation: Truncation | None) -> Truncation:
    if truncation is None or truncation.is_exact:
        raise ValueError(
            "a dask input needs a truncation that cuts the first bond (max_bond, cutoff, max_discarded, ...): "
            "an exact chain keeps a remainder as large as the input; pass e.g. truncation=tnlib.Truncation(max_bond=32)"
        )
    if truncation.chain_criteria:
        raise ValueError(
            "max_params and max_relative_error allocate all bonds from the exact chain, which a dask input cannot "
            f"hold in memory (got {', '.join(truncation.chain_criteria)}); use per-bond criteria (max_bond, cutoff, "
            "max_discarded, ...)"
        )
    return truncation


STREAMED = 2**22
"""Entries from which a dask input gets streaming dims (below, the balanced default holds it in little memory)."""

FIRST_SITE_MAX = 4096
"""Largest first site (``out_dims[0] * in_dims[0]``) of the default dims of a dask input: the Gram of the first
unfolding, which the first step holds, is this squared."""


def streaming_dims(shape: tuple[int, int], truncation: Truncation,
                   num_cores: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The default dims of a dask matrix: a first site of at least eight times the first bond (``max_bond``, or
    ``FIRST_SITE_MAX / 8`` when no criterion caps it) where the shape allows, so that the remainder after the first
    step, all that is held in memory, is at most an eighth of the input; the rest as :func:`choose_dims` gives."""
    m, n = shape
    if m * n < STREAMED:  # small enough that balanced dims hold it anyway
        return choose_dims(shape, num_cores=num_cores)
    cap = truncation.cap
    target = 8 * (cap if cap is not None else FIRST_SITE_MAX // 8)
    ranked = sorted(((0, o * i, abs(o - i)) if o * i >= target else (1, -o * i, abs(o - i)), o, i)
                    for o in divisors(m) for i in divisors(n)
                    if 1 < o * i <= FIRST_SITE_MAX and (o, i) != (m, n))
    rest = None if num_cores is None else max(num_cores - 1, 1)
    for _, o, i in ranked[:64]:  # the best first site whose remainder factors in a balanced way
        try:
            rest_out, rest_in = choose_dims((m // o, n // i), num_cores=rest)
        except ValueError:
            continue
        return (o, *rest_out), (i, *rest_in)
    return choose_dims(shape, num_cores=num_cores)


_BLOCK_BYTES = 64 * 2**20  # at most about this much input per block of the first unfolding
_READ_BYTES = 2 * 2**20  # default rows per block of open_npy: about this many bytes


def _first_unfolding_t(x: Any, row_legs: Sequence[int], col_legs: Sequence[int]) -> Any:
    """``A_1^T`` as a dask array ``(rest, d_1)`` in row blocks that each hold all ``d_1`` columns.

    ``x`` is an MPO's matrix with rows ``(o_1, O)`` and columns ``(i_1, I)``
    (``row_legs``, ``col_legs``), or a tensor ``(d_1, ...)`` (``col_legs``
    empty). Every block is built from one piece of the input by a local
    transpose, so no step of the graph holds more than a few blocks.
    """
    import dask.array as da

    item = x.dtype.itemsize
    if col_legs:
        (o1, big_o), (i1, big_i) = row_legs, col_legs
        c = slab_rows(int(x.shape[0]), int(x.shape[1]), o1, item)
        source = _npy_source(x) or _dask_rows(x)
        if source is not None:  # each task reads its own o_1 pieces of rows (no shuffle, no rechunk)
            if isinstance(source, _DaskRows):
                c = source.slab_chunk(big_o, o1, c)
            return da.map_blocks(
                _read_unfolding_block, source, o1, c, i1, big_i, dtype=x.dtype,
                chunks=((c * big_i,) * (big_o // c), (o1 * i1,)),
            )
        given = set(x.chunks[0][:-1]) | {x.chunks[0][-1]}
        if len(given) != 1 or big_o % next(iter(given)):  # blocks must not straddle the o_1 slabs
            x = x.rechunk({0: c})
        else:
            c = next(iter(given))
        slabs = x.rechunk({1: -1}).reshape(o1, big_o, i1 * big_i).rechunk({0: -1, 1: c, 2: -1})

        def local(block: np.ndarray) -> np.ndarray:  # (o1, c, i1 I) -> (c I, o1 i1)
            rows = block.shape[1]
            return block.reshape(o1, rows, i1, big_i).transpose(1, 3, 0, 2).reshape(rows * big_i, o1 * i1)

        chunks = (tuple(k * big_i for k in slabs.chunks[1]), (o1 * i1,))
        return slabs.map_blocks(local, drop_axis=0, chunks=chunks, dtype=x.dtype)
    d1, rest = row_legs
    inner = int(np.prod(x.shape[2:])) if x.ndim > 2 else 1
    c = _divisor_chunk(int(x.shape[1]), max(1, _BLOCK_BYTES // (d1 * inner * item)))
    rows = _dask_rows(x)
    if rows is not None:  # block j: the slice x[:, j c:(j+1) c] read by the task itself, transposed for free
        return da.map_blocks(_read_tensor_block, rows, c, dtype=x.dtype,
                             chunks=((c * inner,) * (int(x.shape[1]) // c), (d1,)))
    flat = x.rechunk({0: -1, 1: c, **{k: -1 for k in range(2, x.ndim)}}).reshape(d1, rest)
    return flat.T.rechunk({0: c * inner, 1: -1})


def _npy_source(x: Any) -> _NpyRows | None:
    """The file behind ``x`` when ``x`` is exactly an array of :func:`open_npy` (not sliced or computed on)."""
    graph = dict(x.__dask_graph__())
    sources = [v for v in graph.values() if isinstance(v, _NpyRows)]
    if len(sources) != 1 or sources[0].shape != tuple(x.shape) or len(graph) != x.npartitions + 1:
        return None
    return sources[0]


def _read_unfolding_block(
    source: _NpyRows | _DaskRows, o1: int, c: int, i1: int, big_i: int, block_id: Any = None
) -> np.ndarray:
    """Block ``j`` of ``A_1^T`` read from the file: rows ``j c .. (j+1) c`` of each of the ``o_1`` slabs."""
    j = block_id[0]
    big_o = source.shape[0] // o1
    # Fortran order, so that LAPACK factors the block in place; filled slab by slab (one block in memory)
    out = np.empty((c * big_i, o1 * i1), dtype=source.dtype, order="F")
    legs = out.T.reshape(o1, i1, c, big_i)  # a view: column (k, i), row (c, I)
    with source.open() as fh:  # one open for the o_1 reads of the block
        for k in range(o1):
            piece = source.read(fh, k * big_o + j * c, c)  # (c, i1 I)
            legs[k] = piece.reshape(c, i1, big_i).transpose(1, 0, 2)
    return out


def _read_tensor_block(source: _DaskRows, c: int, block_id: Any = None) -> np.ndarray:
    """Block ``j`` of ``A_1^T`` of a tensor ``(d_1, d_2, ...)``: ``x[:, j c:(j+1) c]`` as ``(c d_3.., d_1)``
    (the transpose of a C-ordered slice: Fortran order, which LAPACK factors in place)."""
    j = block_id[0]
    piece = np.ascontiguousarray(source.x[:, j * c:(j + 1) * c].compute(scheduler="sync"))
    return piece.reshape(piece.shape[0], -1).T


def slab_rows(rows: int, cols: int, o1: int, itemsize: int) -> int:
    """Rows per input block for an MPO whose first row leg is ``o1``: a divisor of ``rows / o1`` (so no block
    straddles two row slabs) with ``o1`` blocks together about :data:`_BLOCK_BYTES`. Blocks of this size
    are each read once and released at once; larger ones are held until every slab has been read."""
    return _divisor_chunk(rows // o1, max(1, _BLOCK_BYTES // (o1 * cols * itemsize)))


def _divisor_chunk(n: int, target: int) -> int:
    """The largest divisor of ``n`` that is at most ``max(target, 1)``."""
    target = max(1, min(int(target), n))
    for c in range(target, 0, -1):
        if n % c == 0:
            return c
    return 1


def _r_factor(block: np.ndarray, n: int) -> np.ndarray:
    """The ``(n, n)`` R factor of a block with ``n`` columns (zero rows below a short block's own), by LAPACK
    in the block's own precision; a Fortran-ordered block (as :func:`open_npy` files give) is factored in
    place, without a copy (only this reduction reads it)."""
    import scipy.linalg

    r = scipy.linalg.qr(block, mode="r", check_finite=False, overwrite_a=True)[0]
    if r.shape[0] < n:
        r = np.concatenate([r, np.zeros((n - r.shape[0], n), dtype=r.dtype)], axis=0)
    return r[:n].copy()  # a copy: a view would keep the whole (rows, n) array alive


def _tsqr_r(at: Any, fan_in: int = 8) -> Any:
    """``R`` of the tall-skinny dask array ``at`` by TSQR: a QR per block, then QRs of ``fan_in`` stacked
    R factors at a time up a tree (a dask reduction, so factors are combined as soon as they exist)."""
    import dask.array as da

    n = int(at.shape[1])

    def step(x: np.ndarray, axis: Any = None, keepdims: bool = True) -> np.ndarray:
        return _r_factor(x, n)

    return da.reduction(at, step, step, combine=step, axis=0, keepdims=True, concatenate=True,
                        split_every=fan_in, dtype=at.dtype, output_size=n)


def first_step(
    at: Any, truncation: Truncation, num_bonds: int, name: str
) -> tuple[np.ndarray, np.ndarray, int, float, float, float]:
    """``(U_1 (d_1, chi), (U_1^H A_1)^T (rows of A^T, chi), full rank, discarded weight, ||A||_F,
    discarded weight relative to ||A||_F^2)``; the spectrum is taken at unit scale (a power of two)."""
    r_mem = _tsqr_r(at).compute()  # one pass over the input
    if not np.isfinite(r_mem).all():  # a NaN or inf anywhere in the input reaches R
        raise _NotFinite(f"{name} contains NaN or inf")
    exponent = binary_exponent(r_mem)  # the spectrum at unit scale: its squares stay in range
    u, s, _ = np.linalg.svd(r_mem.T * 2.0**-exponent)  # A_1 = R^T Q^T: the left factor and spectrum of A_1
    full = min(int(at.shape[0]), int(at.shape[1]))  # the rank bound of A_1 (R's zero padding adds zeros)
    u, s = u[:, :full], s[:full]
    total = float(np.sum(s * s))
    chi = select_rank(s, truncation.for_bond(0, num_bonds)) if total > 0 else 1
    u1 = np.ascontiguousarray(u[:, :chi]).astype(at.dtype)
    # the carry U_1^H A_1, gathered transposed: A_1^T conj(U_1) (conj matters for complex input)
    projected = at.map_blocks(np.matmul, np.conj(u1), chunks=(at.chunks[0], (chi,)), dtype=at.dtype)
    rest_t = projected.compute()  # the second pass: chi columns, gathered
    discarded = float(np.sum(s[chi:] * s[chi:]))
    # stated at the true scale: the norm always fits; the squared weight may not (then the report's
    # relative weights, from tt_decompose_dask, carry it)
    # at the true scale: the norm fits in range; the squared weight may not, so its relative size goes along
    norm = math.ldexp(total**0.5, exponent)
    return u1, rest_t, int(s.shape[0]), discarded * 4.0**exponent if abs(exponent) < 500 else (
        math.inf if exponent > 0 else 0.0), norm, (discarded / total if total > 0 else 0.0)


class _NotFinite(ValueError):
    """A NaN or inf reached the first step's R factor."""


@contextlib.contextmanager
def _naming_rows(x: Any, name: str) -> Any:
    """Re-raise a first step's NaN/inf error naming the rows (first axis) of ``x`` that hold them: one more
    pass over the input, on the error path only."""
    try:
        yield
    except _NotFinite:
        import dask.array as da

        finite = da.isfinite(x).reshape(int(x.shape[0]), -1).all(axis=1).compute()
        rows = np.flatnonzero(~finite)
        shown = ", ".join(str(int(r)) for r in rows[:10]) + (", ..." if rows.size > 10 else "")
        what = "row" if x.ndim == 2 else "slice of the first axis"
        what = what if rows.size == 1 else what.replace("row", "rows").replace("slice ", "slices ")
        raise ValueError(f"{name} contains NaN or inf in {rows.size} {what} ({shown}); expected finite values"
                         ) from None


def _sketch_and_r(block: np.ndarray, psi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One block of the single pass: its rows of ``A_1^T Psi`` (first, before the QR overwrites the block)
    and its R factor."""
    return block @ psi, _r_factor(block, n)


def _stacked_r(factors: Sequence[np.ndarray], n: int) -> np.ndarray:
    return _r_factor(np.concatenate(list(factors), axis=0), n)


def first_step_single(
    at: Any, truncation: Truncation, num_bonds: int, name: str, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray, int, float, float, float], np.ndarray, np.ndarray]:
    """:func:`first_step` in one pass over the input (``svd="randomized"`` of a dask array).

    Every block gives, from one read, its R factor (so ``U_1`` and the first spectrum are exact, as in
    the two-pass route) and its rows of ``A_1^T [Psi, H]``: ``Psi`` (``d_1 x l``) a Gaussian co-range
    sketch and ``H`` (``d_1 x t``) an independent test sketch. The remainder ``U_1^H A_1`` is then
    recovered from ``Psi^T A_1`` alone as the first ``chi`` rows of ``(Psi^T U_l')^+ Psi^T A_1``
    (``l' = cap + p``, ``l = 2 l' + 2``; Tropp, Yurtsever, Udell and Cevher, SIAM J. Matrix Anal. Appl.
    38, 2017): exact when ``A_1`` has rank at most ``l'``, else off by about ``sqrt(l' / (l - l' - 1))``
    (about 1) times its weight beyond ``l'``, in expectation. The gathered sketch holds ``l + t`` rows
    of the first unfolding where the two-pass route gathers ``chi``. Returns ``first_step``'s tuple,
    ``H`` and ``A_1^T H`` (for the certificate: :func:`single_pass_certificate`).
    """
    import dask

    d1 = int(at.shape[1])
    cap = truncation.for_bond(0, num_bonds).cap
    if cap is None:
        raise ValueError("a single pass (svd='randomized' of a dask input) sizes its sketch from the first bond's "
                         "max_bond; give the truncation a max_bond")
    kept = cap + oversampling(cap)  # l': the directions recovered from the co-range sketch
    ell = 2 * kept + 2  # l: Tropp et al.'s choice l = 2 l' + 1, and one more
    if ell + PROBES >= d1:
        raise ValueError(
            f"a single pass keeps {ell + PROBES} sketched rows of the first unfolding, which has only {d1} "
            f"(max_bond={cap}): it would hold as much as the input; choose a first site with more rows "
            "(out_dims[0] * in_dims[0] well above max_bond) or use the two-pass route (svd='auto')"
        )
    psi = np.random.default_rng(seed).standard_normal((d1, ell + PROBES)).astype(at.dtype)
    parts = [dask.delayed(_sketch_and_r, nout=2)(b, psi, d1) for b in at.to_delayed().ravel()]
    factors = [part[1] for part in parts]
    while len(factors) > 1:
        factors = [dask.delayed(_stacked_r)(factors[i:i + 8], d1) for i in range(0, len(factors), 8)]
    r_mem, sketches = dask.compute(factors[0], [part[0] for part in parts])  # the one pass
    if not np.isfinite(r_mem).all():
        raise _NotFinite(f"{name} contains NaN or inf")
    w_t = np.concatenate(sketches, axis=0)
    del sketches
    exponent = binary_exponent(r_mem)
    u, s, _ = np.linalg.svd(r_mem.T * 2.0**-exponent)
    full = min(int(at.shape[0]), d1)
    u, s = u[:, :full], s[:full]
    total = float(np.sum(s * s))
    chi = select_rank(s, truncation.for_bond(0, num_bonds)) if total > 0 else 1
    kept = min(kept, full)
    solve = np.linalg.pinv(psi[:, :ell].T @ u[:, :kept])  # (l', l)
    rest_t = np.ascontiguousarray((w_t[:, :ell] @ solve.T)[:, :chi])  # (U_l'^H A_1)^T, first chi columns
    test_t = np.ascontiguousarray(w_t[:, ell:])  # A_1^T H
    del w_t
    u1 = np.ascontiguousarray(u[:, :chi]).astype(at.dtype)
    discarded = float(np.sum(s[chi:] * s[chi:]))
    norm = math.ldexp(total**0.5, exponent)
    first = (u1, rest_t, int(s.shape[0]), discarded * 4.0**exponent if abs(exponent) < 500 else (
        math.inf if exponent > 0 else 0.0), norm, (discarded / total if total > 0 else 0.0))
    return first, psi[:, ell:], test_t


def single_pass_certificate(
    report: TruncationReport, u1: np.ndarray, rest_dense: np.ndarray, h: np.ndarray, test_t: np.ndarray
) -> TruncationReport:
    """The report with the certificate of a single pass: the error of the whole chain on the test sketch,
    ``||H^T (A_1 - U_1 Rest)||`` (``rest_dense``: the decomposed remainder, ``(chi, N)`` in ``A_1``'s
    column order)."""
    norm = report.norm if 0 < report.norm < math.inf else 1.0
    resid = (test_t.T - (h.T @ u1) @ rest_dense) / norm  # relative: its squares neither under- nor overflow
    estimate = float(np.sum(np.abs(resid) ** 2)) / PROBES
    certificate = SketchCertificate(
        error_estimate=math.sqrt(estimate),
        error_bound=math.sqrt(frobenius_confidence(PROBES, FAILURE) * estimate),
        probability=1.0 - FAILURE,
        probes=PROBES,
        power_iterations=(0,) * len(report.bond_dims),
        sketched=(True,) + (False,) * (len(report.bond_dims) - 1),
    )
    # the per-bond discarded weights miss what the sketch itself lost: the report's error is the bound
    return dataclasses.replace(report, certificate=certificate, error=certificate.error_bound * report.norm)


def _dense_rest(cores: Sequence[Any]) -> np.ndarray:
    """The chain of site cores ``cores`` (first left bond ``chi``) as a ``(chi, prod d)`` array: the left
    bond folded into the first site's leg, then :func:`tnlib._legs.contract_sites`."""
    chi, d, right = (int(v) for v in cores[0].shape)
    return contract_sites([cores[0].reshape(1, chi * d, right), *cores[1:]]).reshape(chi, -1)


def tt_decompose_dask(
    first: tuple[np.ndarray, np.ndarray, int, float, float, float],
    rest_dims: Sequence[int],
    d1: int,
    truncation: Truncation,
    svd: str,
) -> tuple[list[Any], TruncationReport]:
    """Finish the sweep in memory from :func:`first_step`'s result; ``rest`` is already interleaved into
    ``(chi, d_2, ..., d_n)`` by the caller."""
    u1, rest, full_rank, discarded, norm, rel0 = first
    if svd == "auto" and rest.nbytes > _BLOCK_BYTES:
        # a remainder this large would be copied several times by a full LAPACK SVD: the randomized SVD
        # (range finder with its certificate, tnlib.svd) needs only a few thin sketches of it
        svd = "randomized"
    chi = u1.shape[1]
    cores = [u1.reshape(1, d1, chi)]
    if len(rest_dims) == 1:
        cores.append(rest.reshape(chi, rest_dims[0], 1))
        return cores, TruncationReport((chi,), (full_rank,), (discarded,), norm, truncation, relative=(rel0,))
    dims = (chi * rest_dims[0], *rest_dims[1:])
    tail, report = tt_decompose(rest.reshape(dims), dims, truncation.after(1), svd)
    head = tail[0]
    tail[0] = head.reshape(chi, rest_dims[0], head.shape[2])
    # the rest's weights relative to ||rest||^2 = (1 - rel0) ||A||^2
    rest_rel = tuple(r * (1.0 - rel0) for r in report.relative_discarded)
    merged = TruncationReport(
        (chi, *report.bond_dims), (full_rank, *report.full_bond_dims), (discarded, *report.discarded), norm, truncation,
        relative=(rel0, *rest_rel),
    )
    return cores + tail, merged


def mpo_sites_from_dask(
    matrix: Any, out_dims: Sequence[int], in_dims: Sequence[int], truncation: Truncation, svd: str
) -> tuple[list[Any], TruncationReport]:
    """MPO cores ``(left, out, in, right)`` of the dask ``matrix`` (dims checked by the caller)."""
    n = len(out_dims)
    m, cols = (int(d) for d in matrix.shape)
    o1, i1 = out_dims[0], in_dims[0]
    at = _first_unfolding_t(matrix, (o1, m // o1), (i1, cols // i1))
    single = svd == "randomized"
    with _naming_rows(matrix, "matrix"):
        if single:
            (u1, rest_t, full_rank, discarded, norm, rel0), h, test_t = first_step_single(
                at, truncation, n - 1, "matrix")
        else:
            u1, rest_t, full_rank, discarded, norm, rel0 = first_step(at, truncation, n - 1, "matrix")
    gathered = _gathered(at, u1, rest_t, (h, test_t) if single else ())
    chi = u1.shape[1]
    # rows of A_1^T run over (O, I) = (o_2..o_n, i_2..i_n); interleave them into sites, chi first: one copy
    legs = rest_t.reshape(*out_dims[1:], *in_dims[1:], chi)
    order = [2 * (n - 1), *interleave_order(n - 1)]
    sites = site_dims(out_dims, in_dims)
    rest = np.ascontiguousarray(legs.transpose(order)).reshape(chi, *sites[1:])
    del legs, rest_t
    first = (u1, rest, full_rank, discarded, norm, rel0)
    cores, report = tt_decompose_dask(first, sites[1:], sites[0], truncation, svd)
    if single:  # the remainder back in A_1's column order (o_2..o_n, i_2..i_n) for the test sketch
        rest_dense = deinterleave(_dense_rest(cores[1:]), (chi, *out_dims[1:]), (1, *in_dims[1:])).reshape(chi, -1)
        report = single_pass_certificate(report, u1, rest_dense, h, test_t)
    report = dataclasses.replace(report, gathered_bytes=gathered)
    return sites_to_cores(cores, out_dims, in_dims), with_error_check(report)


def mps_sites_from_dask(tensor: Any, truncation: Truncation, svd: str) -> tuple[list[Any], TruncationReport]:
    """MPS cores ``(left, phys, right)`` of the dask ``tensor``."""
    dims = [int(d) for d in tensor.shape]
    at = _first_unfolding_t(tensor, (dims[0], int(np.prod(dims[1:]))), ())
    single = svd == "randomized"
    with _naming_rows(tensor, "tensor"):
        if single:
            (u1, rest_t, full_rank, discarded, norm, rel0), h, test_t = first_step_single(
                at, truncation, len(dims) - 1, "tensor")
        else:
            u1, rest_t, full_rank, discarded, norm, rel0 = first_step(at, truncation, len(dims) - 1, "tensor")
    gathered = _gathered(at, u1, rest_t, (h, test_t) if single else ())
    rest = np.ascontiguousarray(rest_t.T).reshape(u1.shape[1], *dims[1:])
    del rest_t
    cores, report = tt_decompose_dask((u1, rest, full_rank, discarded, norm, rel0), dims[1:], dims[0],
                                      truncation, svd)
    if single:
        report = single_pass_certificate(report, u1, _dense_rest(cores[1:]), h, test_t)
    return cores, with_error_check(dataclasses.replace(report, gathered_bytes=gathered))


def _gathered(at: Any, u1: np.ndarray, rest_t: np.ndarray, sketches: Sequence[np.ndarray]) -> int:
    """Bytes an out-of-core first step gathered: the ``R`` factor of the first unfolding (``d_1 x d_1``), the first
    core, the projected remainder and any sketches (the single pass)."""
    d1 = int(at.shape[1])
    return int(d1 * d1 * np.dtype(at.dtype).itemsize + u1.nbytes + rest_t.nbytes + sum(x.nbytes for x in sketches))


def npy_header(path: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, refused (``ValueError`` naming the
    file) unless it is one whose data is as long as its header declares: a tampered header that declares a
    huge shape is caught here, before anything tries to allocate or plan blocks for it."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
        except ValueError as exc:  # NumPy's words do not name the file
            raise ValueError(f"{path}: not a .npy file ({exc})") from None
        offset = fh.tell()
        size = os.fstat(fh.fileno()).st_size
    if dtype.hasobject:
        raise ValueError(f"{path}: holds Python objects, not numbers")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + declared > size:
        raise ValueError(
            f"{path}: the header declares a {' x '.join(map(str, shape))} {dtype} array ({declared} bytes) but the "
            f"file holds {size - offset} bytes of data (truncated or corrupt)"
        )
    return tuple(int(d) for d in shape), bool(fortran), dtype, offset


class _NpyRows:
    """Rows of a C-ordered ``.npy`` matrix read from disk on demand (what ``dask.array.from_array`` slices).

    Unlike a memory map, nothing of the file is mapped into the process: each
    block is read with one ``seek`` and one ``readinto``, so a process limited
    to less memory (or address space) than the file still reads it whole.
    """

    def __init__(self, path: str) -> None:
        shape, fortran, dtype, self.offset = npy_header(path)
        if len(shape) != 2:
            raise ValueError(f"{path}: expected a 2-D matrix, got shape {shape}")
        if fortran:
            raise ValueError(f"{path}: the matrix is stored in Fortran order; save it C-ordered (np.save(path, W))")
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), dtype, 2

    def __getitem__(self, index: Any) -> np.ndarray:
        rows, cols = index if isinstance(index, tuple) else (index, slice(None))
        start, stop, step = rows.indices(self.shape[0])
        with open(self.path, "rb") as fh:
            return self.read(fh, start, max(0, stop - start))[::step, cols]

    def open(self) -> Any:
        return open(self.path, "rb")

    def read(self, fh: Any, start: int, count: int) -> np.ndarray:
        """Rows ``start .. start + count`` from the open file ``fh`` (one seek, one read)."""
        row_bytes = self.shape[1] * self.dtype.itemsize
        out = np.empty((count, self.shape[1]), dtype=self.dtype)
        fh.seek(self.offset + start * row_bytes)
        got = fh.readinto(out.reshape(-1).view(np.uint8))
        if got != count * row_bytes:
            raise ValueError(f"{self.path}: the file is shorter than its header says (truncated?)")
        return out


class _DaskRows:
    """Rows of any 2-D dask array, read slice by slice (``x[start:stop].compute()`` on the synchronous
    scheduler, inside the task that needs them): the same reads as :class:`_NpyRows`, so a
    ``da.from_array(np.load(path, mmap_mode="r"))``, zarr or HDF5 matrix is streamed within the same
    bound as :func:`open_npy`'s, instead of through a rechunk and reshape that hold several times the
    input. Only under a local scheduler (a ``dask.distributed`` cluster keeps the graph route: nested
    computes there would ship the source into every task)."""

    def __init__(self, x: Any) -> None:
        self.x, self.shape, self.dtype = x, tuple(int(d) for d in x.shape), np.dtype(x.dtype)

    def slab_chunk(self, big_o: int, o1: int, c: int) -> int:
        """Rows per piece: the source's own row chunk where it divides the slabs and ``o_1`` of them fit the
        block budget (each source chunk is read once), else ``c``."""
        given = set(self.x.chunks[0][:-1]) | {self.x.chunks[0][-1]}
        rows = next(iter(given))
        fits = o1 * rows * self.shape[1] * self.dtype.itemsize <= _BLOCK_BYTES
        return rows if len(given) == 1 and big_o % rows == 0 and fits else c

    def __dask_tokenize__(self) -> Any:
        # the array's own name, not a pickle of it (which would copy a memory-mapped source whole)
        return ("tnlib-rows", self.x.name)

    def open(self) -> Any:
        return contextlib.nullcontext()

    def read(self, fh: Any, start: int, count: int) -> np.ndarray:
        return np.asarray(self.x[start:start + count].compute(scheduler="sync"))


def _dask_rows(x: Any) -> _DaskRows | None:
    """``x`` as a row source, unless a ``dask.distributed`` client is active."""
    if "distributed" in sys.modules:
        try:
            sys.modules["distributed"].default_client()
            return None
        except ValueError:  # no client
            pass
    return _DaskRows(x)


def open_npy(path: str, *, chunk_rows: int | None = None, first_out_dim: int | None = None) -> Any:
    """A ``.npy`` matrix on disk as a ``dask.array`` read block by block, for out-of-core decomposition.

    Parameters
    ----------
    path
        A C-ordered 2-D ``.npy`` file (``np.save``).
    chunk_rows
        Rows per block (default: about 2 MiB a block).
    first_out_dim
        The first of the ``out_dims`` the matrix will be decomposed with
        (``o_1``): blocks are then sized to divide the ``M / o_1`` rows of
        each slab, so the decomposition reads each block once and holds
        about 64 MiB of input at a time. Without it, blocks that straddle
        slabs are re-cut, and parts of them wait in memory for the rest of
        their slab.

    Returns
    -------
    dask.array.Array
        Lazy: nothing is read until a computation needs a block, and only
        that block is held (no memory map of the whole file).

    Examples
    --------
    >>> import tempfile, numpy as np, tnlib
    >>> path = tempfile.mkdtemp() + "/W.npy"
    >>> np.save(path, np.random.default_rng(0).standard_normal((256, 64)))
    >>> W = tnlib.open_npy(path, first_out_dim=16)
    >>> mpo = tnlib.MPO.from_matrix(W, (16, 4, 4), (4, 4, 4), truncation=tnlib.Truncation(max_bond=8))
    >>> mpo.bond_dims
    (8, 8)
    """
    import dask.array as da

    if chunk_rows is not None:
        chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    source = _NpyRows(str(path))
    m, cols, item = source.shape[0], source.shape[1], source.dtype.itemsize
    if first_out_dim is not None and m % check_int("first_out_dim", first_out_dim, 1):
        raise ValueError(f"first_out_dim={first_out_dim!r} is invalid; expected a positive int dividing {m} rows")
    if chunk_rows is None and first_out_dim is not None:
        chunk_rows = slab_rows(m, cols, first_out_dim, item)
    rows = chunk_rows or max(1, _READ_BYTES // max(1, cols * item))
    return da.from_array(source, chunks=(min(rows, source.shape[0]), -1), asarray=False, fancy=False)
