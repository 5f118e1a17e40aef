"""``jax.jit`` of ``MPO.apply`` against a hand-written ``jnp.einsum`` chain over the same cores, same run.

An MPO of a 1024 x 1024 (4096 x 4096 in the full run) float64 matrix with dims (4, 4, 8, 8) x
(4, 4, 8, 8) ((8, 8, 8, 8) x (8, 8, 8, 8)) at bond 16, applied to batches of 1, 32 and 256 vectors.
The reference contracts the cores one by one with ``jnp.einsum`` (the way a JAX user would write it by
hand) under the same ``jax.jit``; the chain is passed as a pytree argument, so the compiled function is
reused. Best of several repeats after a warm-up compile; BLAS and XLA pinned to one thread. Ratios below
1: tnlib faster.

    python benchmarks/bench_jax.py [--quick]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
from _timing import best_of  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import tnlib  # noqa: E402


def hand_written(cores, x):
    """``x @ W.T`` core by core: ``(batch, rest_in, done_out, bond)`` carried from left to right."""
    import jax.numpy as jnp

    batch = x.shape[0]
    in_dims = [c.shape[2] for c in cores]
    t = jnp.reshape(x, (batch, in_dims[0], -1, 1, 1))  # (batch, i_0, rest of the input, out so far, bond)
    for k, core in enumerate(cores):
        # t: (b, i_k, rest_in, out_done, bond_left)
        t = jnp.einsum("birol,lpis->brops", t, core)
        b, rest, out_done, p, s = t.shape
        t = jnp.reshape(t, (b, rest, out_done * p, s))
        if k + 1 < len(cores):
            t = jnp.reshape(t, (b, in_dims[k + 1], rest // in_dims[k + 1], out_done * p, s))
    return jnp.reshape(t, (batch, -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    size, dims, repeat = (1024, (4, 4, 8, 8), 5) if args.quick else (4096, (8, 8, 8, 8), 20)
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        mpo = tnlib.MPO.from_matrix(jnp.asarray(rng.standard_normal((size, size))), dims, dims,
                                    truncation=tnlib.Truncation(max_bond=16))
        ours = jax.jit(lambda m, x: m.apply(x))
        theirs = jax.jit(lambda cores, x: hand_written(cores, x))
        print(f"### jax.jit: MPO.apply vs a hand-written jnp.einsum chain, {size} x {size} float64, dims {dims}, "
              "bond 16, 1 thread\n")
        print("| batch | MPO.apply (ms) | einsum chain (ms) | ratio apply / chain | max abs difference |")
        print("|---|---|---|---|---|")
        for batch in (1, 32, 256):
            x = jnp.asarray(rng.standard_normal((batch, size)))
            a, b = ours(mpo, x).block_until_ready(), theirs(list(mpo.cores), x).block_until_ready()
            t_ours = best_of(lambda: ours(mpo, x).block_until_ready(), repeat)
            t_theirs = best_of(lambda: theirs(list(mpo.cores), x).block_until_ready(), repeat)
            diff = float(jnp.max(jnp.abs(a - b)))
            print(f"| {batch} | {1e3 * t_ours:.3f} | {1e3 * t_theirs:.3f} | {t_ours / t_theirs:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
