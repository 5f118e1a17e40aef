"""Compress a real trained layer into an MPO and see what it costs.

Loads the 512 x 512 hidden layer of the digits MLP that ships with tnlib
(trained by ``examples/train_digits_mlp.py``), decomposes it into a
three-core MPO with (8, 8, 8) x (8, 8, 8) legs, prints the entanglement
entropy of every bond, then truncates it several ways and prints, for each,
the bond dimensions, the compression, the true and the reported error, and
the network's test accuracy with the compressed layer in place.

    python examples/compress_layer.py
"""

from __future__ import annotations

import numpy as np

import tnlib


def main() -> None:
    mlp = tnlib.load_example_mlp()
    W = mlp.weights[1].astype(np.float64)
    norm = np.linalg.norm(W)
    print(f"layer: {W.shape[0]} x {W.shape[1]} hidden weight of a digits MLP "
          f"(test accuracy {mlp.accuracy:.4f})")

    exact = tnlib.MPO.from_matrix(W, out_dims=(8, 8, 8), in_dims=(8, 8, 8))
    err = np.linalg.norm(exact.to_matrix() - W) / norm
    print(f"\nexact MPO: bond_dims={exact.bond_dims}, relative reconstruction error {err:.2e}")
    entropies = exact.entropies()
    for k, (s, chi) in enumerate(zip(entropies, exact.bond_dims)):
        print(f"  bond {k}: entanglement entropy {s:.4f} (max ln {chi} = {np.log(chi):.4f}), "
              f"Renyi-2 {float(exact.entropy(k, alpha=2)):.4f}")

    settings = {
        "max_bond=8": tnlib.Truncation(max_bond=8),
        "max_bond=16": tnlib.Truncation(max_bond=16),
        "max_bond=32": tnlib.Truncation(max_bond=32),
        "max_discarded=0.05": tnlib.Truncation(max_discarded=0.05),
        "max_entropy_loss=0.1": tnlib.Truncation(max_entropy_loss=0.1),
        "max_params=W.size//20": tnlib.Truncation(max_params=W.size // 20),
    }
    print(f"\n{'truncation':<24} {'bond_dims':<12} {'params':>8} {'ratio':>7} "
          f"{'rel. error':>10} {'bound':>10} {'accuracy':>9}")
    for name, truncation in settings.items():
        mpo = tnlib.MPO.from_matrix(W, (8, 8, 8), (8, 8, 8), truncation=truncation)
        approx = mpo.to_matrix()
        rel = np.linalg.norm(approx - W) / norm
        weights = (mlp.weights[0], approx, mlp.weights[2])
        acc = float(np.mean(mlp.predict(mlp.x_test, weights) == mlp.y_test))
        print(f"{name:<24} {str(mpo.bond_dims):<12} {mpo.num_params:>8} "
              f"{mpo.compression_ratio:>6.1f}x {rel:>10.4f} "
              f"{mpo.report.relative_error_bound:>10.4f} {acc:>9.4f}")

    budget = tnlib.MPO.from_matrix(W, (8, 8, 8), (8, 8, 8),
                                   truncation=tnlib.Truncation(max_params=W.size // 20))
    print("\nreport of the budgeted MPO:")
    print(budget.report)


if __name__ == "__main__":
    main()
