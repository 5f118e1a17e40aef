"""compress(objective="latency") against the default (least error): per-step time of a compressed LSTM/GRU at
batch 1 against nn.LSTM / nn.GRU, same run.

For each cell, hidden size and ratio, ``tnlib.nn.compress`` of a random ``nn.LSTM(H, H)`` / ``nn.GRU(H, H)``
(searched layouts) with ``objective="error"`` and ``objective="latency"`` (tolerance 2 %); eager
``torch.no_grad()`` inference over 64 steps at batch 1, best of 5, per step; the dense layer timed in the same
run. Ratios below 1: faster than dense. Also the weight error, the multiply-adds per step against dense
(``LayerReport.flop_ratio``) and the time ``compress`` took. One thread.

    python benchmarks/bench_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import best_of
from threadpoolctl import threadpool_limits

import tnlib.nn


def step_ms(module, hidden, steps=64):
    x = torch.randn(steps, 1, hidden)
    with torch.no_grad():
        module(x)  # warm the cached inference forms
        return 1e3 * best_of(lambda: module(x), 5) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = [("LSTM", 64, 4)] if args.quick else [
        (cell, h, r) for cell in ("LSTM", "GRU") for h in (256, 512) for r in (4, 10)]
    torch.set_num_threads(1)
    print("### compress objective: per-step time at batch 1 (eager, no_grad), against the dense cell\n")
    print("| cell | hidden | ratio | objective | layouts (ih; hh) | weight error | MACs / dense | "
          "time / dense | compress (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for cell, hidden, ratio in cases:
            torch.manual_seed(0)
            dense = getattr(torch.nn, cell)(hidden, hidden).eval()
            t_dense = step_ms(dense, hidden)
            for objective in ("error", "latency"):
                t0 = time.perf_counter()
                small, (report,) = tnlib.nn.compress(torch.nn.Sequential(dense), compression=ratio,
                                                     objective=objective)
                seconds = time.perf_counter() - t0
                t_small = step_ms(small[0].eval(), hidden)
                print(f"| {cell} | {hidden} | {ratio}x | {objective} | {'; '.join(report.layouts)} | "
                      f"{report.relative_error:.4f} | {report.flop_ratio:.2f} | {t_small / t_dense:.2f} | "
                      f"{seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
