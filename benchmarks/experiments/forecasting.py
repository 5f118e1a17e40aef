"""Experiment 2 - sequence prediction: an LSTM forecaster of half-hourly electricity demand (taylor).

Next-value forecasting from a window of 48 half-hours (one day) with the
value and calendar features (time of day, day of week); chronological 80/20
split; RMSE in megawatts, next to the naive last-value forecast. Methods at
matched parameter counts as in ``_lstm_sweep.py``.

    python benchmarks/experiments/forecasting.py            # full: ~15 min on 1 core
    python benchmarks/experiments/forecasting.py --smoke
"""

from __future__ import annotations

import _data
import torch
from _common import parse, predict, rows_for, write_report
from _lstm_sweep import Task, report, run
from torch import nn

NAME = "forecasting"
TASK = "taylor (window 48, LSTM 64)"
FULL = dict(ratios=(2, 8, 32, 100), epochs=8, finetune_epochs=3, lr=5e-3, finetune_lr=2e-3, batch_size=128,
            limit=None)
SMOKE = dict(ratios=(8,), epochs=1, finetune_epochs=1, lr=5e-3, finetune_lr=2e-3, batch_size=128, limit=700)


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    data = _data.taylor(window=48, limit=cfg["limit"])
    # The naive forecast: the last observed value of the window.
    naive = float(torch.sqrt(torch.mean((data.X_test[:, -1, :1] - data.y_test) ** 2))) * data.scale
    # The seasonal-naive forecast: the same half-hour one week earlier.
    weekly = _data.taylor_seasonal_naive(window=48, limit=cfg["limit"])
    def experiment() -> list[dict]:
        def rmse(model: nn.Module) -> dict[str, float]:
            err = predict(model, data.X_test) - data.y_test
            return {"rmse": float(torch.sqrt(torch.mean(err**2))) * data.scale}

        task = Task(name=TASK, X_train=data.X_train, Y_train=data.y_train, hidden_size=64,
                    make_head=lambda h: nn.Linear(h, 1), loss=nn.functional.mse_loss, evaluate=rmse)
        rows = run(task, cfg["ratios"], args.seeds, cfg, experiment=NAME)
        return rows

    rows = rows_for(args, NAME, experiment)
    sections, claims = report(args, rows, [TASK], name=NAME, metric="rmse", higher_is_better=False,
                              ylabel="test RMSE (MW), lower is better",
                              baseline={TASK: (f"seasonal naive, same time last week ({weekly:,.0f} MW)", weekly)})
    dense = [r["rmse"] for r in rows if r["method"] == "dense"]
    dense_rmse = sum(dense) / len(dense)
    claims.insert(0, f"The dense LSTM's RMSE {dense_rmse:,.0f} MW against {naive:,.0f} MW for the last-value "
                     f"forecast: " + ("it beats persistence." if dense_rmse < naive else
                                      "it does NOT beat persistence in this configuration."))
    beat_weekly = [f"{m} at {r:g}x" for m, r in sorted({
        (q["method"], float(q["ratio"])) for q in rows if q["method"] != "dense"
        and all(float(p["rmse"]) < weekly for p in rows if p["method"] == q["method"] and p["ratio"] == q["ratio"])
    })]
    claims.insert(1, f"Seasonal naive (the same half-hour one week earlier) scores {weekly:,.0f} MW; every seed of "
                     f"these compressed models beats it: {', '.join(beat_weekly) or 'none'}; the others do not "
                     f"beat the simplest forecaster on every seed.")
    write_report(args, NAME, "2. Sequence prediction: LSTM forecaster on taylor electricity demand",
                 [f"{len(data.X_train)} training and {len(data.X_test)} test windows (chronological split). "
                  f"Scratch models train {cfg['epochs']} epochs, models from the dense one fine-tune "
                  f"{cfg['finetune_epochs']}; Adam, lr {cfg['lr']} / {cfg['finetune_lr']}, MSE on the "
                  f"standardised series. The last-value forecast scores RMSE {naive:,.0f} MW, the seasonal-naive "
                  f"forecast (same half-hour last week) {weekly:,.0f} MW.", "", *sections],
                 claims)


if __name__ == "__main__":
    main()
