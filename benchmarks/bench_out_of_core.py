"""A matrix larger than a process may use, decomposed from disk: one worker, two workers, in memory on a slice.

Writes a float32 ``.npy`` (default 400000 x 4096, 6.5 GB) block by block,
then decomposes it with :func:`tnlib.open_npy` and ``MPO.from_matrix`` at max
bond 32 in a child process whose address space is capped (``RLIMIT_AS``,
default 1 GiB): once on dask's threaded scheduler with one worker, once on a
2-worker ``LocalCluster`` whose workers run under dask's ``memory_limit`` of
the same size (their resident set: a worker above it is restarted and the run
fails); the client process, which gathers the remainder and finishes the
sweep, reports its peak resident set (a client's threads reserve more address
space than the cap allows, so ``RLIMIT_AS`` cannot be set on it). A slice that fits
is decomposed both in memory and out of core to compare errors. Then the
single pass (``svd="randomized"``: one read of the file, a co-range sketch
held instead of the remainder) under twice the cap, with the bytes each
one-worker run read from the file. BLAS one thread everywhere.

    python benchmarks/bench_out_of_core.py [--quick] [--rows R] [--limit-gib G]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, os, resource, sys, time
limit = int(float(sys.argv[2]) * 2**30)
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def peak():  # VmHWM: the peak resident set of this program (ru_maxrss would include the parent's before exec)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))
import numpy as np, dask, tnlib
path, workers, bond, svd = sys.argv[1], int(sys.argv[3]), int(sys.argv[6]), sys.argv[7]
out_dims, in_dims = json.loads(sys.argv[4]), json.loads(sys.argv[5])
t = tnlib.Truncation(max_bond=bond)
def read_bytes():  # bytes this process read through read() calls (open_npy reads, never maps)
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar"))
before = 0
def run():
    global before
    before = read_bytes()
    start = time.perf_counter()
    mpo = tnlib.MPO.from_matrix(tnlib.open_npy(path, first_out_dim=out_dims[0]), out_dims, in_dims, truncation=t,
                                svd=svd)
    return time.perf_counter() - start, mpo
worker_peaks = []
if workers == 1:
    cap()
    with dask.config.set(scheduler="threads", num_workers=1):
        seconds, mpo = run()
else:
    from distributed import Client, LocalCluster
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    # workers: dask's own memory limit (resident set; a worker above it is restarted, failing the run)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=limit,
                      dashboard_address=None, silence_logs=50, env=env) as cluster, Client(cluster) as client:
        seconds, mpo = run()  # this process gathers the remainder and finishes the sweep: its peak RSS is printed
        worker_peaks = list(client.run(peak).values())
cert = mpo.report.certificate
print(json.dumps({"seconds": seconds, "bonds": list(mpo.bond_dims), "bound": mpo.report.relative_error_bound,
                  "peak_rss": peak(), "worker_peaks": worker_peaks, "read": read_bytes() - before,
                  "estimate": None if cert is None else cert.error_estimate}))
"""


