"""One protocol for every LSTM task: dense, then each compression method at matched parameter counts.

Per seed: a dense ``nn.LSTM`` model is trained for ``epochs``. For every
target ratio, :func:`tnlib.nn.match_compression` gives each method's largest
setting whose *measured* weight count is at most ``dense / ratio``; then

* ``MPO (scratch)``: :class:`tnlib.nn.MPOLSTM` trained from random cores for
  ``epochs`` (Gao et al. 2020);
* ``MPO (decomposed)``: the trained dense LSTM truncated to that bond
  (:meth:`MPOLSTM.from_lstm`), then fine-tuned for ``finetune_epochs``;
* ``pruning (gradual)``: the trained dense LSTM pruned by magnitude on the
  Zhu-Gupta schedule while fine-tuning for ``finetune_epochs``;
* ``low-rank``: truncated SVD of both weights (:meth:`LowRankLSTM.from_lstm`),
  fine-tuned for ``finetune_epochs``;
* ``MPS-TT (scratch)``: :class:`tnlib.nn.TTLSTM` trained from scratch for
  ``epochs`` (Murua et al. 2020).

Only the LSTM weights are compressed and counted (biases and the head stay
dense in every model and are left out of ``params``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from _common import (
    claim_line,
    compare,
    fit,
    paired,
    plot_sweep,
    predict,
    seed_all,
    steps_per_epoch,
    summarize,
    sweep_table,
    table,
)
from torch import nn

import tnlib
import tnlib.nn as tn

METHODS = ("MPO (scratch)", "MPO (decomposed)", "pruning (gradual)", "low-rank", "MPS-TT (scratch)",
           "small dense (scratch)")
FAIR_ONLY = ("small dense (scratch)",)  # methods of the equal-budget protocol only
NUM_CORES = 3


class SeqModel(nn.Module):
    """``LSTM -> head`` reading the last step (``readout="last"``) or every step (``"all"``)."""

    def __init__(self, lstm: nn.Module, head: nn.Module, readout: str) -> None:
        super().__init__()
        self.lstm, self.head, self.readout = lstm, head, readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        return self.head(out[:, -1] if self.readout == "last" else out)


@dataclass
class Task:
    name: str
    X_train: torch.Tensor
    Y_train: torch.Tensor
    hidden_size: int
    make_head: Callable[[int], nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[nn.Module], dict[str, float]]
    readout: str = "last"
    chronological: bool = False  # validation = the last training windows (no look-ahead)
    redraw: Callable[[int], "Task"] | None = None  # the task on seed ``s``'s draw of the data split
    num_layers: int = 1

    @property
    def input_size(self) -> int:
        return int(self.X_train.shape[-1])


def _train(
    task: Task,
    model: nn.Module,
    cfg: dict[str, Any],
    seed: int,
    desc: str,
    *,
    finetune: bool,
    on_step: Callable | None = None,
    epochs: int | None = None,
    lr: float | None = None,
) -> float:
    if epochs is None:
        epochs = cfg["finetune_epochs"] if finetune else cfg["epochs"]
    if lr is None:
        lr = cfg["finetune_lr"] if finetune else cfg["lr"]
    return fit(
        model,
        task.X_train,
        task.Y_train,
        task.loss,
        epochs=epochs,
        lr=lr,
        batch_size=cfg["batch_size"],
        seed=seed,
        desc=desc,
        on_step=on_step,
    )


def build(method: str, dense: SeqModel, settings: dict[str, Any], task: Task, cfg: dict[str, Any]):
    """The compressed model for ``method`` and whether it starts from the trained dense model."""
    lstm, h, i, layers = dense.lstm, task.hidden_size, task.input_size, task.num_layers
    head = copy.deepcopy(dense.head)
    if method == "MPO (scratch)":
        new = tn.MPOLSTM(i, h, bond_dim=settings["mpo"]["bond_dim"], num_cores=NUM_CORES, num_layers=layers,
                         batch_first=True)
        return SeqModel(new, task.make_head(h), task.readout), False
    if method == "MPO (decomposed)":
        new = tn.MPOLSTM.from_lstm(lstm, tnlib.Truncation(max_bond=settings["mpo"]["bond_dim"]), num_cores=NUM_CORES)
        return SeqModel(new, head, task.readout), True
    if method == "pruning (gradual)":
        return SeqModel(copy.deepcopy(lstm), head, task.readout), True
    if method == "low-rank":
        return SeqModel(tn.LowRankLSTM.from_lstm(lstm, settings["low_rank"]["rank"]), head, task.readout), True
    if method == "MPS-TT (scratch)":
        new = tn.TTLSTM(i, h, settings["mps_tt"]["bond_dim"], num_layers=layers, batch_first=True)
        return SeqModel(new, task.make_head(h), task.readout), False
    if method == "small dense (scratch)":
        small = settings["small_dense"]["hidden"]
        return SeqModel(nn.LSTM(i, small, num_layers=layers, batch_first=True), task.make_head(small),
                        task.readout), False
    raise ValueError(f"method={method!r} is not one of {METHODS}")


SETTING = {
    "MPO (scratch)": "mpo",
    "MPO (decomposed)": "mpo",
    "pruning (gradual)": "pruning",
    "low-rank": "low_rank",
    "MPS-TT (scratch)": "mps_tt",
    "small dense (scratch)": "small_dense",
}


def small_dense(input_size: int, hidden_size: int, ratio: float, num_layers: int = 1) -> dict[str, int] | None:
    """The widest ``nn.LSTM`` (``num_layers`` deep) whose weights, ``4 h (input + h)`` in the first layer
    and ``8 h^2`` in each further one, fit ``1 / ratio`` of the dense one's."""
    def weights(h: int) -> int:
        return 4 * h * (input_size + h) + (num_layers - 1) * 8 * h * h

    budget = weights(hidden_size) / ratio
    best = None
    for h in range(1, hidden_size + 1):
        if weights(h) <= budget:
            best = {"hidden": h, "params": weights(h)}
    return best


