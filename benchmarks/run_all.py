"""Run every benchmark and write the tables to docs/performance.md.

    python benchmarks/run_all.py            # full run (about 20 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # small inputs, seconds; prints only

Each benchmark pins BLAS to one thread and compares against references
measured in the same run; this script only collects their Markdown output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ("bench_decompose.py", ["--anchor-dtypes", "float64"]),
    ("bench_decompose.py", ["--sizes", "4096x16384", "--dtypes", "float64"]),
    ("bench_floor.py", []),
    ("bench_memory.py", []),
    ("bench_apply.py", []),
    ("bench_mps.py", []),
    ("bench_scaleout.py", []),
    ("bench_out_of_core.py", []),
    ("bench_nn.py", []),
    ("bench_conv.py", []),
    ("bench_sharing.py", []),
    ("bench_layouts.py", []),
    ("bench_calibration.py", []),
    ("bench_allocation.py", []),
    ("bench_cross.py", []),
    ("bench_jax.py", []),
    ("bench_latency.py", []),
    ("bench_silero.py", []),
    ("bench_silero_bytes.py", []),
    ("bench_crepe.py", []),
    ("bench_deploy.py", []),
    ("bench_compress_time.py", []),
    ("bench_compress_minilm.py", []),
    ("bench_quantized.py", []),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    parts = []
    seen = set()
    for script, extra in SCRIPTS:
        if args.quick:
            if script in seen:
                continue
            extra = ["--quick"]
        seen.add(script)
        cmd = [sys.executable, str(HERE / script), *extra]
        print("$", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{script} failed:\n{done.stderr[-3000:]}")
        out = done.stdout
        print(out, flush=True)
        parts.append(f"`python benchmarks/{script} {' '.join(extra)}`\n\n{out}")
    if args.quick:
        return
    header = (
        "# Performance\n\n"
        f"Made by `python benchmarks/run_all.py` on {datetime.date.today()} "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}). "
        "Every table compares against references measured in the same run, with BLAS "
        "pinned to one thread; this machine is shared and noisy, so read ratios, not seconds.\n\n"
    )
    (HERE.parent / "docs" / "performance.md").write_text(header + "\n\n".join(parts))
    print("wrote docs/performance.md")


if __name__ == "__main__":
    main()
