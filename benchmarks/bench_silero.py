"""Compressing the whole pretrained Silero VAD (STFT basis, four Conv1d, LSTMCell): time, stored weights, task metric.

The eager copy of the packaged model (``benchmarks/experiments/_silero.py``) is compressed with
``tnlib.nn.compress`` (searched layouts) at 2x and 4x, without and with calibration (unlabelled audio of other
words and voices; 5 draws of calibration crops, intervals over the draws), beside the simplest baselines at the
same stored weights per layer: magnitude pruning (nonzeros; their indices not counted), the truncated SVD of every
weight, and the activation-whitened SVD (the truncated SVD in the metric of the recorded input Gram). The task is
experiment 8's: speech / non-speech per 32 ms chunk on ``espeak-ng`` streams with white or pink noise; metric
ROC-AUC against the clean speech's energy, and agreement (mean absolute difference of the speech probability) with
the dense model. The 1 x 128 output convolution stays dense (too small for 2x). One thread.

    python benchmarks/bench_silero.py [--quick]
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

import _baselines  # noqa: E402
import _data  # noqa: E402
import _silero  # noqa: E402
from _common import t_interval  # noqa: E402
from pretrained import auc, streams  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn  # noqa: E402

LAYERS = ["stft_conv", "conv1", "conv2", "conv3", "conv4", "lstm_cell"]


def task(n_test: int, secs: float):
    """``(dense, test, labels, cal, p_dense)``: the pretrained model, ``n_test`` test streams of ``secs`` seconds
    (held-out words and voices) with their speech labels, the calibration streams (other words and voices) and the
    dense model's speech probabilities on the test streams."""
    half = len(_data.WORDS) // 2
    test, labels = streams(n_test, secs, _data.WORDS[half:], _data.TEST_VOICES, 11)
    cal, _ = streams(max(2, n_test), secs, _data.WORDS[:half], _data.TRAIN_VOICES, 12)
    dense = _silero.SileroVAD.pretrained()
    with torch.no_grad():
        p_dense = dense(test).numpy()
    return dense, test, labels, cal, p_dense


def calibration_crops(cal: torch.Tensor, draw: int) -> list[torch.Tensor]:
    """Calibration draw ``draw``: four batches of four random 2 s crops of the calibration streams."""
    crop = 2 * _data.RATE // _silero.CHUNK * _silero.CHUNK
    gen = torch.Generator().manual_seed(draw)
    starts = torch.randint(0, cal.shape[1] - crop, (16,), generator=gen)
    picks = torch.randint(0, cal.shape[0], (16,), generator=gen)
    return [torch.stack([cal[int(p), int(s):int(s) + crop] for p, s in zip(picks[i:i + 4], starts[i:i + 4])])
            for i in range(0, 16, 4)]


def interval(values):
    mean, lo, hi = t_interval(values)
    return f"{mean:.4f}" if lo != lo else f"{mean:.4f} [{lo:.4f}, {hi:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_test, secs, draws, ratios = (1, 3.0, 1, (4,)) if args.quick else (6, 12.0, 5, (2, 4))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    dense, test, labels, cal, p_dense = task(n_test, secs)
    print(f"### The whole Silero VAD compressed ({n_test} test streams of {secs:.0f} s; {draws} calibration draws)\n")
    print(f"Dense: {sum(p.numel() for n, p in dense.named_parameters() if 'weight' in n)} weights, "
          f"ROC-AUC {auc(p_dense, labels):.4f}\n")
    print("| ratio | method | calibration | stored weights (6 layers) | compress (s) | ROC-AUC | "
          "agreement with dense |")
    print("|---|---|---|---|---|---|---|")

    def row(ratio, method, calibrated, stored, seconds, aucs, agree):
        print(f"| {ratio}x | {method} | {calibrated} | {stored} | {seconds} | {interval(aucs)} | {interval(agree)} |",
              flush=True)

    def evaluate(model):
        with torch.no_grad():
            p = model(test).numpy()
        return auc(p, labels), float(np.abs(p - p_dense).mean())

    for ratio in ratios:
        model, stored = _baselines.pruned(dense, LAYERS, ratio)
        row(ratio, "magnitude pruning", "no", stored, "-", *zip(evaluate(model)))
        model, stored = _baselines.svd(dense, LAYERS, ratio)
        row(ratio, "truncated SVD", "no", stored, "-", *zip(evaluate(model)))
        results = []
        for draw in range(draws):
            grams = tnlib.nn.record_grams(dense, LAYERS, calibration_crops(cal, draw))
            model, stored = _baselines.svd(dense, LAYERS, ratio, grams)
            results.append(evaluate(model))
        row(ratio, "whitened SVD", "yes", stored, "-", *zip(*results))
        whitened = [r[0] for r in results]
        for calibrated in (False, True):
            aucs, agree, secs_taken, stored = [], [], [], 0
            for draw in range(draws if calibrated else 1):
                batches = calibration_crops(cal, draw)
                t0 = time.perf_counter()
                small, reports = tnlib.nn.compress(dense, compression=ratio, layers=LAYERS,
                                                   calibration=batches if calibrated else None)
                secs_taken.append(time.perf_counter() - t0)
                stored = sum(r.params_after for r in reports)
                with torch.no_grad():
                    p = small(test).numpy()
                aucs.append(auc(p, labels))
                agree.append(float(np.abs(p - p_dense).mean()))
            row(ratio, "tnlib compress (searched MPO)", "yes" if calibrated else "no", stored,
                f"{np.mean(secs_taken):.1f}", aucs, agree)
            if calibrated:
                paired = [a - b for a, b in zip(aucs, whitened)]
                print(f"| {ratio}x | ROC-AUC of tnlib compress - whitened SVD, paired over the draws | | | | "
                      f"{interval(paired)} | |", flush=True)


if __name__ == "__main__":
    main()
