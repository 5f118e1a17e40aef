"""Matrix product states: a tensor with ``n`` legs as a chain of ``n`` cores.

An MPS core has legs ``(left, phys, right)``; the boundary bonds have size 1::

    T[i_1, ..., i_n] = A_1[0, i_1, :] @ A_2[:, i_2, :] @ ... @ A_n[:, i_n, 0]
"""

from __future__ import annotations

from typing import Any, Sequence

from . import _algebra as algebra
from . import _fixed_rank as fixed_rank
from ._backend import as_array, check_finite, check_floating, itemsize, namespace, prod
from ._chain import MAX_DENSE_SIZE, Chain, check_indices, check_max_size, validate_cores
from ._legs import contract_sites
from ._out_of_core import check_dask, check_out_of_core_truncation, is_dask, mps_sites_from_dask
from ._sweeps import tt_decompose
from .svd import check_svd
from .truncation import Truncation, TruncationReport, check_truncation

__all__ = ["MPS"]


class MPS(Chain):
    """An immutable matrix product state (tensor train).

    Parameters
    ----------
    cores : sequence of arrays, each of shape (left, phys, right)
        Same library and dtype (float32, float64, complex64 or complex128),
        finite, with matching bonds and boundary bonds of size 1. Methods
        return new objects; the cores are not copied.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> ghz = np.zeros((2,) * 6); ghz[(0,) * 6] = ghz[(1,) * 6] = 2 ** -0.5
    >>> mps = tnlib.MPS.from_dense(ghz, truncation=tnlib.Truncation(cutoff=1e-12))
    >>> mps.bond_dims
    (2, 2, 2, 2, 2)
    >>> np.round(mps.entropies(), 6)
    array([0.693147, 0.693147, 0.693147, 0.693147, 0.693147])
    """

    __slots__ = ()
    _kind = "MPS"

    def __init__(self, cores: Sequence[Any]) -> None:
        self._init(validate_cores(cores, 3, "MPS", "(left, phys, right)"), None, None)

    @classmethod
    def _trusted(cls, cores: Sequence[Any], center: int | None, report: TruncationReport | None) -> MPS:
        obj = cls.__new__(cls)
        obj._init(cores, center, report)
        return obj

    def _sites(self) -> list[Any]:
        return list(self._cores)

    def _with_sites(self, sites: Sequence[Any], center: int | None, report: TruncationReport | None) -> MPS:
        return MPS._trusted(sites, center, report)

    def _describe(self) -> str:
        return f"phys_dims={self.phys_dims}"

    def _signature(self) -> tuple[Any, ...]:
        return self.phys_dims

    def dot(self, other: Any) -> Any:
        """Bilinear ``sum self * other`` (no conjugation; see :meth:`inner`), a 0-d array.

        ``other`` is an MPS of the same legs, or a dense array of shape :attr:`phys_dims` (or flat, of
        that size): contracted one core at a time, this MPS never dense.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> t = np.random.default_rng(0).standard_normal((3, 4, 5))
        >>> x = np.random.default_rng(1).standard_normal((3, 4, 5))
        >>> bool(np.isclose(tnlib.MPS.from_dense(t).dot(x), np.sum(t * x)))
        True
        """
        xp = namespace(*self._cores)
        if isinstance(other, MPS):
            self._check_same_legs(other, "dot")
            return algebra.inner([xp.conj(c) for c in self._cores], list(other.cores))
        if isinstance(other, Chain):
            raise TypeError(f"dot needs an MPS or a dense array, got {type(other).__name__}")
        x = as_array(other, "other")
        self._check_array_library(x, "other", "convert one first")
        size = prod(self.phys_dims)
        if tuple(x.shape) not in (self.phys_dims, (size,)):
            raise ValueError(f"other has shape {tuple(x.shape)}; expected {self.phys_dims} or ({size},)")
        check_floating(x, "other")
        dtype = xp.result_type(x, self._cores[0])
        return algebra.dense_dot([xp.astype(c, dtype) for c in self._cores], xp.astype(x, dtype))

    def outer(self, other: MPS) -> MPS:
        """The outer (tensor) product ``self (x) other``: the legs of ``self`` then those of ``other``.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> a, b = np.arange(6.0).reshape(2, 3), np.arange(4.0)
        >>> o = tnlib.MPS.from_dense(a).outer(tnlib.MPS.from_dense(b))
        >>> o.phys_dims, bool(np.allclose(o.to_dense(), np.multiply.outer(a, b)))
        ((2, 3, 4), True)
        """
        if not isinstance(other, MPS):
            raise TypeError(f"outer needs two MPSs, got MPS and {type(other).__name__}")
        self._check_same_library(other, "outer")
        xp = namespace(*self._cores, *other.cores)
        dtype = xp.result_type(self._cores[0], other.cores[0])
        return MPS._trusted([xp.astype(c, dtype) for c in (*self._cores, *other.cores)], None, None)

    def entries(self, indices: Any) -> Any:
        """The entries at the index tuples ``indices``, without forming the tensor.

        Parameters
        ----------
        indices : integer array of shape (batch, num_sites)
            One index tuple per row (NumPy, or any library: it is read on the host).

        Returns
        -------
        array of shape (batch,)
            In the cores' library, dtype and device.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> t = np.arange(24.0).reshape(2, 3, 4)
        >>> tnlib.MPS.from_dense(t).entries([[1, 2, 3], [0, 1, 0]]).round(12)
        array([23.,  4.])
        """
        idx = check_indices(indices, self.phys_dims, "indices")
        return algebra.site_entries(self._cores, idx)

    @property
    def phys_dims(self) -> tuple[int, ...]:
        """Physical dimension of every core: the shape of the dense tensor."""
        return tuple(int(c.shape[1]) for c in self._cores)

    @classmethod
    def product_state(cls, vectors: Sequence[Any]) -> MPS:
        """The product ``v_1 (x) v_2 (x) ... (x) v_n`` of 1-D arrays as an MPS with bonds 1.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> up, plus = np.array([1.0, 0.0]), np.array([1.0, 1.0]) / np.sqrt(2)
        >>> psi = tnlib.MPS.product_state([up, plus, up])
        >>> psi.bond_dims, round(psi.norm(), 12)
        ((1, 1), 1.0)
        """
        if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Sequence) or not vectors:
            raise TypeError(f"vectors must be a non-empty sequence of 1-D arrays, got {vectors!r}")
        cores: list[Any] = []
        for k, v in enumerate(vectors):
            a = as_array(v, f"vectors[{k}]")
            if a.ndim != 1 or a.shape[0] == 0:
                raise ValueError(f"vectors[{k}] has shape {tuple(a.shape)}; expected a non-empty 1-D array")
            check_floating(a, f"vectors[{k}]")
            check_finite(a, f"vectors[{k}]")
            if cores and a.dtype != cores[0].dtype:
                raise TypeError(f"vectors[{k}] has dtype {a.dtype} but vectors[0] has {cores[0].dtype}; give one dtype")
            cores.append(namespace(a).reshape(a, (1, a.shape[0], 1)))
        return cls(cores)

    @classmethod
    def from_dense(
        cls, tensor: Any, truncation: Truncation | None = None, *, svd: str = "auto"
    ) -> MPS:
        """Decompose a tensor into an MPS by TT-SVD.

        Parameters
        ----------
        tensor : array with n >= 1 legs
            Finite, float32/float64/complex64/complex128, any Array-API
            namespace; the cores share its namespace, dtype and device. A
            ``dask.array`` is decomposed out of core (per-bond truncation
            only; ``docs/scaling.md``).
        truncation
            ``None`` (default) is exact: no singular value is dropped and every
            bond has its full rank (computed by QR sweeps). Otherwise see
            :class:`tnlib.Truncation`.
        svd
            SVD method name (:func:`tnlib.svd_methods`).

        Returns
        -------
        MPS
            Left-canonical (``center == n - 1``), with :attr:`report`.

        Examples
        --------
        >>> import numpy as np, tnlib
        >>> psi = np.random.default_rng(1).standard_normal(2**10)
        >>> mps = tnlib.MPS.from_dense(psi.reshape((2,) * 10))
        >>> mps.bond_dims
        (2, 4, 8, 16, 32, 16, 8, 4, 2)
        >>> bool(np.allclose(mps.to_dense().reshape(-1), psi))
        True
        """
        if is_dask(tensor):
            return cls._from_dask(tensor, truncation, svd)
        t = as_array(tensor, "tensor")
        if t.ndim < 1:
            raise ValueError("tensor must have at least one leg, got a 0-d array")
        if 0 in t.shape:
            raise ValueError(f"tensor must be non-empty, got shape {tuple(t.shape)}")
        check_floating(t, "tensor")
        check_finite(t, "tensor")
        truncation = check_truncation(truncation)
        check_svd(svd)
        dims = tuple(int(d) for d in t.shape)
        if fixed_rank.traced(t):  # under jax.jit / torch.compile: ranks from shapes, no report
            caps = fixed_rank.fixed_caps(truncation, len(dims) - 1, "MPS.from_dense")
            floor = 1 if truncation is None else truncation.min_bond
            return cls._trusted(fixed_rank.tt_svd_fixed(t, dims, caps, floor), len(dims) - 1, None)
        cores, report = tt_decompose(t, dims, truncation, svd)
        return cls._trusted(cores, len(dims) - 1, report)

    @classmethod
    def _from_dask(cls, tensor: Any, truncation: Truncation | None, svd: str) -> MPS:
        """:meth:`from_dense` of a ``dask.array`` (out of core; :mod:`tnlib._out_of_core`)."""
        check_dask(tensor, "tensor", None)
        if tensor.ndim < 2:
            raise ValueError(f"a dask tensor needs at least two legs, got shape {tuple(tensor.shape)}")
        checked = check_out_of_core_truncation(check_truncation(truncation))
        check_svd(svd)
        cores, report = mps_sites_from_dask(tensor, checked, svd)
        return cls._trusted(cores, len(cores) - 1, report)

    def to_dense(self, *, max_size: int = MAX_DENSE_SIZE) -> Any:
        """The full tensor of shape :attr:`phys_dims`.

        Refuses (``ValueError``) to build more than ``max_size`` entries
        (default ``2**28``, 2 GiB of float64).
        """
        size = prod(self.phys_dims)
        check_max_size(size, max_size, "MPS.to_dense", itemsize(self._cores[0]))
        xp = namespace(*self._cores)
        return xp.reshape(contract_sites(self._cores), self.phys_dims)
