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

from typing import Any, Callable, Sequence

import torch

from tnlib._apply import WeightPlan, apply_cores, first_is_faster
from tnlib._backend import capturing
from tnlib.nn._layers import _traced

__all__ = ["inference_form", "weight_operator", "check_input", "fused_is_faster", "form_key"]


def form_key(params: Sequence[torch.Tensor]) -> tuple:
    """What a cached form of ``params`` depends on: their identity, version counter, device and dtype."""
    return tuple((id(p), p._version, p.device, p.dtype) for p in params)


def inference_form(
    owner: Any, name: str, params: Sequence[torch.Tensor], cores: Callable[[], Sequence[torch.Tensor]]
) -> WeightPlan:
    """The cached form of weight ``name`` of ``owner`` (a module), rebuilt when any of ``params`` changed."""
    store = owner.__dict__.setdefault("_inference_forms", {})
    key = form_key(params)
    entry = store.get(name)
    if entry is None or entry[0] != key:
        with torch.no_grad():
            entry = store[name] = (key, WeightPlan([c.detach() for c in cores()]))
    return entry[1]


def weight_operator(
    owner: Any,
    name: str,
    params: Sequence[torch.Tensor],
    cores: Callable[[], Sequence[torch.Tensor]],
    rows: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x @ W^T`` for the MPO weight ``name`` of ``owner``, in the form the context calls for.

    While a graph is captured (``torch.compile``, export): the traceable form
    of :mod:`tnlib.nn._layers._traced`, built from the cores in the graph and chosen
    for ``rows`` products (its building is paid once per call). With
    gradients: the core-wise contraction (gradients reach every core).
    Without: the cached fast form of :func:`inference_form`.
    """
    if capturing():
        return _traced.operator(cores(), rows)
    if torch.is_grad_enabled():
        chain = list(cores())
        return lambda x: apply_cores(chain, x)
    return inference_form(owner, name, params, cores)


FUSED_MARGIN = 0.1
"""The fused kernel is kept unless the Python recurrence times this much faster (relative): it is torch's own
``nn.LSTM`` / ``nn.GRU`` kernel, so it never runs slower than the dense layer, and close timings are noise."""


def fused_is_faster(
    key: tuple, f_ih: WeightPlan, f_hh: WeightPlan, x: torch.Tensor, h: torch.Tensor,
    fused: Callable[[], Any], python: Callable[[], Any],
) -> bool:
    """Whether a recurrent step (or sequence) runs faster as torch's fused kernel on the two weights' dense
    matrices (``fused``) than in Python on their cached forms (``python``), for the inputs ``x`` and ``h``.

    Always when both cached forms are already the dense matrices; otherwise the two are timed once (the fused
    kernel kept unless Python is :data:`FUSED_MARGIN` faster) and the choice is kept under ``key`` with both
    weights' cached forms (a changed parameter rebuilds one of them, and the choice is made again). A rebuilt
    matrix that is not chosen is dropped, so only the factored form stays in memory. Both ways compute the
    same function, up to rounding.
    """
    token, choice = f_hh.choices.get(key, (None, None))
    if choice is None or f_ih.choices.get(key) is not token:  # new, or either weight changed since
        choice = f_ih.dense(x) is not None and f_hh.dense(h) is not None or first_is_faster(fused, python,
                                                                                            margin=FUSED_MARGIN)
        token = object()
        f_ih.choices[key], f_hh.choices[key] = token, (token, choice)
        for plan in (f_ih, f_hh):
            if not choice and plan.dense_t is None:
                plan.full = None
    return choice


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
