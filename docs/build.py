"""Build the documentation's figures from the shipped trained layer.

    python docs/build.py [OUTDIR]     # default: docs/images

Writes ``spectrum.png`` (Schmidt values per bond and the entropy profile of
the exact MPO of the digits MLP's 512 x 512 hidden layer), ``tradeoff.png``
(its relative error against compression ratio), ``layouts.png`` (the layout
search on it at a quarter of its weights) and ``compression.png`` (the whole
MLP compressed 8x with calibration on digits, per layer; needs torch). The
test suite runs this script, so the figures cannot go stale silently.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import tnlib  # noqa: E402


def build(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    W = tnlib.load_example_mlp().weights[1].astype(np.float64)
    spec = tnlib.spectrum(W, out_dims=(4, 8, 4, 4), in_dims=(4, 8, 4, 4))
    curve = tnlib.tradeoff(W, out_dims=(4, 8, 4, 4), in_dims=(4, 8, 4, 4))
    found = tnlib.layouts(W, max_params=W.size // 4)
    paths = [outdir / name for name in ("spectrum.png", "tradeoff.png", "layouts.png", "compression.png")]
    spec.plot().savefig(paths[0], dpi=100)
    curve.plot().savefig(paths[1], dpi=100)
    found.plot().savefig(paths[2], dpi=100)
    compression_figure(paths[3])
    print(spec)
    print(curve)
    print(found)
    return paths


def compression_figure(path: Path) -> None:
    """The digits MLP as a torch model, compressed 8x with calibration on its test digits' first half."""
    import torch

    import tnlib.nn

    mlp = tnlib.load_example_mlp()
    layers: list[torch.nn.Module] = []
    for k, (w, b) in enumerate(zip(mlp.weights, mlp.biases)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.astype(np.float64)))
            linear.bias.copy_(torch.from_numpy(b.astype(np.float64)))
        layers += [linear] if k == len(mlp.weights) - 1 else [linear, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers)
    x = torch.from_numpy(mlp.x_test[: len(mlp.x_test) // 2].astype(np.float64))
    _, reports = tnlib.nn.compress(net, compression=8, calibration=list(x.split(64)), allocation="global")
    tnlib.nn.plot_compression(reports).savefig(path, dpi=100)
    for report in reports:
        print(report)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images"
    for p in build(target):
        print(f"wrote {p}")
