"""``MPOMultiheadAttention``: ``nn.MultiheadAttention`` with its four projections as MPOs, a drop-in module.

torch's attention keeps the query, key and value projections packed in one
``in_proj_weight`` and reads it, and ``out_proj.weight``, itself (as do the fused
kernels of ``nn.TransformerEncoderLayer``): an MPO in place of a child
``nn.Linear`` would break it. This module replaces the whole attention
instead. It holds the four weights as MPOs (``cores_q``, ``cores_k``,
``cores_v``, ``cores_out``) and the biases as torch's (``in_proj_bias`` packed,
``out_proj_bias``), takes ``forward``'s arguments and masks as torch's module
does (``attn_mask`` and ``key_padding_mask`` boolean or additive,
``need_weights``, ``average_attn_weights``, ``is_causal`` as a hint with its
mask, ``batch_first``, unbatched inputs) and returns the same values, exact
without truncation. Like a torch attention built with separate projection
weights it reports ``_qkv_same_embed_dim = False`` and ``in_proj_weight = None``,
which keeps a parent ``nn.TransformerEncoderLayer`` on its Python path (it calls
this module) instead of its fused kernel (which would read packed weights);
:func:`settle_parents` does the same for an ``nn.TransformerEncoder``'s nested-
tensor path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

import tnlib
from tnlib.nn._layers._cores import check_weight, copy_bias, members, positive_int, size_hint
from tnlib.nn._layers._inference import check_input
from tnlib.nn._layers._kinds import LayerKind, Source, register
from tnlib.nn._layers._weights import MPOWeights, named_cores, weight_lists

__all__ = ["MPOMultiheadAttention", "attention_weights", "settle_parents", "record_attention"]

_NAMES = ("cores_q", "cores_k", "cores_v", "cores_out")


def attention_weights(mha: nn.MultiheadAttention) -> dict[str, torch.Tensor]:
    """The four projection matrices of a torch attention (``x W^T`` convention), by the names their MPOs take
    after ``weight_``: ``weight_q``, ``weight_k``, ``weight_v`` (unpacked from ``in_proj_weight``) and
    ``weight_out``."""
    if mha._qkv_same_embed_dim:
        q, k, v = mha.in_proj_weight.chunk(3)
    else:
        q, k, v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    return {"weight_q": q, "weight_k": k, "weight_v": v, "weight_out": mha.out_proj.weight}


class MPOMultiheadAttention(MPOWeights, nn.Module):
    """``nn.MultiheadAttention`` whose query, key, value and output projections are MPOs.

    Parameters
    ----------
    embed_dim, num_heads, dropout, bias, kdim, vdim, batch_first
        As ``nn.MultiheadAttention``'s (``add_bias_kv`` and ``add_zero_attn`` are not supported).
    bond_dim
        Bond dimension of the four MPOs of a new module.
    num_cores
        Cores per MPO (default: the most balanced layout).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> mha = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    >>> mpo = tnlib.nn.MPOMultiheadAttention.from_mha(mha).eval()          # exact
    >>> x = torch.randn(2, 5, 32)
    >>> mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])        # the second sequence has 3 tokens
    >>> a, w = mha(x, x, x, key_padding_mask=mask)
    >>> b, v = mpo(x, x, x, key_padding_mask=mask)
    >>> bool(torch.allclose(a, b, atol=1e-5)), bool(torch.allclose(w, v, atol=1e-6))
    (True, True)
    """

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
    cores_q: nn.ParameterList
    cores_k: nn.ParameterList
    cores_v: nn.ParameterList
    cores_out: nn.ParameterList

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = False, *,
                 bond_dim: int = 8, num_cores: int | None = None, device=None, dtype=None) -> None:
        super().__init__()
        self._settings(embed_dim, num_heads, dropout, kdim, vdim, batch_first, num_cores)
        positive_int("bond_dim", bond_dim)
        for name, fan_in in zip(_NAMES, (self.embed_dim, self.kdim, self.vdim, self.embed_dim)):
            self._init_mpo(name, fan_in, bond_dim, self.embed_dim, device, dtype)
        for name, size in (("in_proj_bias", 3 * self.embed_dim), ("out_proj_bias", self.embed_dim)):
            zeros = torch.zeros(size, device=device, dtype=dtype)  # torch's attention starts its biases at 0
            copy_bias(self, name, zeros if bias else None)
        self.bond_masks = {}

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention, truncation: tnlib.Truncation | None = None, *,
                 num_cores: int | None = None,
                 mpos: Mapping[str, tnlib.MPO] | None = None) -> MPOMultiheadAttention:
        """Convert a trained ``nn.MultiheadAttention`` (exact when ``truncation`` is ``None``); ``mpos``
        (``{"cores_q": mpo, "cores_k": ..., "cores_v": ..., "cores_out": ...}``) are used as they are."""
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha must be a torch.nn.MultiheadAttention, got {type(mha).__name__}")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("mha was built with add_bias_kv or add_zero_attn, which MPOMultiheadAttention does "
                             "not support; leave it dense")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._settings(mha.embed_dim, mha.num_heads, mha.dropout, mha.kdim, mha.vdim, mha.batch_first, num_cores)
        mpos = self._check_mpos(mpos)
        for name, w in attention_weights(mha).items():
            check_weight(w, f"mha's {name}")
        for name, w in named_cores(attention_weights(mha)).items():
            self._convert_mpo(name, w.detach(), truncation, mpos)
        copy_bias(self, "in_proj_bias", mha.in_proj_bias)
        copy_bias(self, "out_proj_bias", mha.out_proj.bias)
        self.bond_masks = {}
        return self.train(mha.training)

    def _settings(self, embed_dim: Any, num_heads: Any, dropout: Any, kdim: Any, vdim: Any, batch_first: Any,
                  num_cores: int | None) -> None:
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
        count = len(tnlib.choose_dims((self.embed_dim, self.embed_dim), num_cores=num_cores)[0])
        self.gate_dims = tnlib.factorize(self.embed_dim, count)

    def mpo_names(self) -> list[str]:
        return list(_NAMES)

    def to_dense(self) -> nn.MultiheadAttention:
        """The ``nn.MultiheadAttention`` computing the same function."""
        ref = members(self.cores_q)[0]
        dense = nn.MultiheadAttention(self.embed_dim, self.num_heads, self.dropout, bias=self.in_proj_bias is not None,
                                      kdim=self.kdim, vdim=self.vdim, batch_first=self.batch_first,
                                      device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name, w in attention_weights(dense).items():
                fan_in = int(w.shape[1])
                w.copy_(self._dense("cores_" + name.removeprefix("weight_"), fan_in))
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
        query, key, value, key_padding_mask = _time_major(query, key, value, key_padding_mask, self.batch_first)
        length, batch, _ = query.shape
        source = key.shape[0]
        q, k, v = (self._project(name, x, part) for name, x, part in
                   (("cores_q", query, 0), ("cores_k", key, 1), ("cores_v", value, 2)))
        heads = [_split_heads(t, self.num_heads) for t in (q, k, v)]
        mask = _merged_mask(attn_mask, key_padding_mask, batch, self.num_heads, length, source, q.dtype)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = heads[0] @ heads[1].transpose(-2, -1) / math.sqrt(self.head_dim)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            weights = F.dropout(weights, p) if p > 0 else weights
            out = weights @ heads[2]
        else:
            out = F.scaled_dot_product_attention(heads[0], heads[1], heads[2], attn_mask=mask, dropout_p=p)
            weights = None
        out = _merge_heads(out)
        out = self._project("cores_out", out, None)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            weights = weights.mean(dim=1) if average_attn_weights else weights
            weights = weights if batched else weights.squeeze(0)
        return out, weights

    def _project(self, name: str, x: torch.Tensor, part: int | None) -> torch.Tensor:
        """``x W^T + b`` for one of the four weights (``part``: which third of ``in_proj_bias``)."""
        rows = x.shape[0] * x.shape[1]
        y = self._operator(name, size_hint(rows))(x.reshape(rows, x.shape[2]))
        bias = self.out_proj_bias if part is None else (
            None if self.in_proj_bias is None else self.in_proj_bias.chunk(3)[part])
        y = y if bias is None else y + bias
        return y.reshape(x.shape[0], x.shape[1], y.shape[-1])

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
        """Whether the inputs are batched; shapes, dtypes and devices checked, naming the argument."""
        ref = members(self.cores_q)[0]
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

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}, "
                f"batch_first={self.batch_first}, bond_dims={[self.mpo(n).bond_dims for n in _NAMES]}")


def _time_major(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, padding: torch.Tensor | None,
                batch_first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """An attention's inputs as ``(L, N, E)`` (an unbatched ``(L, E)`` as a batch of one, its ``(S,)`` padding
    mask as ``(1, S)``), whatever their layout."""
    if query.dim() == 2:
        padding = None if padding is None else padding.unsqueeze(0)
        return query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), padding
    if batch_first:
        return query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), padding
    return query, key, value, padding


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(L, N, E)`` (time-major) as ``(N, heads, L, E / heads)``."""
    return t.reshape(t.shape[0], t.shape[1], heads, t.shape[2] // heads).permute(1, 2, 0, 3)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``(N, heads, L, D)`` back to ``(L, N, heads * D)``: :func:`_split_heads` undone."""
    return t.permute(2, 0, 1, 3).reshape(t.shape[2], t.shape[0], t.shape[1] * t.shape[3])


def _additive(mask: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """A boolean mask (``True``: not attended) or an additive float mask, as an additive mask of ``dtype``."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise TypeError(f"{name} must be a bool or floating mask, got dtype {mask.dtype}")
    return mask.to(dtype)


def _merged_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, batch: int, heads: int,
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


def record_attention(acc: Any, name: str, mha: Any, args: tuple, kwargs: dict) -> None:
    """The rows each projection of an ``nn.MultiheadAttention`` multiplies: ``query``, ``key`` and ``value`` for
    ``weight_q``, ``weight_k``, ``weight_v``, and the heads' output (replayed with the dense weights, masks
    applied, no dropout) for ``weight_out``."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    given = {**dict(zip(names, args)), **kwargs}
    query = given["query"]
    key = given.get("key", query)
    value = given.get("value", key)
    query, key, value, padding = _time_major(query, key, value, given.get("key_padding_mask"), mha.batch_first)
    weights = attention_weights(mha)
    biases = (None, None, None) if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)
    length, batch, _ = query.shape
    heads = mha.num_heads
    with torch.no_grad():
        projected = []
        for part, x in zip(("q", "k", "v"), (query, key, value)):
            acc.add(f"{name}:weight_{part}", x, sample_dim=1)  # time-major: samples on axis 1
            y = F.linear(x, weights[f"weight_{part}"], biases["qkv".index(part)])
            projected.append(_split_heads(y, heads))
        mask = _merged_mask(given.get("attn_mask"), padding, batch, heads, length, key.shape[0], query.dtype)
        out = F.scaled_dot_product_attention(projected[0], projected[1], projected[2], attn_mask=mask)
    acc.add(f"{name}:weight_out", _merge_heads(out), sample_dim=1)


