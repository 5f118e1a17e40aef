"""``nn.MultiheadAttention``'s interface for attentions whose four projections are held in another form.

torch's attention keeps the query, key and value projections packed in one
``in_proj_weight`` and reads it, and ``out_proj.weight``, itself (as do the fused
kernels of ``nn.TransformerEncoderLayer``): a compressed layer in place of a child
``nn.Linear`` would break it, so the whole attention is replaced.
:class:`ProjectedAttention` is the base of such replacements
(:class:`~tnlib.nn.MPOMultiheadAttention`, :class:`~tnlib.nn.QuantizedMultiheadAttention`):
it takes ``forward``'s arguments and masks as torch's module does
(``attn_mask`` and ``key_padding_mask`` boolean or additive, ``need_weights``,
``average_attn_weights``, ``is_causal`` as a hint with its mask, ``batch_first``,
unbatched inputs) and returns the same values; a subclass gives the products
``x W^T`` of its four weights. Like a torch attention built with separate
projection weights it reports ``_qkv_same_embed_dim = False`` and
``in_proj_weight = None``, which keeps a parent ``nn.TransformerEncoderLayer``
on its Python path (it calls this module) instead of its fused kernel (which
would read packed weights); :func:`settle_parents` does the same for an
``nn.TransformerEncoder``'s nested-tensor path.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tnlib.nn._layers._cores import positive_int
from tnlib.nn._layers._inference import check_input

__all__ = ["ProjectedAttention", "attention_weights", "settle_parents", "time_major", "split_heads", "merge_heads",
           "merged_mask", "PROJECTIONS"]

PROJECTIONS = ("weight_q", "weight_k", "weight_v", "weight_out")
"""The four projections of an attention, in the order of :func:`attention_weights`."""


def attention_weights(mha: nn.MultiheadAttention) -> dict[str, torch.Tensor]:
    """The four projection matrices of a torch attention (``x W^T`` convention), by name: ``weight_q``,
    ``weight_k``, ``weight_v`` (unpacked from ``in_proj_weight``) and ``weight_out``."""
    if mha._qkv_same_embed_dim:
        q, k, v = mha.in_proj_weight.chunk(3)
    else:
        q, k, v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    return dict(zip(PROJECTIONS, (q, k, v, mha.out_proj.weight)))


def check_mha(mha: Any) -> nn.MultiheadAttention:
    """``mha`` if it is an ``nn.MultiheadAttention`` without ``add_bias_kv`` / ``add_zero_attn``, else an error."""
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"mha must be a torch.nn.MultiheadAttention, got {type(mha).__name__}")
    if mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError("mha was built with add_bias_kv or add_zero_attn, which a compressed attention does not "
                         "support; leave it dense")
    return mha


class ProjectedAttention(nn.Module):
    """Base of the attentions whose projections are compressed (see the module docstring): subclasses give
    :meth:`product` (``x W^T`` of projection ``k``: 0 query, 1 key, 2 value, 3 output) and :meth:`reference` (a
    tensor of the weights' dtype and device)."""

    _qkv_same_embed_dim = False  # Q, K and V are held apart: parents never take their fused kernels
    in_proj_weight = None
    bias_k = None
    bias_v = None
    add_zero_attn = False

    embed_dim: int
    kdim: int
    vdim: int
    num_heads: int
    head_dim: int
    dropout: float
    batch_first: bool
    in_proj_bias: nn.Parameter | None
    out_proj_bias: nn.Parameter | None

    def product(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """``x W_k^T`` for the rows ``x`` (2-D) of projection ``k`` (0 query, 1 key, 2 value, 3 output)."""
        raise NotImplementedError

    def reference(self) -> torch.Tensor:
        """A tensor of the weights' dtype and device (inputs are checked against it)."""
        raise NotImplementedError

    def _settings(self, embed_dim: Any, num_heads: Any, dropout: Any, kdim: Any, vdim: Any, batch_first: Any) -> None:
        self.embed_dim = positive_int("embed_dim", embed_dim)
        self.num_heads = positive_int("num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.kdim = positive_int("kdim", kdim) if kdim is not None else self.embed_dim
        self.vdim = positive_int("vdim", vdim) if vdim is not None else self.embed_dim
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout={dropout!r} is invalid; expected a probability in [0, 1]")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be True or False, got {batch_first!r}")
        self.dropout, self.batch_first = float(dropout), batch_first
        self.head_dim = self.embed_dim // self.num_heads

    def shapes(self) -> list[tuple[int, int]]:
        """The ``(out, in)`` shapes of the four projections."""
        e = self.embed_dim
        return [(e, e), (e, self.kdim), (e, self.vdim), (e, e)]

    def dense_attention(self, weights: list[torch.Tensor]) -> nn.MultiheadAttention:
        """The ``nn.MultiheadAttention`` with these four projection matrices and this module's biases."""
        ref = weights[0]
        dense = nn.MultiheadAttention(self.embed_dim, self.num_heads, self.dropout, bias=self.in_proj_bias is not None,
                                      kdim=self.kdim, vdim=self.vdim, batch_first=self.batch_first,
                                      device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for w, target in zip(weights, attention_weights(dense).values()):
                target.copy_(w)
            if self.in_proj_bias is not None and self.out_proj_bias is not None:
                dense.in_proj_bias.copy_(self.in_proj_bias)
                dense.out_proj.bias.copy_(self.out_proj_bias)
        return dense

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As ``nn.MultiheadAttention.forward`` (``key`` and ``value`` default to ``query``: self-attention)."""
        key = query if key is None else key
        value = key if value is None else value
        batched = self._check_inputs(query, key, value)
        if is_causal and attn_mask is None:
            raise ValueError("is_causal=True is a hint that attn_mask is the causal mask: pass that attn_mask too")
        query, key, value, key_padding_mask = time_major(query, key, value, key_padding_mask, self.batch_first)
        length, batch, _ = query.shape
        source = key.shape[0]
        q, k, v = (self._project(part, x) for part, x in enumerate((query, key, value)))
        heads = [split_heads(t, self.num_heads) for t in (q, k, v)]
        mask = merged_mask(attn_mask, key_padding_mask, batch, self.num_heads, length, source, q.dtype)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = heads[0] @ heads[1].transpose(-2, -1) / math.sqrt(self.head_dim)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            weights = F.dropout(weights, p) if p > 0 else weights
            out = weights @ heads[2]
        else:
            out = F.scaled_dot_product_attention(heads[0], heads[1], heads[2], attn_mask=mask, dropout_p=p)
            weights = None
        out = self._project(3, merge_heads(out))
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            weights = weights.mean(dim=1) if average_attn_weights else weights
            weights = weights if batched else weights.squeeze(0)
        return out, weights

    def _project(self, part: int, x: torch.Tensor) -> torch.Tensor:
        """``x W^T + b`` for projection ``part`` of time-major ``x`` (its bias a third of ``in_proj_bias``, or
        ``out_proj_bias``)."""
        rows = x.shape[0] * x.shape[1]
        y = self.product(part, x.reshape(rows, x.shape[2]))
        bias = self.out_proj_bias if part == 3 else (
            None if self.in_proj_bias is None else self.in_proj_bias.chunk(3)[part])
        y = y if bias is None else y + bias
        return y.reshape(x.shape[0], x.shape[1], y.shape[-1])

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
        """Whether the inputs are batched; shapes, dtypes and devices checked, naming the argument."""
        ref = self.reference()
        for name, x, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() not in (2, 3) or x.shape[-1] != size:
                raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (..., {size}) with 2 or 3 dims")
            if x.dim() != query.dim():
                raise ValueError(f"{name} has {x.dim()} dims but query has {query.dim()}; give all batched or none")
            check_input(x, ref, name, type(self).__name__)
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} differ in their leading dims")
        return query.dim() == 3

    def probe(self) -> tuple[torch.Tensor, ...]:
        """Zero inputs of one token (query, key, value) in the weights' dtype."""
        dtype = self.reference().dtype
        return tuple(torch.zeros(1, 1, size, dtype=dtype) for size in (self.embed_dim, self.kdim, self.vdim))


def time_major(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, padding: torch.Tensor | None,
               batch_first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """An attention's inputs as ``(L, N, E)`` (an unbatched ``(L, E)`` as a batch of one, its ``(S,)`` padding
    mask as ``(1, S)``), whatever their layout."""
    if query.dim() == 2:
        padding = None if padding is None else padding.unsqueeze(0)
        return query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), padding
    if batch_first:
        return query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), padding
    return query, key, value, padding


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(L, N, E)`` (time-major) as ``(N, heads, L, E / heads)``."""
    return t.reshape(t.shape[0], t.shape[1], heads, t.shape[2] // heads).permute(1, 2, 0, 3)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``(N, heads, L, D)`` back to ``(L, N, heads * D)``: :func:`split_heads` undone."""
    return t.permute(2, 0, 1, 3).reshape(t.shape[2], t.shape[0], t.shape[1] * t.shape[3])


def _additive(mask: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """A boolean mask (``True``: not attended) or an additive float mask, as an additive mask of ``dtype``."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise TypeError(f"{name} must be a bool or floating mask, got dtype {mask.dtype}")
    return mask.to(dtype)


def merged_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, batch: int, heads: int,
                length: int, source: int, dtype: torch.dtype) -> torch.Tensor | None:
    """``attn_mask`` ((L, S) or (N * heads, L, S)) and ``key_padding_mask`` ((N, S)) as one additive mask that
    broadcasts over (N, heads, L, S)."""
    mask = None
    if attn_mask is not None:
        if tuple(attn_mask.shape) == (length, source):
            mask = _additive(attn_mask, dtype, "attn_mask")
        elif tuple(attn_mask.shape) == (batch * heads, length, source):
            mask = _additive(attn_mask, dtype, "attn_mask").reshape(batch, heads, length, source)
        else:
            raise ValueError(f"attn_mask has shape {tuple(attn_mask.shape)}; expected ({length}, {source}) or "
                             f"({batch * heads}, {length}, {source})")
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (batch, source):
            raise ValueError(f"key_padding_mask has shape {tuple(key_padding_mask.shape)}; expected "
                             f"({batch}, {source})")
        padding = _additive(key_padding_mask, dtype, "key_padding_mask").reshape(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    return mask


def settle_parents(model: nn.Module) -> None:
    """An ``nn.TransformerEncoder`` whose first layer's attention is a :class:`ProjectedAttention` leaves its
    nested-tensor fast path (which reads packed dense weights), as torch decides at construction for an
    attention with separate projection weights."""
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoder) and len(module.layers) and isinstance(
                getattr(module.layers[0], "self_attn", None), ProjectedAttention):
            module.use_nested_tensor = False
