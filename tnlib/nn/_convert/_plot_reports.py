"""``plot_compression``: a picture of what :func:`tnlib.nn.compress` did to each layer."""

from __future__ import annotations

from typing import Any, Sequence

from tnlib._plot import plot_compression as _draw
from tnlib.nn._convert._layer_report import LayerReport

__all__ = ["plot_compression"]


def plot_compression(reports: Sequence[LayerReport], ax: Any = None) -> Any:
    """Per layer: stored size before and after, the errors, the multiply-adds; returns the matplotlib Figure.

    Three panels share the layers as rows: the stored weights (or bytes,
    after ``compress(bytes=...)``) of the dense and the compressed layer on a
    log scale; the relative error of the weights and, with calibration, of
    the layer's outputs on held-out rows; the multiply-adds per input row
    against the dense layer's. The title gives the totals. Needs matplotlib
    (the ``plot`` extra).

    Parameters
    ----------
    reports
        The reports :func:`tnlib.nn.compress` returned.
    ax
        Three matplotlib Axes to draw in (default: a new figure).

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import torch, tnlib.nn
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    >>> _, reports = tnlib.nn.compress(net, compression=4)
    >>> fig = tnlib.nn.plot_compression(reports)
    >>> len(fig.axes), fig.axes[0].get_xlabel()
    (3, 'stored weights (log)')
    """
    reports = list(reports)
    bad = [type(r).__name__ for r in reports if not isinstance(r, LayerReport)]
    if bad:
        raise TypeError(f"reports must be the LayerReports tnlib.nn.compress returned, got a {bad[0]}")
    return _draw(reports, ax)
