"""Matrix -> MPO: tnlib against TensorLy's ``tensor_train_matrix``, same run, same input.

Decomposes a 4096 x 4096 float64 matrix with dims (8, 8, 8, 8) x (8, 8, 8, 8)
exactly and at max bond 16 and 64, with tnlib (default SVD, and
``svd="randomized"``) and with TensorLy 0.10 (default SVD, and
``svd="randomized_svd"``), and prints a Markdown table of times, the ratio
TensorLy / tnlib and the relative Frobenius errors. BLAS is pinned to one
thread (threadpoolctl); two threads make small LAPACK calls far slower on
2-core machines.

    python benchmarks/bench_decompose.py            # full run, a few minutes
    python benchmarks/bench_decompose.py --quick    # 1024 x 1024, (4,)*5 dims, seconds

TensorLy is in the ``dev`` extra; without it only tnlib is timed.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

import tnlib


def smooth_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """A matrix with a quickly decaying spectrum: a smooth (Gaussian) kernel."""
    x = np.linspace(0.0, 1.0, n)
    return np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.1)


def timed(fn, repeat: int):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rel_error(dense: np.ndarray, W: np.ndarray) -> float:
    return float(np.linalg.norm(dense - W) / np.linalg.norm(W))


def tensorly_runner(W, dims, max_bond, svd):
    import tensorly as tl
    from tensorly.decomposition import tensor_train_matrix
    from tensorly.tt_matrix import tt_matrix_to_tensor

    tl.set_backend("numpy")
    n = len(dims)
    tensor = W.reshape(dims + dims)
    if max_bond is None:
        site = [d * d for d in dims]
        rank = [1] + [min(math.prod(site[: k + 1]), math.prod(site[k + 1 :])) for k in range(n - 1)] + [1]
    else:
        rank = [1] + [max_bond] * (n - 1) + [1]

    def run():
        return tensor_train_matrix(tensor, rank, svd=svd)

    def rebuild(tt):
        return np.asarray(tt_matrix_to_tensor(tt)).reshape(W.shape)

    return run, rebuild


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small matrix, for CI")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.quick:
        size, dims, bonds, repeat = 1024, (4, 4, 4, 4, 4), (None, 16), 1
    else:
        size, dims, bonds, repeat = 4096, (8, 8, 8, 8), (None, 16, 64), 1
    try:
        import tensorly  # noqa: F401

        have_tensorly = True
    except ImportError:
        have_tensorly = False
    inputs = {"random": rng.standard_normal((size, size)), "smooth": smooth_matrix(size, rng)}
    print(f"# Matrix -> MPO, {size} x {size} float64, dims {dims} x {dims}, BLAS threads = 1\n")
    print("| input | max bond | tnlib | time (s) | error | TensorLy | time (s) | error | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name, W in inputs.items():
            for bond in bonds:
                trunc = None if bond is None else tnlib.Truncation(max_bond=bond)
                variants = [("default", "auto", None)]
                if bond is not None:
                    variants.append(("randomized", "randomized", "randomized_svd"))
                else:
                    variants[0] = ("default", "auto", "truncated_svd")
                for label, ours, theirs in variants:
                    if theirs is None:
                        theirs = "truncated_svd"
                    t_ours, mpo = timed(
                        lambda: tnlib.MPO.from_matrix(W, dims, dims, truncation=trunc, svd=ours), repeat
                    )
                    e_ours = rel_error(mpo.to_matrix(), W)
                    row = f"| {name} | {bond or 'exact'} | {label} | {t_ours:.3f} | {e_ours:.4g} |"
                    if have_tensorly:
                        run, rebuild = tensorly_runner(W, dims, bond, theirs)
                        t_tl, tt = timed(run, repeat)
                        e_tl = rel_error(rebuild(tt), W)
                        row += f" {theirs} | {t_tl:.3f} | {e_tl:.4g} | {t_tl / t_ours:.1f}x |"
                    else:
                        row += " (not installed) | | | |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()
