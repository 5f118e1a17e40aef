"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``fn``, in seconds (the least disturbed one)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def whitened_svd_seconds(model, layers, batches, keep: float, how: str) -> float:
    """Seconds to record the input Grams of ``layers`` (``tnlib.nn.record_grams``) and take each weight's whitened
    SVD truncated to ``keep`` of its weights (NumPy, float64), the factor ``C = L L^T`` from the eigendecomposition
    (``how="eigh"``) or the Cholesky factorization (``how="cholesky"``, as SVD-LLM whitens): the reference a
    calibrated compress is timed against."""
    import numpy as np

    import tnlib.nn

    t0 = time.perf_counter()
    grams = tnlib.nn.record_grams(model, layers, batches)
    for name in layers:
        w = model.get_submodule(name).weight.detach().double().numpy()
        c = grams[name]["weight"].numpy()
        n = c.shape[0]
        if how == "eigh":
            lam, q = np.linalg.eigh(c)
            root = q * np.sqrt(np.clip(lam, 0, None))
        else:
            root = np.linalg.cholesky(c + 1e-8 * np.trace(c) / n * np.eye(n))
        u, s, vt = np.linalg.svd(w @ root, full_matrices=False)
        rank = max(1, int(w.size * keep) // sum(w.shape))
        _ = (u[:, :rank] * s[:rank]) @ vt[:rank]
    return time.perf_counter() - t0


def print_against_whitened_svd(references: dict[str, float], rows: list[tuple[str, float]]) -> None:
    """The whitened SVDs' times and a table of each ``(label, seconds)`` row's ratio to both."""
    print(f"whitened truncated SVDs (Grams recorded): {references['eigh']:.2f} s by eigh, "
          f"{references['cholesky']:.2f} s by Cholesky\n")
    print("| compress | time (s) | / whitened SVD (eigh) | / whitened SVD (Cholesky) |")
    print("|---|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / references['eigh']:.2f}x | "
              f"{seconds / references['cholesky']:.2f}x |")