def dense_model(task: Task, seed: int) -> SeqModel:
    seed_all(seed)
    return SeqModel(
        nn.LSTM(task.input_size, task.hidden_size, num_layers=task.num_layers, batch_first=True),
        task.make_head(task.hidden_size), task.readout
    )


def log(row: dict[str, Any]) -> None:
    """One line per trained model on stderr (tqdm shows per-epoch progress on terminals)."""
    metrics = ", ".join(
        f"{k}={v:.4g}"
        for k, v in row.items()
        if isinstance(v, float)
        and k not in ("ratio", "compression", "train_seconds")
        and not k.endswith("_before_finetune")
    )
    print(
        f"[{row['task'].split()[0]}] {row['method']} {row['ratio']:g}x seed {row['seed']}: params={row['params']}, "
        f"{metrics}, {row['train_seconds']} s",
        file=sys.stderr,
        flush=True,
    )


def fair(cfg: dict[str, Any]) -> bool:
    """The equal-budget protocol (``cfg["lr_grid"]`` set): see :func:`run`."""
    return bool(cfg.get("lr_grid"))


def lr_key(cfg: dict[str, Any], method: str, ratio: float) -> tuple[str, float]:
    """Which learning-rate choice ``method`` at ``ratio`` shares: its own, or the one made at ``cfg["lr_at"]``."""
    at = cfg.get("lr_at")
    return (method, float(at)) if at is not None and method != "dense" else (method, float(ratio))


def ratio_order(cfg: dict[str, Any], ratios: Sequence[float]) -> list[float]:
    """``ratios`` with ``cfg["lr_at"]`` first (its choice of learning rate serves the others); checked."""
    at = cfg.get("lr_at") if fair(cfg) else None
    if at is None:
        return list(ratios)
    if float(at) not in {float(r) for r in ratios}:
        raise ValueError(f"cfg['lr_at']={at!r} is not one of the ratios {tuple(ratios)}")
    return sorted(ratios, key=lambda r: float(r) != float(at))


