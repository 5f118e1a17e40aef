"""Experiment 3 - speech enhancement: an LSTM mask estimator on synthesised noisy speech.

English utterances from ``espeak-ng`` (training and test sets disjoint in
voices - accent and variant - and in words) mixed with white or pink noise
(training SNR uniform in 0-10 dB; test at 0 and 5 dB). STFT at 16 kHz (256
samples, hop 128, 129 bins); input ``log(1 + 10|Y|)``; the LSTM (129 -> 128)
and a sigmoid head estimate the ideal ratio mask, applied to the noisy
magnitude with the noisy phase. Metrics on the test utterances: SI-SDR
improvement over the noisy input (dB), PESQ (wide band) and STOI.

Needs the Debian package espeak-ng: ``apt-get install -y espeak-ng``.

Equal-budget protocol of ``_lstm_sweep.run`` (same steps at the final size,
learning rate per method chosen on a validation part), 5 seeds; every seed
synthesises its own utterances (words, speaking rates, noise draws; the
voice split stays fixed).

    python benchmarks/experiments/speech.py            # full: ~1 h 15 min on 1 core
    python benchmarks/experiments/speech.py --smoke
"""

from __future__ import annotations

import _data
import numpy as np
import torch
from _common import parse, rows_for, write_report
from _lstm_sweep import Task, report, run
from pesq import pesq
from pystoi import stoi
from torch import nn

NAME = "speech"
TASK = "espeak-ng speech in white/pink noise (LSTM 128)"
FULL = dict(ratios=(4, 16, 64, 100), epochs=8, finetune_epochs=3, lr=5e-3, finetune_lr=2e-3, batch_size=32,
            n_train=64, n_test=24, seeds=5, lr_grid=(1e-2, 3e-2, 1e-1), lr_at=16, val_fraction=0.1)
SMOKE = dict(ratios=(16,), epochs=1, finetune_epochs=1, lr=5e-3, finetune_lr=2e-3, batch_size=32,
             n_train=6, n_test=2, lr_grid=(5e-3, 1e-2), lr_at=16, val_fraction=0.1)


def scores(clean: np.ndarray, estimate: np.ndarray) -> tuple[float, float, float]:
    return (_data.si_sdr(clean, estimate), float(pesq(_data.RATE, clean, estimate, "wb")),
            float(stoi(clean, estimate, _data.RATE, extended=False)))


def speech_task(cfg: dict, seed: int, noisy: dict[int, np.ndarray]) -> Task:
    """The task on seed ``seed``'s utterances; the noisy inputs' scores go to ``noisy[seed]``."""
    data = _data.speech(n_train=cfg["n_train"], n_test=cfg["n_test"], seed=seed)
    noisy[seed] = np.array([scores(c, n) for c, n in zip(data.test_clean, data.test_noisy)])
    feats = [torch.tensor(_data.features(n))[None] for n in data.test_noisy]

    def evaluate(model: nn.Module) -> dict[str, float]:
        model.eval()
        out = []
        with torch.no_grad():
            for clean, noisy_x, f in zip(data.test_clean, data.test_noisy, feats):
                mask = model(f)[0].numpy()
                enhanced = _data.istft(mask * _data.stft(noisy_x), len(noisy_x))
                out.append(scores(clean, enhanced))
        s = np.array(out)
        return {"si_sdr_improvement": float(np.mean(s[:, 0] - noisy[seed][:, 0])),
                "pesq": float(s[:, 1].mean()), "stoi": float(s[:, 2].mean())}

    return Task(name=TASK, X_train=data.X_train, Y_train=data.M_train, hidden_size=128,
                make_head=lambda h: nn.Sequential(nn.Linear(h, data.X_train.shape[-1]), nn.Sigmoid()),
                loss=nn.functional.mse_loss, evaluate=evaluate, readout="all",
                redraw=lambda s: speech_task(cfg, s, noisy))


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    noisy: dict[int, np.ndarray] = {}

    def experiment() -> list[dict]:
        return run(speech_task(cfg, args.seeds[0], noisy), cfg["ratios"], args.seeds, cfg, experiment=NAME)

    rows = rows_for(args, NAME, experiment)
    for seed in sorted({int(r["seed"]) for r in rows} - set(noisy)):
        speech_task(cfg, seed, noisy)  # --report-only: the noisy inputs' scores of every seed in the rows
    noisy_scores = np.concatenate([noisy[s] for s in sorted(noisy)])
    sections, claims = report(args, rows, [TASK], name=NAME, metric="si_sdr_improvement",
                              ylabel="SI-SDR improvement (dB), higher is better", extra_metrics=("pesq", "stoi"))
    claims.append(f"Noisy test input ({len(noisy)} seeds' test sets): PESQ {noisy_scores[:, 1].mean():.2f}, STOI "
                  f"{noisy_scores[:, 2].mean():.3f} (SI-SDR {noisy_scores[:, 0].mean():.1f} dB).")
    write_report(args, NAME, "3. Speech enhancement: LSTM mask estimator on synthesised noisy speech",
                 [f"Per seed {cfg['n_train']} training utterances (chunks of 100 frames) and {cfg['n_test']} test "
                  "utterances by other voices saying other words, synthesised afresh for every seed. "
                  f"Equal budgets: every model trains the dense model's {cfg['epochs']} epochs at its final size "
                  f"(gradual pruning ramps its sparsity over {cfg['finetune_epochs']} epochs first); Adam, MSE on "
                  f"the mask; each method's learning rate chosen from {list(cfg['lr_grid'])} by validation MSE at "
                  f"{cfg['lr_at']:g}x on the first seed (a random {cfg['val_fraction']:.0%} of the training "
                  f"chunks), reused at every ratio and seed. Noisy test input: PESQ "
                  f"{noisy_scores[:, 1].mean():.2f}, STOI {noisy_scores[:, 2].mean():.3f}.", "", *sections], claims)


if __name__ == "__main__":
    main()
