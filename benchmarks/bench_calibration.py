"""Data-aware compression on inputs the fit did not see, against the plain truncated SVD, same run.

A ``Linear(n, n)`` with a decaying weight spectrum sees correlated inputs
(eigenvalues ``0.97**k`` of a random rotation). ``tnlib.nn.compress`` at 4x
with ``calibration`` batches of ``rows`` samples is judged on 20,000 fresh
inputs from the same distribution, beside

* the plain truncated SVD at the same number of stored weights (no data),
* the former fit: every calibration row in the Gram, a fixed 1 % shrinkage
  (the former default damping), no held-out rows
  (``MPO.from_matrix(..., input_gram=C, shrinkage=0.01)``).

Each cell: the mean over seeds of the relative output error on the fresh
inputs; the paired difference against the truncated SVD is given with its
95 % t-interval over the seeds (negative: better than the SVD). The time of
``compress`` with calibration is given as a ratio to ``compress`` without.

``--sweep N`` runs instead N random small problems (shapes 8-48, 1/8 to 4
calibration rows per input feature, random input covariances and weight
spectra) and prints, per rows-per-feature, the worst and the mean ratio of
``compress``'s error on 5000 fresh inputs to the truncated SVD's.

    python benchmarks/bench_calibration.py [--quick] [--seeds 5] [--size 256] [--sweep 200]
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np
import torch
from scipy import stats
from threadpoolctl import threadpool_limits

import tnlib
import tnlib.nn as tn


def problem(n: int, seed: int):
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    mix = q * np.sqrt(0.97 ** np.arange(n))
    w = rng.standard_normal((n, n)) * 0.98 ** np.arange(n) @ np.linalg.qr(rng.standard_normal((n, n)))[0]
    return w, mix, rng


def out_err(c: np.ndarray, w: np.ndarray, w_hat: np.ndarray) -> float:
    d = w - w_hat
    return math.sqrt(float(np.sum(d * (d @ c)) / np.sum(w * (w @ c))))


def one(n: int, rows: int, seed: int) -> tuple[float, float, float, float]:
    w, mix, rng = problem(n, seed)
    x = rng.standard_normal((rows, n)) @ mix.T
    fresh = rng.standard_normal((20000, n)) @ mix.T
    c_test = fresh.T @ fresh / len(fresh)
    budget = n * n // 4
    svd = tnlib.MPO.from_matrix(w, (n, 1), (1, n), truncation=tnlib.Truncation(max_params=budget)).to_matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer rows than features warns
        former = tnlib.MPO.from_matrix(w, truncation=tnlib.Truncation(max_params=budget), input_gram=x.T @ x / rows,
                                       shrinkage=0.01).to_matrix()
        layer = torch.nn.Linear(n, n, bias=False).double()
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        model = torch.nn.Sequential(layer)
        start = time.perf_counter()
        tn.compress(model, compression=4)
        plain_time = time.perf_counter() - start
        batches = [torch.from_numpy(x[k : k + 16]) for k in range(0, rows, 16)]
        start = time.perf_counter()
        small, _ = tn.compress(model, compression=4, calibration=batches)
        aware_time = time.perf_counter() - start
    aware = small[0].dense_weight().detach().double().numpy()
    return out_err(c_test, w, svd), out_err(c_test, w, former), out_err(c_test, w, aware), aware_time / plain_time


def sweep_one(trial: int) -> tuple[float, float]:
    """(calibration rows per feature, compress error / truncated SVD error) of one random small problem."""
    rng = np.random.default_rng(trial)
    m, n = (int(rng.choice([8, 12, 16, 24, 32, 48])) for _ in range(2))
    w = rng.standard_normal((m, n)) * rng.uniform(0.7, 1.0) ** np.arange(n) @ np.linalg.qr(
        rng.standard_normal((n, n)))[0]
    mix = np.linalg.qr(rng.standard_normal((n, n)))[0] * np.sqrt(rng.uniform(0.2, 1.0) ** np.arange(n))
    per_feature = float(rng.choice([0.125, 0.25, 0.5, 1, 2, 4]))
    rows = max(4, int(per_feature * n))
    x = rng.standard_normal((rows, n)) @ mix.T
    fresh = rng.standard_normal((5000, n)) @ mix.T
    c_test = fresh.T @ fresh / len(fresh)
    svd = tnlib.MPO.from_matrix(w, (m, 1), (1, n), truncation=tnlib.Truncation(max_params=max(m + n, m * n // 4)))
    layer = torch.nn.Linear(n, m, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        small, _ = tn.compress(torch.nn.Sequential(layer), compression=4,
                               calibration=[torch.from_numpy(x[k : k + 1]) for k in range(rows)])
    aware = small[0].dense_weight().detach().double().numpy()
    return per_feature, out_err(c_test, w, aware) / out_err(c_test, w, svd.to_matrix())


def sweep(trials: int) -> None:
    res = np.array([sweep_one(t) for t in range(trials)])
    print(f"# compress with calibration over the truncated SVD, error on fresh inputs, {trials} random problems\n")
    print("| rows per feature | problems | worst ratio | mean ratio |")
    print("|---|---|---|---|")
    for f in sorted(set(res[:, 0])):
        r = res[res[:, 0] == f, 1]
        print(f"| {f:g} | {len(r)} | {r.max():.3f} | {r.mean():.3f} |")
    print(f"| all | {len(res)} | {res[:, 1].max():.3f} | {res[:, 1].mean():.3f} |")


def interval(d: np.ndarray) -> str:
    if len(d) < 2:
        return f"{d.mean():+.3f}"
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sweep", type=int, default=0)
    args = parser.parse_args()
    if args.sweep:
        sweep(args.sweep)
        return
    n = 64 if args.quick else args.size
    seeds = 2 if args.quick else args.seeds
    row_counts = [n // 4, n] if args.quick else [n // 4, n // 2, n, 4 * n, 16 * n]
    print(f"# Linear({n}, {n}) at 4x, correlated inputs; error on 20,000 fresh inputs; {seeds} seeds, "
          f"BLAS threads = 1\n")
    print("| calibration rows | truncated SVD | former fit (all rows, 1 % shrinkage) | compress (held-out folds) "
          "| compress - SVD, 95 % CI | former - SVD, 95 % CI | time with / without calibration |")
    print("|---|---|---|---|---|---|---|")
    for rows in row_counts:
        res = np.array([one(n, rows, seed) for seed in range(seeds)])
        print(f"| {rows} | {res[:, 0].mean():.3f} | {res[:, 1].mean():.3f} | {res[:, 2].mean():.3f} "
              f"| {interval(res[:, 2] - res[:, 0])} | {interval(res[:, 1] - res[:, 0])} "
              f"| {np.exp(np.log(res[:, 3]).mean()):.1f}x |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    torch.set_num_threads(1)
    with threadpool_limits(1):
        main()