def best_rate(cfg: dict[str, Any], chosen: dict[tuple[str, float], float], key: tuple[str, float],
              attempt: Callable[[float | None], tuple[float, Any]]) -> tuple[float, float | None, Any]:
    """``(validation loss, learning rate, result)`` of the best ``attempt(lr)`` over the grid.

    The equal-budget protocol tries every rate of ``cfg["lr_grid"]`` the first time ``key`` comes up and
    records the best in ``chosen``; later calls with that key train once at the chosen rate. Without the
    protocol: one attempt with ``lr=None`` (the caller's default rate).
    """
    if not fair(cfg):
        grid: list[float | None] = [None]
    else:
        grid = [chosen[key]] if key in chosen else list(cfg["lr_grid"])
    best = None
    for lr in grid:
        val, result = attempt(lr)
        if best is None or val < best[0]:
            best = (val, lr, result)
    assert best is not None
    if fair(cfg) and best[1] is not None:
        chosen.setdefault(key, best[1])
    return best


def split_validation(task: Task, fraction: float, seed: int) -> tuple[Task, torch.Tensor, torch.Tensor]:
    """``task`` trained on all but a validation part of its training data, and that part.

    The part is the last ``fraction`` of the windows for a chronological task (no look-ahead), a
    seeded random ``fraction`` otherwise.
    """
    n = len(task.X_train)
    k = max(1, int(round(fraction * n)))
    if task.chronological:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + seed))
    train, val = order[: n - k], order[n - k :]
    part = dataclasses.replace(task, X_train=task.X_train[train], Y_train=task.Y_train[train])
    return part, task.X_train[val], task.Y_train[val]


