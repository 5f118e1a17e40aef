"""Experiment 9 - inference speed of compressed LSTM layers, with intervals (Gao et al. 2020; Murua et al. 2020).

Time of one whole-sequence forward pass (``torch.no_grad``, eval, torch CPU,
one thread) of ``nn.LSTM`` against, at matched weight counts
(:func:`tnlib.nn.match_compression`):

* the same dense weights run through tnlib's own recurrent loop
  (:meth:`tnlib.nn.MPOLSTM.from_lstm` with no truncation, checked equal to
  ``nn.LSTM``'s output), which separates the loop from the compression;
* :class:`tnlib.nn.MPOLSTM`, :class:`tnlib.nn.TTLSTM` and
  :class:`tnlib.nn.LowRankLSTM`.

The timing is repeated in ``rounds``; each round times every module once
(median of ``calls`` calls) in a fresh random order, so each round gives
one paired ratio per module, and the verdicts use the 95 % t-interval of
the log-ratios over rounds (a speed-up "held" only when the interval
excludes 1).

    python benchmarks/experiments/inference.py            # full: ~4 min on 1 core (run it on an idle machine)
    python benchmarks/experiments/inference.py --smoke
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time

import torch
from _common import paired, parse, rows_for, table, write_report
from torch import nn

import tnlib
import tnlib.nn as tn

NAME = "inference"
FULL = dict(shapes=((28, 128, 28), (129, 128, 100), (512, 512, 50)), batches=(1, 32), ratios=(2, 8, 32, 100),
            rounds=12, calls=5, seeds=1)
SMOKE = dict(shapes=((12, 16, 6),), batches=(1,), ratios=(8,), rounds=3, calls=2, seeds=1)
DENSE, LOOP = "nn.LSTM", "dense weights, tnlib loop"
METHODS = ("MPO", "MPS-TT", "low-rank")


def modules(input_size: int, hidden: int, ratios) -> list[tuple[str, float, nn.Module]]:
    """``(method, target ratio, module)`` for the dense LSTM, its loop twin and each method at each ratio."""
    torch.manual_seed(0)
    dense = nn.LSTM(input_size, hidden, batch_first=True).eval()
    loop = tn.MPOLSTM.from_lstm(dense, tnlib.Truncation()).eval()
    out = [(DENSE, 1.0, dense), (LOOP, 1.0, loop)]
    for ratio in ratios:
        s = tn.match_compression(dense, ratio, num_cores=3)
        built = {
            "MPO": s["mpo"] and tn.MPOLSTM(input_size, hidden, bond_dim=s["mpo"]["bond_dim"], num_cores=3,
                                           batch_first=True),
            "MPS-TT": s["mps_tt"] and tn.TTLSTM(input_size, hidden, s["mps_tt"]["bond_dim"], batch_first=True),
            "low-rank": s["low_rank"] and tn.LowRankLSTM(input_size, hidden, s["low_rank"]["rank"], batch_first=True),
        }
        out += [(m, float(ratio), mod.eval()) for m, mod in built.items() if mod]
    return out


def median_seconds(module: nn.Module, x: torch.Tensor, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        module(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def measure(cfg) -> list[dict]:
    rows = []
    for input_size, hidden, steps in cfg["shapes"]:
        mods = modules(input_size, hidden, cfg["ratios"])
        for batch in cfg["batches"]:
            task = f"input {input_size}, hidden {hidden}, {steps} steps, batch {batch}"
            x = torch.randn(batch, steps, input_size)
            ref = mods[0][2](x)[0]
            err = float((mods[1][2](x)[0] - ref).abs().max())
            if err > 1e-4:
                raise AssertionError(f"{LOOP} differs from nn.LSTM by {err:.2e} ({task})")
            for _, _, m in mods:  # warm-up: inference forms are built and cached on the first call
                m(x)
            for r in range(cfg["rounds"]):
                order = list(range(len(mods)))
                random.Random(r).shuffle(order)
                for k in order:
                    method, ratio, m = mods[k]
                    sec = median_seconds(m, x, cfg["calls"])
                    rows.append(dict(experiment=NAME, task=task, method=method, ratio=ratio, seed=r,
                                     params=tn.count_parameters(m), ms=sec * 1e3, log_ms=math.log(sec * 1e3)))
            print(f"[inference] {task}: done", file=sys.stderr, flush=True)
    return rows


def speedup(rows, a: str, b: str, ratio: float, b_ratio: float | None = 1.0):
    """``b``'s time over ``a``'s (> 1: ``a`` is faster), its 95 % interval and the outcome, paired by round."""
    p = paired(rows, "log_ms", a, b, ratio, higher_is_better=False, b_ratio=b_ratio)
    if p is None:
        return None
    outcome = {"better": "faster", "worse": "slower", "inconclusive": "inconclusive"}[p.outcome]
    return math.exp(p.diff), math.exp(p.lo), math.exp(p.hi), outcome


def cell(s) -> str:
    return "-" if s is None else f"{s[0]:.2f}x [{s[1]:.2f}, {s[2]:.2f}] {s[3]}"


def summary_claim(kind: str, results: list[tuple[str, float, tuple]]) -> str:
    counts = {k: [f"{task.split(', batch')[0].replace('input ', 'in ')} b{task.split('batch ')[1]} {r:g}x"
                  for task, r, s in results if s[3] == k] for k in ("faster", "slower", "inconclusive")}
    parts = [f"{k} in {len(v)} of {len(results)}" + (f" ({', '.join(v)})" if k == "faster" else "")
             for k, v in counts.items() if v]
    return f"{kind}: " + "; ".join(parts) + "."


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    rows = rows_for(args, NAME, lambda: measure(cfg))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    ratios = sorted({float(r["ratio"]) for r in rows if r["method"] in METHODS})
    sections, claims = [], []
    vs_dense, vs_loop, tt_vs_mpo = [], [], []
    for task in tasks:
        t = [r for r in rows if r["task"] == task]
        ms = {(r["method"], float(r["ratio"])): statistics.median(q["ms"] for q in t if q["method"] == r["method"]
                                                                  and q["ratio"] == r["ratio"]) for r in t}
        loop = speedup(t, LOOP, DENSE, 1.0)
        body = [[DENSE, "", f"{ms[DENSE, 1.0]:.3f}", "1"], [LOOP, "", f"{ms[LOOP, 1.0]:.3f}", cell(loop)]]
        for method in METHODS:
            for r in ratios:
                if (method, r) not in ms:
                    continue
                s = speedup(t, method, DENSE, r)
                body.append([method, f"{r:g}x", f"{ms[method, r]:.3f}", cell(s)])
                if method == "MPO":
                    vs_dense.append((task, r, s))
                    vs_loop.append((task, r, speedup(t, method, LOOP, r)))
                    tt = speedup(t, "MPS-TT", "MPO", r, b_ratio=None)
                    if tt is not None:
                        tt_vs_mpo.append((task, r, tt))
        sections += [f"### {task}", "", table(["module", "target", "ms (median over rounds)",
                                               "speed-up over nn.LSTM [95 % interval]"], body), ""]
    if vs_dense:
        claims.append(summary_claim("Gao et al.'s faster-inference claim, MPO-LSTM against nn.LSTM at the same "
                                    "task (speed-up interval excluding 1)", vs_dense))
        claims.append(summary_claim("MPO-LSTM against the same dense weights run through tnlib's loop (the "
                                    "compression alone, loop overhead removed)", vs_loop))
    if tt_vs_mpo:
        claims.append(summary_claim("Murua et al.'s claim that MPS tensor trains infer faster than MPOs, MPS-TT "
                                    "against MPO at the same target", tt_vs_mpo))
    intro = (f"{cfg['rounds']} rounds; a round times every module (median of {cfg['calls']} calls of the whole "
             "sequence) in a random order, after one warm-up call each. Speed-up = nn.LSTM's time / the module's, "
             "geometric mean over rounds with the 95 % t-interval of the log-ratios; 'faster' / 'slower' only "
             "when the interval excludes 1. Random weights (speed does not depend on training); MPO with 3 "
             "cores. The intervals cover this machine's noise within one run, not other machines.")
    write_report(args, NAME, "9. Inference speed of compressed LSTM layers", [intro, "", *sections], claims)


if __name__ == "__main__":
    main()
