"""The inference fast path: the cheapest exact form of an MPO weight, cached until a parameter changes.

Under ``torch.no_grad()`` (or ``inference_mode``) an MPO layer needs no
gradients through its cores, so the per-call contraction of 3-5 cores
(15-30 small operations) can be replaced by a form computed once: two merged
halves of the chain applied as two matrix products
(:func:`tnlib._apply.merge_halves`), or the dense matrix when it is no
larger; a call still contracts the cores when that costs fewer FLOPs at its
batch size (large bonds at batch 1). The form is keyed by the identity, version counter, device and dtype
of every parameter it came from (cores and bond masks): an optimizer step, a
``copy_`` or a replaced parameter rebuilds it, so a stale result is never
returned. With gradients enabled the layers keep the core-wise path.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Sequence

import torch

from tnlib import contraction_plan
from tnlib._apply import apply_cores, apply_merged, apply_subscripts, inference_split, merge_halves

from . import _traced

__all__ = ["InferenceForm", "inference_form", "weight_operator", "check_input"]


def _key(params: Sequence[torch.Tensor]) -> tuple:
    return tuple((id(p), p._version, p.device, p.dtype) for p in params)


class InferenceForm:
    """One weight's cached exact forms: the cores themselves, and merged halves or the dense
    transposed matrix; each call takes whichever costs fewer FLOPs at its batch size."""

    __slots__ = ("key", "cores", "merged", "dense_t", "macs_per_row", "shapes", "choice")

    def __init__(self, key: tuple, cores: Sequence[torch.Tensor]) -> None:
        self.key = key
        self.cores = list(cores)
        self.shapes = tuple(tuple(int(d) for d in c.shape) for c in cores)
        split = inference_split(cores)
        self.merged = None if split is None else merge_halves(self.cores, split)
        self.dense_t = None
        if split is None:
            n_in = math.prod(s[2] for s in self.shapes)
            eye = torch.eye(n_in, dtype=cores[0].dtype, device=cores[0].device)
            self.dense_t = apply_cores(self.cores, eye).contiguous()  # (N, M) = W^T
            self.macs_per_row = int(self.dense_t.numel())
        else:
            m = self.merged
            assert m is not None
            self.macs_per_row = m.nl * m.r * m.mr * (m.nr + m.ml)
        self.choice: dict[int, bool] = {}  # batch size -> contract the cores (True) or use the merged form

    def _merged(self, flat: torch.Tensor) -> torch.Tensor:
        if self.dense_t is not None:
            return flat @ self.dense_t
        assert self.merged is not None
        return apply_merged(self.merged, flat)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        batch = int(flat.shape[0])
        chain = self.choice.get(batch)
        if chain is None:
            chain = self.choice[batch] = self._chain_is_faster(flat)
        return apply_cores(self.cores, flat) if chain else self._merged(flat)

    def _chain_is_faster(self, flat: torch.Tensor) -> bool:
        """Whether contracting the cores beats the merged form at this batch size.

        Decided by FLOPs when they differ by more than 4x either way, else by
        timing both once (small batches are bound by memory and per-call
        overhead, which FLOPs do not count); both are exact, so the choice
        never changes a result beyond rounding.
        """
        batch = int(flat.shape[0])
        chain, merged = _chain_flops(self.shapes, batch), 2.0 * batch * self.macs_per_row
        if chain * 4 < merged or merged * 4 < chain:
            return chain < merged
        timings = []
        for run in (lambda: apply_cores(self.cores, flat), lambda: self._merged(flat)):
            run()  # warm caches and contraction plans
            start = time.perf_counter()
            for _ in range(3):
                run()
            timings.append(time.perf_counter() - start)
        return timings[0] < timings[1]


@functools.lru_cache(maxsize=1024)
def _chain_flops(shapes: tuple[tuple[int, ...], ...], batch: int) -> float:
    plan = contraction_plan(apply_subscripts(len(shapes)), (batch, *(s[2] for s in shapes)), *shapes)
    return float(plan.flops)


def inference_form(
    owner: Any, name: str, params: Sequence[torch.Tensor], cores: Callable[[], Sequence[torch.Tensor]]
) -> InferenceForm:
    """The cached form of weight ``name`` of ``owner`` (a module), rebuilt when any of ``params`` changed."""
    store = owner.__dict__.setdefault("_inference_forms", {})
    key = _key(params)
    form = store.get(name)
    if form is None or form.key != key:
        with torch.no_grad():
            form = InferenceForm(key, [c.detach() for c in cores()])
        store[name] = form
    return form


def weight_operator(
    owner: Any, name: str, params: Sequence[torch.Tensor], cores: Callable[[], Sequence[torch.Tensor]]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ W^T`` for the MPO weight ``name`` of ``owner``, in the form the context calls for.

    While a graph is captured (``torch.compile``, export): the traceable form
    of :mod:`tnlib.nn._traced`, built from the cores in the graph. With
    gradients: the core-wise contraction (gradients reach every core).
    Without: the cached fast form of :func:`inference_form`.
    """
    if _traced.capturing():
        return _traced.operator(cores())
    if torch.is_grad_enabled():
        chain = list(cores())
        return lambda x: apply_cores(chain, x)
    return inference_form(owner, name, params, cores)


def check_input(x: torch.Tensor, ref: torch.Tensor, name: str, what: str) -> None:
    """Refuse an input whose dtype or device differs from the layer's weights ``ref``, naming both."""
    if x.dtype != ref.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but this {what}'s weights are {ref.dtype}; "
            f"convert the input ({name}.to({ref.dtype})) or the layer (.to({x.dtype}))"
        )
    if x.device != ref.device:
        raise ValueError(
            f"{name} is on {x.device} but this {what}'s weights are on {ref.device}; "
            f"move one of them (.to({str(ref.device)!r}))"
        )