def _prepare(method: str, dense: SeqModel, settings: dict[str, Any], chosen: dict[str, Any], task: Task,
             cfg: dict[str, Any], equal: bool):
    """The model of ``method``, whether it starts from ``dense``, its metrics before training, its
    ``on_step`` hook, its epochs and how many of its optimiser steps run at its final size."""
    model, from_dense = build(method, dense, settings, task, cfg)
    before = task.evaluate(model) if from_dense else {}
    spe = steps_per_epoch(len(task.X_train), cfg["batch_size"])
    if equal:
        epochs = cfg["epochs"]  # every method: the dense model's epochs at its final size
    else:
        epochs = cfg["finetune_epochs"] if from_dense else cfg["epochs"]
    on_step, at_final = None, epochs * spe
    if method == "pruning (gradual)":
        if equal:  # the sparsity ramp comes first, then the same steps at the final sparsity
            ramp = cfg["finetune_epochs"] * spe
            epochs, end_step = cfg["finetune_epochs"] + cfg["epochs"], ramp
        else:
            end_step = max(1, (3 * epochs * spe) // 4)
        pruner = tn.GradualPruner(model.lstm, chosen["sparsity"], end_step=max(1, end_step),
                                  frequency=max(1, end_step // 20))
        pruner.step()
        at_final = epochs * spe - end_step
        one_shot = tn.prune_magnitude(copy.deepcopy(dense.lstm), chosen["sparsity"])
        before = task.evaluate(SeqModel(one_shot, model.head, task.readout))  # one-shot, not fine-tuned
        on_step = pruner.step
    return model, from_dense, before, on_step, epochs, at_final


def run(
    task: Task,
    ratios: Sequence[float],
    seeds: Sequence[int],
    cfg: dict[str, Any],
    methods: Sequence[str] = METHODS,
    experiment: str = "",
) -> list[dict[str, Any]]:
    """Rows (one per trained model) of ``task`` over ``ratios`` x ``seeds`` x ``methods``.

    With ``cfg["lr_grid"]`` (the equal-budget protocol) every model trains the dense model's
    ``epochs`` at its final size (gradual pruning: its ramp of ``finetune_epochs`` first), and its
    learning rate is the grid value with the least validation loss on the first seed, for that method
    and ratio, on a validation part (``cfg["val_fraction"]``) carved from the training data; later
    seeds reuse it. With ``cfg["lr_at"]`` as well, each method's rate is chosen once, at that ratio
    (which the first seed runs first), and reused at every ratio. Without ``lr_grid``: scratch models
    ``epochs`` at ``lr``, the others ``finetune_epochs`` at ``finetune_lr``, no validation part.

    A task with ``redraw`` is redrawn for every seed (``task.redraw(seed)``: its own data split).
    """
    equal = fair(cfg)
    rows: list[dict[str, Any]] = []
    chosen_lr: dict[tuple[str, float], float] = {}
    order = ratio_order(cfg, ratios)
    base = task
    for seed in seeds:
        full = base.redraw(seed) if base.redraw is not None else base
        task, X_val, Y_val = split_validation(full, cfg["val_fraction"], seed) if equal else (full, None, None)

        def trained(method: str, ratio: float, make: Callable[[], tuple], desc: str):
            """Train ``make()``'s model; on the first seed, once per grid value, keeping the best on validation."""
            def attempt(lr: float | None):
                model, from_dense, before, on_step, epochs, at_final = make()
                seconds = _train(task, model, cfg, seed, desc, finetune=from_dense, on_step=on_step,
                                 epochs=epochs, lr=lr)
                val = float(task.loss(predict(model, X_val), Y_val)) if equal else float("nan")
                return val, (model, before, at_final, seconds)

            val, lr, (model, before, at_final, seconds) = best_rate(cfg, chosen_lr, lr_key(cfg, method, ratio),
                                                                     attempt)
            return val, lr, model, before, at_final, seconds

        def dense_make():
            model = dense_model(task, seed)
            return model, False, {}, None, cfg["epochs"], cfg["epochs"] * steps_per_epoch(
                len(task.X_train), cfg["batch_size"])

        val, lr, dense, _, at_final, seconds = trained("dense", 1.0, dense_make, f"{task.name} dense s{seed}")
        dense_params = tn.count_parameters(dense.lstm)
        extra = dict(lr=lr, steps_at_final_size=at_final, val_loss=val,
                     stored_bytes=tn.stored_bytes(dense)) if equal else {}
        rows.append(
            dict(
                experiment=experiment,
                task=task.name,
                method="dense",
                ratio=1.0,
                setting="",
                params=dense_params,
                compression=1.0,
                seed=seed,
                train_seconds=round(seconds, 2),
                **extra,
                **task.evaluate(dense),
            )
        )
        log(rows[-1])
        for ratio in order:
            settings = dict(tn.match_compression(dense.lstm, ratio, num_cores=NUM_CORES),
                            small_dense=small_dense(task.input_size, task.hidden_size, ratio, task.num_layers))
            for method in methods:
                if method in FAIR_ONLY and not equal:
                    continue
                chosen = settings[SETTING[method]]
                if chosen is None:
                    continue  # even the smallest setting of this method is above the budget

                def make(method=method, chosen=chosen, settings=settings):
                    seed_all(seed)
                    return _prepare(method, dense, settings, chosen, task, cfg, equal)

                val, lr, model, before, at_final, seconds = trained(
                    method, float(ratio), make, f"{task.name} {method} {ratio:g}x s{seed}")
                params = tn.count_parameters(model.lstm)
                setting = ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items() if k != "params"
                )
                extra = dict(lr=lr, steps_at_final_size=at_final, val_loss=val,
                             stored_bytes=tn.stored_bytes(model)) if equal else {}
                rows.append(
                    dict(
                        experiment=experiment,
                        task=task.name,
                        method=method,
                        ratio=float(ratio),
                        setting=setting,
                        params=params,
                        compression=round(dense_params / params, 2),
                        seed=seed,
                        train_seconds=round(seconds, 2),
                        **extra,
                        **task.evaluate(model),
                        **{f"{k}_before_finetune": v for k, v in before.items()},
                    )
                )
                log(rows[-1])
    return rows


def training_cost(rows: Sequence[dict[str, Any]], ratios: Sequence[float]) -> str:
    """Per ratio, MPO (scratch)'s training time as a multiple of the dense model's, paired by seed, and the
    verdict on "MPO trains faster" (Gao et al.); empty without both methods."""
    cells, outcomes = [], []
    for r in ratios:
        log_rows = [dict(q, log_seconds=math.log(float(q["train_seconds"]))) for q in rows
                    if float(q.get("train_seconds") or 0) > 0]
        p = paired(log_rows, "log_seconds", "MPO (scratch)", "dense", r, higher_is_better=True, b_ratio=1.0)
        if p is None:
            continue
        cells.append(f"{r:g}x: {math.exp(p.diff):.1f}x" + (
            "" if p.lo != p.lo else f" [{math.exp(p.lo):.1f}, {math.exp(p.hi):.1f}]"))
        outcomes.append(("held" if p.hi < 0 else "did not hold (slower)" if p.lo > 0 else "inconclusive", r))
    if not cells:
        return ""
    kinds = list(dict.fromkeys(kind for kind, _ in outcomes))
    verdict = kinds[0] if len(kinds) == 1 else "; ".join(
        f"{kind} at {', '.join(f'{r:g}x' for k, r in outcomes if k == kind)}" for kind in kinds)
    return "; ".join(cells) + f" - the claim that MPO trains faster than the dense model: {verdict}"


def report(
    args,
    rows,
    tasks,
    *,
    name: str,
    metric: str = "accuracy",
    higher_is_better: bool = True,
    ylabel: str = "test accuracy",
    baseline: dict[str, tuple[str, float]] | None = None,
    extra_metrics: Sequence[str] = (),
):
    """Tables, plots and the claims (MPO vs pruning, MPS-TT vs MPO) for every task in ``rows``."""
    sections, claims = [], []
    ratios = args.cfg["ratios"]
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        summary = summarize(task_rows, ["method", "ratio"], [metric, f"{metric}_before_finetune", *extra_metrics])
        dense = next(s for s in summary if s["method"] == "dense")
        slug = f"{name}-{task.split()[0].lower()}"
        methods = [m for m in METHODS if any(r["method"] == m for r in task_rows)]
        warm = [m for m in ("MPO (decomposed)", "pruning (gradual)", "low-rank") if m in methods]
        plot_sweep(
            args.out / f"{slug}.png",
            summary,
            metric,
            methods,
            ylabel=ylabel,
            title=task,
            dense=dense,
            baseline=(baseline[task] if baseline else None),
        )
        sections += [
            f"### {task}",
            "",
            f"{ylabel} (mean ± std over seeds) and, in brackets, the measured weight count:",
            "",
            sweep_table(summary, metric, methods, ratios, dense),
            "",
        ]
        if warm:
            sections += [
                "Before fine-tuning (decomposition / one-shot pruning straight from the trained dense model):",
                "",
                sweep_table(summary, f"{metric}_before_finetune", warm, ratios),
                "",
            ]
        for m in extra_metrics:
            sections += [f"{m} (mean ± std):", "", sweep_table(summary, m, methods, ratios, dense), ""]
        if any(r.get("stored_bytes") not in (None, "") for r in task_rows):
            size = summarize(task_rows, ["method", "ratio"], ["stored_bytes"])
            by_size = {(z["method"], z["ratio"]): z for z in size}
            whole = by_size["dense", 1.0]["stored_bytes"]
            body = [[m, *(f"{by_size[m, float(r)]['stored_bytes'] / 1024:,.1f} KiB "
                          f"({whole / by_size[m, float(r)]['stored_bytes']:.1f}x)"
                          if (m, float(r)) in by_size else "-" for r in ratios)] for m in methods]
            sections += [
                f"Stored size of the whole model (LSTM, biases and head; pruned weights as values plus a bitmask or "
                f"indices; float32) and its compression against the dense model's {whole / 1024:,.1f} KiB - the "
                f"target ratios above count the LSTM weights only:",
                "",
                table(["method", *[f"{r:g}x" for r in ratios]], body),
                "",
            ]
        if any(r.get("lr") not in (None, "") for r in task_rows):
            first = min(q["seed"] for q in task_rows)
            by = {(r["method"], float(r["ratio"])): r for r in task_rows if r["seed"] == first}
            body = [[m, *(f"{by[m, float(r)]['lr']:g} / {int(by[m, float(r)]['steps_at_final_size'])}"
                          if (m, float(r)) in by else "-" for r in ratios)] for m in methods]
            body.insert(0, ["dense", f"{by['dense', 1.0]['lr']:g} / {int(by['dense', 1.0]['steps_at_final_size'])}",
                            *[""] * (len(ratios) - 1)])
            where = (f"per method at {float(args.cfg['lr_at']):g}x, reused at every ratio" if args.cfg.get("lr_at")
                     else "per method and ratio")
            sections += [
                f"Learning rate chosen on the validation part (first seed, {where}) / optimiser "
                "steps at the final size (every method the same; gradual pruning's ramp comes on top):",
                "",
                table(["method", *[f"{r:g}x" for r in ratios]], body),
                "",
            ]
        sections += [f"![{task}]({slug}.png)", ""]
        for a in [m for m in ("MPO (scratch)", "MPO (decomposed)") if "pruning (gradual)" in methods and m in methods]:
            results = compare(task_rows, metric, a, "pruning (gradual)", ratios, higher_is_better=higher_is_better)
            claims.append(claim_line(f"{task}: {a} vs gradual pruning", results, f"{a} beats pruning"))
        if "low-rank" in methods:
            # not a claim of the paper: the simplest baseline a practitioner would try, beside it
            results = compare(task_rows, metric, "MPO (decomposed)", "low-rank", ratios,
                              higher_is_better=higher_is_better)
            claims.append(claim_line(f"{task}: MPO (decomposed) vs low-rank (both from the trained dense model)",
                                     results, "MPO beats the simplest baseline (low-rank)"))
        beats_dense = []
        for s in summary:
            p = None if s["method"] == "dense" else paired(
                task_rows, metric, s["method"], "dense", s["ratio"], higher_is_better=higher_is_better, b_ratio=1.0
            )
            if p is not None and p.outcome == "better":
                beats_dense.append(f"{s['method']} at {s['ratio']:g}x")
        if beats_dense:
            claims.append(
                f"{task}: compressed models better than the dense one (paired 95 % interval above zero): "
                f"{', '.join(beats_dense)} - at this training budget the dense model is not the ceiling "
                f"(fewer parameters regularise, or train faster per epoch)."
            )
        if "small dense (scratch)" in methods:
            # not a claim of the paper: a smaller dense LSTM of the same weight count, trained the same way
            results = compare(task_rows, metric, "MPO (scratch)", "small dense (scratch)", ratios,
                              higher_is_better=higher_is_better)
            claims.append(claim_line(f"{task}: MPO (scratch) vs a small dense model (narrower, same kind) of the "
                                     "same weight count", results, "MPO beats a small dense model of its size"))
        cost = training_cost(task_rows, ratios)
        if cost:
            claims.append(f"{task}: training time of MPO (scratch) over the dense model's, same epochs, this machine "
                          f"(geometric mean of the per-seed ratios, 95 % t-interval on their logarithms): {cost}.")
        results = compare(task_rows, metric, "MPS-TT (scratch)", "MPO (scratch)", ratios,
                          higher_is_better=higher_is_better)
        claims.append(claim_line(f"{task}: MPS-TT vs MPO, both from scratch", results,
                                 "MPS-TT beats MPO on accuracy"))
    return sections, claims
