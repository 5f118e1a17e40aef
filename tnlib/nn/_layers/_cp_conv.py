"""``CPConv1d`` and ``CPConv2d``: a convolution as a CP network, run as a ``1 x 1``, a depthwise and a ``1 x 1``
convolution that never form the kernel."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from tnlib.nn._layers._conv_network import ConvNetwork, as_parameter, register_network, start_network
from tnlib.nn._layers._cores import positive_int, wide

__all__ = ["CPConv1d", "CPConv2d", "cp_kernel", "cp_params", "build_cp", "cancellation"]

_ITERATIONS = (100, 2000)  # alternating least-squares sweeps at most: for the largest kernels, for the smallest
_WORK = 4e9  # multiply-adds of the sweeps a fit may take (between the two bounds above)
_TOLERANCE = 1e-8  # stop when the relative error improves by less than this fraction of itself
_RIDGE = 1e-12  # relative Tikhonov term of each least-squares solve (keeps collinear components finite)


class _CPConv(ConvNetwork):
    """What the one- and two-dimensional CP convolutions share (see :class:`CPConv2d`)."""

    middle_groups = staticmethod(lambda layer: layer.rank)  # the depthwise convolution: one filter per term
    rank: int
    spatial: nn.Parameter

    def __init__(self) -> None:
        name = type(self).__name__
        raise TypeError(f"build a {name} with {name}.from_conv{name[-2:]}(conv, rank=...)")

    def middle(self) -> nn.Parameter:
        return self.spatial

    @classmethod
    def _from_conv(cls, given: Any, rank: int) -> Any:
        conv = cls._checked(given, "CP")
        rank = positive_int("rank", rank)
        taps = math.prod(conv.kernel_size)
        bound = min(conv.out_channels * conv.in_channels, conv.out_channels * taps, conv.in_channels * taps)
        if rank > bound:
            raise ValueError(f"rank={rank} exceeds {bound}, a rank at which CP already holds every "
                             f"({conv.out_channels}, {conv.in_channels}, {taps}) kernel exactly")
        w = wide(conv.weight).cpu().numpy()
        if np.iscomplexobj(w):
            raise ValueError("a CP network is fitted to a real kernel; conv's weight is complex")
        if not np.isfinite(w).all():
            raise ValueError(f"conv's weight holds {int((~np.isfinite(w)).sum())} NaN or infinite entries")
        return build_cp(conv, cp_kernel(w, rank))

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-adds per output position of the three convolutions."""
        return cp_params(self.out_channels, self.in_channels, math.prod(self.kernel_size), self.rank)

    def dense_weight(self) -> torch.Tensor:
        """The kernel ``(out, in, *kernel_size)`` the three factors stand for."""
        last, first, spatial = self.last.flatten(1), self.first.flatten(1), self.spatial.flatten(1)
        kernel = torch.einsum("or,ri,rt->oit", last, first, spatial)
        return kernel.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def extra_repr(self) -> str:
        return f"{self.settings_repr()}, rank={self.rank}"


class CPConv2d(_CPConv):
    """``nn.Conv2d`` whose kernel ``W (out, in, kh, kw)`` is a sum of ``rank`` terms ``a_r (x) b_r (x) K_r``: a
    CP decomposition over the output channels, the input channels and the ``kh x kw`` filter.

    The forward pass is three convolutions: ``1 x 1`` from ``in`` to ``rank``
    channels (the ``b_r``), a depthwise ``kh x kw`` convolution of each of
    those channels by its own filter ``K_r`` (stride, padding and dilation as
    the original), ``1 x 1`` from ``rank`` to ``out`` (the ``a_r``, with the
    bias). The kernel is never formed: ``rank (in + kh kw + out)`` weights and
    multiply-adds per output pixel against ``in out kh kw``. This is the CP
    network of Lebedev et al. (ICLR 2015, "Speeding-up convolutional neural
    networks using fine-tuned CP-decomposition") with each component's
    filter kept whole (they split it further into ``kh`` and ``kw`` factors):
    one depthwise convolution instead of two, about the same cost, and a
    better fit at the same rank. Against :class:`TuckerConv2d` it has no core
    mixing the ranks, so at the same weights it keeps a larger rank.

    Build it with :meth:`from_conv2d`: alternating least squares from the
    leading singular vectors of the kernel's unfoldings (deterministic).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> conv = torch.nn.Conv2d(64, 128, 3, padding=1)
    >>> small = tnlib.nn.CPConv2d.from_conv2d(conv, rank=32)
    >>> small(torch.randn(2, 64, 16, 16)).shape
    torch.Size([2, 128, 16, 16])
    >>> small.num_weights, small.macs_per_pixel, 64 * 128 * 9      # weights and multiply-adds: 11.6x fewer
    (6432, 6432, 73728)
    """

    dense_type = nn.Conv2d

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, rank: int) -> CPConv2d:
        """The rank-``rank`` CP network of ``conv``'s kernel (least squares in the kernel's entries)."""
        return cls._from_conv(conv, rank)


