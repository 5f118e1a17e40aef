"""Truncated decompositions against their floor: the randomized TT-SVD and randomized rounding.

For each matrix (random, or a smooth kernel) and bond (16, 64), in one process
with BLAS pinned to one thread:

* tnlib ``svd="randomized"`` (the sketched route, with its certificate),
  ``svd="auto"`` and, as the reference for the error, ``svd="lapack"`` (the
  exact truncation; timed too);
* the anchors: quimb 1.15 ``from_dense(method="svd:eig")`` and TensorLy 0.10
  ``tensor_train_matrix(svd="randomized_svd")`` (square matrices), when installed;
* the **floor** of a two-pass truncated decomposition, measured on this
  machine in the same run: two reads of the input at the read bandwidth of
  ``np.vdot(A, A)`` plus the flops of the sketch and the projection of the
  first unfolding (``2 * 2 * size * k``, ``k`` the sketch's columns) at the
  rate of a 2048^3 matrix product. The remaining, smaller unfoldings are not
  counted: the ratio to the floor is an upper bound on the overhead.

Then rounding: the sum of two random MPS (64 sites, d = 2, bond 32) rounded
to bond 32, and the same with decaying bond spectra, by the SVD sweep
(orthogonalize, then truncate) and by ``compress(algorithm="randomized")``.

    python benchmarks/bench_floor.py            # 4096^2 and 4096 x 16384 (a few minutes)
    python benchmarks/bench_floor.py --quick    # 1024^2, seconds, for CI
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

import tnlib
from tnlib._sketched import PROBES, oversampling


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t, out = timed(fn)
        times.append(t)
    return min(times), out


def smooth(m, n):
    x, y = np.linspace(0.0, 1.0, m), np.linspace(0.0, 1.0, n)
    return np.exp(-((x[:, None] - y[None, :]) ** 2) / 0.1)


def floor_seconds(a, k, repeat):
    """Two reads of ``a`` plus the first unfolding's sketch and projection at the measured GEMM rate."""
    read, _ = best(lambda: np.vdot(a, a), repeat)
    g = np.random.default_rng(0).standard_normal((2048, 2048))
    t_gemm, _ = best(lambda: g @ g, repeat)
    rate = 2 * 2048**3 / t_gemm
    return 2 * read + 4 * a.size * k / rate, rate, a.nbytes / read


def rel(a, mpo):
    return float(np.linalg.norm(a - mpo.to_matrix()) / np.linalg.norm(a))


def anchors(a, out_dims, in_dims, bond):
    res = {}
    try:
        import warnings

        import quimb.tensor as qtn

        warnings.filterwarnings("ignore", module="quimb")
        if out_dims == in_dims:
            t, m = timed(lambda: qtn.MatrixProductOperator.from_dense(a, dims=list(out_dims), cutoff=0.0,
                                                                      method="svd:eig", max_bond=bond))
            res["quimb svd:eig"] = (t, float(np.linalg.norm(a - m.to_dense()) / np.linalg.norm(a)))
    except ImportError:
        pass
    try:
        import tensorly as tl
        from tensorly.decomposition import tensor_train_matrix
        from tensorly.tt_matrix import tt_matrix_to_tensor

        tl.set_backend("numpy")
        site = [o * i for o, i in zip(out_dims, in_dims)]
        n = len(site)
        full = [min(math.prod(site[: k + 1]), math.prod(site[k + 1:])) for k in range(n - 1)]
        rank = [1] + [min(bond, f) for f in full] + [1]
        t, tt = timed(lambda: tensor_train_matrix(a.reshape(tuple(out_dims) + tuple(in_dims)), rank,
                                                  svd="randomized_svd"))
        dense = np.asarray(tt_matrix_to_tensor(tt)).reshape(a.shape)
        res["TensorLy randomized"] = (t, float(np.linalg.norm(a - dense) / np.linalg.norm(a)))
    except ImportError:
        pass
    return res


