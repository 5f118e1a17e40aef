"""Plots of spectra and trade-off curves (matplotlib, the ``plot`` extra, imported lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._optional import optional

__all__ = ["plot_spectrum", "plot_tradeoff", "plot_compression"]


def _pyplot() -> Any:
    return optional("matplotlib.pyplot", "plot", "plotting")


def _readable_log_ticks(axis: Any) -> None:
    """Tick labels of a log axis as plain numbers (``0.9``, ``20``, ``1e-06``), never ``9x10^-1``; the ticks
    between the powers of ten are labelled too within a decade, their 2s and 5s within two."""
    ticker = optional("matplotlib.ticker", "plot", "plotting")
    low, high = sorted(axis.get_view_interval())
    span = high / low if low > 0 else np.inf
    shown = range(1, 10) if span < 10 else (2, 5) if span < 100 else ()

    def minor(value: float, _: Any) -> str:
        mantissa = value / 10 ** np.floor(np.log10(value) + 1e-9)
        return f"{value:g}" if round(mantissa) in shown else ""

    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(minor))


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
    top = max((float(s[0]) for s in spec.singular_values if len(s)), default=0.0)
    floor = top * np.finfo(np.float64).eps * max(spec.phys_dims, default=1)  # below: rounding noise, not signal
    lowest = top
    for k, s in enumerate(spec.singular_values):
        kept = s[s > floor]
        lowest = min(lowest, float(kept.min(initial=top)))
        ax_values.semilogy(np.arange(1, len(kept) + 1), kept, marker=".", label=f"bond {k}")
    if top > 0:  # down to the smallest value above the noise floor, not to the floor itself
        ax_values.set_ylim(bottom=max(floor, lowest / 2), top=top * 2)
        _readable_log_ticks(ax_values.yaxis)
    ax_values.set_xlabel("index")
    ax_values.set_ylabel("Schmidt value")
    ax_values.set_title(f"{spec.kind} singular values per bond (site dims {tuple(spec.phys_dims)})", fontsize="medium")
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
        _readable_log_ticks(ax.xaxis)
        _readable_log_ticks(ax.yaxis)
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
    cores = sorted({r.layout.num_cores for r in rows})
    ax.set_xticks(cores)  # whole numbers of cores; the points are spread around them to be seen apart
    ax.set_xlim(cores[0] - 0.5, cores[-1] + 0.5)
    ax.set_xlabel("number of cores")
    space = " (output space, held-out rows)" if best.held_out_error is not None else " (output space)"
    ax.set_ylabel("relative error" + (space if best.output_error is not None else ""))
    ax.set_title(f"layouts of a {search.shape[0]} x {search.shape[1]} matrix at {search.max_params} parameters")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def plot_compression(reports: Any, ax: Any = None) -> Any:
    """Draw what ``tnlib.nn.compress`` did per layer (see :func:`tnlib.nn.plot_compression`); returns the Figure."""
    plt = _pyplot()
    reports = list(reports)
    if not reports:
        raise ValueError("reports is empty: compress converted no layer, there is nothing to draw")
    by_bytes = all(r.byte_budget is not None for r in reports)  # compress(bytes=...): sizes in bytes
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 1.2 + 0.32 * len(reports)), sharey=True)
    else:
        axes = list(ax)
        if len(axes) != 3:
            raise ValueError(f"ax must be three Axes (size, error, multiply-adds), got {len(axes)}")
        fig = axes[0].figure
    names = [r.name or "(model)" for r in reports]
    y = np.arange(len(reports))
    before = [r.bytes_before if by_bytes else r.params_before for r in reports]
    after = [r.bytes_after if by_bytes else r.params_after for r in reports]
    unit = "bytes" if by_bytes else "weights"
    axes[0].barh(y, before, color="0.8", label="dense")
    axes[0].barh(y, after, color="C0", label="compressed")
    axes[0].set_xscale("log")
    _readable_log_ticks(axes[0].xaxis)
    axes[0].set_yticks(y, names, fontsize="small")
    axes[0].invert_yaxis()
    axes[0].set_xlabel(f"stored {unit} (log)")
    axes[0].legend(fontsize="small")
    axes[1].barh(y - 0.2, [r.relative_error for r in reports], height=0.4, color="C1", label="weight")
    held = [np.nan if r.held_out_error is None else r.held_out_error for r in reports]
    if not all(np.isnan(held)):
        axes[1].barh(y + 0.2, held, height=0.4, color="C2", label="outputs, held-out rows")
    axes[1].set_xlabel("relative error")
    axes[1].legend(fontsize="small")
    flops = [np.nan if r.flop_ratio is None else r.flop_ratio for r in reports]
    axes[2].barh(y, flops, color="C3")
    axes[2].axvline(1.0, color="k", lw=0.8, ls="--")
    axes[2].set_xlabel("multiply-adds / dense")
    total_before, total_after = sum(before), sum(after)
    fig.suptitle(f"{len(reports)} layers: {total_before:,} -> {total_after:,} {unit} "
                 f"({total_before / max(total_after, 1):.1f}x smaller)", fontsize="medium")
    fig.tight_layout()
    return fig