class CPConv1d(_CPConv):
    """``nn.Conv1d`` whose kernel ``W (out, in, k)`` is a rank-``rank`` CP decomposition: :class:`CPConv2d` in
    one dimension (``1``, a depthwise ``k``-tap convolution, ``1``).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> conv = torch.nn.Conv1d(8, 12, 3)
    >>> exact = tnlib.nn.CPConv1d.from_conv1d(conv, rank=8 * 3)      # rank in * taps always holds the kernel
    >>> x = torch.randn(1, 8, 20)
    >>> bool(torch.allclose(exact(x), conv(x), atol=1e-4))
    True
    """

    dense_type = nn.Conv1d

    @classmethod
    def from_conv1d(cls, conv: nn.Conv1d, rank: int) -> CPConv1d:
        """The rank-``rank`` CP network of ``conv``'s kernel; see :meth:`CPConv2d.from_conv2d`."""
        return cls._from_conv(conv, rank)


def cp_params(out: int, n: int, taps: int, rank: int) -> int:
    """Weights (and multiply-adds per output position) of a rank-``rank`` CP network of an ``(out, n, *kernel)``
    kernel of ``taps`` entries per channel pair."""
    return rank * (out + n + taps)


def _leading(m: np.ndarray, rank: int) -> np.ndarray:
    """``rank`` columns: the leading left singular vectors of ``m`` scaled by their singular values, then (past
    its rank) columns of a fixed pseudo-random matrix."""
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    k = min(rank, len(s))
    extra = np.random.default_rng(0).standard_normal((m.shape[0], rank - k)) * (s[0] / math.sqrt(m.shape[0]) if
                                                                                len(s) and s[0] > 0 else 1.0)
    return np.concatenate([u[:, :k] * np.sqrt(s[:k]), extra], axis=1)


