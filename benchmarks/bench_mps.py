"""MPS canonical form and all-bond entropies: tnlib against quimb (if installed) and a floor.

N = 64 sites, d = 2, bond 64 (random cores). Times the left-canonicalisation
and the entropies of all bonds, with tnlib, with quimb (``MPS.left_canonize``,
and ``entropy`` per bond sharing one ``info`` dict so the canonical form
moves along, quimb's fastest way) when quimb is importable, and with two floors: one
QR per site (LAPACK geqrf/orgqr called directly, no bookkeeping), and the least a sweep does (that QR
and the product of R into the next core; its ratio to quimb bounds what any sweep can
gain); for the entropies, the floor is that sweep, a QR sweep back and one singular-value
call per bond. BLAS pinned to one thread.

    python benchmarks/bench_mps.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
from _timing import best_of
from threadpoolctl import threadpool_limits

import tnlib


def random_cores(n, d, chi, rng):
    bonds = [1] + [min(chi, d ** min(k, n - k)) for k in range(1, n)] + [1]
    return [rng.standard_normal((bonds[k], d, bonds[k + 1])) for k in range(n)]


def _lapack_qr(a):
    """Q and R by LAPACK geqrf/orgqr called directly (float64): the factorization's own cost, no checks."""
    m, n = a.shape
    k = min(m, n)
    qr, tau, _, _ = scipy.linalg.lapack.dgeqrf(a, lwork=64 * max(m, n))
    r = np.triu(qr[:k])
    q, _, _ = scipy.linalg.lapack.dorgqr(qr[:, :k], tau, lwork=64 * max(m, n), overwrite_a=1)
    return q, r


def floor_qr(cores):
    for c in cores[:-1]:
        left, phys, right = c.shape
        _lapack_qr(c.reshape(left * phys, right))


def floor_sweep(cores):
    """The least a left-canonical sweep can do: per site one QR and the product of R into the next core."""
    nxt = cores[0]
    for k in range(len(cores) - 1):
        left, phys, right = nxt.shape
        q, r = _lapack_qr(nxt.reshape(left * phys, right))
        following = cores[k + 1]
        nxt = (r @ following.reshape(following.shape[0], -1)).reshape(r.shape[0], *following.shape[1:])


def floor_entropies(cores):
    """The least all-bond Schmidt values take from a non-canonical chain: a QR sweep to the right end, then
    one back (QR of each core's adjoint) with one ``svdvals`` of each bond's small factor."""
    chain = list(cores)
    floor_sweep(chain)
    for c in chain[:0:-1]:
        left, phys, right = c.shape
        _, r = _lapack_qr(np.ascontiguousarray(c.reshape(left, phys * right).T))
        scipy.linalg.lapack.dgesdd(r, compute_uv=0)


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
        t_sweep = best_of(lambda: floor_sweep(cores), repeat)
        t_ent_floor = best_of(lambda: floor_entropies(cores), repeat)
        print(f"# MPS N={n}, d={d}, bond {chi}, float64, BLAS threads = 1\n")
        print("| job | tnlib (s) | quimb (s) | quimb / tnlib | floor: one QR per site (s) "
              "| floor of the job (s) | quimb / that floor |")
        print("|---|---|---|---|---|---|---|")
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
            floor = t_sweep if job == "left-canonicalize" else t_ent_floor
            sw = f"{floor:.4f}"
            best = "" if theirs is None else f"{theirs / floor:.1f}x"
            print(f"| {job} | {ours:.4f} | {q} | {r} | {f} | {sw} | {best} |")


if __name__ == "__main__":
    main()
