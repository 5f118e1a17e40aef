"""Matrix -> MPO: tnlib against TensorLy and quimb, same run, same inputs.

For every size, dtype, input (random, or a smooth kernel with a decaying
spectrum) and job (exact, max bond 16, max bond 64): tnlib with its default
``svd="auto"``, TensorLy 0.10 with its default SVD and with
``svd="randomized_svd"`` (its best option at bond 16 and 64), and quimb
1.15's ``MatrixProductOperator.from_dense`` with ``method="svd"`` and
``method="svd:eig"`` (its fastest, which loses digits; square matrices
only). Prints a
Markdown table of times, relative Frobenius errors and the ratios TensorLy /
tnlib, and the tnlib float32 / float64 time ratio. BLAS is pinned to one
thread (threadpoolctl).

    python benchmarks/bench_decompose.py                 # 1024^2 and 4096^2, float64 and float32
    python benchmarks/bench_decompose.py --sizes 4096x16384 --dtypes float64
    python benchmarks/bench_decompose.py --quick         # seconds, for CI

Anchor runs that would take many minutes (full SVDs of a 4096 x 65536
unfolding) are skipped above ``--anchor-limit`` entries in the middle
unfolding and marked as such. TensorLy and quimb are in the ``dev`` extra;
without them only tnlib is timed.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

import tnlib


def smooth_matrix(m: int, n: int) -> np.ndarray:
    """A smooth (Gaussian) kernel: singular values decay to rounding level quickly."""
    x, y = np.linspace(0.0, 1.0, m), np.linspace(0.0, 1.0, n)
    return np.exp(-((x[:, None] - y[None, :]) ** 2) / 0.1)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def rel_error(dense, W) -> float:
    d = np.asarray(dense, dtype=np.float64)
    return float(np.linalg.norm(d - W) / np.linalg.norm(W))


def tensorly_run(W, out_dims, in_dims, max_bond, svd):
    import tensorly as tl
    from tensorly.decomposition import tensor_train_matrix
    from tensorly.tt_matrix import tt_matrix_to_tensor

    tl.set_backend("numpy")
    n = len(out_dims)
    site = [o * i for o, i in zip(out_dims, in_dims)]
    full = [min(math.prod(site[: k + 1]), math.prod(site[k + 1 :])) for k in range(n - 1)]
    rank = [1] + (full if max_bond is None else [min(max_bond, f) for f in full]) + [1]
    t, tt = timed(lambda: tensor_train_matrix(W.reshape(out_dims + in_dims), rank, svd=svd))
    return t, rel_error(np.asarray(tt_matrix_to_tensor(tt)).reshape(W.shape), W)


def quimb_run(W, out_dims, max_bond, method):
    import quimb.tensor as qtn

    kw = {} if max_bond is None else {"max_bond": max_bond}
    try:
        t, mpo = timed(
            lambda: qtn.MatrixProductOperator.from_dense(W, dims=list(out_dims), cutoff=0.0, method=method, **kw)
        )
    except Exception as exc:  # noqa: BLE001 - report the anchor's failure in the table
        return f"fails ({type(exc).__name__})"
    return t, rel_error(mpo.to_dense(), W)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 x 1024 float64 only, no bond 64")
    parser.add_argument("--sizes", default="1024x1024,4096x4096")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument(
        "--anchor-dtypes", default="float64,float32", help="dtypes for which TensorLy and quimb are timed too"
    )
    parser.add_argument(
        "--anchor-limit",
        type=int,
        default=4096 * 4096,
        help="skip TensorLy's full-SVD runs whose middle unfolding has more entries",
    )
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    dtypes = args.dtypes.split(",")
    bonds = (None, 16, 64)
    if args.quick:
        sizes, dtypes, bonds = [(1024, 1024)], ["float64"], (None, 16)
    try:
        import tensorly  # noqa: F401

        have_tl = True
    except ImportError:
        have_tl = False
    try:
        import warnings

        import quimb.tensor  # noqa: F401

        warnings.filterwarnings("ignore", module="quimb")
        have_quimb = True
    except ImportError:
        have_quimb = False
    rng = np.random.default_rng(0)
    print("# Matrix -> MPO: tnlib (svd='auto') against TensorLy 0.10 and quimb 1.15, BLAS threads = 1\n")
    print(
        "| size | dtype | input | job | tnlib (s) | tnlib error | TensorLy default (s) | error "
        "| TensorLy randomized (s) | error | default / tnlib | randomized / tnlib "
        "| quimb svd (s) | error | quimb svd:eig (s) | error | svd / tnlib | svd:eig / tnlib |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    f32: dict[tuple, float] = {}
    f64: dict[tuple, float] = {}
    with threadpool_limits(1):
        for m, n in sizes:
            out_dims, in_dims = tnlib.factorize(m, 4), tnlib.factorize(n, 4)
            middle = math.prod(o * i for o, i in zip(out_dims[:2], in_dims[:2]))
            middle_cols = m * n // middle
            inputs = {"random": rng.standard_normal((m, n)), "smooth": smooth_matrix(m, n)}
            for dtype in dtypes:
                for name, W64 in inputs.items():
                    W = W64.astype(dtype)
                    for bond in bonds:
                        trunc = None if bond is None else tnlib.Truncation(max_bond=bond)
                        t, mpo = timed(lambda: tnlib.MPO.from_matrix(W, out_dims, in_dims, truncation=trunc))
                        err = rel_error(mpo.to_matrix(), W64)
                        (f32 if dtype == "float32" else f64)[(m, n, name, bond)] = t
                        row = f"| {m}x{n} | {dtype} | {name} | {bond or 'exact'} | {t:.3f} | {err:.3g} |"
                        anchors = dtype in args.anchor_dtypes.split(",")
                        if have_tl and anchors:
                            cells = []
                            for svd in ("truncated_svd", "randomized_svd"):
                                if svd == "randomized_svd" and bond is None:
                                    cells.append(None)
                                elif (
                                    svd == "truncated_svd"
                                    and middle * middle_cols > args.anchor_limit
                                    and (bond is None or bond >= 64)
                                ):
                                    cells.append("skipped")
                                else:
                                    cells.append(tensorly_run(W, out_dims, in_dims, bond, svd))
                            for c in cells:
                                row += (
                                    " - | - |"
                                    if c is None
                                    else (" skipped | |" if c == "skipped" else f" {c[0]:.3f} | {c[1]:.3g} |")
                                )
                            for c in cells:
                                row += " - |" if not isinstance(c, tuple) else f" {c[0] / t:.1f}x |"
                        else:
                            row += " (not run) | | | | | |"
                        if (
                            have_quimb
                            and anchors
                            and m == n
                            and (middle * middle_cols <= args.anchor_limit or bond == 16)
                        ):
                            q = [quimb_run(W, out_dims, bond, method) for method in ("svd", "svd:eig")]
                            row += "".join(
                                f" {c[0]:.3f} | {c[1]:.3g} |" if isinstance(c, tuple) else f" {c} | |" for c in q
                            )
                            row += "".join(f" {c[0] / t:.1f}x |" if isinstance(c, tuple) else " - |" for c in q)
                        else:
                            row += " - | - | - | - | - | - |"
                        print(row, flush=True)
    ratios = [f32[k] / f64[k] for k in f32 if k in f64 and f64[k] > 0.05]
    if ratios:
        print(
            f"\ntnlib float32 / float64 time: median {np.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} jobs above 0.05 s"
        )


if __name__ == "__main__":
    main()
