"""``TuckerConv1d`` and ``TuckerConv2d``: a convolution as a Tucker-2 network, run as three small convolutions that
never form the kernel."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import nn

import tnlib
from tnlib.metric import SHRINKAGE, checked_metric, shrunk
from tnlib.nn._layers._conv_network import ConvNetwork, as_parameter, register_network, start_network
from tnlib.nn._layers._cores import positive_int, wide

__all__ = ["TuckerConv1d", "TuckerConv2d", "tucker2", "tucker2_in_metric", "tucker_params", "build_tucker"]

_SWEEPS = 10  # alternating refinements of the two channel factors after the truncated HOSVD


class _TuckerConv(ConvNetwork):
    """What the one- and two-dimensional Tucker-2 convolutions share (see :class:`TuckerConv2d`)."""

    ranks: tuple[int, int]
    core: nn.Parameter

    def __init__(self) -> None:
        name = type(self).__name__
        raise TypeError(f"build a {name} with {name}.from_conv{name[-2:]}(conv, ranks=(rank_out, rank_in))")

    def middle(self) -> nn.Parameter:
        return self.core

    @classmethod
    def _from_conv(cls, given: Any, ranks: tuple[int, int], metric: tnlib.Metric | None) -> Any:
        conv = cls._checked(given, "Tucker-2")
        if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
            raise ValueError(f"ranks must be (rank_out, rank_in), got {ranks!r}")
        r_out, r_in = positive_int("ranks[0]", ranks[0]), positive_int("ranks[1]", ranks[1])
        if r_out > conv.out_channels or r_in > conv.in_channels:
            raise ValueError(f"ranks={tuple(ranks)} exceed the channels (out={conv.out_channels}, "
                             f"in={conv.in_channels}) of the convolution")
        w = wide(conv.weight).cpu().numpy()
        gram = None
        if metric is not None:  # validated for the (out, in * taps) patch matrix, in float64
            if not isinstance(metric, tnlib.Metric):
                raise TypeError(f"metric must be a tnlib.Metric or None, got {type(metric).__name__}")
            if np.iscomplexobj(w):
                raise ValueError("metric= fits a real kernel; conv's weight is complex (fit it without metric=)")
            checked = checked_metric(metric, w.reshape(w.shape[0], -1))
            gram = np.asarray(checked.gram)
            if not np.trace(gram) > 0:
                raise ValueError("metric.gram is zero: the patches it was recorded from are all zero; fit without "
                                 "metric=")
            gram = shrunk(gram, SHRINKAGE if checked.shrinkage is None else checked.shrinkage)
        return build_tucker(conv, tucker2(w, r_out, r_in, gram=gram))

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-adds per output position (pixel, or step of a 1-d convolution) of the three convolutions."""
        return tucker_params(self.out_channels, self.in_channels, math.prod(self.kernel_size), *self.ranks)

    def dense_weight(self) -> torch.Tensor:
        """The kernel ``(out, in, *kernel_size)`` the three factors stand for."""
        last, first = self.last.flatten(1), self.first.flatten(1)
        return torch.einsum("or,rs...,si->oi...", last, self.core, first)

    def extra_repr(self) -> str:
        return f"{self.settings_repr()}, ranks={self.ranks}"


class TuckerConv2d(_TuckerConv):
    """``nn.Conv2d`` whose kernel ``W (out, in, kh, kw)`` is ``U_out . G . U_in^T``: channel factors and a small core.

    The forward pass is three convolutions: ``1 x 1`` from ``in`` to ``rank_in``
    channels (``U_in^T``), the ``kh x kw`` core from ``rank_in`` to ``rank_out``
    (stride, padding and dilation as the original), ``1 x 1`` from ``rank_out`` to
    ``out`` (``U_out``, with the bias). The kernel is never formed, so a smaller
    layer also runs fewer multiply-adds per output pixel: ``in rank_in +
    rank_in rank_out kh kw + rank_out out`` against ``in out kh kw``
    (Kim et al., ICLR 2016, "Compression of deep convolutional neural networks
    for fast and low power mobile applications").

    Build it with :meth:`from_conv2d`: the truncated HOSVD of the kernel
    along its two channel legs, refined by alternating sweeps (HOOI), the
    fit of least Frobenius error at those ranks that the sweeps reach.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> conv = torch.nn.Conv2d(64, 128, 3, padding=1)
    >>> small = tnlib.nn.TuckerConv2d.from_conv2d(conv, ranks=(32, 16))
    >>> small(torch.randn(2, 64, 16, 16)).shape
    torch.Size([2, 128, 16, 16])
    >>> small.macs_per_pixel, 64 * 128 * 9                  # multiply-adds per output pixel: 7.6x fewer
    (9728, 73728)
    >>> exact = tnlib.nn.TuckerConv2d.from_conv2d(conv, ranks=(128, 64))   # full ranks: the same function
    >>> x = torch.randn(1, 64, 8, 8)
    >>> bool(torch.allclose(exact(x), conv(x), atol=1e-4))
    True
    """

    dense_type = nn.Conv2d

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, ranks: tuple[int, int], *,
                    metric: tnlib.Metric | None = None) -> TuckerConv2d:
        """The Tucker-2 network of ``conv``'s kernel at ``ranks = (rank_out, rank_in)``.

        Without ``metric``, the fit of least Frobenius error the sweeps reach. With ``metric`` (the Gram of
        the unfolded input patches, ``in * kh * kw`` features, as :func:`tnlib.nn.record_grams` records it
        for a convolution), the fit of least error in the layer's outputs, ``||(W - W~) L||`` with
        ``(1 - s) C + s tau I = L L^T`` (``s`` the metric's shrinkage, else :data:`tnlib.metric.SHRINKAGE`),
        from that weight-space fit: never a larger output error on those inputs
        (:func:`~tnlib.nn._layers._tucker_conv.tucker2_in_metric`).
        """
        return cls._from_conv(conv, ranks, metric)


