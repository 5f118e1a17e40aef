"""Experiment 1 - sequence classification: an LSTM on MNIST-5k rows and on JapaneseVowels.

Accuracy vs parameters for dense, MPO (scratch and decomposed), gradual
magnitude pruning, low-rank, MPS-TT and a small dense LSTM at matched
parameter counts, on the equal-budget protocol of ``_lstm_sweep.run`` (same
steps at the final size, learning rate per method chosen on a validation
part), 5 seeds, the train/test split redrawn per seed. Claim checked (Gao et
al. 2020): MPO beats magnitude pruning at the same parameter count.

    python benchmarks/experiments/classification.py            # full: ~1 h 35 min on a shared core
    python benchmarks/experiments/classification.py --smoke    # seconds
"""

from __future__ import annotations

from typing import Callable

import _data
from _common import accuracy, parse, rows_for, write_report
from _lstm_sweep import Task, report, run
from torch import nn

NAME = "classification"
FULL = dict(ratios=(2, 8, 32, 100), epochs=8, finetune_epochs=3, lr=5e-3, finetune_lr=2e-3, batch_size=100,
            mnist_limit=None, vowels_epochs=25, vowels_finetune_epochs=8, seeds=5,
            lr_grid=(3e-3, 1e-2, 3e-2), lr_at=8, val_fraction=0.1)
SMOKE = dict(ratios=(8,), epochs=1, finetune_epochs=1, lr=5e-3, finetune_lr=2e-3, batch_size=100,
             mnist_limit=300, vowels_epochs=1, vowels_finetune_epochs=1, lr_grid=(5e-3, 1e-2), lr_at=8,
             val_fraction=0.1)


def classification_task(name: str, data: Callable[[int], tuple], hidden: int, classes: int, seed: int = 0,
                        num_layers: int = 1) -> Task:
    """The task on split ``seed`` of ``data(seed) = (X, y, X_test, y_test)``; later seeds redraw it."""
    X, y, Xt, yt = data(seed)
    return Task(name=name, X_train=X, Y_train=y, hidden_size=hidden,
                make_head=lambda h: nn.Linear(h, classes), loss=nn.functional.cross_entropy,
                evaluate=lambda model: {"accuracy": accuracy(model, Xt, yt)},
                redraw=lambda s: classification_task(name, data, hidden, classes, s, num_layers),
                num_layers=num_layers)


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    mnist, vowels = "MNIST-5k rows (28 steps x 28 pixels, LSTM 128)", "JapaneseVowels (UEA, 12 channels, LSTM 64)"
    def experiment() -> list[dict]:
        digits = lambda s: _data.mnist(limit=cfg["mnist_limit"], split_seed=s)  # noqa: E731
        rows = run(classification_task(mnist, digits, 128, 10), cfg["ratios"], args.seeds, cfg, experiment=NAME)
        vcfg = dict(cfg, epochs=cfg["vowels_epochs"], finetune_epochs=cfg["vowels_finetune_epochs"], batch_size=30)
        rows += run(classification_task(vowels, _data.japanese_vowels, 64, 9), cfg["ratios"], args.seeds, vcfg,
                    experiment=NAME)
        return rows

    rows = rows_for(args, NAME, experiment)
    sections, claims = report(args, rows, [mnist, vowels], name=NAME)
    write_report(args, NAME, "1. Sequence classification: LSTM on MNIST-5k rows and JapaneseVowels",
                 [protocol(cfg), "", *sections],
                 claims)


def protocol(cfg: dict) -> str:
    """The paragraph that states how the rows were trained."""
    if not cfg.get("lr_grid"):
        return ("Dense LSTM trained first; every compressed model at a target ratio has at most dense/ratio "
                "weights (measured; biases and the classifier head are dense everywhere). "
                f"Scratch models train {cfg['epochs']} epochs ({cfg['vowels_epochs']} on JapaneseVowels), "
                f"models that start from the dense one fine-tune {cfg['finetune_epochs']} "
                f"({cfg['vowels_finetune_epochs']}). Adam, lr {cfg['lr']} / {cfg['finetune_lr']}.")
    return ("Dense LSTM trained first; every compressed model at a target ratio has at most dense/ratio LSTM "
            "weights (measured). Equal budgets: every model trains the dense model's "
            f"{cfg['epochs']} epochs ({cfg['vowels_epochs']} on JapaneseVowels) at its final size; gradual "
            f"pruning ramps its sparsity over {cfg['finetune_epochs']} ({cfg['vowels_finetune_epochs']}) epochs "
            f"first. Adam; each method's learning rate is chosen from {list(cfg['lr_grid'])} by validation loss "
            f"at {cfg['lr_at']:g}x on the first seed and reused at every ratio and seed; the validation part is "
            f"a random {cfg['val_fraction']:.0%} of the training data. Every seed redraws the train/test split "
            "(MNIST-5k: 4,000 / 1,000 random digits; JapaneseVowels: both archive files pooled and split "
            "270 / 370 stratified by speaker, the archive's sizes) as well as the initialisation and batch order.")


if __name__ == "__main__":
    main()