def settle_parents(model: nn.Module) -> None:
    """An ``nn.TransformerEncoder`` whose first layer's attention is an :class:`MPOMultiheadAttention` leaves its
    nested-tensor fast path (which reads packed dense weights), as torch decides at construction for an
    attention with separate projection weights."""
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoder) and len(module.layers) and isinstance(
                getattr(module.layers[0], "self_attn", None), MPOMultiheadAttention):
            module.use_nested_tensor = False


@dataclass(frozen=True)
class _AttentionSource(Source):
    """``nn.MultiheadAttention``: its weights are the four projections, not parameters named ``weight*``."""

    def weights(self, module: Any) -> dict[str, torch.Tensor]:
        return {n: w.detach() for n, w in attention_weights(module).items()}

    def parameters_of(self, module: Any) -> dict[str, tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        out = {"weight_out": (module.out_proj.weight, _same)}
        if not module._qkv_same_embed_dim:
            return {"weight_q": (module.q_proj_weight, _same), "weight_k": (module.k_proj_weight, _same),
                    "weight_v": (module.v_proj_weight, _same), **out}
        return {**{name: (module.in_proj_weight, functools.partial(_third, part=k))
                   for k, name in enumerate(("weight_q", "weight_k", "weight_v"))}, **out}


def _same(g: torch.Tensor) -> torch.Tensor:
    return g


def _third(g: torch.Tensor, part: int) -> torch.Tensor:
    """One of the query / key / value thirds of a tensor shaped as the packed ``in_proj_weight``."""
    return g.chunk(3)[part]


def _probe(layer: Any) -> tuple[torch.Tensor, ...]:
    dtype = members(layer.cores_q)[0].dtype
    return tuple(torch.zeros(1, 1, size, dtype=dtype) for size in (layer.embed_dim, layer.kdim, layer.vdim))


register(LayerKind(
    MPOMultiheadAttention,
    (_AttentionSource("MultiheadAttention",
                      lambda m: isinstance(m, nn.MultiheadAttention) and m.bias_k is None and not m.add_zero_attn,
                      lambda m, mpos: MPOMultiheadAttention.from_mha(m, mpos=named_cores(mpos)),
                      "nn.MultiheadAttention (no add_bias_kv / add_zero_attn)", record=record_attention),),
    ("embed_dim", "kdim", "vdim", "num_heads", "head_dim", "dropout", "batch_first", "gate_dims"),
    ("embed_dim", "kdim", "vdim", "num_heads", "batch_first"),
    _probe, weight_lists, named_masks=True,
))
