"""``MPOMultiheadAttention``: ``nn.MultiheadAttention`` with its four projections as MPOs, a drop-in module.

It holds the four weights as MPOs (``cores_q``, ``cores_k``, ``cores_v``,
``cores_out``) and the biases as torch's (``in_proj_bias`` packed,
``out_proj_bias``); the call signature, masks and outputs are torch's
(:class:`~tnlib.nn._layers._attention.ProjectedAttention`), exact without
truncation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

import tnlib
from tnlib.nn._layers._attention import (
    ProjectedAttention,
    attention_weights,
    check_mha,
    merge_heads,
    merged_mask,
    split_heads,
    time_major,
)
from tnlib.nn._layers._cores import check_weight, copy_bias, members, positive_int, size_hint
from tnlib.nn._layers._kinds import LayerKind, Source, register
from tnlib.nn._layers._weights import MPOWeights, named_cores, searched, weight_lists

__all__ = ["MPOMultiheadAttention", "record_attention"]

_NAMES = ("cores_q", "cores_k", "cores_v", "cores_out")


class MPOMultiheadAttention(MPOWeights, ProjectedAttention):
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
        (``{"cores_q": mpo, "cores_k": ..., "cores_v": ..., "cores_out": ...}``) are used as they are; at a
        ``max_params`` budget without ``num_cores`` each projection's layout is searched (as
        :meth:`tnlib.MPO.from_matrix` does)."""
        check_mha(mha)
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._settings(mha.embed_dim, mha.num_heads, mha.dropout, mha.kdim, mha.vdim, mha.batch_first, num_cores)
        mpos = self._check_mpos(mpos)
        for name, w in attention_weights(mha).items():
            check_weight(w, f"mha's {name}")
        for name, w in named_cores(attention_weights(mha)).items():
            self._convert_mpo(name, w.detach(), truncation, mpos, searched(truncation, num_cores))
        copy_bias(self, "in_proj_bias", mha.in_proj_bias)
        copy_bias(self, "out_proj_bias", mha.out_proj.bias)
        self.bond_masks = {}
        return self.train(mha.training)

    def _settings(self, embed_dim: Any, num_heads: Any, dropout: Any, kdim: Any, vdim: Any, batch_first: Any,
                  num_cores: int | None = None) -> None:
        super()._settings(embed_dim, num_heads, dropout, kdim, vdim, batch_first)
        count = len(tnlib.choose_dims((self.embed_dim, self.embed_dim), num_cores=num_cores)[0])
        self.gate_dims = tnlib.factorize(self.embed_dim, count)

    def mpo_names(self) -> list[str]:
        return list(_NAMES)

    def to_dense(self) -> nn.MultiheadAttention:
        """The ``nn.MultiheadAttention`` computing the same function."""
        return self.dense_attention([self._dense(name, shape[1]) for name, shape in zip(_NAMES, self.shapes())])

    def product(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return self._operator(_NAMES[k], size_hint(x.shape[0]))(x)

    def reference(self) -> torch.Tensor:
        return members(self.cores_q)[0]

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}, "
                f"batch_first={self.batch_first}, bond_dims={[self.mpo(n).bond_dims for n in _NAMES]}")


def record_attention(acc: Any, name: str, mha: Any, args: tuple, kwargs: dict) -> None:
    """The rows each projection of an ``nn.MultiheadAttention`` multiplies: ``query``, ``key`` and ``value`` for
    ``weight_q``, ``weight_k``, ``weight_v``, and the heads' output (replayed with the dense weights, masks
    applied, no dropout) for ``weight_out``."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    given = {**dict(zip(names, args)), **kwargs}
    query = given["query"]
    key = given.get("key", query)
    value = given.get("value", key)
    query, key, value, padding = time_major(query, key, value, given.get("key_padding_mask"), mha.batch_first)
    weights = attention_weights(mha)
    biases = (None, None, None) if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)
    length, batch, _ = query.shape
    heads = mha.num_heads
    with torch.no_grad():
        projected = []
        for part, x in zip(("q", "k", "v"), (query, key, value)):
            acc.add(f"{name}:weight_{part}", x, sample_dim=1)  # time-major: samples on axis 1
            y = F.linear(x, weights[f"weight_{part}"], biases["qkv".index(part)])
            projected.append(split_heads(y, heads))
        mask = merged_mask(given.get("attn_mask"), padding, batch, heads, length, key.shape[0], query.dtype)
        out = F.scaled_dot_product_attention(projected[0], projected[1], projected[2], attn_mask=mask)
    acc.add(f"{name}:weight_out", merge_heads(out), sample_dim=1)


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


register(LayerKind(
    MPOMultiheadAttention,
    (_AttentionSource("MultiheadAttention",
                      lambda m: isinstance(m, nn.MultiheadAttention) and m.bias_k is None and not m.add_zero_attn,
                      lambda m, mpos: MPOMultiheadAttention.from_mha(m, mpos=named_cores(mpos)),
                      "nn.MultiheadAttention (no add_bias_kv / add_zero_attn)", record=record_attention),),
    ("embed_dim", "kdim", "vdim", "num_heads", "head_dim", "dropout", "batch_first", "gate_dims"),
    ("embed_dim", "kdim", "vdim", "num_heads", "batch_first"),
    lambda layer: layer.probe(), weight_lists, named_masks=True,
))
