"""Matrix product operators (tensor-train matrices): a matrix as a chain of cores.

An MPO core has legs ``(left, out, in, right)``; the boundary bonds have size
1. A matrix ``W`` of shape ``(M, N)`` with ``M = prod(out_dims)`` and
``N = prod(in_dims)`` (the layout of ``torch.nn.Linear.weight``) has row index
``i = (i_1, ..., i_n)`` and column index ``j = (j_1, ..., j_n)`` in C order, and::

    W[i, j] = G_1[0, i_1, j_1, :] @ G_2[:, i_2, j_2, :] @ ... @ G_n[:, i_n, j_n, 0]

To decompose, ``W`` is reshaped to ``(i_1..i_n, j_1..j_n)``, its legs are
interleaved to ``(i_1 j_1, ..., i_n j_n)`` and the result is decomposed as an
MPS with physical legs ``i_k j_k`` (Oseledets 2011, sec. 5; Gao et al. 2020).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import array_api_compat
import numpy as np

from . import _algebra as algebra
from . import _fixed_rank as fixed_rank
from ._apply import apply_cores
from ._backend import (
    as_array,
    as_matrix,
    binary_exponent,
    check_floating,
    itemsize,
    namespace,
    prod,
    times_power_of_two,
)
from ._chain import MAX_DENSE_SIZE, Chain, build_chain, check_max_size, validate_cores
from ._checks import is_int
from ._choose import choose
from ._decompose import Decomposition, check_padding, decompose, prefix_projector
from ._legs import contract_sites, cores_to_sites, deinterleave_order, interleave, site_dims, sites_to_cores
from ._out_of_core import check_dask, check_out_of_core_truncation, is_dask, streaming_dims
from .cross import array_entries, is_function
from .cross import cross as tt_cross
from .dims import check_dims, choose_dims
from .metric import Metric, checked_metric, resolve_metric
from .mps import MPS
from .objective import Objective, check_objective
from .svd import check_svd
from .truncation import Truncation, TruncationReport, check_truncation

__all__ = ["MPO", "wrap_decomposition"]


def _searches(out_dims: Any, in_dims: Any, num_cores: Any, truncation: Truncation | None) -> bool:
    """Whether ``from_matrix`` searches layouts: ``"auto"`` dims, or no dims and a budget."""
    auto = [d for d in (out_dims, in_dims) if isinstance(d, str)]
    for name, d in (("out_dims", out_dims), ("in_dims", in_dims)):
        if isinstance(d, str) and d != "auto":
            raise TypeError(f"{name} must be a sequence of positive ints, got {d!r} (or 'auto' to search layouts)")
    if auto:
        if len(auto) == 1 and (out_dims is not None and in_dims is not None):
            raise ValueError("out_dims='auto' and in_dims='auto' go together; a layout is searched as a whole")
        return True
    return (
        out_dims is None and in_dims is None and num_cores is None
        and truncation is not None and truncation.max_params is not None
    )


class MPO(Chain):
    """An immutable matrix product operator (tensor-train matrix).

    Parameters
    ----------
    cores : sequence of arrays, each of shape (left, out, in, right)
        Same library and dtype, finite, matching bonds, boundary bonds 1.
    shape : (int, int), optional
        The matrix's shape when it is smaller than ``(prod(out_dims),
        prod(in_dims))``, i.e. when it was zero-padded; default the full size.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> W = np.random.default_rng(0).standard_normal((1024, 512))
    >>> mpo = tnlib.MPO.from_matrix(W, out_dims=(4, 8, 8, 4), in_dims=(4, 4, 8, 4),
    ...                             truncation=tnlib.Truncation(max_bond=32))
    >>> mpo.cores[1].shape
    (16, 8, 4, 32)
    >>> mpo.bond_dims, mpo.num_params
    ((16, 32, 16), 49664)
    """

    __slots__ = ("_shape",)
    _kind = "MPO"
    _shape: tuple[int, int]

    def __init__(self, cores: Sequence[Any], *, shape: tuple[int, int] | None = None) -> None:
        arrays = validate_cores(cores, 4, "MPO", "(left, out, in, right)")
        full = (prod(c.shape[1] for c in arrays), prod(c.shape[2] for c in arrays))
        if shape is None:
            shape = full
        else:
            given = shape
            ok = (
                isinstance(given, (tuple, list))
                and len(given) == 2
                and all(is_int(d) for d in given)
                and 1 <= given[0] <= full[0]
                and 1 <= given[1] <= full[1]
            )
            if ok:
                shape = (int(given[0]), int(given[1]))
            if not ok:
                raise ValueError(
                    f"shape={shape!r} is invalid; expected (M, N) with 1 <= M <= {full[0]} "
                    f"and 1 <= N <= {full[1]} (the product of the cores' out and in legs)"
                )
        self._init(arrays, None, None)
        self._shape = shape

    @classmethod
    def _trusted(
        cls,
        cores: Sequence[Any],
        center: int | None,
        report: TruncationReport | None,
        shape: tuple[int, int],
    ) -> MPO:
        obj = cls.__new__(cls)
        obj._init(cores, center, report)
        obj._shape = shape
        return obj

    def _static(self) -> tuple[Any, ...]:
        return (self._center, self._report, self._shape)

    @classmethod
    def _from_leaves(cls, static: tuple[Any, ...], leaves: Sequence[Any]) -> MPO:
        return cls._trusted(list(leaves), static[0], static[1], static[2])

    def _sites(self) -> list[Any]:
        return cores_to_sites(self._cores)

    def _with_sites(self, sites: Sequence[Any], center: int | None, report: TruncationReport | None) -> MPO:
        return MPO._trusted(sites_to_cores(sites, self.out_dims, self.in_dims), center, report, self._shape)

    def _describe(self) -> str:
        return f"shape={self._shape}, out_dims={self.out_dims}, in_dims={self.in_dims}"

    def _signature(self) -> tuple[Any, ...]:
        return (self.out_dims, self.in_dims, self._shape)

    @classmethod
    def identity(cls, dims: Sequence[int], *, dtype: Any = None, like: Any = None) -> MPO:
        """The identity on ``prod(dims)`` entries as an MPO with bonds 1 (``out_dims = in_dims = dims``).

        ``like``: an array whose library and device the cores use (default NumPy);
        ``dtype`` in that library (default float64).

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> eye = tnlib.MPO.identity((2, 3))
        >>> bool(np.array_equal(eye.to_matrix(), np.eye(6))), float(eye.trace())
        (True, 6.0)
        """
        return cls._product(dims, dims, "identity", dtype, like)

    @classmethod
    def zeros(cls, out_dims: Sequence[int], in_dims: Sequence[int], *, dtype: Any = None, like: Any = None) -> MPO:
        """The zero operator with bonds 1 (grow them with :meth:`expand_bonds`)."""
        return cls._product(out_dims, in_dims, "zeros", dtype, like)

    @classmethod
    def _product(cls, out_dims: Any, in_dims: Any, kind: str, dtype: Any, like: Any) -> MPO:
        out_dims, in_dims = check_dims("out_dims", out_dims), check_dims("in_dims", in_dims)
        if len(out_dims) != len(in_dims):
            raise ValueError(f"out_dims has {len(out_dims)} factors but in_dims has {len(in_dims)}")
        if isinstance(like, (str, bytes)):  # a device name is not an array: "cpu" would silently mean NumPy
            raise TypeError(f"like must be an array whose library and device the cores take (e.g. torch.zeros(0, "
                            f"device='cuda')), got {type(like).__name__} {like!r}")
        ref = as_array(like, "like") if like is not None else np.zeros(0)
        xp = namespace(ref)
        device = array_api_compat.device(ref) if like is not None else None
        dtype = dtype if dtype is not None else xp.float64
        try:
            probe = xp.zeros(0, dtype=dtype, device=device)
        except Exception:  # noqa: BLE001 - each library refuses a foreign dtype in its own words
            raise TypeError(
                f"dtype={dtype!r} is not a dtype of {xp.__name__.split('.')[-1]}; pass like=<an array of the "
                "library that dtype belongs to> (for torch: like=torch.zeros(0))"
            ) from None
        try:
            check_floating(probe, "dtype")
        except TypeError:
            raise TypeError(f"dtype={dtype!r} is invalid; expected float32, float64, complex64 or complex128") from None
        cores = []
        for o, i in zip(out_dims, in_dims):
            block = xp.eye(o, i, dtype=dtype, device=device) if kind == "identity" else xp.zeros((o, i), dtype=dtype,
                                                                                                 device=device)
            cores.append(xp.reshape(block, (1, o, i, 1)))
        return cls(cores)

    def _unpadded(self, rows: bool = True, cols: bool = True) -> MPO:
        """The same matrix of :attr:`shape` with the padded rows and/or columns exactly zero, ``P W Q``.

        A truncated MPO of a zero-padded matrix is not zero in the padding;
        every method that means "the matrix of :attr:`shape`" (norms, inner
        products, traces, products) works on this instead. The projectors have
        bond dimension at most 2, so the bonds grow at most 4x, and only when
        there is padding.
        """
        m, n = self._shape
        cores = list(self._cores)
        if rows and m < prod(self.out_dims):
            cores = algebra.operator_times_operator(prefix_projector(self.out_dims, m, cores[0]), cores)
        if cols and n < prod(self.in_dims):
            cores = algebra.operator_times_operator(cores, prefix_projector(self.in_dims, n, cores[0]))
        if len(cores) == len(self._cores) and all(a is b for a, b in zip(cores, self._cores)):
            return self
        return MPO._trusted(cores, None, None, self._shape)

    @property
    def is_padded(self) -> bool:
        """Whether the cores span more than :attr:`shape` (``pad=True``, or ``MPO(cores, shape=...)``)."""
        return self._shape != (prod(self.out_dims), prod(self.in_dims))

    def _measured(self) -> MPO:
        return self._unpadded()

    def log_norm(self) -> float:
        """``ln ||W||_F`` of the matrix of :attr:`shape` (padding excluded); see :meth:`Chain.log_norm`."""
        return Chain.log_norm(self._unpadded())

    def inner(self, other: Any) -> Any:
        """``tr(A^H B)`` of the matrices of :attr:`shape` (padding excluded), a 0-d array."""
        self._check_same_legs(other, "inner")
        return Chain.inner(self._unpadded(), other)

    def trace(self) -> Any:
        """``tr W = sum_i W[i, i]`` of a square MPO (``out_dims == in_dims``), a 0-d array; no dense matrix.

        Each core is traced over its ``(out, in)`` pair and the resulting bond
        matrices are multiplied along the chain. For a padded MPO the sum runs
        over the diagonal of the matrix of :attr:`shape` only.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> W = np.random.default_rng(0).standard_normal((35, 35))
        >>> mpo = tnlib.MPO.from_matrix(W, (6, 6), (6, 6), pad=True, truncation=tnlib.Truncation(max_bond=3))
        >>> bool(np.isclose(float(mpo.trace()), np.trace(mpo.to_matrix())))
        True
        """
        if self.out_dims != self.in_dims or self._shape[0] != self._shape[1]:
            raise ValueError(
                f"trace needs a square MPO with out_dims == in_dims, got {self.out_dims} x {self.in_dims}"
            )
        xp = namespace(*self._cores)
        concrete = not fixed_rank.traced(*self._cores)
        acc = None
        total = 0  # the trace is 2**total * acc: every product at unit scale, so only the result saturates
        for core in self._unpadded(cols=False).cores:
            left, o, i, right = core.shape
            flat = xp.reshape(core, (left, o * i, right))
            diag = flat[:, :: o + 1, :]  # entries with out index == in index
            mat = xp.sum(diag, axis=1)
            if concrete:
                e = binary_exponent(mat)
                mat, total = (mat * (2.0 ** -e), total + e) if e else (mat, total)
            acc = mat if acc is None else acc @ mat
            if concrete:
                e = binary_exponent(acc)
                acc, total = (acc * (2.0 ** -e), total + e) if e else (acc, total)
        assert acc is not None
        return times_power_of_two(xp.reshape(acc, ()), total) if total else xp.reshape(acc, ())

    def sum(self) -> Any:
        """Sum of all entries of the matrix of :attr:`shape` (padding excluded), a 0-d array."""
        return Chain.sum(self._unpadded())

    def kron(self, other: MPO) -> MPO:
        """The Kronecker product ``self (x) other`` (``numpy.kron`` of the matrices): the cores of
        ``self`` then those of ``other``, bonds unchanged.

        ``other`` must not be padded (its rows and columns would interleave with padding).

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.standard_normal((4, 6)), rng.standard_normal((3, 2))
        >>> k = tnlib.MPO.from_matrix(a, (2, 2), (2, 3)).kron(tnlib.MPO.from_matrix(b, (3,), (2,)))
        >>> k.shape, bool(np.allclose(k.to_matrix(), np.kron(a, b)))
        ((12, 12), True)
        """
        if not isinstance(other, MPO):
            raise TypeError(f"kron needs two MPOs, got MPO and {type(other).__name__}")
        self._check_same_library(other, "kron")
        if other.is_padded:
            raise ValueError(
                f"kron needs an unpadded second MPO; it has shape {other.shape} inside "
                f"{prod(other.out_dims)} x {prod(other.in_dims)}"
            )
        xp = namespace(*self._cores, *other.cores)
        dtype = xp.result_type(self._cores[0], other.cores[0])
        cores = [xp.astype(c, dtype) for c in (*self._cores, *other.cores)]
        m, n = prod(other.out_dims), prod(other.in_dims)
        return MPO._trusted(cores, None, None, (self._shape[0] * m, self._shape[1] * n))

    def transpose(self) -> MPO:
        """The transposed operator ``W.T`` (out and in legs swapped; no conjugation)."""
        xp = namespace(*self._cores)
        cores = [xp.permute_dims(c, (0, 2, 1, 3)) for c in self._cores]
        return MPO._trusted(cores, self._center, None, (self._shape[1], self._shape[0]))

    @property
    def T(self) -> MPO:
        """Same as :meth:`transpose`."""
        return self.transpose()

    def apply(self, x: Any, *, optimize: Any = "auto") -> Any:
        """``x @ W.T`` for ``x`` of shape ``(..., N)``, without forming ``W``.

        The ``nn.Linear`` convention: the result has shape ``(..., M)``. For
        the actual batch size tnlib compares two ways by FLOPs and takes the
        cheaper: contracting the batch with the cores on the optimal path of
        :func:`tnlib.contract` (cached per shape), or merging the chain into two
        halves at the best cut and applying them as two large matrix products
        (preferred on a tie: matrix products run closest to peak speed).

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> W = np.random.default_rng(0).standard_normal((64, 32))
        >>> mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (2, 4, 4))
        >>> x = np.ones((5, 32))
        >>> bool(np.allclose(mpo.apply(x), x @ W.T))
        True
        """
        x = as_array(x, "x")
        try:
            xp = namespace(x, *self._cores)
        except TypeError:
            raise TypeError(
                f"x is a {type(x).__module__}.{type(x).__name__} but the MPO's cores are "
                f"{type(self._cores[0]).__module__}.{type(self._cores[0]).__name__}; "
                "give x in the cores' array library"
            ) from None
        m, n = self._shape
        if x.ndim < 1 or x.shape[-1] != n:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (..., {n}) for an MPO of shape {self._shape}")
        check_floating(x, "x")
        lead = tuple(int(d) for d in x.shape[:-1])
        batch = prod(lead)
        flat = xp.reshape(x, (batch, n))
        n_full = prod(self.in_dims)
        if n_full != n:
            dev = array_api_compat.device(x)
            flat = xp.concat([flat, xp.zeros((batch, n_full - n), dtype=x.dtype, device=dev)], axis=1)
        if not (isinstance(optimize, (str, bool)) or optimize is None):
            raise TypeError(
                f"optimize must be an opt_einsum strategy name ('auto', 'optimal', 'greedy', ...), got {optimize!r}"
            )
        y = apply_cores(self._cores, flat, optimize)
        if y.shape[1] != m:
            y = y[:, :m]
        return xp.reshape(y, (*lead, m))


    __array_ufunc__ = None  # NumPy defers ``x @ mpo`` to __rmatmul__ instead of failing in a gufunc

    def __rmatmul__(self, other: Any) -> Any:
        """``other @ W`` for an array ``other`` of shape ``(..., M)``: ``(W^T other^T)^T``, without forming ``W``."""
        if isinstance(other, (MPO, MPS)):
            return NotImplemented
        return self.T.apply(other)

    def __matmul__(self, other: Any) -> Any:
        """``W @ other`` for an MPO (-> MPO), an MPS (-> MPS) or an array ``(N,)``/``(N, K)``.

        MPO and MPS products multiply bond dimensions; compress the result
        with :meth:`compress`.
        """
        if isinstance(other, Chain):
            self._check_same_library(other, "@")
        if isinstance(other, MPO):
            if self.in_dims != other.out_dims or self._shape[1] != other._shape[0]:
                raise ValueError(
                    f"cannot multiply an MPO with in_dims={self.in_dims} (N={self._shape[1]}) by "
                    f"one with out_dims={other.out_dims} (M={other._shape[0]}); they must match"
                )
            # padded columns of self meet padded rows of other: zero one side so the product is exact
            cores = algebra.operator_times_operator(self._unpadded(rows=False).cores, other._cores)
            return MPO._trusted(cores, None, None, (self._shape[0], other._shape[1]))
        if isinstance(other, MPS):
            if self.in_dims != other.phys_dims or self._shape[1] != prod(other.phys_dims):
                raise ValueError(
                    f"cannot apply an MPO with in_dims={self.in_dims} to an MPS with "
                    f"phys_dims={other.phys_dims}; they must match"
                )
            if self._shape[0] != prod(self.out_dims):
                raise ValueError("an MPO with zero-padded rows cannot act on an MPS; use an unpadded MPO")
            return build_chain(MPS, algebra.operator_times_state(self._cores, other.cores), None, None)
        if isinstance(other, Chain):
            return NotImplemented
        v = as_array(other, "other")
        xp = namespace(v)
        if v.ndim == 1:
            return self.apply(v)
        if v.ndim == 2:
            return xp.matrix_transpose(self.apply(xp.matrix_transpose(v)))
        raise ValueError(f"other has shape {tuple(v.shape)}; expected (N,) or (N, K) with N={self._shape[1]}")

    @property
    def out_dims(self) -> tuple[int, ...]:
        """Row factors, one per core."""
        return tuple(int(c.shape[1]) for c in self._cores)

    @property
    def in_dims(self) -> tuple[int, ...]:
        """Column factors, one per core."""
        return tuple(int(c.shape[2]) for c in self._cores)

    @property
    def shape(self) -> tuple[int, int]:
        """The matrix's shape ``(M, N)`` (without any zero padding)."""
        return self._shape

    @property
    def compression_ratio(self) -> float:
        """``M * N / num_params``: how many times smaller than the dense matrix."""
        return self._shape[0] * self._shape[1] / self.num_params

    @classmethod
    def from_function(
        cls,
        fn: Any,
        out_dims: Sequence[int],
        in_dims: Sequence[int],
        truncation: Truncation | None = None,
        **options: Any,
    ) -> MPO:
        """Approximate a matrix given by a function of its row and column indices as an MPO, by TT-cross.

        The matrix is never formed: :func:`tnlib.cross` samples it through the MPS of the merged
        site legs ``(out_k, in_k)``, with a number of entries linear in the number of cores.

        Parameters
        ----------
        fn : callable or array
            ``fn(rows, cols)`` takes two NumPy ``int64`` arrays of shape ``(batch,)`` (row and
            column indices of the ``prod(out_dims) x prod(in_dims)`` matrix) and returns the
            ``batch`` entries, a 1-D array of any library. A dense matrix or a ``dask.array`` of that
            shape is read entry by entry.
        out_dims, in_dims
            Row and column factors, one pair per core (row ``sum_k o_k prod(out_dims[k+1:])``).
        truncation, **options
            As for :func:`tnlib.cross` (``max_evals``, ``tol``, ``seed``, ...).

        Returns
        -------
        MPO
            ``report.cross`` tells the evaluations, sweeps and the error on held-out entries.

        Examples
        --------
        A Hilbert-type kernel ``1 / (i + j + 1)`` of size ``2^20 x 2^20``:

        >>> import numpy as np, tnlib
        >>> kernel = lambda i, j: 1.0 / (i + j + 1.0)
        >>> mpo = tnlib.MPO.from_function(kernel, (2,) * 20, (2,) * 20, tnlib.Truncation(cutoff=1e-10), tol=1e-6)
        >>> mpo.shape, mpo.report.held_out_error < 1e-6
        ((1048576, 1048576), True)
        """
        out_dims = check_dims("out_dims", out_dims)
        in_dims = check_dims("in_dims", in_dims)
        if len(out_dims) != len(in_dims):
            raise ValueError(
                f"out_dims has {len(out_dims)} factors and in_dims {len(in_dims)}; give one pair per core"
            )
        m, n = prod(out_dims), prod(in_dims)
        if max(m, n) >= 2**62:
            raise ValueError(f"the matrix {m} x {n} is too large for int64 row and column indices")
        matrix = _matrix_entries(fn, (m, n))
        out_strides = np.array([prod(out_dims[k + 1 :]) for k in range(len(out_dims))], dtype=np.int64)
        in_strides = np.array([prod(in_dims[k + 1 :]) for k in range(len(in_dims))], dtype=np.int64)
        cols_per_site = np.array(in_dims, dtype=np.int64)

        def entries(idx: np.ndarray) -> Any:
            return matrix((idx // cols_per_site) @ out_strides, (idx % cols_per_site) @ in_strides)

        entries.__name__ = getattr(fn, "__name__", "fn")
        site_dims = tuple(o * i for o, i in zip(out_dims, in_dims))
        mps = tt_cross(entries, site_dims, truncation, **options)
        return MPO._trusted(sites_to_cores(list(mps.cores), out_dims, in_dims), mps.center, mps.report, (m, n))

    cross = from_function

    @classmethod
    def from_matrix(
        cls,
        matrix: Any,
        out_dims: Sequence[int] | Literal["auto"] | None = None,
        in_dims: Sequence[int] | Literal["auto"] | None = None,
        *,
        num_cores: int | None = None,
        truncation: Truncation | None = None,
        pad: bool = False,
        svd: str = "auto",
        metric: Metric | None = None,
        objective: Objective | None = None,
        input_gram: Any = None,
        held_out_gram: Any = None,
        shrinkage: float | None = None,
    ) -> MPO:
        """Decompose a matrix into an MPO by TT-SVD of its interleaved legs.

        Parameters
        ----------
        matrix : array, shape (M, N)
            Finite, float32/float64/complex64/complex128, any Array-API
            namespace; the cores share its namespace, dtype and device. A
            ``dask.array`` (e.g. :func:`tnlib.open_npy`) is decomposed out of
            core, block by block, with NumPy cores (per-bond truncation only;
            ``docs/scaling.md``).
        out_dims, in_dims
            Factors of ``M`` and ``N``, one per core. ``None`` chooses the most
            balanced ones (:func:`tnlib.factorize`) with as many factors as the
            other argument, or ``num_cores``, or
            :func:`tnlib.default_num_cores`. ``"auto"`` (for both), or both
            ``None`` with a ``truncation.max_params`` and no ``num_cores``,
            *searches* the layouts (within a few truncated-SVD fits of work)
            and keeps the fitted one with the least true error at that
            budget, never worse than the truncated SVD
            (:func:`tnlib.layouts` shows the table; with ``"auto"``,
            ``num_cores`` restricts the search to that many cores).
        num_cores
            Number of cores when both dims are ``None``.
        truncation
            ``None`` (default) is exact: every bond has its full rank
            (computed by QR sweeps, no SVD). Otherwise see
            :class:`tnlib.Truncation`.
        metric : tnlib.Metric, optional
            The Gram of the inputs ``X`` the layer sees (and of held-out
            rows): the MPO is then fitted to minimise the output-space error
            ``||X (W - W_hat)^T||_F`` instead of ``||W - W_hat||_F``: the
            weight-space truncation, then alternating least squares over the
            cores in the metric (a truncated-SVD layout is solved exactly by
            the whitened SVD). Bond dimensions are those of the truncation;
            the report gives the measured error in both norms
            (``report.error``, ``report.output_error``) and, with held-out
            rows, ``report.held_out_error``; with held-out rows a layout
            search compares layouts on them, each keeping the better of its
            weight-space and data-aware fits, so the result is never worse
            there than the plain truncated SVD. Needs a truncation and dims
            whose products are the shape. Validated against the matrix before
            any decomposition runs (:class:`tnlib.Metric`).
        objective : tnlib.Objective, optional
            How a *searched* layout is chosen: the least error (default), or
            the fewest multiply-adds within a tolerance of it.
        input_gram, held_out_gram, shrinkage
            The older spelling of ``metric=tnlib.Metric(input_gram,
            held_out_gram, shrinkage)``, kept as an alias (not together with
            ``metric``).
        pad
            Zero-pad the matrix when a size has no balanced factorization
            (a prime such as 1021), or to the product of the given dims when
            it is larger; :meth:`to_matrix` and :attr:`shape` still give the
            original shape.
        svd
            SVD method name (:func:`tnlib.svd_methods`). With a ``max_bond``,
            ``"randomized"`` decomposes the whole chain from sketches of its
            unfoldings in two passes of the data, at the sketch's accuracy, and
            ``report.certificate`` bounds the error with a stated probability;
            ``"auto"`` takes that route only where each bond is certified within
            5 % of the exact one's. Criteria a sketch cannot certify (a cutoff
            or ``max_discarded`` it cannot resolve, ``max_entropy_loss``,
            ``max_relative_error``, ``max_params``, ``degeneracy_tol``) run the
            exact route (see ``docs/randomized.md``).

        Returns
        -------
        MPO
            Left-canonical (``center == n - 1``), with :attr:`report`.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> W = np.random.default_rng(0).standard_normal((64, 64))
        >>> mpo = tnlib.MPO.from_matrix(W, (4, 4, 4), (4, 4, 4))
        >>> mpo.bond_dims
        (16, 16)
        >>> float(np.linalg.norm(mpo.to_matrix() - W)) < 1e-12 * float(np.linalg.norm(W))
        True
        """
        metric, names = resolve_metric(metric, input_gram, held_out_gram, shrinkage)
        if is_dask(matrix):
            out_dims, in_dims, truncation = _check_dask_args(matrix, out_dims, in_dims, num_cores, truncation,
                                                             pad, svd, metric)
            shape = (int(matrix.shape[0]), int(matrix.shape[1]))
            return wrap_decomposition(decompose(matrix, out_dims, in_dims, truncation, svd), shape)
        a, truncation = _check_matrix_args(matrix, truncation, pad, svd, metric, names[0])
        traced = fixed_rank.traced(a)
        if traced and metric is not None:
            raise TypeError(
                "MPO.from_matrix on traced values (inside jax.jit / jax.grad or torch.compile) takes no metric; "
                "call it outside the transformed function"
            )
        checked = None if metric is None else checked_metric(metric, a, names)  # once, before any decomposition
        shape = (int(a.shape[0]), int(a.shape[1]))
        goal = check_objective(objective)
        if _searches(out_dims, in_dims, num_cores, truncation):
            _check_search_args(truncation, pad)
            assert truncation is not None
            return wrap_decomposition(choose(a, None, truncation, checked, goal, svd, num_cores), shape)
        assert not isinstance(out_dims, str) and not isinstance(in_dims, str)  # 'auto' searched above
        out_dims, in_dims = choose_dims(shape, out_dims, in_dims, num_cores=num_cores, pad=bool(pad))
        check_padding(shape, out_dims, in_dims, a)
        if traced:
            return _traced_from_matrix(a, out_dims, in_dims, truncation, shape)
        if checked is not None and (prod(out_dims), prod(in_dims)) != shape:
            raise ValueError("a metric cannot be combined with padding; pass dims whose products are the shape")
        if checked is None:
            return wrap_decomposition(decompose(a, out_dims, in_dims, truncation, svd), shape)
        assert truncation is not None  # _check_matrix_args refuses a metric without one
        return wrap_decomposition(choose(a, (out_dims, in_dims), truncation, checked, goal, svd), shape)

    def to_dense(self, *, max_size: int = MAX_DENSE_SIZE) -> Any:
        """The full operator as a tensor with legs ``(out_1..out_n, in_1..in_n)``.

        Includes any zero padding; :meth:`to_matrix` removes it.
        """
        n = self.num_sites
        size = prod(self.out_dims) * prod(self.in_dims)
        check_max_size(size, max_size, "MPO.to_dense", itemsize(self._cores[0]))
        xp = namespace(*self._cores)
        flat = contract_sites(self._sites())
        legs = xp.reshape(flat, tuple(d for o, i in zip(self.out_dims, self.in_dims) for d in (o, i)))
        return xp.permute_dims(legs, deinterleave_order(n))

    def to_matrix(self, *, max_size: int = MAX_DENSE_SIZE) -> Any:
        """The matrix of shape :attr:`shape`, in the cores' namespace.

        Refuses (``ValueError``) to build more than ``max_size`` entries
        (default ``2**28``, 2 GiB of float64).
        """
        xp = namespace(*self._cores)
        dense = self.to_dense(max_size=max_size)
        full = xp.reshape(dense, (prod(self.out_dims), prod(self.in_dims)))
        m, n = self._shape
        if (m, n) != tuple(full.shape):
            full = full[:m, :n]
        return full


def _traced_from_matrix(a: Any, out_dims: tuple[int, ...], in_dims: tuple[int, ...], truncation: Truncation | None,
                        shape: tuple[int, int]) -> MPO:
    """:meth:`MPO.from_matrix` of traced values (jax.jit, torch.compile): TT-SVD at ranks fixed by shapes."""
    if (prod(out_dims), prod(in_dims)) != shape:
        raise TypeError(
            "MPO.from_matrix on traced values (inside jax.jit / jax.grad or torch.compile) does not pad; "
            "call it outside the transformed function"
        )
    caps = fixed_rank.fixed_caps(truncation, len(out_dims) - 1, "MPO.from_matrix")
    floor = 1 if truncation is None else truncation.min_bond
    sites = fixed_rank.tt_svd_fixed(interleave(a, out_dims, in_dims), site_dims(out_dims, in_dims), caps, floor)
    return MPO._trusted(sites_to_cores(sites, out_dims, in_dims), len(sites) - 1, None, shape)


def _matrix_entries(fn: Any, shape: tuple[int, int]) -> Any:
    """``fn`` as a function of (rows, cols); a dense or dask matrix is read by index."""
    if is_function(fn):
        return fn
    matrix = fn if is_dask(fn) else as_array(fn, "fn")
    if tuple(int(d) for d in matrix.shape) != shape:
        raise ValueError(f"the matrix fn has shape {tuple(matrix.shape)}; out_dims and in_dims give {shape}")
    entries = array_entries(matrix)
    return lambda rows, cols: entries(np.stack([rows, cols], axis=1))


def wrap_decomposition(fit: Decomposition, shape: tuple[int, int]) -> MPO:
    """The MPO of a trusted decomposition of a matrix of ``shape`` (cores of the route, not validated again)."""
    return MPO._trusted(fit.cores, fit.center, fit.report, shape)


def _check_matrix_args(matrix: Any, truncation: Any, pad: Any, svd: Any, metric: Metric | None,
                       name: str) -> tuple[Any, Truncation | None]:
    """The in-memory matrix and truncation of :meth:`MPO.from_matrix`, validated once at the boundary."""
    a = as_matrix(matrix, hint="; reshape it, or use MPS.from_dense for a tensor")
    checked = check_truncation(truncation)
    check_svd(svd)
    if not isinstance(pad, bool):
        raise TypeError(f"pad must be True or False, got {pad!r}")
    if metric is not None and (checked is None or checked.is_exact):
        raise ValueError(
            f"{name.partition('.')[0]} needs a truncation (an exact MPO has no error to fit); pass e.g. "
            "truncation=tnlib.Truncation(max_params=...)"
        )
    return a, checked


def _check_search_args(truncation: Truncation | None, pad: bool) -> None:
    if truncation is None or truncation.max_params is None:
        raise ValueError(
            "out_dims='auto' searches layouts at a parameter budget: pass truncation=tnlib.Truncation(max_params=...)"
        )
    if pad:
        raise ValueError("pad=True needs explicit dims; the layout search uses the matrix as it is")


def _check_dask_args(matrix: Any, out_dims: Any, in_dims: Any, num_cores: int | None, truncation: Truncation | None,
                     pad: bool, svd: str, metric: Metric | None) -> tuple[tuple[int, ...], tuple[int, ...], Truncation]:
    """The dims and truncation of :meth:`MPO.from_matrix` of a ``dask.array`` (out of core), validated."""
    check_dask(matrix, "matrix", 2)
    checked = check_out_of_core_truncation(check_truncation(truncation))
    check_svd(svd)
    if metric is not None or pad or isinstance(out_dims, str) or isinstance(in_dims, str):
        raise ValueError(
            "a dask matrix takes explicit or default dims without padding, layout search or metric; "
            "compute a slice in memory for those"
        )
    shape = (int(matrix.shape[0]), int(matrix.shape[1]))
    if out_dims is None and in_dims is None:  # a first site large enough that what is held after it is small
        out_dims, in_dims = streaming_dims(shape, checked, num_cores)
    out_dims, in_dims = choose_dims(shape, out_dims, in_dims, num_cores=num_cores)
    if len(out_dims) < 2:
        raise ValueError(f"a dask matrix needs at least two cores, got out_dims={out_dims}")
    return out_dims, in_dims, checked
