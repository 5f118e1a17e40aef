"""Input Grams of a model's layers, recorded with forward hooks on calibration batches.

For a weight ``W`` applied as ``x W^T`` the output-space error of an
approximation is ``tr((W - W_hat) C (W - W_hat)^T)`` with ``C = X^T X / n``
over the inputs ``X`` the weight sees (see :class:`tnlib.Metric`).
:func:`record_grams` runs the model on unlabelled batches and returns ``C``
for every weight matrix of the chosen layers:

* ``nn.Linear`` (and the ``Conv1D`` of Hugging Face ``transformers``): the
  layer's input;
* ``nn.LSTMCell`` / ``nn.GRUCell``: the input for ``weight_ih`` and the
  incoming hidden state ``h_{t-1}`` for ``weight_hh``;
* ``nn.LSTM`` / ``nn.GRU``: per layer and direction, the layer's input
  sequence ``x_t`` for ``weight_ih_l{k}`` and the states ``h_{t-1}`` (with
  ``h_0``) for ``weight_hh_l{k}``; deeper layers' inputs are recomputed from
  the layer below;
* ``nn.MultiheadAttention``: ``query``, ``key`` and ``value`` for its three
  input projections, and the heads' output (replayed with its dense weights
  and masks) for its output projection
  (:func:`tnlib.nn._layers._mpo_attention.record_attention`).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

import tnlib
from tnlib.nn._layers._kinds import source_of, sources
from tnlib.nn._layers._stacking import suffix

__all__ = ["record_grams", "record_folds", "GramFolds", "FOLDS", "ENOUGH_ROWS", "run_batch", "is_conv1d",
           "check_gram_memory", "gram_bytes", "gram_limit", "affordable",
           "float64_metric", "record_input", "record_cell", "record_rnn", "record_patches"]


def float64_metric(metric: tnlib.Metric | None, input_gram: Any = None) -> tnlib.Metric | None:
    """``metric`` (or the older ``input_gram`` keyword, not both) with its Grams as float64 CPU tensors, the
    precision and device every weight is decomposed in."""
    if metric is not None and input_gram is not None:
        raise TypeError("pass metric= or input_gram=, not both: tnlib.Metric(input_gram) is the same metric")
    if input_gram is not None:
        metric = tnlib.Metric(input_gram)
    if metric is None:
        return None
    if not isinstance(metric, tnlib.Metric):
        raise TypeError(f"metric must be a tnlib.Metric or None, got {type(metric).__name__}")

    def host(g: Any) -> Any:
        return None if g is None else torch.as_tensor(g).detach().to(device="cpu", dtype=torch.float64)

    return tnlib.Metric(host(metric.gram), host(metric.held_out), metric.shrinkage)


def is_conv1d(module: nn.Module) -> bool:
    """The ``Conv1D`` of Hugging Face ``transformers`` (GPT-2): ``y = x W + b`` with ``W`` of shape ``(in, out)``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def run_batch(model: nn.Module, batch: Any) -> Any:
    """Call ``model`` on one batch: a tensor, a tuple/list of arguments, or a dict of keyword arguments.

    NumPy arrays become tensors (floating ones in the dtype of the model's first floating parameter). A
    tuple holding more items than ``model.forward`` takes positional arguments is read as
    ``(inputs..., targets...)``, what a labelled ``DataLoader`` yields: the model gets the leading ones.
    """
    batch = _as_torch(batch, _float_dtype(model))
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch[: _positional(model, len(batch))])
    return model(batch)


def _float_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())


def _as_torch(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every NumPy array in it as a tensor (floating arrays in ``dtype``)."""
    if isinstance(value, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(value))
        return t.to(dtype) if t.is_floating_point() else t
    if isinstance(value, Mapping):
        return {k: _as_torch(v, dtype) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_as_torch(v, dtype) for v in value)
    return value


def _positional(model: nn.Module, given: int) -> int:
    """How many of ``given`` positional items ``model.forward`` takes (all, when it takes ``*args``)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # a builtin or an unusual callable: pass everything
        return given
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return given
    takes = sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for p in params)
    return min(given, max(takes, 1))