def cp_kernel(w: np.ndarray, rank: int, iterations: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, B, K)`` with ``W[o, i, t] ~ sum_r A[o, r] B[i, r] K[t, r]`` for a real kernel ``w (out, in, *kernel)``
    (``t`` runs over the kernel's taps): alternating least squares, started from the leading singular vectors of
    the three unfoldings, until the relative error improves by less than 1e-8 of itself or after
    ``iterations`` sweeps (default: as many as 4e9 multiply-adds allow, between 100 and 2000; ALS can crawl
    through a "swamp" for hundreds of sweeps before it converges).

    Each sweep solves for one factor with the other two fixed (normal equations: the Hadamard product of their
    Grams, with a 1e-12 relative ridge); the component norms are balanced across the factors after each sweep.
    The fit is made at unit scale (``w`` divided by a power of two), so kernels of entries 1e-200 or 1e200 fit as
    well as any; the scale returns in ``A``.
    """
    out, n = w.shape[:2]
    largest = float(np.max(np.abs(w))) if w.size else 0.0
    if largest == 0:
        taps = int(np.prod(w.shape[2:]))
        return np.zeros((out, rank)), np.zeros((n, rank)), np.zeros((taps, rank))
    shift = math.frexp(largest)[1]  # fitted at unit scale (exact power of two): no square over- or underflows
    a, b, k = _fit(w.reshape(out, n, -1) * 2.0**-shift, rank, iterations)
    return a * 2.0**shift, b, k


def _fit(t3: np.ndarray, rank: int, iterations: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cp_kernel` of a nonzero ``(out, in, taps)`` tensor of entries at most 1 in size."""
    out, n, taps = t3.shape
    total = float(np.sum(t3 * t3))
    a = _leading(t3.reshape(out, -1), rank)
    b = _leading(np.moveaxis(t3, 1, 0).reshape(n, -1), rank)
    k = _leading(np.moveaxis(t3, 2, 0).reshape(taps, -1), rank)
    by_tap = t3.reshape(out * n, taps)
    if iterations is None:
        low, high = _ITERATIONS
        iterations = int(min(high, max(low, _WORK / (4 * out * n * taps * rank))))
    previous = np.inf
    for _ in range(iterations):
        m = (k.T @ by_tap.T).reshape(rank, out, n)  # W contracted with K, per component: shared by two solves
        a = _solve((m @ b.T[:, :, None])[:, :, 0].T, (b.T @ b) * (k.T @ k))
        b = _solve((m.transpose(0, 2, 1) @ a.T[:, :, None])[:, :, 0].T, (a.T @ a) * (k.T @ k))
        khatri_rao = (a[:, None, :] * b[None, :, :]).reshape(out * n, rank)
        mttkrp, gram = by_tap.T @ khatri_rao, (a.T @ a) * (b.T @ b)
        k = _solve(mttkrp, gram)
        squared = (total - 2 * float(np.sum(k * mttkrp)) + float(np.sum(gram * (k.T @ k)))) / total
        if squared < 1e-6:  # the expansion cancels below ~1e-8 relative: form the residual there
            residual = by_tap - khatri_rao @ k.T
            squared = float(np.sum(residual * residual)) / total
        error = math.sqrt(max(squared, 0.0))
        a, b, k = _balanced(a, b, k)
        if previous - error < _TOLERANCE * error:
            break
        previous = error
    return a, b, k


def cancellation(factors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """``sum_r |lambda_r| / (sqrt(rank) ||W~||)`` for the terms ``lambda_r a_r (x) b_r (x) k_r`` of a CP fit
    ``W~``: at most 1 when the terms are orthogonal (Cauchy-Schwarz), far above when large terms cancel, the
    degeneracy of a best rank-``r`` approximation that does not exist (De Silva and Lim, SIMAX 2008). Such a
    fit's small error hides terms whose differences inputs can excite. ``inf`` for a zero fit of nonzero terms."""
    a, b, k = factors
    terms = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) * np.linalg.norm(k, axis=0)
    total = float(np.linalg.norm(np.einsum("or,ir,tr->oit", a, b, k)))
    if total == 0:
        return 0.0 if not terms.any() else math.inf
    return float(terms.sum()) / (math.sqrt(len(terms)) * total)


def _solve(mttkrp: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``X`` with ``X gram = mttkrp`` (``gram`` symmetric positive semi-definite), ridged by 1e-12 of its trace."""
    ridge = _RIDGE * max(float(np.trace(gram)) / len(gram), np.finfo(np.float64).tiny)
    return np.linalg.solve(gram + ridge * np.eye(len(gram)), mttkrp.T).T


def _balanced(*factors: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same CP terms with each component's norm shared equally by the factors."""
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    scale = np.prod(norms, axis=0) ** (1 / len(factors))
    return tuple(f * np.where(nf > 0, scale / np.where(nf > 0, nf, 1), 0) for f, nf in zip(factors, norms))


def build_cp(conv: Any, factors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> _CPConv:
    """The :class:`CPConv1d` / :class:`CPConv2d` of ``conv`` holding ``factors = (A, B, K)`` (from
    :func:`cp_kernel`)."""
    a, b, k = factors
    self = start_network(CPConv1d if isinstance(conv, nn.Conv1d) else CPConv2d, conv)
    self.rank = int(a.shape[1])
    ones = (1,) * len(self.kernel_size)  # the 1 x 1 (or 1) kernels of the channel factors
    self.first = as_parameter(b.T, conv.weight, self.rank, self.in_channels, *ones)
    self.spatial = as_parameter(k.T, conv.weight, self.rank, 1, *self.kernel_size)
    self.last = as_parameter(a, conv.weight, self.out_channels, self.rank, *ones)
    return self


register_network(((CPConv2d, "Conv2d"), (CPConv1d, "Conv1d")), "rank")
