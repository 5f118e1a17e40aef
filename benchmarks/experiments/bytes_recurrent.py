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
* **magnitude pruning** (no calibration): float16 values of the largest
  weights beside a one-bit-per-weight mask, as many as the bytes hold;
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
the teacher-forced perplexity of the first reference pronunciation (the
decoder fed the reference phonemes), and the share of words transcribed
exactly as the dense model does. Each
seed is one random draw of the calibration words; calibrated methods are
compared paired over draws with Student-t intervals.

    python benchmarks/experiments/bytes_recurrent.py            # full: ~5 min on 1 core
    python benchmarks/experiments/bytes_recurrent.py --smoke    # under a minute
"""

from __future__ import annotations

import warnings

import _g2p
import torch
from _common import claim_line, fmt, parse, rows_for, write_report
from bytes_whole import BUDGETS, byte_sweep, byte_tables, compare_at_budgets

NAME = "bytes_recurrent"
FULL = dict(seeds=5, g2p_test=1500, g2p_pool=3000, g2p_cal=512)
SMOKE = dict(seeds=1, g2p_test=60, g2p_pool=200, g2p_cal=64)
MODEL = "g2p-en GRU encoder-decoder (pretrained)"
PARAMS = ["encoder.weight_ih_l0", "encoder.weight_hh_l0", "decoder.weight_ih_l0", "decoder.weight_hh_l0",
          "fc.weight"]


def g2p_rows(cfg, seeds) -> list[dict]:
    dense, calibration, evaluate = _g2p.setup(cfg)
    return byte_sweep(MODEL, dense, _g2p.LAYERS, PARAMS, seeds, lambda seed: calibration(seed, 500), evaluate)


def report(rows) -> tuple[list[str], list[str]]:
    mine = [r for r in rows if r["model"] == MODEL]
    dense = next(r for r in mine if r["method"] == "dense")
    labels = [label for label, _ in BUDGETS]
    out = byte_tables(mine, (("per", "phoneme error rate (lower is better)"),
                             ("perplexity", "teacher-forced perplexity of the reference pronunciations (lower is "
                                            "better)"),
                             ("agreement", "words transcribed as the dense model does")),
                      f"the five matrices (the two GRUs' four and the head; dense phoneme error rate "
                      f"{fmt(dense['per'], digits=4)}, teacher-forced perplexity {fmt(dense['perplexity'], digits=4)})")

    def claim(a, b, what, metric="per", name="phoneme error rate"):
        return claim_line(f"{MODEL}: {name} of {a} vs {b} at equal bytes",
                          compare_at_budgets(mine, a, b, labels, metric, higher_is_better=False), what)

    claims = [
        claim("compress(bytes), global", "GPTQ", "a byte budget beats GPTQ at equal stored bytes"),
        claim("compress(bytes), uniform", "GPTQ", "per-matrix byte budgets beat GPTQ at equal stored bytes"),
        claim("compress(bytes), global", "SVD + int4",
              "a byte budget beats the activation-whitened SVD with int4 factors at equal stored bytes"),
        claim("compress(bytes), global", "compress(bytes), uniform", "one global byte budget beats per-matrix shares"),
        claim("compress(bytes), global", "GPTQ", "a byte budget beats GPTQ at equal stored bytes", "perplexity",
              "teacher-forced perplexity"),
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
