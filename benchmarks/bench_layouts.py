"""Layout search: its time against one ``MPO.from_matrix`` call, and how far below the truncated SVD it lands.

For each matrix and budget (a quarter and a sixteenth of the entries):
the time of ``tnlib.layouts`` against one ``MPO.from_matrix`` at the same
budget in the default balanced layout (the reference, same run), the
relative errors of the truncated SVD, the default MPO and the layout found,
and how many layouts were searched, fitted and pruned. Matrices: the
trained 512 x 512 layer shipped with tnlib, a smooth kernel and a Kronecker
product (structure an MPO captures exactly). BLAS pinned to one thread.

    python benchmarks/bench_layouts.py            # 512^2, 1024^2 and 4096^2
    python benchmarks/bench_layouts.py --quick    # 512^2 only, for CI
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads BLAS: two threads slow small LAPACK calls down

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import tnlib  # noqa: E402


def smooth(m: int, n: int) -> np.ndarray:
    i, j = np.arange(m)[:, None] / m, np.arange(n)[None, :] / n
    return 1.0 / (1.0 + 25.0 * (i - j) ** 2)


def kron(m: int, n: int, rng) -> np.ndarray:
    a, b = rng.standard_normal((16, 16)), rng.standard_normal((m // 16, n // 16))
    return np.kron(a, b) + 1e-3 * rng.standard_normal((m, n))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    trained = tnlib.load_example_mlp().weights[1].astype(np.float64)
    cases = [("trained 512x512 layer", trained), ("smooth 512x512", smooth(512, 512))]
    if not args.quick:
        cases += [("Kronecker 1024x1024 + noise", kron(1024, 1024, rng)), ("smooth 1024x1024", smooth(1024, 1024)),
                  ("trained-like 4096x4096 (random)", rng.standard_normal((4096, 4096)) / 64)]
    print("Layout search vs one from_matrix call at the same budget (default balanced layout), BLAS threads = 1\n")
    print("| matrix | budget | from_matrix (s) | search (s) | search / one call | truncated SVD err | "
          "default MPO err | searched err | best layout | searched / fitted / pruned |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name, W in cases:
            for frac in (4, 16):
                budget = W.size // frac
                t = tnlib.Truncation(max_params=budget)
                dims = tnlib.choose_dims(W.shape)
                t_one, one = timed(lambda: tnlib.MPO.from_matrix(W, *dims, truncation=t))
                t_search, found = timed(lambda: tnlib.layouts(W, budget))
                svd = found.svd.error if found.svd is not None else float("nan")
                fitted = sum(r.status == "fitted" for r in found.rows)
                pruned = sum(r.status == "pruned" for r in found.rows)
                print(f"| {name} | 1/{frac} | {t_one:.3f} | {t_search:.3f} | {t_search / t_one:.1f}x | {svd:.4f} | "
                      f"{one.report.relative_error_bound:.4f} | {found.best.error:.4f} | {found.best.layout} | "
                      f"{len(found.rows)} / {fitted} / {pruned} |", flush=True)


if __name__ == "__main__":
    main()
