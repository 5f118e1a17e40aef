"""Plumbing shared by the experiments: arguments, threads, seeds, training, outputs.

Every experiment writes, under ``--out`` (default ``docs/experiments``):
``<name>.csv`` (one row per trained model), ``<name>.md`` (tables, claims,
command, wall time, machine) and ``<name>.png`` (metric vs parameters per
method). ``--smoke`` runs a tiny configuration (CI), writing to a temporary
folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "experiments"


def parse(description: str, full: dict[str, Any], smoke: dict[str, Any], argv: Sequence[str] | None = None):
    """Command-line options; ``args.cfg`` is the full or the smoke configuration."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny configuration that checks the script runs (CI)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3, smoke: 1)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {DEFAULT_OUT.relative_to(ROOT)}; smoke: a temporary folder)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the Markdown and plots from the CSV already in --out (no sweep training; "
        "fc.py still retrains its one small entropy-study net, ~20 s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("TNLIB_THREADS", "1")),
        help="torch threads (env TNLIB_THREADS; default 1: two threads on two busy cores run 20-70x slower)",
    )
    args = parser.parse_args(argv)
    args.cfg = dict(smoke if args.smoke else full)
    args.seeds = list(range(args.seeds if args.seeds is not None else args.cfg.get("seeds", 1 if args.smoke else 3)))
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="tnlib-smoke-")) if args.smoke else DEFAULT_OUT
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads < 1:
        parser.error(f"--threads={args.threads} is invalid; expected a positive int")
    torch.set_num_threads(args.threads)
    args.command = "python " + " ".join(
        [
            str(Path(sys.argv[0]).resolve().relative_to(ROOT))
            if Path(sys.argv[0]).resolve().is_relative_to(ROOT)
            else sys.argv[0],
            *sys.argv[1:],
        ]
    )
    args.command = args.command.replace(str(ROOT) + "/", "")
    args.started = time.perf_counter()
    return args


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def batches(n: int, batch_size: int, *, shuffle: bool, seed: int = 0) -> Iterable[torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def fit(
    model: nn.Module,
    X: torch.Tensor,
    Y: torch.Tensor,
    loss_fn: Callable,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    desc: str,
    on_step: Callable[[], Any] | None = None,
    params: Iterable[nn.Parameter] | None = None,
) -> float:
    """Adam with gradient clipping; returns wall seconds. ``on_step`` runs after each optimizer step."""
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, leave=False, file=sys.stderr, disable=None)
    for epoch in bar:
        total, count = 0.0, 0
        for idx in batches(len(X), batch_size, shuffle=True, seed=seed * 1000 + epoch):
            loss = loss_fn(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if on_step is not None:
                on_step()
            total += loss.item() * len(idx)
            count += len(idx)
        bar.set_postfix(loss=f"{total / count:.4f}")
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(X[idx]) for idx in batches(len(X), batch_size, shuffle=False)])


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, X).argmax(-1) == y).float().mean())


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


# ----------------------------------------------------------------------------- outputs


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def save_rows(args, name: str, rows: list[dict[str, Any]]) -> None:
    """``<name>.csv`` and ``<name>.json`` (command, wall time, machine) for ``--report-only`` runs."""
    write_csv(args.out / f"{name}.csv", rows)
    meta = dict(
        command=args.command,
        wall_seconds=time.perf_counter() - args.started,
        machine=machine(),
        seeds=len(args.seeds),
        smoke=args.smoke,
    )
    (args.out / f"{name}.json").write_text(json.dumps(meta, indent=1))


