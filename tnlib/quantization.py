"""Quantized storage of a weight matrix: integer codes with group-wise scales.

A :class:`Quantization` says how (``bits`` per entry, ``group_size``
consecutive entries of a row sharing one scale and one zero point);
:func:`quantize` turns a matrix into a :class:`QuantizedMatrix`, by
round-to-nearest, or with an input Gram by GPTQ (Frantar, Ashkboos, Hoefler
and Alistarh, ICLR 2023): the columns are rounded one at a time and the
rounding error of each is compensated in the columns not yet rounded, so that
the error of ``x W^T`` on inputs with that Gram is what is minimised, not the
error of ``W``.

What is stored is what :attr:`QuantizedMatrix.stored_bytes` counts: the codes
packed at ``bits`` per entry, one float16 scale and one ``bits``-wide zero point
per group. Quantization runs on the host (NumPy): it is a one-off step of a
conversion, not a hot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tnlib._backend import as_matrix, to_host
from tnlib._checks import check_fraction, check_int, is_int
from tnlib._linalg import cholesky_factor
from tnlib.metric import check_input_gram

__all__ = ["BITS", "Quantization", "QuantizedMatrix", "quantize", "quantize_low_rank", "pack", "unpack",
           "relative_error", "whitened_svd", "split_quantized", "split_prefixes", "checked_gram", "gptq_factor",
           "gptq_widths", "rows_of"]

BITS = (2, 3, 4, 8)
"""The widths a code may have."""

_SCALE = np.float16
_EXPONENT_BYTES = 2  # one int16 per matrix: the power of two its float16 scales are relative to
_HEADROOM = 10  # a matrix's peak entry is brought to [2**9, 2**10): every scale a normal float16
_BLOCK = 128  # columns GPTQ rounds between two updates of the rest (lazy batch updates)


@dataclass(frozen=True)
class Quantization:
    """How a matrix is stored: ``bits`` per entry, one scale and zero point per ``group_size`` entries of a row.

    Parameters
    ----------
    bits
        Width of each integer code: 2, 3, 4 or 8.
    group_size
        Consecutive entries of a row (along the inputs) that share a float16
        scale and a zero point; ``None``: one per row. It must divide the
        number of columns of every matrix it is applied to.

    Examples
    --------
    >>> import tnlib
    >>> q = tnlib.Quantization(bits=4, group_size=64)
    >>> q.stored_bytes((384, 384))      # 384 * 384 / 2 codes + 2304 groups x (2-byte scale + 4-bit zero) + 2
    79490
    >>> round(q.bits_per_weight((384, 384)), 3)
    4.313
    """

    bits: int = 4
    group_size: int | None = 64

    def __post_init__(self) -> None:
        if not is_int(self.bits) or self.bits not in BITS:
            raise ValueError(f"bits={self.bits!r} is invalid; expected one of {', '.join(map(str, BITS))}")
        object.__setattr__(self, "bits", int(self.bits))
        if self.group_size is not None:
            object.__setattr__(self, "group_size", check_int("group_size", self.group_size))

    @property
    def levels(self) -> int:
        """The largest code, ``2**bits - 1``."""
        return 2**self.bits - 1

    def groups(self, shape: tuple[int, int]) -> int:
        """Groups per row of a matrix of ``shape`` (``ValueError`` when ``group_size`` does not divide its columns)."""
        rows, cols = _shape(shape)
        if self.group_size is None:
            return 1
        if cols % self.group_size:
            raise ValueError(
                f"group_size={self.group_size} does not divide the {cols} columns of a {rows} x {cols} matrix; "
                f"expected a divisor of {cols} (or group_size=None: one scale per row)"
            )
        return cols // self.group_size

    def stored_bytes(self, shape: tuple[int, int]) -> int:
        """Bytes a matrix of ``shape`` takes: packed codes, float16 scales, packed zero points and the matrix's
        2-byte binary exponent."""
        rows, cols = _shape(shape)
        groups = rows * self.groups(shape)
        return (_packed_size(rows * cols, self.bits) + groups * np.dtype(_SCALE).itemsize
                + _packed_size(groups, self.bits) + _EXPONENT_BYTES)

    def bits_per_weight(self, shape: tuple[int, int]) -> float:
        """:meth:`stored_bytes` in bits per entry of the matrix."""
        rows, cols = _shape(shape)
        return 8 * self.stored_bytes(shape) / (rows * cols)


@dataclass(frozen=True, eq=False)
class QuantizedMatrix:
    """A matrix stored as integer codes with group-wise scales; ``W ~ 2**exponent * scales * (codes - zeros)``.

    Attributes
    ----------
    codes : numpy.ndarray of uint8, shape (rows, cols)
        One code in ``[0, 2**bits)`` per entry (unpacked; :func:`pack` gives the stored bytes).
    scales : numpy.ndarray of float16, shape (rows, groups)
        One scale per group of ``group_size`` consecutive entries of a row.
    zeros : numpy.ndarray of uint8, shape (rows, groups)
        The code of zero in each group.
    quantization : Quantization
        Bits and group size.
    exponent : int
        The power of two the float16 scales are relative to (chosen from the
        matrix's largest entry, so that scales neither under- nor overflow
        float16 at any scale of the weights).

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> w = np.random.default_rng(0).standard_normal((8, 16))
    >>> q = tnlib.quantize(w, tnlib.Quantization(bits=8, group_size=None))
    >>> q.shape, q.stored_bytes, bool(np.abs(q.dequantize() - w).max() < 0.02)
    ((8, 16), 154, True)
    """

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    quantization: Quantization
    exponent: int = 0

    def __post_init__(self) -> None:
        q = self.quantization
        if not is_int(self.exponent) or not -2**15 <= self.exponent < 2**15:
            raise ValueError(f"exponent={self.exponent!r} is invalid; expected an int16")
        object.__setattr__(self, "exponent", int(self.exponent))
        if not isinstance(q, Quantization):
            raise TypeError(f"quantization must be a tnlib.Quantization, got {type(q).__name__}")
        codes, scales, zeros = (np.asarray(a) for a in (self.codes, self.scales, self.zeros))
        if codes.ndim != 2 or 0 in codes.shape:
            raise ValueError(f"codes must be a non-empty 2-D array, got shape {codes.shape}")
        groups = (codes.shape[0], q.groups(codes.shape))
        for name, a, dtype in (("codes", codes, np.uint8), ("scales", scales, _SCALE), ("zeros", zeros, np.uint8)):
            if a.dtype != dtype:
                raise TypeError(f"{name} has dtype {a.dtype}; expected {np.dtype(dtype)}")
            if name != "codes" and a.shape != groups:
                raise ValueError(f"{name} has shape {a.shape}; expected {groups} (rows, groups)")
            if name != "scales" and a.size and int(a.max()) > q.levels:
                raise ValueError(f"{name} holds {int(a.max())}, beyond {q.levels}, the largest {q.bits}-bit code")
        if not np.all(np.isfinite(scales)):
            raise ValueError("scales hold NaN or infinite values; expected finite float16 scales")
        for name, a in (("codes", codes), ("scales", scales), ("zeros", zeros)):
            a = a.copy()
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the matrix."""
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    @property
    def stored_bytes(self) -> int:
        """Bytes stored: the packed codes, the float16 scales and the packed zero points."""
        return self.quantization.stored_bytes(self.shape)

    def dequantize(self, dtype: Any = np.float64) -> np.ndarray:
        """The matrix the codes stand for, ``scales * (codes - zeros)`` group by group (a NumPy array)."""
        rows, cols = self.shape
        groups = self.scales.shape[1]
        c = self.codes.reshape(rows, groups, cols // groups).astype(np.float64)
        z = self.zeros.astype(np.float64)[:, :, None]
        s = self.scales.astype(np.float64)[:, :, None]
        return np.ldexp((c - z) * s, self.exponent).reshape(rows, cols).astype(dtype)

    def __repr__(self) -> str:
        q = self.quantization
        return (f"QuantizedMatrix(shape={self.shape}, bits={q.bits}, group_size={q.group_size}, "
                f"stored_bytes={self.stored_bytes})")


def quantize(matrix: Any, quantization: Quantization = Quantization(), *, gram: Any = None,
             damping: float = 0.01) -> QuantizedMatrix:
    """Store ``matrix`` (``out x in``, acting as ``x W^T``) as integer codes with group-wise scales.

    Asymmetric min-max quantization per group (the range always holds zero),
    scales rounded to float16 before the codes are chosen, so that
    :meth:`QuantizedMatrix.dequantize` gives exactly what was fitted.

    Parameters
    ----------
    matrix
        A real, finite 2-D array (any library; quantized on the host).
    quantization
        Bits and group size (default 4 bits, groups of 64).
    gram
        The input Gram ``C = X^T X / n`` (``in x in``) of the layer: with it,
        GPTQ compensates each column's rounding error in the columns not yet
        rounded, minimising ``tr((W - Q) C (W - Q)^T)``; without it, every
        entry is rounded to nearest.
    damping
        GPTQ adds ``damping * mean(diag C)`` to the diagonal of ``C`` (in
        ``[0, 1)``; the paper's 0.01) so that it can be inverted.

    Returns
    -------
    QuantizedMatrix

    Raises
    ------
    ValueError
        For a non-finite or complex matrix, a group size that does not divide
        its columns, a Gram of the wrong shape or not positive semi-definite,
        or scales beyond float16's range.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((32, 64))
    >>> x = rng.standard_normal((500, 64)) @ rng.standard_normal((64, 64))   # correlated inputs
    >>> c = x.T @ x / 500
    >>> def out_err(q):
    ...     e = w - q.dequantize()
    ...     return np.trace(e @ c @ e.T) / np.trace(w @ c @ w.T)
    >>> rtn = tnlib.quantize(w, tnlib.Quantization(bits=3, group_size=32))
    >>> gptq = tnlib.quantize(w, tnlib.Quantization(bits=3, group_size=32), gram=c)
    >>> bool(out_err(gptq) < out_err(rtn))
    True
    """
    if not isinstance(quantization, Quantization):
        raise TypeError(f"quantization must be a tnlib.Quantization, got {type(quantization).__name__}")
    a = as_matrix(matrix, "matrix")
    w = to_host(a)
    if np.iscomplexobj(w):
        raise TypeError(f"matrix has dtype {w.dtype}; quantize stores real weights (quantize the real and "
                        "imaginary parts separately)")
    w = np.array(w, dtype=np.float64)
    quantization.groups(w.shape)
    damping = check_fraction("damping", damping)
    if gram is None:
        return _round_to_nearest(w, quantization)
    return _gptq(w, checked_gram(gram, w.shape[1]), quantization, damping)


def quantize_low_rank(matrix: Any, rank: int, quantization: Quantization = Quantization(), *, gram: Any = None,
                      damping: float = 0.01) -> tuple[QuantizedMatrix, QuantizedMatrix]:
    """``W ~ U V`` at rank ``rank``, both factors quantized: a low-rank split stored in few bits.

    The factors come from the truncated SVD of ``W`` (whitened by ``gram``
    when given: the best rank-``rank`` fit of ``x W^T``, as in SVD-LLM). ``V``
    (``rank x in``) is quantized first (GPTQ in ``gram``); ``U`` is then refitted
    to the quantized ``V`` by least squares in the same metric, and quantized
    with GPTQ in the Gram of its own inputs ``V_q C V_q^T``, so the rounding of
    each factor is compensated where the next can absorb it.

    Parameters
    ----------
    matrix
        A real, finite ``out x in`` matrix.
    rank
        Rank of the split, at most ``min(out, in)``; ``quantization.group_size``
        must divide it (it groups ``U``'s columns) and ``in``.
    quantization, gram, damping
        As :func:`quantize` (without ``gram``, inputs are taken as white: ``C = I``).

    Returns
    -------
    U, V : QuantizedMatrix
        ``out x rank`` and ``rank x in``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((64, 16)) @ rng.standard_normal((16, 64))      # rank 16
    >>> u, v = tnlib.quantize_low_rank(w, 16, tnlib.Quantization(bits=8, group_size=16))
    >>> err = np.linalg.norm(u.dequantize() @ v.dequantize() - w) / np.linalg.norm(w)
    >>> bool(err < 0.01), u.stored_bytes + v.stored_bytes < w.size
    (True, True)
    """
    if not isinstance(quantization, Quantization):
        raise TypeError(f"quantization must be a tnlib.Quantization, got {type(quantization).__name__}")
    w = to_host(as_matrix(matrix, "matrix"))
    if np.iscomplexobj(w):
        raise TypeError(f"matrix has dtype {w.dtype}; quantize_low_rank stores real weights")
    w = np.array(w, dtype=np.float64)
    out, n = w.shape
    rank = check_int("rank", rank)
    if rank > min(out, n):
        raise ValueError(f"rank={rank} exceeds min{w.shape} of the matrix")
    quantization.groups((rank, n))
    quantization.groups((out, rank))
    damping = check_fraction("damping", damping)
    c = np.eye(n) if gram is None else checked_gram(gram, n)
    _, v = whitened_svd(w, c)
    return split_quantized(w, c, v[:rank], quantization, damping)


def whitened_svd(w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` with ``A[:, :r] @ B[:r]`` the best rank-``r`` fit of ``W`` in the metric ``C``, for every ``r``.

    ``B = V^H L^{-1}`` from the SVD ``W L = U S V^H`` does not depend on which factor ``C = L L^T``: the Cholesky
    factor where ``C`` is well conditioned (reciprocal condition above 1e-10, LAPACK's estimate), else the
    symmetric root of its eigenvalues above ``1e-12`` of the largest (a pseudo-inverse on the rest).
    """
    factor = _well_conditioned_cholesky(c)
    if factor is not None:
        u, s, vt = np.linalg.svd(w @ factor[0], full_matrices=False)
        return u * s, vt @ factor[1]
    lam, vecs = np.linalg.eigh(c)
    lam = np.clip(lam, 0.0, None)
    keep = lam > 1e-12 * lam[-1]
    root = (vecs[:, keep] * np.sqrt(lam[keep])) @ vecs[:, keep].T
    inv_root = (vecs[:, keep] / np.sqrt(lam[keep])) @ vecs[:, keep].T
    u, s, vt = np.linalg.svd(w @ root, full_matrices=False)
    return u * s, vt @ inv_root


def split_quantized(w: np.ndarray, c: np.ndarray, v: np.ndarray | QuantizedMatrix, quantization: Quantization,
                    damping: float = 0.01, factor: np.ndarray | None = None
                    ) -> tuple[QuantizedMatrix, QuantizedMatrix]:
    """``V`` quantized by GPTQ in ``C`` (or given quantized), then ``U`` refitted to it in ``C`` and quantized in
    ``V_q C V_q^T``."""
    vq = v if isinstance(v, QuantizedMatrix) else _gptq(v, c, quantization, damping, factor)
    (pair,) = split_prefixes(w, c, vq, [vq.shape[0]], quantization, damping)
    return pair


def split_prefixes(w: np.ndarray, c: np.ndarray, vq: QuantizedMatrix, ranks: Sequence[int],
                   quantization: Quantization, damping: float = 0.01) -> list[tuple[QuantizedMatrix, QuantizedMatrix]]:
    """:func:`split_quantized` at every rank of ``ranks`` with ``V_q`` the first ``r`` rows of one quantized ``vq``
    (rows are quantized independently): ``B C B^T`` and ``B C W^T`` are formed once for the deepest rank, and
    one Cholesky factor of the first serves every rank (a prefix's factor is its leading block); ``U`` solves
    ``U (B C B^T) = W C B^T`` (least squares where ``B C B^T`` is singular)."""
    import scipy.linalg

    b_all = vq.dequantize()
    deepest = max(ranks)
    b_all = b_all[:deepest]
    gram = b_all @ c @ b_all.T
    gram = (gram + gram.T) / 2
    rhs = b_all @ (c @ w.T)
    try:
        chol = scipy.linalg.cholesky(gram, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        chol = None
    out = []
    for r in ranks:
        g, b = gram[:r, :r], rows_of(vq, r)
        if chol is not None:
            a = scipy.linalg.cho_solve((chol[:r, :r], True), rhs[:r], check_finite=False).T
        else:
            a = np.linalg.lstsq(g, rhs[:r], rcond=None)[0].T
        if not np.any(np.diag(g) > 0):
            out.append((_round_to_nearest(a, quantization), b))
        else:
            out.append((_gptq(a, g, quantization, damping), b))
    return out


def checked_gram(gram: Any, n: int) -> np.ndarray:
    """``gram`` validated for a matrix of ``n`` columns (named ``gram`` in errors), as a float64 host array."""
    return np.array(to_host(check_input_gram(gram, n, np.zeros((1, 1)), "gram")), dtype=np.float64)


def _well_conditioned_cholesky(c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(L, L^{-1})`` of a Gram whose reciprocal condition number LAPACK estimates above 1e-10, else ``None``."""
    import scipy.linalg.lapack as lapack

    factor = cholesky_factor(c)
    if factor is None:
        return None
    (pocon,) = lapack.get_lapack_funcs(("pocon",), (c,))
    rcond, info = pocon(factor[0], float(np.abs(c).sum(axis=0).max()), uplo="L")
    return factor if info == 0 and rcond > 1e-10 else None


def gptq_factor(c: np.ndarray, damping: float = 0.01) -> np.ndarray:
    """The upper Cholesky factor ``U`` of the damped inverse Gram, ``(C + d I)^-1 = U^T U``, that GPTQ spreads
    rounding errors by (columns no input reaches get a unit diagonal)."""
    n = c.shape[0]
    c = c.copy()
    dead = np.diag(c) <= 0
    c[dead, dead] = 1.0
    c[np.diag_indices(n)] += damping * float(np.mean(np.diag(c))) + 1e-300
    # U = J L'^{-1} J with J the reversal and J C J = L' L'^T: U^T U = C^{-1}, U upper triangular (no inverse of C)
    factor = cholesky_factor(np.ascontiguousarray(c[::-1, ::-1]))
    if factor is None:
        raise ValueError("gram is singular even after damping; pass a larger damping")
    return np.ascontiguousarray(factor[1][::-1, ::-1])


def _shape(shape: Any) -> tuple[int, int]:
    if (not isinstance(shape, tuple) or len(shape) != 2 or not all(is_int(n) and n > 0 for n in shape)):
        raise ValueError(f"shape must be (rows, cols) of positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def _group_params(block: np.ndarray, q: Quantization, levels: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Float16 scale and zero code of each row of ``block`` (rows x entries of one group); ``levels``: the
    largest code of each row, when rows are quantized at different widths (default ``q.levels``)."""
    top = np.full(block.shape[0], float(q.levels)) if levels is None else levels
    lo = np.minimum(block.min(axis=1), 0.0)
    hi = np.maximum(block.max(axis=1), 0.0)
    span = hi - lo
    scale = (span / top).astype(_SCALE)  # a matrix brought to [2**9, 2**10) (_HEADROOM): never overflows
    scale = np.where(scale == 0, _SCALE(1.0), scale)  # a group too small for a float16 scale is stored as zeros
    s = scale.astype(np.float64)
    zero = np.clip(np.round(-lo / s), 0, top).astype(np.uint8)
    return scale, zero


def _exponent(w: np.ndarray) -> int:
    """The power of two that brings the largest entry of ``w`` to ``[2**9, 2**10)`` (0 for a zero matrix)."""
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    return int(np.frexp(peak)[1]) - _HEADROOM if peak > 0 else 0


def _codes(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, q: Quantization) -> np.ndarray:
    return np.clip(np.round(w / scale.astype(np.float64)[..., None] + zero[..., None]), 0, q.levels)


def _round_to_nearest(w: np.ndarray, q: Quantization) -> QuantizedMatrix:
    rows, cols = w.shape
    groups = q.groups(w.shape)
    e = _exponent(w)
    blocks = np.ldexp(w, -e).reshape(rows * groups, cols // groups)
    scale, zero = _group_params(blocks, q)
    codes = _codes(blocks, scale, zero, q).astype(np.uint8).reshape(rows, cols)
    return QuantizedMatrix(codes, scale.reshape(rows, groups), zero.reshape(rows, groups), q, e)


def _gptq(w: np.ndarray, c: np.ndarray, q: Quantization, damping: float,
          factor: np.ndarray | None = None) -> QuantizedMatrix:
    u = gptq_factor(c, damping) if factor is None else factor
    e = _exponent(w)
    return QuantizedMatrix(*_gptq_rows(np.ldexp(w, -e), u, q, np.full(w.shape[0], float(q.levels))), q, e)


def _gptq_rows(w: np.ndarray, u: np.ndarray, q: Quantization, levels: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPTQ (Algorithm 1 of Frantar et al.): columns in order, the inverse Gram's Cholesky factor ``u`` spreading
    each rounding error over the columns not yet rounded (lazily, a block of columns at a time); group parameters
    taken from the updated weights when a group begins. Rows are independent: ``levels`` gives each its largest
    code, so one pass quantizes stacked copies of a matrix at several widths."""
    rows, cols = w.shape
    w = w.copy()
    width = cols if q.group_size is None else q.group_size
    groups = cols // width
    codes = np.zeros((rows, cols), dtype=np.uint8)
    scales = np.zeros((rows, groups), dtype=_SCALE)
    zeros = np.zeros((rows, groups), dtype=np.uint8)
    for start in range(0, cols, _BLOCK):
        stop = min(start + _BLOCK, cols)
        err = np.zeros((rows, stop - start), order="F")  # column k: the scaled rounding error of column start + k
        for i in range(start, stop):
            g, k = i // width, i - start
            if i % width == 0:  # the group's parameters from its columns as updated so far
                end = min(i + width, stop)
                block = w[:, i:i + width].copy()
                block[:, :end - i] -= err[:, :k] @ u[start:i, i:end]
                scales[:, g], zeros[:, g] = _group_params(block, q, levels)
            s = scales[:, g].astype(np.float64)
            column = w[:, i] - err[:, :k] @ u[start:i, i]  # the updates of the block's earlier columns, lazily
            code = np.clip(np.round(column / s + zeros[:, g]), 0, levels)
            codes[:, i] = code
            err[:, k] = (column - s * (code - zeros[:, g])) / u[i, i]
        w[:, stop:] -= err @ u[start:stop, stop:]
    return codes, scales, zeros


def gptq_widths(w: np.ndarray, factor: np.ndarray, quantizations: Sequence[Quantization]) -> list[QuantizedMatrix]:
    """GPTQ of ``w`` at every one of ``quantizations`` (one group size) in one pass over the columns."""
    q0 = quantizations[0]
    if any(q.group_size != q0.group_size for q in quantizations):
        raise ValueError("gptq_widths takes quantizations of one group size")
    rows = w.shape[0]
    e = _exponent(w)
    levels = np.concatenate([np.full(rows, float(q.levels)) for q in quantizations])
    codes, scales, zeros = _gptq_rows(np.ldexp(np.concatenate([w] * len(quantizations)), -e), factor, q0, levels)
    return [QuantizedMatrix(codes[k * rows:(k + 1) * rows], scales[k * rows:(k + 1) * rows],
                            zeros[k * rows:(k + 1) * rows], q, e) for k, q in enumerate(quantizations)]


def rows_of(m: QuantizedMatrix, count: int) -> QuantizedMatrix:
    """The first ``count`` rows of ``m`` (rows are quantized independently: a prefix is its own quantization)."""
    return QuantizedMatrix(m.codes[:count], m.scales[:count], m.zeros[:count], m.quantization, m.exponent)


def pack(codes: Any, bits: int) -> np.ndarray:
    """Codes (any shape, each ``< 2**bits``) packed ``bits`` to a code, little-endian, into ``uint8`` bytes.

    Examples
    --------
    >>> import numpy as np, tnlib.quantization as tq
    >>> packed = tq.pack(np.array([1, 2, 3, 0, 7]), 3)
    >>> packed.nbytes, tq.unpack(packed, 3, 5).tolist()
    (2, [1, 2, 3, 0, 7])
    """
    if not is_int(bits) or bits not in BITS:
        raise ValueError(f"bits={bits!r} is invalid; expected one of {', '.join(map(str, BITS))}")
    c = np.asarray(codes).reshape(-1)
    if c.size and (c.min() < 0 or c.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits}) for {bits}-bit packing")
    c = c.astype(np.uint8)
    if bits == 8:
        return c.copy()
    planes = (c[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack(packed: Any, bits: int, count: int) -> np.ndarray:
    """The first ``count`` codes of bytes written by :func:`pack` (``uint8``)."""
    if not is_int(bits) or bits not in BITS:
        raise ValueError(f"bits={bits!r} is invalid; expected one of {', '.join(map(str, BITS))}")
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if p.size != _packed_size(count, bits):
        raise ValueError(f"packed holds {p.size} bytes; {count} codes of {bits} bits take "
                         f"{_packed_size(count, bits)}")
    if bits == 8:
        return p.copy()
    planes = np.unpackbits(p, count=count * bits, bitorder="little").reshape(count, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=1).astype(np.uint8)


def relative_error(matrix: np.ndarray, approx: np.ndarray, gram: np.ndarray | None = None) -> float:
    """``||W - Q||`` relative to ``||W||``, in the metric of ``gram`` when given (``tr(E C E^T)``)."""
    e = matrix - approx
    if gram is None:
        num, den = float(np.sum(e * e)), float(np.sum(matrix * matrix))
    else:
        num, den = float(np.sum((e @ gram) * e)), float(np.sum((matrix @ gram) * matrix))
    return math.sqrt(max(num, 0.0) / den) if den > 0 else 0.0
