"""Experiment 1 - sequence classification: an LSTM on MNIST-5k rows and on JapaneseVowels.

Accuracy vs parameters for dense, MPO (scratch and decomposed), gradual
magnitude pruning, low-rank and MPS-TT at matched parameter counts
(protocol: ``_lstm_sweep.py``). Claim checked (Gao et al. 2020): MPO
beats magnitude pruning at the same parameter count.

    python benchmarks/experiments/classification.py            # full: ~20 min on 1 core
    python benchmarks/experiments/classification.py --smoke    # seconds
"""

from __future__ import annotations

import _data
from _common import accuracy, parse, rows_for, write_report
from _lstm_sweep import Task, report, run
from torch import nn

NAME = "classification"
FULL = dict(ratios=(2, 8, 32, 100), epochs=8, finetune_epochs=3, lr=5e-3, finetune_lr=2e-3, batch_size=100,
            mnist_limit=None, vowels_epochs=25, vowels_finetune_epochs=8)
SMOKE = dict(ratios=(8,), epochs=1, finetune_epochs=1, lr=5e-3, finetune_lr=2e-3, batch_size=100,
             mnist_limit=300, vowels_epochs=1, vowels_finetune_epochs=1)


def classification_task(name: str, X, y, Xt, yt, hidden: int, classes: int) -> Task:
    return Task(name=name, X_train=X, Y_train=y, hidden_size=hidden,
                make_head=lambda h: nn.Linear(h, classes), loss=nn.functional.cross_entropy,
                evaluate=lambda model: {"accuracy": accuracy(model, Xt, yt)})


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    mnist, vowels = "MNIST-5k rows (28 steps x 28 pixels, LSTM 128)", "JapaneseVowels (UEA, 12 channels, LSTM 64)"
    def experiment() -> list[dict]:
        X, y, Xt, yt = _data.mnist(limit=cfg["mnist_limit"])
        rows = run(classification_task(mnist, X, y, Xt, yt, 128, 10), cfg["ratios"], args.seeds, cfg, experiment=NAME)
        Xv, yv, Xvt, yvt = _data.japanese_vowels()
        vcfg = dict(cfg, epochs=cfg["vowels_epochs"], finetune_epochs=cfg["vowels_finetune_epochs"], batch_size=30)
        rows += run(classification_task(vowels, Xv, yv, Xvt, yvt, 64, 9), cfg["ratios"], args.seeds, vcfg,
                    experiment=NAME)
        return rows

    rows = rows_for(args, NAME, experiment)
    sections, claims = report(args, rows, [mnist, vowels], name=NAME)
    write_report(args, NAME, "1. Sequence classification: LSTM on MNIST-5k rows and JapaneseVowels",
                 ["Dense LSTM trained first; every compressed model at a target ratio has at most "
                  "dense/ratio weights (measured; biases and the classifier head are dense everywhere). "
                  f"Scratch models train {cfg['epochs']} epochs ({cfg['vowels_epochs']} on JapaneseVowels), "
                  f"models that start from the dense one fine-tune {cfg['finetune_epochs']} "
                  f"({cfg['vowels_finetune_epochs']}). Adam, lr {cfg['lr']} / {cfg['finetune_lr']}.", "", *sections],
                 claims)


if __name__ == "__main__":
    main()
