"""compress(objective="latency") against the default (least error): per-step time of a compressed LSTM/GRU at
batch 1 against nn.LSTM / nn.GRU, same run.

For each kind, hidden size and ratio, ``tnlib.nn.compress`` of a random ``nn.LSTM(H, H)`` / ``nn.GRU(H, H)`` /
``nn.LSTMCell(H, H)`` / ``nn.GRUCell(H, H)`` (searched layouts) with ``objective="error"`` and
``objective="latency"`` (tolerance 2 %); eager ``torch.no_grad()`` inference over 64 steps at batch 1 (a cell
in a Python loop, as a streaming model runs it), best of 5, per step; the dense module timed in the same
run. Ratios below 1: faster than dense. Also the weight error, the multiply-adds per step against dense
(``LayerReport.flop_ratio``) and the time ``compress`` took. One thread.

A second table calls the layers one step at a time, with the state carried between calls, as a greedy
decoder does (g2p-en's decoder GRU): time per call against the dense layer called the same way. A third times
a whole compressed recurrent encoder (3 LSTM layers of 256) against the dense one per batch, eager and under
``torch.compile``, at batch 1 and 32.

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
    """Milliseconds per step at batch 1: a whole sequence for a layer, the caller's own loop for a cell."""
    x = torch.randn(steps, 1, hidden)
    if isinstance(module, (torch.nn.LSTMCell, torch.nn.GRUCell, tnlib.nn.MPOLSTMCell, tnlib.nn.MPOGRUCell)):
        def run():
            state = None
            for t in range(steps):
                state = module(x[t], state)
    else:
        def run():
            module(x)
    with torch.no_grad():
        run()  # warm the cached inference forms
        return 1e3 * best_of(run, 5) / steps


def call_ms(layer, hidden, steps=64):
    """Milliseconds per call of an LSTM/GRU layer called one step at a time (a decoder), batch 1."""
    x = torch.randn(steps, 1, 1, hidden)

    def run():
        state = None
        for t in range(steps):
            _, state = layer(x[t], state)
    with torch.no_grad():
        run()
        return 1e3 * best_of(run, 5) / steps


def decoder_table(cases) -> None:
    print("\n### one step per call (a decoder's loop), batch 1: time per call against the dense layer\n")
    print("| layer | hidden | ratio | dense (ms per call) | compressed (ms per call) | time / dense |")
    print("|---|---|---|---|---|---|")
    for cell, hidden, ratio in cases:
        torch.manual_seed(0)
        dense = getattr(torch.nn, cell)(hidden, hidden).eval()
        small, _ = tnlib.nn.compress(torch.nn.Sequential(dense), compression=ratio)
        t_dense = call_ms(dense, hidden)
        t_small = call_ms(small[0].eval(), hidden)
        t_dense = min(t_dense, call_ms(dense, hidden))
        print(f"| {cell} | {hidden} | {ratio}x | {t_dense:.3f} | {t_small:.3f} | {t_small / t_dense:.2f} |", flush=True)


class Encoder(torch.nn.Module):
    """A speaker-verification style encoder: 3 LSTM layers of 256 over 40 mel bands, the last step projected."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.proj = torch.nn.Linear(256, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.lstm(x)[0][:, -1])


def encoder_table(quick: bool) -> None:
    """A whole compressed recurrent encoder against the dense one, per batch: eager and compiled, batch 1 and 32."""
    steps, repeat = (20, 2) if quick else (100, 5)
    print(f"\n### a recurrent encoder (3 x LSTM(256) over 40 features, {steps} steps): time per batch against "
          "the dense encoder, no_grad\n")
    print("| ratio | batch | dense eager (ms) | eager / dense | compiled / dense compiled | weight error |")
    print("|---|---|---|---|---|---|")
    torch.manual_seed(0)
    dense = Encoder().eval()
    compiled_dense = torch.compile(dense)
    for ratio in (2, 4):
        small, reports = tnlib.nn.compress(dense, compression=ratio)
        compiled = torch.compile(small)
        error = max(r.relative_error for r in reports)
        for batch in (1, 32):
            x = torch.randn(batch, steps, 40)
            with torch.no_grad():
                for f in (dense, small, compiled_dense, compiled):
                    f(x)  # warm: compile, cached forms, the fused-or-Python choice
                t_dense, t_small = best_of(lambda: dense(x), repeat), best_of(lambda: small(x), repeat)
                t_cd, t_cs = best_of(lambda: compiled_dense(x), repeat), best_of(lambda: compiled(x), repeat)
            print(f"| {ratio}x | {batch} | {t_dense * 1e3:.2f} | {t_small / t_dense:.2f} | {t_cs / t_cd:.2f} | "
                  f"{error:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = [("LSTM", 64, 4), ("GRUCell", 64, 4)] if args.quick else [
        (cell, h, r) for cell in ("LSTM", "GRU", "LSTMCell", "GRUCell") for h in (256, 512, 1024) for r in (4, 10)]
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
                t_dense = min(t_dense, step_ms(dense, hidden))  # the first timings of a run can be slow: retime
                print(f"| {cell} | {hidden} | {ratio}x | {objective} | {'; '.join(report.layouts)} | "
                      f"{report.relative_error:.4f} | {report.flop_ratio:.2f} | {t_small / t_dense:.2f} | "
                      f"{seconds:.1f} |", flush=True)
        decoder_table([(c, h, r) for c, h, r in cases if c in ("LSTM", "GRU")] or [("GRU", 64, 4)])
        encoder_table(args.quick)


if __name__ == "__main__":
    main()
