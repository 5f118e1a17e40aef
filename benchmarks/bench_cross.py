"""TT-cross: tnlib.cross against teneva.cross (and TensorLy's tensor_train_cross) at equal evaluations.

Standard test functions on uniform grids (Rosenbrock, Ackley, Alpine, a correlated Gaussian),
the Hilbert-type tensor 1/(i_1 + ... + i_d + 1) and a random tensor train of rank 4 (exact
recovery). Each case runs over several seeds (initial index sets and, for tnlib, its held-out
sample): teneva gets ``m`` evaluations (``teneva.cross`` with ``dr_max=1`` then
``teneva.truncate``, its documented use), tnlib gets ``max_evals=m`` (its held-out sample of 1000
entries included). Both are judged on the same 10^4 random entries neither saw. Paired over seeds:
the geometric mean of tnlib's error over teneva's with a 95 % interval of it (a t-interval of the
log ratio; "inconclusive" where it straddles 1), and of the wall-time ratio. TensorLy's
``tensor_train_cross`` needs the dense tensor (it indexes it), so it runs only on cases small
enough to form, at the ranks tnlib found; it cannot be capped by evaluations. BLAS pinned to one
thread.

    python benchmarks/bench_cross.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

import tnlib


def grid(lo, hi, n):
    return lambda idx: lo + (hi - lo) * idx / (n - 1)


def rosenbrock(d, n):
    x = grid(-2.048, 2.048, n)
    return lambda idx: np.sum(100.0 * (x(idx[:, 1:]) - x(idx[:, :-1]) ** 2) ** 2 + (1.0 - x(idx[:, :-1])) ** 2,
                              axis=1)


def ackley(d, n):
    x = grid(-32.768, 32.768, n)

    def f(idx):
        v = x(idx)
        return (-20.0 * np.exp(-0.2 * np.sqrt(np.mean(v**2, axis=1))) - np.exp(np.mean(np.cos(2 * np.pi * v), axis=1))
                + 20.0 + math.e)
    return f


def alpine(d, n):
    x = grid(-10.0, 10.0, n)
    return lambda idx: np.sum(np.abs(x(idx) * np.sin(x(idx)) + 0.1 * x(idx)), axis=1)


def gaussian(d, n):
    x = grid(-1.0, 1.0, n)

    def f(idx):
        v = x(idx)
        return np.exp(-np.sum(v**2, axis=1) - 0.5 * np.sum(v[:, 1:] * v[:, :-1], axis=1))
    return f


def hilbert(d, n):
    return lambda idx: 1.0 / (1.0 + np.sum(idx, axis=1))


def low_rank(d, n, rank=4):
    rng = np.random.default_rng(12345)
    bonds = [1] + [rank] * (d - 1) + [1]
    mps = tnlib.MPS([rng.standard_normal((bonds[k], n, bonds[k + 1])) / math.sqrt(rank) for k in range(d)])
    return lambda idx: np.asarray(mps.entries(idx))


FUNCTIONS = {"Rosenbrock": rosenbrock, "Ackley": ackley, "Alpine": alpine, "Gaussian": gaussian,
             "Hilbert": hilbert, "TT rank 4": low_rank}

# (function, d, n, evaluations)
FULL = [
    ("Rosenbrock", 10, 16, 10**4), ("Rosenbrock", 20, 64, 10**5),
    ("Ackley", 10, 16, 10**5), ("Ackley", 5, 1024, 10**5),
    ("Alpine", 10, 16, 10**5), ("Alpine", 20, 16, 10**5),
    ("Gaussian", 10, 64, 10**5), ("Gaussian", 5, 1024, 10**5),
    ("Hilbert", 5, 16, 2 * 10**4), ("Hilbert", 10, 16, 10**5), ("Hilbert", 5, 1024, 10**5),
    ("Ackley", 5, 16, 2 * 10**4),
    ("TT rank 4", 10, 16, 2 * 10**4), ("TT rank 4", 20, 64, 10**5),
]
QUICK = [("Rosenbrock", 6, 16, 10**4), ("Hilbert", 5, 16, 10**4), ("TT rank 4", 6, 8, 5000)]


def rel_error(values, ref):
    return float(np.linalg.norm(values - ref) / np.linalg.norm(ref))


def run_teneva(f, dims, m, seed, test_idx, test_ref):
    import teneva

    info: dict = {}
    t0 = time.perf_counter()
    y0 = teneva.rand(list(dims), 1, seed=seed)
    y = teneva.cross(f, y0, m=m, dr_min=1, dr_max=1, info=info)
    y = teneva.truncate(y, 1e-10)
    seconds = time.perf_counter() - t0
    return rel_error(teneva.get_many(y, test_idx), test_ref), seconds, info["m"]


def run_tnlib(f, dims, m, seed, test_idx, test_ref):
    t0 = time.perf_counter()
    mps = tnlib.cross(f, dims, tnlib.Truncation(cutoff=1e-10), max_evals=m, seed=seed)
    seconds = time.perf_counter() - t0
    return rel_error(np.asarray(mps.entries(test_idx)), test_ref), seconds, mps.report.cross.evals, mps


def run_tensorly(f, dims, ranks, test_idx, test_ref):
    import tensorly as tl
    from tensorly.contrib.decomposition import tensor_train_cross

    if math.prod(dims) > 2**21:
        return None
    idx = np.indices(dims).reshape(len(dims), -1).T
    dense = f(idx).reshape(dims)
    t0 = time.perf_counter()
    factors = tensor_train_cross(tl.tensor(dense), [1, *ranks, 1], tol=1e-10, n_iter_max=50, random_state=0)
    seconds = time.perf_counter() - t0
    mps = tnlib.MPS([np.asarray(c) for c in factors])
    return rel_error(np.asarray(mps.entries(test_idx)), test_ref), seconds


def interval(log_ratios):
    """Geometric mean and 95 % t-interval of exp(log_ratios); a single value has no interval."""
    a = np.asarray(log_ratios)
    mean = float(a.mean())
    if a.size < 2:
        return math.exp(mean), math.nan, math.nan
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36}.get(a.size, 2.26)
    half = t * float(a.std(ddof=1)) / math.sqrt(a.size)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def fmt_ratio(mean, lo, hi):
    if math.isnan(lo):
        return f"{mean:.2g} (one seed)"
    verdict = "" if (hi < 1 or lo > 1) else ", inconclusive"
    return f"{mean:.2g} [{lo:.2g}, {hi:.2g}]{verdict}"


def case(name, d, n, m, seeds, tensorly):
    f = FUNCTIONS[name](d, n)
    dims = (n,) * d
    rng = np.random.default_rng(999)
    test_idx = np.stack([rng.integers(n, size=10**4) for _ in range(d)], axis=1)
    test_ref = f(test_idx)
    rows = {"teneva": [], "tnlib": []}
    floor = 1e-13  # both at machine precision: a ratio of rounding noise means nothing
    for seed in seeds:
        rows["teneva"].append(run_teneva(f, dims, m, seed, test_idx, test_ref))
        rows["tnlib"].append(run_tnlib(f, dims, m, seed, test_idx, test_ref))
    err_ratio = interval([math.log(max(a[0], floor) / max(b[0], floor)) for a, b in zip(rows["tnlib"], rows["teneva"])])
    exact = all(max(a[0], b[0]) <= floor for a, b in zip(rows["tnlib"], rows["teneva"]))
    time_ratio = interval([math.log(a[1] / b[1]) for a, b in zip(rows["tnlib"], rows["teneva"])])
    te = np.median([r[0] for r in rows["teneva"]])
    tn = np.median([r[0] for r in rows["tnlib"]])
    evals_te = int(np.median([r[2] for r in rows["teneva"]]))
    evals_tn = int(np.median([r[2] for r in rows["tnlib"]]))
    ranks = rows["tnlib"][0][3].bond_dims
    tl_cell = "-"
    if tensorly:
        got = run_tensorly(f, dims, ranks, test_idx, test_ref)
        if got is not None:
            tl_cell = f"{got[0]:.1e} in {got[1]:.2f} s"
    err_cell = "both exact (<= 1e-13)" if exact else fmt_ratio(*err_ratio)
    return (f"| {name} | {d} x {n} | {m:.0e} | {te:.1e} ({evals_te}) | {tn:.1e} ({evals_tn}) | "
            f"{err_cell} | {fmt_ratio(*time_ratio)} | {max(ranks)} | {tl_cell} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = QUICK if args.quick else FULL
    seeds = range(3) if args.quick else range(5)
    print(f"### TT-cross at equal evaluations ({len(seeds)} seeds; held-out error on 10^4 random entries)\n")
    print("| function | d x n | budget | teneva error (evals) | tnlib error (evals) | "
          "error ratio tnlib / teneva [95 % CI] | time ratio tnlib / teneva [95 % CI] | tnlib max bond | "
          "TensorLy tensor_train_cross (dense input, tnlib's ranks) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name, d, n, m in cases:
            print(case(name, d, n, m, seeds, tensorly=True), flush=True)


if __name__ == "__main__":
    main()