def rows_for(args, name: str, run: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The committed rows with ``--report-only``; otherwise ``run()``'s, saved to ``<name>.csv``."""
    if args.report_only:
        return load_rows(args, name)
    rows = run()
    save_rows(args, name, rows)
    return rows


def load_rows(args, name: str) -> list[dict[str, Any]]:
    path = args.out / f"{name}.csv"
    if not path.exists():
        raise SystemExit(f"--report-only: {path} does not exist; run the experiment first")
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def summarize(rows: list[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and standard deviation of ``metrics`` (and mean ``params``) per group of ``keys``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    out = []
    for key, members in groups.items():
        entry = dict(zip(keys, key))
        entry["n"] = len(members)
        for m in ["params", *metrics]:
            values = np.array([float(r[m]) for r in members if r.get(m) not in (None, "")])
            entry[m] = float(values.mean()) if values.size else float("nan")
            entry[m + "_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out.append(entry)
    return out


def _num(x: float, digits: int) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"


def fmt(value: float, std: float | None = None, digits: int = 3) -> str:
    """``value`` (and ``± std``) to ``digits`` significant figures; whole numbers from 100 up."""
    if value != value:
        return "-"
    text = _num(value, digits)
    if std is not None and std == std:
        text += " ± " + _num(std, max(1, digits - 1))
    return text


def table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def sweep_table(
    summary: list[dict[str, Any]],
    metric: str,
    methods: Sequence[str],
    ratios: Sequence[float],
    dense: dict[str, Any] | None = None,
    digits: int = 3,
) -> str:
    """Rows: methods; columns: target ratios; cells: ``metric mean ± std (params)``."""
    by = {(s["method"], s["ratio"]): s for s in summary}
    body = []
    if dense is not None:
        body.append(
            ["dense", fmt(dense[metric], dense[metric + "_std"], digits) + f" ({dense['params']:,.0f})"]
            + [""] * (len(ratios) - 1)
        )
    for method in methods:
        cells = []
        for r in ratios:
            s = by.get((method, r))
            cells.append(
                "not reachable"
                if s is None or s["params"] != s["params"]
                else fmt(s[metric], s[metric + "_std"], digits) + f" ({s['params']:,.0f})"
            )
        body.append([method, *cells])
    return table(["method", *[f"{r:g}x" for r in ratios]], body)


def plot_sweep(
    path: Path,
    summary: list[dict[str, Any]],
    metric: str,
    methods: Sequence[str],
    *,
    ylabel: str,
    title: str,
    dense: dict[str, Any] | None = None,
    baseline: tuple[str, float] | None = None,
    xlabel: str = "parameters in the compressed weights (measured)",
) -> None:
    """``metric`` (mean, std as error bars) against measured parameters, one line per method."""
    import matplotlib.ticker

    markers = "osD^v<>p*h"
    with figure(path) as ax:
        for k, method in enumerate(methods):
            pts = sorted(
                (s["params"], s[metric], s[metric + "_std"])
                for s in summary
                if s["method"] == method and s["params"] == s["params"]
            )
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker=markers[k % len(markers)], capsize=3, label=method)
        if dense is not None:
            ax.axhline(dense[metric], color="k", ls="--", lw=1, label=f"dense ({dense['params']:,.0f} params)")
        if baseline is not None:
            ax.axhline(baseline[1], color="grey", ls=":", lw=1.5, label=baseline[0])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)


@contextmanager
def figure(path: Path, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.2)):
    """Axes to draw on (one, or ``ncols`` side by side); the figure is saved to ``path`` as PNG on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    try:
        yield axes
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
        f"thread(s), Python {platform.python_version()}"
    )


def write_report(args, name: str, title: str, sections: Sequence[str], claims: Sequence[str]) -> Path:
    """``<name>.md``: title, how it was run, the sections (tables, figures) and the claims."""
    meta = json.loads((args.out / f"{name}.json").read_text())
    parts = [
        f"## {title}",
        "",
        f"Command: `{meta['command'].replace(str(ROOT) + '/', '')}` - "
        f"wall time {meta['wall_seconds'] / 60:.1f} min on {meta['machine']}; "
        f"{meta['seeds']} seed(s){' (smoke configuration)' if meta['smoke'] else ''}.",
        "",
    ]
    parts += list(sections)
    if claims:
        parts += ["**What the numbers say**", ""] + [f"- {c}" for c in claims] + [""]
    path = args.out / f"{name}.md"
    path.write_text("\n".join(parts))
    print("\n".join(parts))
    print(f"wrote {path} (and .csv/.png beside it)", file=sys.stderr)
    return path


@dataclass(frozen=True)
class Paired:
    """Method ``a`` against method ``b`` at one target ratio, paired by seed.

    ``diff`` is the mean over seeds of ``a - b`` signed so that a positive
    value means ``a`` is better; ``lo, hi`` its 95 % Student-t interval
    (``nan`` with fewer than two seeds).
    """

    ratio: float
    n: int
    a: float
    b: float
    diff: float
    lo: float
    hi: float

    @property
    def outcome(self) -> str:
        """``"better"`` or ``"worse"`` when the interval excludes zero, else ``"inconclusive"`` (ties too)."""
        if self.lo > 0:
            return "better"
        if self.hi < 0:
            return "worse"
        return "inconclusive"

    def text(self, digits: int = 3) -> str:
        interval = "" if self.lo != self.lo else f" [{_num(self.lo, digits - 1)}, {_num(self.hi, digits - 1)}]"
        return f"{self.ratio:g}x: {fmt(self.a, digits=digits)} vs {fmt(self.b, digits=digits)}, " \
               f"difference {_signed(self.diff, digits - 1)}{interval}"


def _signed(x: float, digits: int) -> str:
    return ("+" if x > 0 else "") + _num(x, max(1, digits))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and ``level`` Student-t interval of ``values`` (``nan`` bounds below two values)."""
    import scipy.stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy.stats.t.ppf(0.5 + level / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, mean - half, mean + half


def interval_cell(values: Sequence[float], digits: int = 3) -> str:
    """A table cell: the mean with its 95 % t-interval (``mean [lo, hi]``), the mean alone for one value, ``-``
    for none."""
    if not values:
        return "-"
    mean, lo, hi = t_interval(values)
    if lo != lo:
        return fmt(mean, digits=digits)
    return f"{fmt(mean, digits=digits)} [{fmt(lo, digits=digits)}, {fmt(hi, digits=digits)}]"


def paired(
    rows: Sequence[dict[str, Any]], metric: str, a: str, b: str, ratio: float, *, higher_is_better: bool,
    b_ratio: float | None = None,
) -> Paired | None:
    """``a`` at ``ratio`` against ``b`` at ``b_ratio`` (default the same), over the seeds both have."""
    def by_seed(method: str, r: float) -> dict[Any, float]:
        return {
            row["seed"]: float(row[metric])
            for row in rows
            if row["method"] == method and float(row["ratio"]) == float(r) and row.get(metric) not in (None, "")
            and float(row[metric]) == float(row[metric])
        }

    xa, xb = by_seed(a, ratio), by_seed(b, ratio if b_ratio is None else b_ratio)
    seeds = sorted(set(xa) & set(xb))
    if not seeds:
        return None
    sign = 1.0 if higher_is_better else -1.0
    diff, lo, hi = t_interval([sign * (xa[k] - xb[k]) for k in seeds])
    return Paired(float(ratio), len(seeds), float(np.mean([xa[k] for k in seeds])),
                  float(np.mean([xb[k] for k in seeds])), diff, lo, hi)


def compare(
    rows: Sequence[dict[str, Any]], metric: str, a: str, b: str, ratios: Sequence[float], *, higher_is_better: bool
) -> list[Paired]:
    """:func:`paired` at every target ratio where both methods have results."""
    out = [paired(rows, metric, a, b, r, higher_is_better=higher_is_better) for r in ratios]
    return [p for p in out if p is not None]


def verdict(results: Sequence[Paired]) -> str:
    """The claim "``a`` beats ``b``" over ``results``: held / did not hold / inconclusive, or where each."""
    if not results:
        return "could not be checked"
    outcomes = {"better": [], "worse": [], "inconclusive": []}
    for p in results:
        outcomes[p.outcome].append(f"{p.ratio:g}x")
    if len(outcomes["better"]) == len(results):
        return "held"
    if len(outcomes["worse"]) == len(results):
        return "did not hold (reversed)"
    if len(outcomes["inconclusive"]) == len(results):
        return "inconclusive"
    labels = (("better", "held"), ("worse", "did not hold (reversed)"), ("inconclusive", "inconclusive"))
    parts = [f"{label} at {', '.join(outcomes[key])}" for key, label in labels if outcomes[key]]
    return "; ".join(parts)


def claim_line(subject: str, results: Sequence[Paired], claim: str, digits: int = 3) -> str:
    """One verdict line: the paired differences per ratio, then the verdict on ``claim``."""
    n = max((p.n for p in results), default=0)
    detail = "; ".join(p.text(digits) for p in results)
    return (f"{subject} - paired over {n} seed(s), mean difference with its 95 % t-interval "
            f"({detail}): the claim that {claim}: {verdict(results)}.")
