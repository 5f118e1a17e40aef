"""Experiment 8d - a pretrained recurrent encoder-decoder by stored bytes: rounding, GPTQ, SVD + int4, compress.

g2p-en's grapheme-to-phoneme model (``_g2p.py``, from its wheel): a GRU(256)
encoder, a GRU(256) decoder and a ``Linear(256, 74)`` head, five weight
matrices (805,376 weights, 3.2 MB in float32; the two embeddings stay float32
and are not counted). Every method stores those matrices in the same bytes
(packed integer codes, float16 scales and zero points; biases stay float32),
at the three budgets of experiment 8c: the bytes of round-to-nearest int4
and int3 with one scale per 64 weights, and 2.5 bits per weight. Methods,
each given the same share of bytes per matrix unless said:

* **round-to-nearest** (no calibration) at the plain width that fits;
* **GPTQ** (Frantar et al. 2023), the same widths, each matrix's rounding
  compensated in its calibration Gram (the recurrent ones: the GRU's inputs
  and its hidden states, as ``tnlib.nn.record_grams`` records them);
* **SVD + int4**: the activation-whitened truncated SVD, both factors rounded
  to int4 per 32, at the largest rank that fits;
* **compress(bytes=)**, ``tnlib.nn.compress`` with a byte budget and the same
  calibration: each of the five matrices' form (8/4/3/2-bit, or a low-rank
  split with 4- or 8-bit factors, GPTQ-fitted) chosen on held-out calibration
  rows, the GRUs becoming ``QuantizedGRU`` layers, with ``allocation="uniform"``
  and ``"global"``.

Metrics on CMUdict words the calibration never saw: the phoneme error rate
(edits to the nearest reference pronunciation) of the greedy transcription,
and the share of words transcribed exactly as the dense model does. Each
seed is one random draw of the calibration words; calibrated methods are
compared paired over draws with Student-t intervals.

    python benchmarks/experiments/bytes_recurrent.py            # full: ~5 min on 1 core
    python benchmarks/experiments/bytes_recurrent.py --smoke    # under a minute
"""

from __future__ import annotations

import time
import warnings

import _g2p
import numpy as np
import torch
from _common import claim_line, fmt, interval_cell, parse, rows_for, table, write_report
from bytes_whole import BUDGETS, CALIBRATED, METHODS, budget_bytes, compare_at_budgets, forms_line, rtn, svd_int4

import tnlib.nn as tn

NAME = "bytes_recurrent"
FULL = dict(seeds=5, g2p_test=1500, g2p_pool=3000, g2p_cal=512)
SMOKE = dict(seeds=1, g2p_test=60, g2p_pool=200, g2p_cal=64)
MODEL = "g2p-en GRU encoder-decoder (pretrained)"
PARAMS = ["encoder.weight_ih_l0", "encoder.weight_hh_l0", "decoder.weight_ih_l0", "decoder.weight_hh_l0",
          "fc.weight"]


def g2p_rows(cfg, seeds) -> list[dict]:
    dense = _g2p.G2P.pretrained()
    vocab, refs = _g2p.words(cfg["g2p_test"])
    pool, _ = _g2p.words(cfg["g2p_pool"], offset=cfg["g2p_test"])
    groups = _g2p.batches(vocab)
    reference = _g2p.transcribe(dense, groups)
    shapes = {p: tuple(dense.get_parameter(p).shape) for p in PARAMS}
    weights = sum(a * b for a, b in shapes.values())

    def evaluate(model) -> dict:
        said = _g2p.transcribe(model, groups)
        return dict(per=_g2p.phoneme_error_rate(said, refs),
                    agreement=float(np.mean([a == b for a, b in zip(said, reference)])))

    rows = [dict(model=MODEL, method="dense", budget="float32", seed=0, stored=4 * weights, seconds=0.0,
                 **evaluate(dense))]

    def add(method, label, seed, model, stored, seconds):
        rows.append(dict(model=MODEL, method=method, budget=label, seed=seed, stored=stored, seconds=seconds,
                         **evaluate(model)))
        print(f"{method} at {label}, draw {seed}: {rows[-1]}", flush=True)

    for label, q in BUDGETS:
        add("round-to-nearest", label, 0, *rtn(dense, PARAMS, q), 0.0)
    for seed in seeds:
        rng = np.random.default_rng(500 + seed)
        picked = [pool[k] for k in rng.choice(len(pool), cfg["g2p_cal"], replace=False)]
        batches = [letters for _, letters in _g2p.batches(picked)]
        grams = tn.record_grams(dense, _g2p.LAYERS, batches)
        for label, q in BUDGETS:
            start = time.perf_counter()
            model, stored = rtn(dense, PARAMS, q, grams)
            add("GPTQ", label, seed, model, stored, time.perf_counter() - start)
            add("SVD + int4", label, seed, *svd_int4(dense, PARAMS, label, q, grams), 0.0)
            total = sum(budget_bytes(label, q, s) for s in shapes.values())
            for allocation in ("uniform", "global"):
                start = time.perf_counter()
                small, reports = tn.compress(dense, bytes=total, layers=_g2p.LAYERS, calibration=batches,
                                             allocation=allocation)
                add(f"compress(bytes), {allocation}", label, seed, small, sum(r.bytes_after for r in reports),
                    time.perf_counter() - start)
                rows[-1]["forms"] = forms_line(reports)
    return rows