def _memory() -> int | None:
    """This machine's physical memory in bytes, where the system says (``None`` elsewhere)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def gram_bytes(model: nn.Module, names: Sequence[str]) -> dict[str, int]:
    """Bytes the recorded Grams of each of ``names`` take: ``FOLDS`` float64 ``n x n`` sums per weight with ``n``
    inputs (a convolution's ``in * kh * kw`` per patch); layers that record nothing are left out."""
    need = {}
    for name in names:
        source = source_of(model.get_submodule(name))
        if source is None or source.record is None:
            continue
        need[name] = sum(FOLDS * 8 * int(w.shape[1]) ** 2 for w in source.weights(model.get_submodule(name)).values())
    return need


def gram_limit() -> int | None:
    """The most bytes calibration may hold in Grams: half this machine's memory (``None`` where unknown)."""
    memory = _memory()
    return None if memory is None else memory // 2


def affordable(model: nn.Module, names: Sequence[str], limit: int | None = None) -> tuple[list[str], list[str]]:
    """``names`` split into those whose Grams are recorded and those left without (the largest first) so that the
    recorded ones take at most ``limit`` bytes (default :func:`gram_limit`)."""
    limit = gram_limit() if limit is None else limit
    need = gram_bytes(model, names)
    if limit is None or sum(need.values()) <= limit:
        return list(names), []
    dropped, total = [], sum(need.values())
    for name in sorted(need, key=need.__getitem__, reverse=True):
        if total <= limit:
            break
        dropped.append(name)
        total -= need[name]
    return [n for n in names if n not in dropped], dropped


def check_gram_memory(model: nn.Module, names: Sequence[str], limit: int | None = None) -> None:
    """Refuse, before any batch is run, calibration whose Grams (``FOLDS`` float64 ``n x n`` sums per weight with
    ``n`` inputs, a convolution's ``in * kh * kw`` per patch) would take more than ``limit`` bytes (default half
    of this machine's memory), naming the largest layers."""
    limit = gram_limit() if limit is None else limit
    if limit is None:
        return
    need = gram_bytes(model, names)
    if sum(need.values()) > limit:
        worst = sorted(need, key=need.get, reverse=True)[:3]  # type: ignore[arg-type]
        detail = ", ".join(f"{n!r} {need[n] / 2**30:.1f} GiB" for n in worst)
        raise ValueError(
            f"calibration would hold {sum(need.values()) / 2**30:.1f} GiB of input Grams ({FOLDS} float64 n x n sums "
            f"per weight with n inputs), more than the {limit / 2**30:.1f} GiB allowed (half this machine's memory); "
            f"largest: {detail}. Leave those layers out with layers=[...] or compress them without calibration"
        )


FOLDS = 4
"""Calibration samples are dealt round-robin into this many folds: one is held out to choose the
fit, and all of them cross-validate the shrinkage (:mod:`tnlib.metric`)."""

ENOUGH_ROWS = 64
"""Calibration stops once every recorded weight has this many rows per input feature: its Gram is
then estimated to a few per cent, and an endless iterator of batches ends."""


@dataclass(frozen=True)
class GramFolds:
    """The input Gram of one weight, summed per fold of calibration samples.

    ``sums[k]`` is ``X_k^T X_k`` over the rows of the samples in fold ``k``
    (samples dealt round-robin, every row of a sample in the same fold) and
    ``counts[k]`` their number of rows.
    """

    sums: tuple[torch.Tensor, ...]
    counts: tuple[int, ...]

    @property
    def rows(self) -> int:
        return sum(self.counts)

    def plus(self, other: GramFolds) -> GramFolds:
        """The folds of both recordings' rows (fold ``k`` of each summed)."""
        return GramFolds(tuple(a + b for a, b in zip(self.sums, other.sums)),
                         tuple(a + b for a, b in zip(self.counts, other.counts)))

    def gram(self) -> torch.Tensor:
        """``C`` over every row."""
        return sum(self.sums[1:], self.sums[0]) / max(self.rows, 1)

    def metric(self) -> tnlib.Metric:
        """The :class:`tnlib.Metric` of these folds (their Grams and row counts)."""
        return tnlib.Metric.from_folds([s / max(c, 1) for s, c in zip(self.sums, self.counts)], list(self.counts))

    def fit_and_held(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(Gram a form is fitted in, Gram it is judged in), float64 NumPy: all folds but the last usable one,
        and that one (``None`` when no fold can be held out: the first is then every row's)."""
        metric = self.metric()
        usable = metric.usable_folds()

        def host(g: Any) -> np.ndarray:
            return np.array(torch.as_tensor(g).detach().to(device="cpu", dtype=torch.float64).numpy())

        if not usable:
            return host(metric.gram), None
        fit, held, _ = metric.split(usable[-1])
        return host(fit), host(held)


class _BadCalibration(ValueError):
    """Calibration inputs that reached a layer but cannot be used (raised from a hook)."""


class _Accumulator:
    def __init__(self) -> None:
        self.sums: dict[str, list[torch.Tensor]] = {}
        self.counts: dict[str, list[int]] = {}
        self.samples: dict[str, int] = {}

    def add(self, key: str, rows: torch.Tensor, sample_dim: int = 0) -> None:
        """Add the rows of a batch; samples along ``sample_dim`` are dealt round-robin into the folds."""
        x = rows.detach().to(device="cpu", dtype=torch.float64)
        x = x.reshape(1, -1) if x.dim() == 1 else x.movedim(sample_dim, 0)
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):  # a finite sum proves it, cheaply
            layer, _, weight = key.partition(":")
            bad = int((~torch.isfinite(x)).sum())
            raise _BadCalibration(
                f"the calibration inputs of layer {layer!r} ({weight}) hold {bad} NaN or infinite entries; "
                "pass finite batches"
            )
        features = x.shape[-1]
        if key not in self.sums:
            self.sums[key] = [torch.zeros(features, features, dtype=torch.float64) for _ in range(FOLDS)]
            self.counts[key], self.samples[key] = [0] * FOLDS, 0
        fold = (self.samples[key] + torch.arange(x.shape[0])) % FOLDS
        for k in range(FOLDS):
            part = x[fold == k].reshape(-1, features).numpy()
            if part.shape[0]:  # NumPy's product of a matrix's transpose with itself is a syrk: half torch's flops
                self.sums[key][k] += torch.from_numpy(part.T @ part)
                self.counts[key][k] += part.shape[0]
        self.samples[key] += x.shape[0]

    def enough(self, layers: Sequence[str]) -> bool:
        """Every one of ``layers`` was reached and each of its weights has :data:`ENOUGH_ROWS` rows per feature."""
        reached = {k.partition(":")[0] for k in self.sums}
        return reached.issuperset(layers) and all(
            sum(self.counts[k]) >= ENOUGH_ROWS * s[0].shape[0] for k, s in self.sums.items()
        )

    def folds(self) -> dict[str, GramFolds]:
        return {k: GramFolds(tuple(s), tuple(self.counts[k])) for k, s in self.sums.items()}


def _time_major(rnn: nn.RNNBase, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if isinstance(x, nn.utils.rnn.PackedSequence):
        raise TypeError("calibration with PackedSequence inputs is not supported; pass padded tensors")
    unbatched = x.dim() == 2
    if unbatched:
        return x.unsqueeze(1), True
    return (x.transpose(0, 1) if rnn.batch_first else x), False


def record_rnn(acc: Any, name: str, rnn: Any, args: tuple, kwargs: dict) -> None:
    """The inputs of ``nn.LSTM`` / ``nn.GRU``: replay ``rnn`` layer by layer (single-layer copies of its weights) to
    get every layer's inputs (``weight_ih_l{k}``) and states (``weight_hh_l{k}``)."""
    x, unbatched = _time_major(rnn, args[0])
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    lstm = isinstance(rnn, nn.LSTM)
    dirs = 2 if rnn.bidirectional else 1
    h0_all: Any = None
    c0_all: Any = None
    if hx is not None:
        h0_all = hx[0] if lstm else hx
        h0_all = h0_all.unsqueeze(1) if unbatched else h0_all
        c0_all = hx[1].unsqueeze(1) if (lstm and unbatched) else (hx[1] if lstm else None)
    for layer in range(rnn.num_layers):
        outs = []
        for d in range(dirs):
            sfx = suffix(layer, d)
            make: Any = type(rnn)
            single = make(x.shape[-1], rnn.hidden_size, bias=rnn.bias).to(x.device, x.dtype)
            with torch.no_grad():
                for kind in ("ih", "hh"):
                    getattr(single, f"weight_{kind}_l0").copy_(getattr(rnn, f"weight_{kind}{sfx}"))
                    if rnn.bias:
                        getattr(single, f"bias_{kind}_l0").copy_(getattr(rnn, f"bias_{kind}{sfx}"))
            seq = x if d == 0 else x.flip(0)
            k = layer * dirs + d
            h0 = torch.zeros(1, x.shape[1], rnn.hidden_size, dtype=x.dtype, device=x.device)
            state: Any = h0
            if h0_all is not None:
                h0 = h0_all[k : k + 1]
                state = (h0, c0_all[k : k + 1]) if lstm else h0
            elif lstm:
                state = (h0, torch.zeros_like(h0))
            out, _ = single(seq, state)
            acc.add(f"{name}:weight_ih{sfx}", seq, sample_dim=1)  # time-major: samples on axis 1
            acc.add(f"{name}:weight_hh{sfx}", torch.cat([h0, out[:-1]], dim=0), sample_dim=1)
            outs.append(out if d == 0 else out.flip(0))
        x = outs[0] if dirs == 1 else torch.cat(outs, dim=-1)


def record_input(acc: Any, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
    """The input of a layer ``y = x W^T`` (``nn.Linear``, transformers' ``Conv1D``): the rows ``W`` multiplies."""
    acc.add(f"{name}:weight", args[0])


def record_cell(acc: Any, name: str, cell: Any, args: tuple, kwargs: dict) -> None:
    """The inputs of ``nn.LSTMCell`` / ``nn.GRUCell``: ``x`` for ``weight_ih``, the incoming ``h`` for ``weight_hh``."""
    x = args[0]
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    h = None if hx is None else (hx[0] if isinstance(hx, (tuple, list)) else hx)
    acc.add(f"{name}:weight_ih", x)
    acc.add(f"{name}:weight_hh", torch.zeros(*x.shape[:-1], cell.hidden_size) if h is None else h)


def record_patches(acc: Any, name: str, conv: Any, args: tuple, kwargs: dict) -> None:
    """The rows the kernel matrix of a convolution multiplies: its unfolded input patches."""
    acc.add(f"{name}:weight", _patches(name, conv, args[0]))


def _hook(acc: _Accumulator, name: str, module: nn.Module):
    source = source_of(module)
    assert source is not None and source.record is not None  # _check_names allows only those
    record = source.record

    def pre(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        if not args:
            raise ValueError(f"layer {name!r} was called without positional input; calibration needs it")
        record(acc, name, mod, args, kwargs)

    return module.register_forward_pre_hook(pre, with_kwargs=True)


def _patches(name: str, conv: Any, x: torch.Tensor) -> torch.Tensor:
    """``(batch, patches, in * prod(kernel_size))``: what the kernel matrix of ``conv`` multiplies (a 1-D
    convolution is unfolded as a 2-D one of height 1)."""
    kernel, stride, dilation = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation)
    if conv.padding == "valid":
        padding: tuple[int, ...] = (0,) * len(kernel)
    elif conv.padding == "same":
        if any((k - 1) * d % 2 for k, d in zip(kernel, dilation)):
            raise _BadCalibration(f"layer {name!r}: padding='same' with an even kernel pads unevenly; "
                                  "calibration needs symmetric padding")
        padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))
    else:
        padding = tuple(conv.padding)
    if isinstance(conv, nn.Conv1d):
        x = (x.unsqueeze(0) if x.dim() == 2 else x).unsqueeze(2)  # (batch, in, 1, length)
        kernel, stride, dilation, padding = (1, *kernel), (1, *stride), (1, *dilation), (0, *padding)
    else:
        x = x.unsqueeze(0) if x.dim() == 3 else x
    cols = torch.nn.functional.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    return cols.transpose(1, 2)


def _check_names(model: nn.Module, names: Any) -> list[str]:
    """Module names of ``model`` whose inputs can be recorded: a sequence of distinct strings naming modules
    whose registered source records its inputs (:mod:`tnlib.nn._layers._kinds`)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"names must be a sequence of module names, got {names!r}; e.g. names=[{names!r}]")
    names = list(names)
    modules = dict(model.named_modules())
    seen = set()
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"names holds {n!r}; module names are strings")
        if n in seen:
            raise ValueError(f"names lists {n!r} twice")
        seen.add(n)
        if n not in modules:
            raise ValueError(f"names holds {n!r}, which is not a module of the model; modules: "
                             f"{[k for k in modules if k][:12]}")
        source = source_of(modules[n])
        if source is None or source.record is None:
            recorded = ", ".join(s.kind for s, _ in sources() if s.record is not None)
            raise TypeError(f"layer {n!r} is a {type(modules[n]).__name__}, which has no weight matrix to "
                            f"record inputs for ({recorded} have)")
    return names


def record_grams(
    model: nn.Module, names: Iterable[str], calibration: Iterable[Any]
) -> dict[str, dict[str, torch.Tensor]]:
    """``{layer name: {weight name: C}}`` (float64, CPU) over the ``calibration`` batches.

    The model runs in ``eval()`` mode without gradients; its mode is restored.
    Batches are read one at a time (never all at once) and reading stops
    once every recorded weight has :data:`ENOUGH_ROWS` (64) rows per input
    feature, so an endless iterator is fine. Raises ``ValueError`` naming
    the batch that does not fit the model, the layer whose inputs hold NaN
    or inf, or a layer the batches never reached.

    Examples
    --------
    >>> import torch, tnlib.nn
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> grams = tnlib.nn.record_grams(model, ["0", "2"], [torch.randn(16, 8) for _ in range(3)])
    >>> grams["0"]["weight"].shape, grams["2"]["weight"].dtype
    (torch.Size([8, 8]), torch.float64)
    """
    return {layer: {w: f.gram() for w, f in weights.items()}
            for layer, weights in record_folds(model, names, calibration).items()}


def record_folds(
    model: nn.Module, names: Iterable[str], calibration: Iterable[Any]
) -> dict[str, dict[str, GramFolds]]:
    """As :func:`record_grams`, with each Gram kept per fold of calibration samples (:class:`GramFolds`)."""
    names = _check_names(model, names)
    check_gram_memory(model, names)
    acc = _Accumulator()
    handles = [_hook(acc, n, model.get_submodule(n)) for n in names]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for k, batch in enumerate(calibration):
                try:
                    run_batch(model, batch)
                except _BadCalibration as exc:
                    raise ValueError(f"calibration batch {k}: {exc}") from None
                except Exception as exc:  # noqa: BLE001 - reported with the batch that failed
                    raise ValueError(
                        f"calibration batch {k} does not fit the model: {type(exc).__name__}: {exc}"
                    ) from exc
                seen += 1
                if acc.enough(names):  # what is needed is taken; an endless iterator ends here
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibration holds no batches; pass an iterable of model inputs")
    out: dict[str, dict[str, GramFolds]] = {n: {} for n in names}
    for key, c in acc.folds().items():
        layer, _, weight = key.partition(":")
        out[layer][weight] = c
    missing = [n for n in names if not out[n]]
    if missing:
        raise ValueError(f"the calibration batches never reached layer(s) {missing}; nothing to fit them to")
    return out
