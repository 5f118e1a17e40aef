"""Plots of spectra and trade-off curves (matplotlib, the ``plot`` extra, imported lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_spectrum", "plot_tradeoff"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install 'tnlib[plot]'"
        ) from None
    return plt


def plot_spectrum(spec: Any, ax: Any = None) -> Any:
    """Draw a :class:`tnlib.Spectrum`; see :meth:`tnlib.Spectrum.plot`."""
    plt = _pyplot()
    if ax is None:
        fig, (ax_values, ax_entropy) = plt.subplots(1, 2, figsize=(10, 4))
    elif isinstance(ax, (tuple, list)):
        ax_values, ax_entropy = ax
        fig = ax_values.figure
    else:
        ax_values, ax_entropy, fig = ax, None, ax.figure
    for k, s in enumerate(spec.singular_values):
        positive = s[s > 0]
        ax_values.semilogy(np.arange(1, len(positive) + 1), positive, marker=".", label=f"bond {k}")
    ax_values.set_xlabel("index")
    ax_values.set_ylabel("Schmidt value")
    ax_values.set_title(f"{spec.kind} singular values per bond")
    if spec.num_bonds <= 12:
        ax_values.legend(fontsize="small")
    if ax_entropy is not None:
        bonds = np.arange(spec.num_bonds)
        ax_entropy.plot(bonds, spec.entropies(), marker="o", label="von Neumann")
        ax_entropy.plot(bonds, spec.entropies(2.0), marker="s", label="Renyi-2")
        ax_entropy.plot(bonds, np.log(np.maximum(spec.bond_dims, 1)), "k--", label="ln(bond dim)")
        ax_entropy.set_xticks(bonds)
        ax_entropy.set_xlabel("bond")
        ax_entropy.set_ylabel("entropy (nats)")
        ax_entropy.set_title("entanglement entropy across bonds")
        ax_entropy.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_tradeoff(curve: Any, ax: Any = None) -> Any:
    """Draw a :class:`tnlib.Tradeoff`: relative error against compression ratio."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4))
    else:
        fig = ax.figure
    # exact points (error at rounding level) have no place on a log scale
    points = [p for p in zip(curve.max_bonds, curve.compression_ratios, curve.relative_errors) if p[2] > 1e-15]
    if points:
        chis, xs, ys = zip(*points)
        ax.loglog(xs, ys, marker="o")
        for chi, x, y in points:
            ax.annotate(str(chi), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("compression ratio (M N / params)")
    ax.set_ylabel("relative Frobenius error")
    ax.set_title("error vs compression (labels: max bond)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_layouts(search: Any, ax: Any = None) -> Any:
    """Draw a :class:`tnlib.LayoutSearch`: every layout's estimated error, fitted errors, the SVD and the winner."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    rows = search.rows
    jitter = {r.layout: 0.15 * ((hash(r.layout) % 7) - 3) / 3 for r in rows}
    xs = [r.layout.num_cores + jitter[r.layout] for r in rows]
    ax.scatter(xs, [r.error_bound for r in rows], s=8, color="0.7", label="estimate (leading Schmidt values)")
    fitted = [r for r in rows if r.status == "fitted"]
    ax.scatter([r.layout.num_cores + jitter[r.layout] for r in fitted], [r.score for r in fitted],
               s=22, color="C0", label="fitted error")
    svd, best = search.svd, search.best
    if svd is not None:
        ax.axhline(svd.score, color="C1", linestyle="--", linewidth=1, label=f"truncated SVD {svd.score:.3g}")
    ax.scatter([best.layout.num_cores + jitter[best.layout]], [best.score], s=90, marker="*", color="C3",
               label=f"best: {best.layout} ({best.score:.3g})", zorder=3)
    ax.set_xlabel("number of cores")
    space = " (output space, held-out rows)" if best.held_out_error is not None else " (output space)"
    ax.set_ylabel("relative error" + (space if best.output_error is not None else ""))
    ax.set_title(f"layouts of a {search.shape[0]} x {search.shape[1]} matrix at {search.max_params} parameters")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