class TuckerConv1d(_TuckerConv):
    """``nn.Conv1d`` whose kernel ``W (out, in, k)`` is ``U_out . G . U_in^T``: :class:`TuckerConv2d` in one
    dimension (three convolutions: ``1``, the ``k``-tap core, ``1``).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> conv = torch.nn.Conv1d(64, 128, 5, padding=2)
    >>> small = tnlib.nn.TuckerConv1d.from_conv1d(conv, ranks=(32, 16))
    >>> small(torch.randn(2, 64, 40)).shape, small.macs_per_pixel, 64 * 128 * 5
    (torch.Size([2, 128, 40]), 7680, 40960)
    >>> exact = tnlib.nn.TuckerConv1d.from_conv1d(conv, ranks=(128, 64))
    >>> x = torch.randn(1, 64, 12)
    >>> bool(torch.allclose(exact(x), conv(x), atol=1e-4))
    True
    """

    dense_type = nn.Conv1d

    @classmethod
    def from_conv1d(cls, conv: nn.Conv1d, ranks: tuple[int, int], *,
                    metric: tnlib.Metric | None = None) -> TuckerConv1d:
        """The Tucker-2 network of ``conv``'s kernel at ``ranks = (rank_out, rank_in)``, fitted in the
        layer's outputs with ``metric`` (the Gram of the ``in * k`` patch features): see
        :meth:`TuckerConv2d.from_conv2d`."""
        return cls._from_conv(conv, ranks, metric)


