"""Peak memory of MPO.from_matrix, relative to the input matrix (tracemalloc).

NumPy and SciPy allocate their arrays and LAPACK workspaces through Python's
allocator hooks, so ``tracemalloc`` sees them. The input itself is allocated
before tracing starts; the table gives the peak of everything else (the
result included) as a multiple of the input's size.

    python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

import tnlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size, dims = (1024, (4, 4, 8, 8)) if args.quick else (4096, (8, 8, 8, 8))
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, size)
    inputs = {"random": rng.standard_normal((size, size)),
              "smooth": np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.1)}
    print(f"# Peak memory of MPO.from_matrix, {size} x {size} float64 ({size * size * 8 / 2**20:.0f} MiB input)\n")
    print("| input | job | peak extra memory / input |")
    print("|---|---|---|")
    with threadpool_limits(1):
        for name, W in inputs.items():
            jobs = {"exact": None, "16": tnlib.Truncation(max_bond=16), "64": tnlib.Truncation(max_bond=64),
                    "cutoff 1e-2": tnlib.Truncation(cutoff=1e-2),
                    "max_params 1/16": tnlib.Truncation(max_params=W.size // 16)}
            for job, trunc in jobs.items():
                tracemalloc.start()
                mpo = tnlib.MPO.from_matrix(W, dims, dims, truncation=trunc)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                del mpo
                print(f"| {name} | {job} | {peak / W.nbytes:.2f}x |", flush=True)
        # the reference the full-spectrum jobs cannot go below: one LAPACK SVD of a square unfolding
        # as large as the input (gesdd: a Fortran copy, U, Vh and a workspace of about 4 n^2)
        square = int(round(W.size**0.5))
        tracemalloc.start()
        scipy.linalg.svd(inputs["random"].reshape(square, -1), full_matrices=False, check_finite=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"| random | reference: one scipy.linalg.svd of a {square} x {square} matrix | {peak / W.nbytes:.2f}x |")


if __name__ == "__main__":
    main()