def write_matrix(path: Path, rows: int, cols: int, block: int, seed: int = 0) -> None:
    """A smooth kernel ``exp(-(x - y)^2 / 0.1)`` on a grid plus 1e-4 noise (compressible as an MPO), float32,
    written block by block (never whole in memory)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(cols) / cols).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        x = (np.arange(start, stop) / rows).astype(np.float32)
        noise = 1e-4 * rng.standard_normal((stop - start, cols)).astype(np.float32)
        out[start:stop] = np.exp(-((x[:, None] - y[None, :]) ** 2) / 0.1) + noise
    out.flush()
    del out


def child(path: Path, limit: float, workers: int, out_dims, in_dims, bond: int, svd: str = "auto") -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(limit), str(workers), json.dumps(out_dims),
         json.dumps(in_dims), str(bond), svd],
        capture_output=True, text=True, env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"child with {workers} worker(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def slice_errors(path: Path, rows: int, out_dims, in_dims, bond: int) -> tuple[float, float, float]:
    """True relative errors of the in-memory, the out-of-core and the single-pass decomposition of the first
    ``rows`` rows."""
    import dask.array as da

    import tnlib

    w = np.load(path, mmap_mode="r")[:rows].astype(np.float64)
    t = tnlib.Truncation(max_bond=bond)
    errors = []
    for source, svd in ((w, "auto"), (da.from_array(w, chunks=(max(1, rows // 8), -1)), "auto"),
                        (da.from_array(w, chunks=(max(1, rows // 8), -1)), "randomized")):
        mpo = tnlib.MPO.from_matrix(source, out_dims, in_dims, truncation=t, svd=svd)
        errors.append(float(np.linalg.norm(mpo.to_matrix() - w) / np.linalg.norm(w)))
    return errors[0], errors[1], errors[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 20000 x 512 matrix, 256 MiB cap")
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--limit-gib", type=float, default=1.0)
    args = parser.parse_args()
    if args.quick:
        rows, cols, limit = 20_000, 512, 0.75
        out_dims, in_dims, slice_out = [32, 25, 25], [8, 8, 8], [32, 5, 25]
    else:
        rows, cols, limit = args.rows, 4096, args.limit_gib
        if rows % (128 * 25) or rows // (128 * 25) % 5:
            raise SystemExit("--rows must be a multiple of 16000 (dims 128 x 25 x rows/3200)")
        out_dims, in_dims, slice_out = [128, 25, rows // 3200], [8, 8, 64], [128, 25, 5]
    bond = 32
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.npy"
        start = time.perf_counter()
        write_matrix(path, rows, cols, block=4096)
        size = path.stat().st_size
        print(f"# Out of core: {rows} x {cols} float32 ({size / 2**30:.2f} GiB) at max bond {bond}, "
              f"address space capped at {limit:g} GiB (the file is {size / (limit * 2**30):.1f}x the cap)\n")
        print(f"(written in {time.perf_counter() - start:.1f} s; out_dims={out_dims}, in_dims={in_dims})\n")
        one = child(path, limit, 1, out_dims, in_dims, bond)
        two = child(path, limit, 2, out_dims, in_dims, bond)
        # one read: the co-range sketch it gathers is l + t = 2 (bond + 8) + 18 rows of the first unfolding
        # where the two-pass route gathers bond rows, so it runs under twice the cap (the file still 2x+ that)
        single_limit = max(2 * limit, round(size / 2**30 / 2, 2))  # the file at least twice the cap
        single = child(path, single_limit, 1, out_dims, in_dims, bond, "randomized")
        print("| run | address space cap | time (s) | speed-up | bonds | error | file read | peak RSS: process "
              "| peak RSS: workers |")
        print("|---|---|---|---|---|---|---|---|---|")
        runs = (("1 worker (threads)", one, limit), ("2 workers (LocalCluster)", two, limit),
                ("single pass, 1 worker (svd='randomized')", single, single_limit))
        for name, r, cap in runs:
            workers = ", ".join(f"{p / 2**30:.2f}" for p in r["worker_peaks"]) or "-"
            error = f"bound {r['bound']:.4f}" if r["estimate"] is None else f"estimate {r['estimate']:.4f}"
            reads = f"{r['read'] / size:.2f}x" if not r["worker_peaks"] else "(workers)"
            print(f"| {name} | {cap:g} GiB (file {size / (cap * 2**30):.1f}x the cap) | {r['seconds']:.1f} "
                  f"| {one['seconds'] / r['seconds']:.2f}x | {tuple(r['bonds'])} | {error} | {reads} "
                  f"| {r['peak_rss'] / 2**30:.2f} GiB | {workers} |")
        slice_rows = int(np.prod(slice_out))
        mem, ooc, sp = slice_errors(path, slice_rows, slice_out, in_dims, bond)
        print(f"\nSlice of {slice_rows} rows: relative error in memory {mem:.6f}, out of core {ooc:.6f} "
              f"(ratio {ooc / mem:.6f}), single pass {sp:.6f} (ratio to two passes {sp / ooc:.4f})")


if __name__ == "__main__":
    main()
