"""Layout search: its time against one truncated-SVD fit of the same matrix, and what it finds.

For each matrix and budget (a quarter and a sixteenth of the entries): the
time of ``tnlib.layouts`` (which fits the truncated SVD itself, then looks
at the other layouts) against one ``MPO.from_matrix`` in the truncated SVD's
layout ``out (M, 1) x in (1, N)`` at the same budget, timed in the same run
(best of 3 each); the relative errors of the truncated SVD and of the layout
found; and how many layouts were fitted, pruned, screened and not fitted.
Target: search <= 3x one fit. Matrices: the trained 512 x 512 layer shipped
with tnlib, Gaussian matrices with a decaying spectrum, a smooth kernel and
a Kronecker product plus noise (structure an MPO captures exactly), at
256^2 .. 4096^2. BLAS pinned to one thread.

    python benchmarks/bench_layouts.py            # 256^2 .. 4096^2
    python benchmarks/bench_layouts.py --quick    # 256^2 and 512^2, for CI
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads BLAS: two threads slow small LAPACK calls down

import argparse  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import tnlib  # noqa: E402


def smooth(m: int, n: int) -> np.ndarray:
    i, j = np.arange(m)[:, None] / m, np.arange(n)[None, :] / n
    return 1.0 / (1.0 + 25.0 * (i - j) ** 2)


def kron(m: int, n: int, rng) -> np.ndarray:
    a, b = rng.standard_normal((16, 16)), rng.standard_normal((m // 16, n // 16))
    return np.kron(a, b) + 1e-3 * rng.standard_normal((m, n))


def decaying(m: int, n: int, rng) -> np.ndarray:
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return rng.standard_normal((m, n)) @ np.diag(0.99 ** np.arange(n)) @ q


def best_of(k: int, fn):
    best, out = np.inf, None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cases(quick: bool, rng):
    yield "trained 512x512 layer", tnlib.load_example_mlp().weights[1].astype(np.float64)
    for s in (256, 512) if quick else (256, 512, 1024, 2048, 4096):
        yield f"decaying {s}x{s}", decaying(s, s, rng)
        yield f"Kronecker {s}x{s} + noise", kron(s, s, rng)
        if s <= 2048:
            yield f"smooth {s}x{s}", smooth(s, s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("Layout search vs one truncated-SVD fit at the same budget (best of 3 each), BLAS threads = 1\n")
    print("| matrix | budget | one SVD fit (s) | search (s) | search / one fit | truncated SVD err | searched err | "
          "best layout | fitted / pruned / screened / not fitted |")
    print("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    with threadpool_limits(1):
        for name, W in cases(args.quick, rng):
            m, n = W.shape
            for frac in (4, 16):
                budget = W.size // frac
                t = tnlib.Truncation(max_params=budget)
                reps = 1 if W.size >= 2048**2 else 3
                t_one, _ = best_of(reps, lambda: tnlib.MPO.from_matrix(W, (m, 1), (1, n), truncation=t))
                t_search, found = best_of(reps, lambda: tnlib.layouts(W, budget))
                counts = Counter(r.status for r in found.rows)
                ratios.append(t_search / t_one)
                print(f"| {name} | 1/{frac} | {t_one:.3f} | {t_search:.3f} | {t_search / t_one:.1f}x | "
                      f"{found.svd.error:.4f} | {found.best.error:.4f} | {found.best.layout} | "
                      f"{counts['fitted']} / {counts['pruned']} / {counts['screened']} / {counts['not fitted']} |",
                      flush=True)
    r = np.array(ratios)
    print(f"\nsearch / one fit over {len(r)} cases: median {np.median(r):.1f}x, max {r.max():.1f}x, "
          f"cases within 3x: {int(np.sum(r <= 3))} of {len(r)}")


if __name__ == "__main__":
    main()
