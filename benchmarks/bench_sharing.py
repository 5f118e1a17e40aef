"""Structure across layers on all-MiniLM-L6-v2: ``compress(share="role")`` against per-matrix ``compress``, same
budget, same calibration draw, paired over draws.

For each draw (a random 256 of the pool's sentences; the held-out test sentences are never drawn) and each
fraction of the encoder's 36 weights removed, a calibrated ``tnlib.nn.compress`` (uniform allocation) with and
without ``share="role"`` (the six query, key, value, attention-output, FFN-in and FFN-out matrices each tried on
one basis, kept where the pooled held-out error of its layers is lower and, then, where the whole model's outputs
move less on held-out calibration batches). Reported: mean cosine of the sentence embeddings to the
dense model's on the test sentences, nearest-neighbour agreement, the groups kept, compress time; and the paired
difference in cosine (share minus per-matrix) with its 95 % t interval over the draws. One BLAS thread, one torch
thread.

    python benchmarks/bench_sharing.py [--quick] [--draws N]    # --quick: the first 2 blocks, 1 draw, 40 %
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.special
import torch
from threadpoolctl import threadpool_limits

import tnlib.nn

sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))
import _minilm  # noqa: E402


def interval(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return f"{v.mean():+.4f} (one draw: no interval)"
    half = float(scipy.special.stdtrit(v.size - 1, 0.975)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return f"{v.mean():+.4f} [{v.mean() - half:+.4f}, {v.mean() + half:+.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--removed", type=float, nargs="*", default=None, help="fractions of the weights removed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = dict(minilm_layers=12 if args.quick else 36, minilm_test=64 if args.quick else 256, minilm_pool=600)
    dense, layers, tokens, pool, evaluate = _minilm.setup(cfg)
    draws = args.draws or (1 if args.quick else 5)
    removed = args.removed or ((0.4,) if args.quick else (0.2, 0.4, 0.6))
    size = 64 if args.quick else 256
    print(f"## Shared bases across layers: all-MiniLM-L6-v2, {len(layers)} encoder matrices, {size} calibration "
          f"sentences per draw, {draws} draw(s), {cfg['minilm_test']} held-out test sentences\n")
    print("| removed | method | cosine (mean over draws) | agreement | groups kept (of 6 roles) | compress (s) |")
    print("|---|---|---|---|---|---|")
    for fraction in removed:
        results: dict[str, list[dict]] = {"per-matrix": [], "share='role'": []}
        for draw in range(draws):
            rng = np.random.default_rng(draw)
            text = [pool[k] for k in rng.choice(len(pool), size, replace=False)]
            batches = [tokens(text[i:i + 32]) for i in range(0, len(text), 32)]
            for method, share in (("per-matrix", None), ("share='role'", "role")):
                t0 = time.perf_counter()
                small, reports = tnlib.nn.compress(dense, compression=1 / (1 - fraction), layers=layers,
                                                   calibration=batches, share=share)
                seconds = time.perf_counter() - t0
                kept = {frozenset([r.name, *r.layouts[0].split(" with ", 1)[1].split(", ")]) for r in reports
                        if r.layouts and r.layouts[0].startswith("shared basis")}
                results[method].append(dict(evaluate(small), seconds=seconds, kept=len(kept)))
        for method, rows in results.items():
            print(f"| {fraction:.0%} | {method} | {np.mean([r['cosine'] for r in rows]):.4f} | "
                  f"{np.mean([r['agreement'] for r in rows]):.3f} | {np.mean([r['kept'] for r in rows]):.1f} | "
                  f"{np.mean([r['seconds'] for r in rows]):.1f} |")
        diff = [a["cosine"] - b["cosine"] for a, b in zip(results["share='role'"], results["per-matrix"])]
        print(f"| {fraction:.0%} | cosine, share - per-matrix, paired | {interval(diff)} | | | |")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