def tucker2(w: np.ndarray, r_out: int, r_in: int, sweeps: int = _SWEEPS,
            gram: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U_out, G, U_in)`` with ``W ~ G x_0 U_out x_1 U_in`` for a kernel ``W (out, in, *kernel)``: the truncated
    HOSVD along the two channel legs, then ``sweeps`` alternating refinements (HOOI), each factor the leading
    left singular vectors of ``W`` projected on the other.

    With ``gram`` (float64 ``(in * taps, in * taps)``, the Gram of the unfolded input patches, positive definite:
    shrink it first) the fit is made in the layer's outputs, ``||(W - W~) L||`` with ``C = L L^T``
    (:func:`tucker2_in_metric`), starting from that HOOI fit: its error in the metric is never larger."""
    shape = w.shape
    out, n = shape[:2]
    w = w.reshape(out, n, 1, -1)  # the kernel's taps as one leg
    u_in = _leading(np.moveaxis(w, 1, 0).reshape(n, -1), r_in)
    u_out = _leading(w.reshape(out, -1), r_out)
    for _ in range(sweeps if (r_out < out or r_in < n) else 0):
        u_out = _leading(np.einsum("oikl,is->oskl", w, u_in).reshape(out, -1), r_out)
        u_in = _leading(np.moveaxis(np.einsum("oikl,or->rikl", w, u_out), 1, 0).reshape(n, -1), r_in)
    if gram is not None:
        u_out, core, u_in = tucker2_in_metric(w.reshape(out, n, -1), r_out, u_in, gram)
        return u_out, core.reshape(core.shape[0], core.shape[1], *shape[2:]), u_in
    core = np.einsum("oikl,or,is->rskl", w, u_out.conj(), u_in.conj())
    return u_out, core.reshape(core.shape[0], core.shape[1], *shape[2:]), u_in


def _leading(m: np.ndarray, r: int) -> np.ndarray:
    u, _, _ = np.linalg.svd(m, full_matrices=False)
    return u[:, :r]


def tucker2_in_metric(w: np.ndarray, r_out: int, u_in: np.ndarray, gram: np.ndarray,
                      sweeps: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Tucker-2 fit of ``w (out, in, taps)`` in the metric of the patch Gram ``C`` (positive definite), from the
    input factor ``u_in``: ``(U_out, G (r_out, r_in, taps), U_in)``, the best fit seen.

    Given ``U_in`` the rest is exact: with ``P = U_in (x) I_taps``, ``B = P^T C P = S S^T`` and the least-squares
    ``X = W C P B^{-1}``, the best rank-``r_out`` ``U_out G`` is ``[X S]_r S^{-1}`` (a reduced-rank regression),
    and its error is ``||W L||^2`` less the kept squared singular values of ``X S``. Given ``U_out`` a new ``U_in``
    is taken from the in-channel leg of ``U_out^T W`` whitened by the channel Gram ``C_in = sum_t C[(., t), (., t)]``
    (the exact step if ``C`` were ``C_in (x) C_taps``); each sweep keeps the better of the two ``U_in``.
    """
    out, n, taps = w.shape
    wm = w.reshape(out, n * taps)
    c4 = gram.reshape(n, taps, n, taps)
    total = float(np.einsum("ij,jk,ik->", wm, gram, wm))
    lam, q = np.linalg.eigh(np.einsum("atbt->ab", c4) / taps)
    lam = np.maximum(lam, lam.max() * 1e-12 if lam.max() > 0 else 1.0)
    root, inv_root = (q * np.sqrt(lam)) @ q.T, (q / np.sqrt(lam)) @ q.T

    def refit(u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r_in = u.shape[1]
        cp = np.einsum("atbs,bk->atks", c4, u).reshape(n * taps, r_in * taps)  # C P
        b = np.einsum("ai,atks->itks", u, cp.reshape(n, taps, r_in, taps)).reshape(r_in * taps, r_in * taps)
        s_b = np.linalg.cholesky((b + b.T) / 2)
        m = scipy.linalg.solve_triangular(s_b, (wm @ cp).T, lower=True).T  # X S = W C P S^{-T}
        uu, sv, vt = np.linalg.svd(m, full_matrices=False)
        u_out = uu[:, :r_out]
        core = scipy.linalg.solve_triangular(s_b.T, (u_out.T @ m).T, lower=False).T  # U_out^T X
        kept = float(np.sum(sv[:r_out] ** 2))
        return max(total - kept, 0.0), u_out, core.reshape(-1, r_in, taps)

    best = (*refit(u_in), u_in)
    for _ in range(sweeps):
        v = np.einsum("or,oat->rat", best[1], w)  # U_out^T W: (r_out, in, taps)
        whitened = root @ np.moveaxis(v, 1, 0).reshape(n, -1)
        u_new, _ = np.linalg.qr(inv_root @ _leading(whitened, u_in.shape[1]))
        trial = (*refit(u_new), u_new)
        if trial[0] >= best[0] * (1 - 1e-9):
            break
        best = trial
    _, u_out, core, u_in = best
    return u_out, core, u_in


def tucker_params(out: int, n: int, taps: int, r_out: int, r_in: int) -> int:
    """Weights of a Tucker-2 network of ranks ``(r_out, r_in)`` of an ``(out, n, *kernel)`` kernel of ``taps``
    entries per channel pair (``kh * kw``)."""
    return n * r_in + r_in * r_out * taps + r_out * out


def build_tucker(conv: Any, factors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> _TuckerConv:
    """The :class:`TuckerConv1d` / :class:`TuckerConv2d` of ``conv`` holding ``factors = (U_out, G, U_in)`` (from
    :func:`tucker2`)."""
    u_out, core, u_in = factors
    self = start_network(TuckerConv1d if isinstance(conv, nn.Conv1d) else TuckerConv2d, conv)
    self.ranks = (int(core.shape[0]), int(core.shape[1]))
    ones = (1,) * (core.ndim - 2)  # the 1 x 1 (or 1) kernels of the channel factors
    self.first = as_parameter(u_in.T, conv.weight, *u_in.T.shape, *ones)
    self.core = as_parameter(core, conv.weight, *core.shape)
    self.last = as_parameter(u_out, conv.weight, *u_out.shape, *ones)
    return self


register_network(((TuckerConv2d, "Conv2d"), (TuckerConv1d, "Conv1d")), "ranks")
