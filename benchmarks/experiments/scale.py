"""Experiment 10 - a 2-layer LSTM of hidden 512 on JapaneseVowels at 100x: does the picture hold at scale?

The same equal-budget protocol as experiments 1-3 (``_lstm_sweep.run``:
every model the dense model's epochs at its final size, gradual pruning's
ramp first, each method's learning rate chosen from a grid on a validation
part of the first seed, the train/test split redrawn per seed), on a
2-layer ``nn.LSTM(12 -> 512 -> 512)`` (3.17 M weights) compressed 100x:
MPO from scratch and decomposed, gradual pruning, low-rank and a small dense
2-layer LSTM of the same weight count. MPS-TT is left out here to fit the
run into half an hour on one core (it is in experiments 1-5).

    python benchmarks/experiments/scale.py            # full: ~40 min on a shared core
    python benchmarks/experiments/scale.py --smoke
"""

from __future__ import annotations

import _data
from _common import parse, rows_for, write_report
from _lstm_sweep import report, run
from classification import classification_task

NAME = "scale"
METHODS = ("MPO (scratch)", "MPO (decomposed)", "pruning (gradual)", "low-rank", "small dense (scratch)")
FULL = dict(ratios=(100,), epochs=12, finetune_epochs=4, lr=3e-3, finetune_lr=1e-3, batch_size=30, seeds=5,
            lr_grid=(1e-3, 3e-3, 1e-2), lr_at=100, val_fraction=0.1, hidden=512)
SMOKE = dict(ratios=(8,), epochs=1, finetune_epochs=1, lr=3e-3, finetune_lr=1e-3, batch_size=30,
             lr_grid=(3e-3,), lr_at=8, val_fraction=0.1, hidden=32)


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    name = f"JapaneseVowels (2-layer LSTM {cfg['hidden']})"

    def experiment() -> list[dict]:
        task = classification_task(name, _data.japanese_vowels, cfg["hidden"], 9, num_layers=2)
        return run(task, cfg["ratios"], args.seeds, cfg, METHODS, experiment=NAME)

    rows = rows_for(args, NAME, experiment)
    sections, claims = report(args, rows, [name], name=NAME)
    claims = [c for c in claims if "MPS-TT" not in c]
    write_report(args, NAME, "10. Scale: a 2-layer LSTM of hidden 512 at 100x",
                 [f"JapaneseVowels (split redrawn per seed: 270 training series, 10 % of them for validation, "
                  f"370 test), 2-layer LSTM of hidden {cfg['hidden']}. Equal budgets: every model trains "
                  f"{cfg['epochs']} epochs at its final size (gradual pruning ramps its sparsity over "
                  f"{cfg['finetune_epochs']} epochs first); Adam, each method's learning rate chosen from "
                  f"{list(cfg['lr_grid'])} by validation loss on the first seed.", "", *sections], claims)


if __name__ == "__main__":
    main()
