"""``MPOEmbedding``: an embedding table held as MPO cores, looked up without forming it."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

import tnlib
from tnlib._backend import capturing
from tnlib.nn._layers._cores import masked, mpo_cores, parameter_list, wide
from tnlib.nn._layers._kinds import LayerKind, Source, register

__all__ = ["MPOEmbedding"]


class MPOEmbedding(nn.Module):
    """An embedding table ``(num_embeddings, embedding_dim)`` held as MPO cores; lookups never form it.

    Row ``i``'s digits in the row factors ``out_dims`` select one slice of every core; the slices are
    contracted for all indices of a batch at once. As in ``nn.Embedding``, the ``padding_idx`` row is
    what the table holds there (zero for a new layer) and passes no gradient to the cores, and an index
    outside ``[0, num_embeddings)`` raises ``IndexError``; ``max_norm`` and sparse gradients are refused.

    Examples
    --------
    >>> import torch, tnlib, tnlib.nn
    >>> emb = torch.nn.Embedding(1000, 64)
    >>> exact = tnlib.nn.MPOEmbedding.from_embedding(emb)
    >>> idx = torch.tensor([[3, 999], [0, 42]])
    >>> bool(torch.allclose(exact(idx), emb(idx), atol=1e-5))
    True
    >>> small = tnlib.nn.MPOEmbedding.from_embedding(emb, tnlib.Truncation(max_bond=8))
    >>> small(idx).shape, small.num_weights < emb.weight.numel()
    (torch.Size([2, 2, 64]), True)
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    out_dims: tuple[int, ...]
    in_dims: tuple[int, ...]
    cores: nn.ParameterList
    bond_masks: list[torch.Tensor] | None  # bonds squeezed by MPOP (tnlib.nn.DimensionSqueezer)

    def __init__(self) -> None:
        raise TypeError("build an MPOEmbedding with MPOEmbedding.from_embedding(emb, ...) or .from_mpo(mpo, ...)")

    @classmethod
    def from_mpo(cls, mpo: tnlib.MPO, embedding: nn.Embedding) -> MPOEmbedding:
        """A layer with ``embedding``'s settings whose table is ``mpo``."""
        _check_embedding(embedding)
        shape = (embedding.num_embeddings, embedding.embedding_dim)
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.num_embeddings, layer.embedding_dim = shape
        layer.padding_idx = embedding.padding_idx
        layer.out_dims, layer.in_dims = tuple(mpo.out_dims), tuple(mpo.in_dims)
        layer.cores = parameter_list(mpo_cores(mpo, shape, embedding.weight, "mpo"))
        layer.bond_masks = None
        return layer

    @classmethod
    def from_embedding(
        cls,
        embedding: nn.Embedding,
        truncation: tnlib.Truncation | None = None,
        *,
        out_dims: Sequence[int] | None = None,
        in_dims: Sequence[int] | None = None,
        num_cores: int | None = None,
    ) -> MPOEmbedding:
        """Decompose a trained ``nn.Embedding``'s table (float64, then cast); arguments as
        :meth:`tnlib.MPO.from_matrix`."""
        _check_embedding(embedding)
        with torch.no_grad():
            mpo = tnlib.MPO.from_matrix(wide(embedding.weight).cpu(), out_dims, in_dims,
                                        num_cores=num_cores, truncation=truncation)
        return cls.from_mpo(mpo, embedding)

    @property
    def mpo(self) -> tnlib.MPO:
        """The table as a core :class:`tnlib.MPO` (detached)."""
        return tnlib.MPO([c.detach() for c in self.cores])

    @property
    def num_weights(self) -> int:
        """Stored entries (the cores)."""
        return sum(c.numel() for c in self.cores)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be int64 or int32, got {indices.dtype}")
        flat = indices.reshape(-1).long()
        if not capturing(flat) and flat.numel() and bool(((flat < 0) | (flat >= self.num_embeddings)).any()):
            bad = flat[(flat < 0) | (flat >= self.num_embeddings)][0]
            raise IndexError(f"index {int(bad)} is out of range for an MPOEmbedding of {self.num_embeddings} rows "
                             f"(expected 0 <= index < {self.num_embeddings})")
        strides = [math.prod(self.out_dims[k + 1:]) for k in range(len(self.out_dims))]
        acc: torch.Tensor | None = None
        for core, stride, size in zip(masked(list(self.cores), self.bond_masks), strides, self.out_dims):
            digit = torch.div(flat, stride, rounding_mode="floor") % size
            piece = core[:, digit]  # (left, batch, in_k, right)
            if acc is None:
                acc = piece[0]  # (batch, in_0, right)
            else:
                acc = torch.einsum("bal,lbcr->bacr", acc, piece).reshape(flat.shape[0], -1, piece.shape[3])
        assert acc is not None
        out = acc.reshape(flat.shape[0], self.embedding_dim)
        if self.padding_idx is not None:  # the row's value, but no gradient through it (nn.Embedding's rule)
            out = torch.where((flat == self.padding_idx)[:, None], out.detach(), out)
        return out.reshape(*indices.shape, self.embedding_dim)

    def to_embedding(self) -> nn.Embedding:
        """A dense ``nn.Embedding`` with the same function."""
        c0 = self.cores[0]
        emb = nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx, device=c0.device,
                           dtype=c0.dtype)
        with torch.no_grad():
            emb.weight.copy_(self(torch.arange(self.num_embeddings, device=c0.device)))
        return emb

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, "
                f"out_dims={self.out_dims}, in_dims={self.in_dims}, "
                f"bond_dims={tuple(int(c.shape[3]) for c in list(self.cores)[:-1])}")


def _check_embedding(embedding: Any) -> None:
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(f"embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
    if embedding.max_norm is not None or embedding.sparse:
        raise ValueError("MPOEmbedding does not renormalise rows (max_norm) or give sparse gradients; "
                         "leave this layer out")


register(LayerKind(
    MPOEmbedding,
    (Source("Embedding", lambda m: isinstance(m, nn.Embedding) and m.max_norm is None and not m.sparse,
            lambda m, mpos: MPOEmbedding.from_mpo(mpos["weight"], m), "nn.Embedding (no max_norm)"),),
    ("num_embeddings", "embedding_dim", "padding_idx", "out_dims", "in_dims"),
    ("num_embeddings", "embedding_dim", "padding_idx"),
    lambda layer: torch.zeros(1, dtype=torch.int64),
))