def decomposition_table(cases, repeat, with_anchors):
    print("# Truncated TT-SVD against its floor (float64, BLAS threads = 1)\n")
    print("| matrix | input | bond | floor (s) | randomized (s) | / floor | error / exact | certified bound "
          "| auto (s) | exact (s) | best anchor (s) | anchor / randomized |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rates = []
    for (m, n), out_dims, in_dims in cases:
        for kind in ("random", "smooth"):
            a = np.random.default_rng(0).standard_normal((m, n)) if kind == "random" else smooth(m, n)
            for bond in (16, 64):
                trunc = tnlib.Truncation(max_bond=bond)
                k = bond + oversampling(bond)
                fl, rate, bw = floor_seconds(a, k, repeat)
                rates.append((rate, bw))
                t_r, r = best(lambda: tnlib.MPO.from_matrix(a, out_dims, in_dims, truncation=trunc,
                                                            svd="randomized"), repeat)
                t_a, _ = best(lambda: tnlib.MPO.from_matrix(a, out_dims, in_dims, truncation=trunc), 1)
                t_e, e = timed(lambda: tnlib.MPO.from_matrix(a, out_dims, in_dims, truncation=trunc, svd="lapack"))
                err_r, err_e = rel(a, r), rel(a, e)
                ratio = err_r / err_e if err_e > 1e-13 else float("nan")
                cert = r.report.certificate
                bound = f"{cert.error_bound:.3g}" if cert is not None else "exact route"
                anchor = anchors(a, out_dims, in_dims, bond) if with_anchors else {}
                if anchor:
                    name, (t_b, _) = min(anchor.items(), key=lambda kv: kv[1][0])
                    anchor_cell, vs = f"{t_b:.3f} ({name})", f"{t_b / t_r:.1f}x"
                else:
                    anchor_cell, vs = "-", "-"
                err_cell = f"{ratio:.3f}" if ratio == ratio else f"both {max(err_r, err_e):.1e}"
                print(f"| {m}x{n} | {kind} | {bond} | {fl:.3f} | {t_r:.3f} | {t_r / fl:.1f}x | {err_cell} "
                      f"| {bound} | {t_a:.3f} | {t_e:.3f} | {anchor_cell} | {vs} |", flush=True)
    rate, bw = rates[-1]
    print(f"\nMeasured in this run: GEMM {rate / 1e9:.0f} GFLOP/s, read bandwidth {bw / 1e9:.1f} GB/s. "
          f"Sketch columns k = bond + max(8, bond // 4), plus {PROBES} test columns per sketched bond.\n")


def random_mps(n, d, r, seed, decay=None):
    g = np.random.default_rng(seed)
    cores, left = [], 1
    for k in range(n):
        right = 1 if k == n - 1 else r
        core = g.standard_normal((left, d, right)) / np.sqrt(left * d)
        if decay is not None and right > 1:
            core = core * np.exp(-decay * np.arange(right))
        cores.append(core)
        left = right
    return tnlib.MPS(cores)


def rounding_table(sites, repeat):
    print(f"# Rounding a sum of two MPS ({sites} sites, d = 2, bond 32) to bond 32, BLAS threads = 1\n")
    print("| bond spectra | SVD sweep (s) | error | randomized (s) | error | certified bound | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for label, decay in (("flat (random cores)", None), ("decaying (e^-0.2 k)", 0.2)):
        x = random_mps(sites, 2, 32, 1, decay) + random_mps(sites, 2, 32, 2, decay)
        trunc = tnlib.Truncation(max_bond=32)
        t_s, s = best(lambda: x.compress(trunc), repeat)
        t_r, r = best(lambda: x.compress(trunc, algorithm="randomized"), repeat)
        print(f"| {label} | {t_s:.4f} | {s.report.relative_error_bound:.4g} | {t_r:.4f} "
              f"| {r.report.certificate.error_estimate:.4g} | {r.report.certificate.error_bound:.3g} "
              f"| {t_s / t_r:.1f}x |", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024^2 only, no anchors, 16-site rounding")
    args = parser.parse_args()
    with threadpool_limits(1):
        if args.quick:
            decomposition_table([((1024, 1024), (4, 8, 8, 4), (4, 8, 8, 4))], 1, False)
            rounding_table(16, 1)
            return
        decomposition_table([
            ((4096, 4096), (8, 8, 8, 8), (8, 8, 8, 8)),
            ((4096, 16384), (8, 8, 8, 8), (8, 8, 16, 16)),
        ], 3, True)
        rounding_table(64, 5)


if __name__ == "__main__":
    main()
