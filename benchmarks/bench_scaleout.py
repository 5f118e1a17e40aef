"""Scale-out: many 4096 x 4096 layers over a local Dask cluster, 1 worker against 2.

Eight float64 matrices (random, 4096 x 4096, dims (8,8,8,8) x (8,8,8,8),
max bond 16) are scattered to a ``dask.distributed.LocalCluster`` of one
worker and then of two (one thread and one BLAS thread each) and decomposed
with ``tnlib.decompose_many(..., executor=client.get_executor())``. Prints the
times, the speed-up and whether every core is bit-identical to a serial run.

    python benchmarks/bench_scaleout.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tnlib


def run(matrices, workers, kwargs):
    from distributed import Client, LocalCluster

    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40, env=env) as cluster, Client(cluster) as client:
        remote = client.scatter(matrices)
        tnlib.decompose_many(remote[:workers], executor=client.get_executor(), **kwargs)  # warm up
        t0 = time.perf_counter()
        out = tnlib.decompose_many(remote, executor=client.get_executor(), **kwargs)
        return time.perf_counter() - t0, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size, dims, count = (1024, (4, 4, 8, 8), 4) if args.quick else (4096, (8, 8, 8, 8), 8)
    kwargs = dict(out_dims=dims, in_dims=dims, truncation=tnlib.Truncation(max_bond=16))
    matrices = [np.random.default_rng(k).standard_normal((size, size)) for k in range(count)]
    t1, one = run(matrices, 1, kwargs)
    t2, two = run(matrices, 2, kwargs)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        serial = tnlib.decompose_many(matrices, **kwargs)
    same = all(
        all(np.array_equal(a, b) for a, b in zip(s.cores, x.cores)) for s, x in zip(serial, one + two)
    ) and all(all(np.array_equal(a, b) for a, b in zip(s.cores, x.cores)) for s, x in zip(serial, two))
    print(f"# Scale-out: {count} layers of {size} x {size} float64, max bond 16, local Dask cluster\n")
    print("| workers | time (s) | speed-up | identical to serial |")
    print("|---|---|---|---|")
    print(f"| 1 | {t1:.2f} | 1.00x | {same} |")
    print(f"| 2 | {t2:.2f} | {t1 / t2:.2f}x | {same} |")


if __name__ == "__main__":
    main()