def report(rows) -> tuple[list[str], list[str]]:
    mine = [r for r in rows if r["model"] == MODEL]
    dense = next(r for r in mine if r["method"] == "dense")
    labels = [label for label, _ in BUDGETS]
    seeds = len({r["seed"] for r in mine if r["method"] in CALIBRATED})

    def cell(method, label, key, digits=3):
        return interval_cell([r[key] for r in mine if r["method"] == method and r["budget"] == label], digits)

    def bits(method, label):
        vals = [r["stored"] for r in mine if r["method"] == method and r["budget"] == label]
        return f"{8 * np.mean(vals) / (dense['stored'] / 4):.2f} b" if vals else "-"

    out = [f"Dense: {dense['stored']:,} bytes of float32 weights in the five matrices; phoneme error rate "
           f"{fmt(dense['per'], digits=4)}. Cells: mean [95 % t-interval over {seeds} calibration draw(s)] for the "
           "calibrated methods, one run for round-to-nearest; the bits per weight each method stored in brackets.",
           ""]
    for key, name in (("per", "phoneme error rate (lower is better)"),
                      ("agreement", "words transcribed as the dense model does")):
        body = [[m, *[f"{cell(m, b, key)} ({bits(m, b)})" for b in labels]] for m in METHODS]
        out += [f"**{name}**", "", table(["method", *[f"at the bytes of {b}" for b in labels]], body), ""]
    forms = [[m, *[next((r.get("forms", "") for r in mine if r["method"] == m and r["budget"] == b), "-")
                   for b in labels]] for m in CALIBRATED[1:]]
    out += ["**Forms compress chose (first draw; one per matrix: the two GRUs' four and the head)**", "",
            table(["method", *labels], forms), ""]
    body = [[m, *[cell(m, b, "seconds", 2) for b in labels]] for m in CALIBRATED]
    out += ["**Time (s, one thread)**", "", table(["method", *labels], body), ""]

    def claim(a, b, what):
        return claim_line(f"{MODEL}: phoneme error rate of {a} vs {b} at equal bytes",
                          compare_at_budgets(mine, a, b, labels, "per", higher_is_better=False), what)

    claims = [
        claim("compress(bytes), global", "GPTQ", "a byte budget beats GPTQ at equal stored bytes"),
        claim("compress(bytes), uniform", "GPTQ", "per-matrix byte budgets beat GPTQ at equal stored bytes"),
        claim("compress(bytes), global", "SVD + int4",
              "a byte budget beats the activation-whitened SVD with int4 factors at equal stored bytes"),
        claim("compress(bytes), global", "compress(bytes), uniform", "one global byte budget beats per-matrix shares"),
    ]
    return out, claims


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    rows = rows_for(args, NAME, lambda: g2p_rows(cfg, args.seeds))
    body, claims = report(rows)
    intro = [
        "Post-training compression of a whole pretrained recurrent encoder-decoder judged in stored bytes. "
        f"Calibration draws: {cfg['g2p_cal']} CMUdict words, disjoint from the {cfg['g2p_test']} test words (the "
        "model was trained on CMUdict, so the test words are unseen by the calibration, not by the model's own "
        "training). In the claims, budgets 1, 2, 3 are the bytes of int4 g64, int3 g64 and 2.5 bits per weight.",
        "",
    ]
    write_report(args, NAME, "8d. Compressing a whole pretrained recurrent model by stored bytes", intro + body,
                 claims)


if __name__ == "__main__":
    main()
