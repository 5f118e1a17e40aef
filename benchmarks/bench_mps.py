"""MPS canonical form and all-bond entropies: tnlib against quimb (if installed) and a floor.

N = 64 sites, d = 2, bond 64 (random cores). Times the left-canonicalisation
and the entropies of all bonds, with tnlib, with quimb (``MPS.left_canonize``,
and ``entropy`` per bond sharing one ``info`` dict so the canonical form
moves along, quimb's fastest way) when quimb is importable, and with the floor: one
plain QR per site (LAPACK only, no bookkeeping). BLAS pinned to one thread.

    python benchmarks/bench_mps.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.linalg
from _timing import best_of
from threadpoolctl import threadpool_limits

import tnlib


def random_cores(n, d, chi, rng):
    bonds = [1] + [min(chi, d ** min(k, n - k)) for k in range(1, n)] + [1]
    return [rng.standard_normal((bonds[k], d, bonds[k + 1])) for k in range(n)]


def floor_qr(cores):
    for c in cores[:-1]:
        left, phys, right = c.shape
        scipy.linalg.qr(c.reshape(left * phys, right), mode="economic", check_finite=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, d, chi, repeat = (16, 2, 16, 3) if args.quick else (64, 2, 64, 5)
    rng = np.random.default_rng(0)
    cores = random_cores(n, d, chi, rng)
    mps = tnlib.MPS(cores)
    try:
        import quimb.tensor as qtn
    except ImportError:
        qtn = None
    with threadpool_limits(1):
        t_canon = best_of(lambda: mps.canonicalize(-1), repeat)
        t_ent = best_of(lambda: mps.entropies(), repeat)
        t_floor = best_of(lambda: floor_qr(cores), repeat)
        print(f"# MPS N={n}, d={d}, bond {chi}, float64, BLAS threads = 1\n")
        print("| job | tnlib (s) | quimb (s) | quimb / tnlib | floor: one QR per site (s) |")
        print("|---|---|---|---|---|")
        q_canon = q_ent = None
        if qtn is not None:
            arrays = [c[0] if k == 0 else (c[:, :, 0] if k == n - 1 else c) for k, c in enumerate(cores)]
            psi = qtn.MatrixProductState(arrays, shape="lpr")
            q_canon = best_of(lambda: psi.copy().left_canonize(), repeat)
            def quimb_entropies():
                work, info = psi.copy(), {}
                return [work.entropy(k + 1, info=info) for k in range(n - 1)]

            q_ent = best_of(quimb_entropies, repeat)
        for job, ours, theirs in (("left-canonicalize", t_canon, q_canon), ("all bond entropies", t_ent, q_ent)):
            q = "not installed" if theirs is None else f"{theirs:.4f}"
            r = "" if theirs is None else f"{theirs / ours:.1f}x"
            f = f"{t_floor:.4f}" if job == "left-canonicalize" else ""
            print(f"| {job} | {ours:.4f} | {q} | {r} | {f} |")


if __name__ == "__main__":
    main()
