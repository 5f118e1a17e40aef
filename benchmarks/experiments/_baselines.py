"""The simplest post-training baselines, on any model's layers: truncated SVD, activation-whitened SVD, pruning.

Each replaces every ``weight*`` parameter of the named layers (a convolution's
kernel as its ``(out, in * kernel)`` unfolding) by its approximation at
``numel / ratio`` stored weights, keeping the layer types, and returns the
model with its stored weights (pruning: the nonzeros, their indices not
counted).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.utils.prune  # noqa: F401 - torch.nn.utils.prune.l1_unstructured

import tnlib


def _weights(model, layers):
    for name in layers:
        layer = model.get_submodule(name)
        for wname, w in list(layer.named_parameters()):
            if wname.startswith("weight"):
                yield name, layer, wname, w


def svd(dense, layers, ratio: float, grams=None):
    """Every weight as its truncated SVD at ``numel / ratio``; with ``grams`` (``tnlib.nn.record_grams``) fitted in
    the metric of the layer's inputs (the activation-whitened SVD)."""
    model, stored = copy.deepcopy(dense), 0
    for name, _, wname, w in _weights(model, layers):
        mat = w.detach().to(torch.float64).reshape(w.shape[0], -1)
        m, n = mat.shape
        gram = None if grams is None else grams[name][wname]
        mpo = tnlib.MPO.from_matrix(mat, (m, 1), (1, n), input_gram=gram,
                                    truncation=tnlib.Truncation(max_params=int(m * n / ratio)))
        with torch.no_grad():
            w.copy_(mpo.to_matrix().reshape(w.shape).to(w.dtype))
        stored += mpo.num_params
    return model, stored


def pruned(dense, layers, ratio: float):
    """Every weight magnitude-pruned to ``1 / ratio`` of its entries."""
    model, stored = copy.deepcopy(dense), 0
    for _, layer, wname, _ in _weights(model, layers):
        torch.nn.utils.prune.l1_unstructured(layer, wname, amount=1.0 - 1.0 / ratio)
        torch.nn.utils.prune.remove(layer, wname)
        stored += int(torch.count_nonzero(getattr(layer, wname)))
    return model, stored


def stored(model, layers) -> int:
    """The weights of the named layers (the dense count)."""
    return sum(w.numel() for *_, w in _weights(model, layers))
