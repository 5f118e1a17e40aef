"""The whole pretrained Silero VAD (STFT basis, four Conv1d, LSTMCell) by stored bytes: rounding, GPTQ, compress.

Every weight matrix of the six layers (a convolution's kernel as its ``out x in * taps`` matrix, the cell's
``weight_ih`` and ``weight_hh``; 308,096 weights, 1.2 MB in float32; the 1 x 128 output convolution stays
dense) is stored in the same bytes by every method, at the bytes of round-to-nearest int4 and int3 (one scale per
64 weights, or per row where 64 does not divide a row: ``conv1``'s 387 columns) and at 2.5 bits per weight
(int2 for the plain methods): round-to-nearest (no calibration), GPTQ in each matrix's recorded input Gram (the
patch Gram of a convolution), and ``tnlib.nn.compress(bytes=...)`` (every matrix's form chosen on held-out
calibration rows; convolutions become ``QuantizedConv1d``, the cell a ``QuantizedLSTMCell``), uniform and global.
Task and data as ``bench_silero.py`` (ROC-AUC of speech per 32 ms chunk on held-out voices and words; agreement
with the dense model's probabilities); 5 calibration draws, GPTQ and compress paired over them. One thread.

    python benchmarks/bench_silero_bytes.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))

from bench_silero import LAYERS, calibration_crops, interval, task  # noqa: E402
from bytes_whole import rtn  # noqa: E402
from pretrained import auc  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn  # noqa: E402

BUDGETS = (("int4", 4), ("int3", 3), ("2.5 bits", 2))


def plain(bits: int):
    """The plain width of a budget as a function of a matrix's shape: groups of 64, or one scale per row."""
    return lambda shape: tnlib.Quantization(bits, 64 if shape[1] % 64 == 0 else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_test, secs, draws = (1, 3.0, 1) if args.quick else (6, 12.0, 5)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    dense, test, labels, cal, p_dense = task(n_test, secs)
    params = [f"{n}.{w}" for n in LAYERS for w, _ in dense.get_submodule(n).named_parameters()
              if w.startswith("weight")]
    shapes = {p: tuple(dense.get_parameter(p).reshape(dense.get_parameter(p).shape[0], -1).shape) for p in params}
    weights = sum(a * b for a, b in shapes.values())

    def evaluate(model):
        with torch.no_grad():
            p = model(test).numpy()
        return auc(p, labels), float(np.abs(p - p_dense).mean())

    print(f"### The whole Silero VAD by stored bytes ({n_test} test streams of {secs:.0f} s; {draws} calibration "
          "draws)\n")
    print(f"Dense: {weights:,} weights in {len(params)} matrices ({4 * weights:,} bytes), ROC-AUC "
          f"{auc(p_dense, labels):.4f}\n")
    print("| budget | method | stored bits per weight | compress (s) | ROC-AUC | agreement with dense |")
    print("|---|---|---|---|---|---|")
    for label, bits in BUDGETS:
        width = plain(bits)
        total = sum(int(a * b * 2.5 / 8) if label == "2.5 bits" else width((a, b)).stored_bytes((a, b))
                    for a, b in shapes.values())
        model, stored = rtn(dense, params, width)
        aucs, agree = evaluate(model)
        print(f"| {label} | round-to-nearest | {8 * stored / weights:.2f} | - | {aucs:.4f} | {agree:.4f} |")
        results: dict[str, list[tuple[float, float]]] = {}
        seconds: dict[str, list[float]] = {}
        for draw in range(draws):
            batches = calibration_crops(cal, draw)
            grams = tnlib.nn.record_grams(dense, LAYERS, batches)
            model, stored = rtn(dense, params, width, grams)
            results.setdefault("GPTQ", []).append(evaluate(model))
            seconds.setdefault("GPTQ", []).append(0.0)
            for allocation in ("uniform", "global"):
                t0 = time.perf_counter()
                small, reports = tnlib.nn.compress(dense, bytes=total, layers=LAYERS, calibration=batches,
                                                   allocation=allocation)
                seconds.setdefault(allocation, []).append(time.perf_counter() - t0)
                results.setdefault(allocation, []).append(evaluate(small))
                if allocation == "global" and draw == 0:
                    spent = sum(r.bytes_after for r in reports)
                    forms = "; ".join(f"{r.name}: {', '.join(r.layouts)}" for r in reports)
        for method, key, bits_used in (("GPTQ", "GPTQ", 8 * stored / weights),
                                       ("compress(bytes), uniform", "uniform", None),
                                       ("compress(bytes), global", "global", 8 * spent / weights)):
            aucs_, agree_ = zip(*results[key])
            used = f"{bits_used:.2f}" if bits_used is not None else "<= budget"
            took = "-" if key == "GPTQ" else f"{np.mean(seconds[key]):.1f}"
            print(f"| {label} | {method} | {used} | {took} | {interval(aucs_)} | {interval(agree_)} |", flush=True)
        for key in ("global", "uniform"):
            paired = [a[0] - b[0] for a, b in zip(results[key], results["GPTQ"])]
            print(f"| {label} | ROC-AUC of compress(bytes), {key} - GPTQ, paired over the draws | | | "
                  f"{interval(paired)} | |", flush=True)
        print(f"\n(global, first draw, {label}: {forms})\n")


if __name__ == "__main__":
    main()
