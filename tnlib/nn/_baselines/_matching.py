"""Measured parameter counts, and the setting of every method at a target compression."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from tnlib.nn._baselines._lowrank import LowRankLSTM
from tnlib.nn._baselines._pruning import prune_magnitude
from tnlib.nn._baselines._tensor_train import TTLSTM
from tnlib.nn._layers._mpo_rnn import MPOLSTM
from tnlib.nn._layers._stacking import check_lstm

__all__ = ["count_parameters", "match_compression", "stored_bytes"]


def count_parameters(module: nn.Module, *, weights_only: bool = True) -> int:
    """Non-zero entries of a module's parameters (after pruning masks), measured.

    ``weights_only`` leaves biases out (they are never compressed and every
    method keeps them).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> layer = torch.nn.Linear(20, 10)
    >>> tnlib.nn.count_parameters(layer), tnlib.nn.count_parameters(layer, weights_only=False)
    (200, 210)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    meta = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    if meta:
        raise ValueError(f"module has parameters on torch's 'meta' device ({meta[0]}): count_parameters counts "
                         "non-zero entries, which need data; use sum(p.numel() for p in module.parameters())")
    total = 0
    for name, p in module.named_parameters():
        base = name.rsplit(".", 1)[-1]
        if weights_only and base.startswith("bias"):
            continue
        if base.endswith("_orig"):
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            p = getattr(owner, base[: -len("_orig")])
        total += int(torch.count_nonzero(p.detach()))
    return total


def stored_bytes(module: nn.Module) -> int:
    """Bytes it takes to store ``module`` whole: every parameter and buffer, a pruned weight sparsely.

    Dense tensors count ``numel * itemsize`` (biases, heads, norms' buffers
    included). A weight pruned with ``torch.nn.utils.prune`` (``weight_orig``
    and its ``weight_mask``) counts its kept values plus their positions, as
    the smaller of a bitmask (one bit per entry) and 32-bit indices (four
    bytes per kept value).

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> tnlib.nn.stored_bytes(torch.nn.Linear(10, 4))        # (40 + 4) float32 values
    176
    >>> pruned = tnlib.nn.prune_magnitude(torch.nn.Linear(100, 10), 0.9)
    >>> tnlib.nn.stored_bytes(pruned)   # 100 kept x 4 bytes + a 125-byte bitmask + 10 biases x 4
    565
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}; for a tensor t use "
                        "t.numel() * t.element_size()")
    total = 0
    masks = {n for n, _ in module.named_buffers() if n.endswith("_mask")}
    for name, p in module.named_parameters():
        if name.endswith("_orig") and name[: -len("_orig")] + "_mask" in masks:
            mask = module.get_buffer(name[: -len("_orig")] + "_mask")
            kept = int(torch.count_nonzero(mask))
            total += kept * p.element_size() + min((mask.numel() + 7) // 8, 4 * kept)
        else:
            total += p.numel() * p.element_size()
    for name, b in module.named_buffers():
        if name not in masks:
            total += b.numel() * b.element_size()
    return total


def match_compression(lstm: nn.LSTM, ratio: float, *, num_cores: int = 3) -> dict[str, dict[str, Any] | None]:
    """Settings of every method that compress ``lstm``'s weights at least ``ratio`` times.

    For each method the largest setting whose *measured* weight count
    (:func:`count_parameters` of the built module) is at most
    ``dense / ratio`` (``None`` when even the smallest setting is larger):
    ``{"mpo": {"bond_dim", "params"}, "low_rank": {"rank", ...},
    "mps_tt": {"bond_dim", ...}, "pruning": {"sparsity", ...}}``.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> settings = tnlib.nn.match_compression(torch.nn.LSTM(16, 32), ratio=4)
    >>> sorted(settings)
    ['low_rank', 'mpo', 'mps_tt', 'pruning']
    >>> settings["low_rank"]["params"] <= 4 * 32 * (16 + 32) / 4
    True
    """
    check_lstm(lstm)
    if not ratio >= 1.0:
        raise ValueError(f"ratio={ratio!r} is invalid; expected a number >= 1")
    dense = count_parameters(lstm)
    budget = dense / ratio
    kw: dict[str, Any] = dict(num_layers=lstm.num_layers, bias=lstm.bias, bidirectional=lstm.bidirectional)

    def largest(build, top: int, key: str) -> dict[str, Any] | None:
        best = None
        lo, hi = 1, top
        while lo <= hi:
            mid = (lo + hi) // 2
            try:
                params = count_parameters(build(mid))
            except ValueError:  # a bond no core can carry
                hi = mid - 1
                continue
            if params <= budget:
                best = {key: mid, "params": params}
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    torch_state = torch.random.get_rng_state()
    try:
        settings: dict[str, dict[str, Any] | None] = {
            "mpo": largest(
                lambda b: MPOLSTM(lstm.input_size, lstm.hidden_size, bond_dim=b, num_cores=num_cores, **kw),
                4 * lstm.hidden_size,
                "bond_dim",
            ),
            "low_rank": largest(
                lambda r: LowRankLSTM(lstm.input_size, lstm.hidden_size, r, **kw),
                min(lstm.input_size, lstm.hidden_size),
                "rank",
            ),
            "mps_tt": largest(
                lambda b: TTLSTM(lstm.input_size, lstm.hidden_size, b, **kw), 4 * lstm.hidden_size, "bond_dim"
            ),
        }
    finally:
        torch.random.set_rng_state(torch_state)
    sparsity = 1.0 - 1.0 / ratio
    settings["pruning"] = {
        "sparsity": sparsity,
        "params": count_parameters(prune_magnitude(copy.deepcopy(lstm), sparsity)),
    }
    return settings
