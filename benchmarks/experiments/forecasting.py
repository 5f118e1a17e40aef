"""Experiment 2 - sequence prediction: an LSTM forecaster of half-hourly electricity demand (taylor).

Next-value forecasting from a window of 48 half-hours (one day) with the
value and calendar features (time of day, day of week); chronological 80/20
split; RMSE in megawatts, next to the last-value and seasonal-naive forecasts.
Methods at matched parameter counts, on the equal-budget protocol of
``_lstm_sweep.run`` (same steps at the final size, learning rate chosen on a
validation part), 5 seeds.

    python benchmarks/experiments/forecasting.py            # full: ~1 h 20 min on 1 core
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
            limit=None, seeds=5, lr_grid=(2e-3, 5e-3, 1.2e-2), val_fraction=0.1)
SMOKE = dict(ratios=(8,), epochs=1, finetune_epochs=1, lr=5e-3, finetune_lr=2e-3, batch_size=128, limit=700,
             lr_grid=(5e-3, 1.2e-2), val_fraction=0.1)


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
                    make_head=lambda h: nn.Linear(h, 1), loss=nn.functional.mse_loss, evaluate=rmse,
                    chronological=True)
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
    n_val = round(cfg["val_fraction"] * len(data.X_train))
    write_report(args, NAME, "2. Sequence prediction: LSTM forecaster on taylor electricity demand",
                 [f"{len(data.X_train)} training windows (the last {n_val} of them held out for validation) and "
                  f"{len(data.X_test)} test windows (chronological split; seeds vary the initialisation and the "
                  f"batch order, the split is fixed by time). Equal budgets: every model trains "
                  f"{cfg['epochs']} epochs at its final size (gradual pruning ramps its sparsity over "
                  f"{cfg['finetune_epochs']} epochs first); Adam, learning rate chosen per method and ratio from "
                  f"{list(cfg['lr_grid'])} by validation MSE on the first seed; MSE on the standardised series. "
                  f"The last-value forecast scores RMSE {naive:,.0f} MW, the seasonal-naive forecast (same "
                  f"half-hour last week) {weekly:,.0f} MW.", "", *sections],
                 claims)


if __name__ == "__main__":
    main()
