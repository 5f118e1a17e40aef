"""MPO.apply against dense ``x @ W.T``, same run, same layer.

A 4096 x 4096 float64 layer as an MPO with dims (8, 8, 8, 8) x (8, 8, 8, 8)
truncated at max bond 16, applied to batches of 1, 32 and 256 vectors. Prints
a Markdown table with the best of several repeats, the ratio dense / MPO, the
MPO path's FLOP count (``tnlib.contraction_plan``) and its achieved FLOP rate
against the matmul rate measured in the same run (a 2048^3 float64 product).
BLAS is pinned to one thread.

    python benchmarks/bench_apply.py            # 4096 x 4096
    python benchmarks/bench_apply.py --quick    # 1024 x 1024, for CI
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import best_of
from threadpoolctl import threadpool_limits

import tnlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size, dims, repeat = (1024, (4, 4, 8, 8), 3) if args.quick else (4096, (8, 8, 8, 8), 5)
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        a = rng.standard_normal((2048, 2048))
        t_mm = best_of(lambda: a @ a, 3)
        rate = 2 * 2048**3 / t_mm
        W0 = rng.standard_normal((size, size))
        mpo = tnlib.MPO.from_matrix(W0, dims, dims, truncation=tnlib.Truncation(max_bond=16))
        W = mpo.to_matrix()
        print(f"# MPO.apply, {size} x {size} float64, dims {dims} x {dims}, bond 16, BLAS threads = 1")
        print(f"matmul rate (2048^3 float64): {rate / 1e9:.1f} GFLOP/s\n")
        print(
            "| batch | dense x @ W.T (s) | MPO.apply (s) | dense / MPO | MPO GFLOP | MPO GFLOP/s "
            "| % of matmul rate | max rel. diff |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for batch in (1, 32, 256):
            x = rng.standard_normal((batch, size))
            mpo.apply(x)  # compile and cache the plan
            t_dense = best_of(lambda: x @ W.T, repeat)
            t_mpo = best_of(lambda: mpo.apply(x), repeat)
            legs = [(batch, *dims)] + [tuple(c.shape) for c in mpo.cores]
            k = len(dims)
            syms = "abcdefghijklmnopqrstuvwxyz"
            out, inn, bond = syms[:k], syms[k : 2 * k], syms[2 * k : 3 * k + 1]
            terms = ["Z" + inn] + [bond[i] + out[i] + inn[i] + bond[i + 1] for i in range(k)]
            plan = tnlib.contraction_plan(",".join(terms) + "->Z" + out, *legs)
            flops = plan.flops
            diff = np.max(np.abs(mpo.apply(x) - x @ W.T)) / np.max(np.abs(x @ W.T))
            print(
                f"| {batch} | {t_dense:.5f} | {t_mpo:.5f} | {t_dense / t_mpo:.2f}x | {flops / 1e9:.3f} "
                f"| {flops / t_mpo / 1e9:.1f} | {100 * flops / t_mpo / rate:.0f} % | {diff:.1e} |"
            )


if __name__ == "__main__":
    main()
