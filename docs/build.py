"""Build the documentation's figures from the shipped trained layer.

    python docs/build.py [OUTDIR]     # default: docs/images

Writes ``spectrum.png`` (Schmidt values per bond and the entropy profile of
the exact MPO of the digits MLP's 512 x 512 hidden layer) and ``tradeoff.png``
(its relative error against compression ratio). The test suite runs this
script, so the figures cannot go stale silently.
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
    paths = [outdir / "spectrum.png", outdir / "tradeoff.png"]
    spec.plot().savefig(paths[0], dpi=100)
    curve.plot().savefig(paths[1], dpi=100)
    print(spec)
    print(curve)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images"
    for p in build(target):
        print(f"wrote {p}")
