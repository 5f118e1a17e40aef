"""Experiment 8 - compressing pretrained recurrent models after training: which method, at which size.

Two models, neither trained for compression:

* **Silero VAD v6**, a production voice-activity detector shipped pretrained
  in the ``silero-vad`` package (not trained here): its ``nn.LSTMCell(128, 128)``
  (``W_ih`` and ``W_hh``, each 512 x 128) runs once per 32 ms of audio. Task:
  speech / non-speech per chunk on streams of ``espeak-ng`` speech, silence
  and white or pink noise (5-20 dB); metric ROC-AUC against the clean
  speech's energy, and agreement (mean absolute difference of the speech
  probability) with the dense model.
* **An LSTM(28 -> 128) trained here** on MNIST-5k rows; metric test accuracy
  and agreement of the predicted class with the dense model.

Both recurrent matrices are compressed to 1/2, 1/4, 1/8 and 1/16 of their
stored weights by: truncated SVD; data-aware SVD (fitted to the layer's
outputs on unlabelled calibration inputs); magnitude pruning; MPO in the
default gate layout (Gao et al. 2020); MPO with layout search; MPO with
layout search and data-aware fitting. Each is evaluated as is and after a
short distillation against the dense model on the unlabelled calibration
inputs (``tnlib.nn.distill``, the same steps for every method).

    python benchmarks/experiments/pretrained.py            # full: ~20 min on 1 core
    python benchmarks/experiments/pretrained.py --smoke    # seconds
"""

from __future__ import annotations

import copy
import math

import _data
import _silero
import numpy as np
import torch
from _common import fmt, parse, plot_sweep, rows_for, seed_all, summarize, table, write_report
from torch import nn

import tnlib
import tnlib.nn as tn

NAME = "pretrained"
FULL = dict(ratios=(2, 4, 8, 16), vad_streams=8, vad_seconds=20.0, cal_streams=8, cal_seconds=12.0,
            distill_steps=60, distill_lr=1e-3, mnist_epochs=8, mnist_limit=None, cal_images=1000)
SMOKE = dict(ratios=(4,), vad_streams=2, vad_seconds=4.0, cal_streams=2, cal_seconds=4.0,
             distill_steps=3, distill_lr=1e-3, mnist_epochs=1, mnist_limit=300, cal_images=100)
METHODS = ("truncated SVD", "data-aware SVD", "magnitude pruning", "MPO default layout", "MPO layout search",
           "MPO search + data-aware")
VAD = "Silero VAD v6 (pretrained LSTMCell 128)"
MNIST = "LSTM 28->128 on MNIST-5k rows (trained here)"


# ----------------------------------------------------------------------------- data

def streams(n: int, seconds: float, vocab: list[str], voices: list[str], seed: int):
    """``n`` equal-length recordings of utterances, silences and noise; ``(audio (n, T), truth (n, chunks))``."""
    rng = np.random.default_rng(seed)
    length = int(seconds * _data.RATE)
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(3, 8)))) for _ in range(n * 6)]
    speech = _data.synthesise(texts, voices, seed)
    audio, truth = np.zeros((n, length)), np.zeros((n, length))
    k = 0
    for s in range(n):
        pos = int(rng.uniform(0.2, 1.0) * _data.RATE)
        while k < len(speech) and pos + len(speech[k]) < length:
            clean = speech[k] * rng.uniform(0.3, 1.0)
            audio[s, pos : pos + len(clean)] = clean
            truth[s, pos : pos + len(clean)] = np.abs(clean)
            pos += len(clean) + int(rng.uniform(0.3, 1.5) * _data.RATE)
            k += 1
        level = np.sqrt(np.mean(audio[s] ** 2) / 10 ** (rng.uniform(5, 20) / 10))
        audio[s] += level * _data.noise(("white", "pink")[s % 2], length, rng)
    chunks = length // _silero.CHUNK
    env = truth[:, : chunks * _silero.CHUNK].reshape(n, chunks, _silero.CHUNK)
    rms = np.sqrt(np.mean(env**2, axis=-1))
    labels = rms > 0.05 * rms.max(axis=1, keepdims=True)
    return torch.tensor(audio[:, : chunks * _silero.CHUNK], dtype=torch.float32), labels


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels.ravel(), scores.ravel()))


# ----------------------------------------------------------------------------- compression of one matrix

def compressed_weights(w: torch.Tensor, gram: torch.Tensor, ratio: float, method: str, gates: tuple[int, ...]):
    """``(kind, value, params)``: an MPO (kind "mpo") or a pruning mask (kind "mask")."""
    budget = max(1, int(w.numel() / ratio))
    w64 = w.detach().double()
    t = tnlib.Truncation(max_params=budget)
    m, n = w.shape
    if method == "magnitude pruning":
        keep = torch.zeros(w.numel(), dtype=torch.bool)
        keep[w.detach().abs().flatten().argsort(descending=True)[:budget]] = True
        return "mask", keep.reshape(w.shape), budget
    if method in ("truncated SVD", "data-aware SVD"):
        mpo = tnlib.MPO.from_matrix(w64, (m, 1), (1, n), truncation=t,
                                    input_gram=gram if method == "data-aware SVD" else None)
    elif method == "MPO default layout":
        mpo = tnlib.MPO.from_matrix(w64, gates, tnlib.factorize(n, len(gates)), truncation=t)
    else:
        mpo = tnlib.MPO.from_matrix(w64, truncation=t,
                                    input_gram=gram if method == "MPO search + data-aware" else None)
    return "mpo", mpo, mpo.num_params


def compress_cell(cell: nn.Module, grams: dict, ratio: float, method: str, recurrent: bool) -> tuple[nn.Module, dict]:
    """The compressed copy of an ``nn.LSTMCell`` (or ``nn.LSTM``) and the errors of its two matrices."""
    names = ("weight_ih", "weight_hh") if not recurrent else ("weight_ih_l0", "weight_hh_l0")
    gates = tn.gate_layout(4, cell.input_size, cell.hidden_size, 3)
    out, mpos, stats = copy.deepcopy(cell), {}, dict(params=0, dense_params=0, weight_num=0.0, weight_den=0.0,
                                                     out_num=0.0, out_den=0.0)
    for wname in names:
        w, gram = getattr(cell, wname), grams[wname]
        kind, value, params = compressed_weights(w, gram, ratio, method, gates)
        w64 = w.detach().double()
        approx = w64 * value if kind == "mask" else value.to_matrix()
        if kind == "mask":
            nn.utils.prune.custom_from_mask(out, wname, value)
        else:
            mpos["cores_" + wname.removeprefix("weight_")] = value
        d = w64 - approx
        stats["params"] += params
        stats["dense_params"] += w.numel()
        stats["weight_num"] += float((d**2).sum())
        stats["weight_den"] += float((w64**2).sum())
        stats["out_num"] += float((d * (d @ gram)).sum())
        stats["out_den"] += float((w64 * (w64 @ gram)).sum())
    if mpos:
        out = tn.MPOLSTMCell.from_lstm_cell(cell, mpos=mpos) if not recurrent else tn.MPOLSTM.from_lstm(cell, mpos=mpos)
    errors = dict(params=stats["params"], dense_params=stats["dense_params"],
                  weight_error=math.sqrt(stats["weight_num"] / stats["weight_den"]),
                  output_error=math.sqrt(max(stats["out_num"], 0.0) / stats["out_den"]))
    return out, errors


# ----------------------------------------------------------------------------- the two models

def vad_rows(cfg, seeds) -> list[dict]:
    half = len(_data.WORDS) // 2
    test_audio, labels = streams(cfg["vad_streams"], cfg["vad_seconds"], _data.WORDS[half:], _data.TEST_VOICES, 11)
    cal_audio, _ = streams(cfg["cal_streams"], cfg["cal_seconds"], _data.WORDS[:half], _data.TRAIN_VOICES, 12)
    dense = _silero.SileroVAD.pretrained()
    with torch.no_grad():
        p_dense = dense(test_audio).numpy()
    rows = [dict(model=VAD, method="dense", ratio=1.0, distilled="no", seed=0, params=2 * 512 * 128,
                 auc=auc(p_dense, labels), agreement=0.0, weight_error=0.0, output_error=0.0)]
    grams = tn.record_grams(dense, ["lstm_cell"], [cal_audio])["lstm_cell"]
    crop = 2 * _data.RATE // _silero.CHUNK * _silero.CHUNK

    def crops(seed: int, count: int = 32) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, cal_audio.shape[1] - crop, (count,), generator=gen)
        picks = torch.randint(0, cal_audio.shape[0], (count,), generator=gen)
        return [torch.stack([cal_audio[int(p), int(s):int(s) + crop] for p, s in zip(picks[i:i + 8], starts[i:i + 8])])
                for i in range(0, count, 8)]

    for ratio in cfg["ratios"]:
        for method in METHODS:
            cell, errors = compress_cell(dense.lstm_cell, grams, ratio, method, recurrent=False)
            model = copy.deepcopy(dense)
            model.lstm_cell = cell
            with torch.no_grad():
                p = model(test_audio).numpy()
            base = dict(model=VAD, method=method, ratio=float(ratio), **errors)
            rows.append(dict(base, distilled="no", seed=0, auc=auc(p, labels),
                             agreement=float(np.abs(p - p_dense).mean())))
            for seed in seeds:
                seed_all(seed)
                student = copy.deepcopy(model)
                for prm in student.parameters():
                    prm.requires_grad_(False)
                for prm in student.lstm_cell.parameters():
                    prm.requires_grad_(True)
                tn.distill(student, dense, crops(seed), cfg["distill_steps"], lr=cfg["distill_lr"])
                with torch.no_grad():
                    q = student.eval()(test_audio).numpy()
                rows.append(dict(base, distilled="yes", seed=seed, auc=auc(q, labels),
                                 agreement=float(np.abs(q - p_dense).mean())))
    return rows


class RowLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(28, 128, batch_first=True)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def mnist_rows(cfg, seeds) -> list[dict]:
    from _common import accuracy, fit

    X, y, Xt, yt = _data.mnist(limit=cfg["mnist_limit"])
    seed_all(0)
    dense = RowLSTM()
    fit(dense, X, y, nn.functional.cross_entropy, epochs=cfg["mnist_epochs"], lr=5e-3, batch_size=100, seed=0,
        desc="dense")
    with torch.no_grad():
        ref = dense(Xt).argmax(-1)
    rows = [dict(model=MNIST, method="dense", ratio=1.0, distilled="no", seed=0, params=512 * 28 + 512 * 128,
                 accuracy=accuracy(dense, Xt, yt), agreement=1.0, weight_error=0.0, output_error=0.0)]
    cal = X[: cfg["cal_images"]]
    grams = tn.record_grams(dense, ["rnn"], [cal])["rnn"]
    for ratio in cfg["ratios"]:
        for method in METHODS:
            rnn, errors = compress_cell(dense.rnn, grams, ratio, method, recurrent=True)
            model = copy.deepcopy(dense)
            model.rnn = rnn
            base = dict(model=MNIST, method=method, ratio=float(ratio), **errors)
            with torch.no_grad():
                pred = model(Xt).argmax(-1)
            rows.append(dict(base, distilled="no", seed=0, accuracy=float((pred == yt).float().mean()),
                             agreement=float((pred == ref).float().mean())))
            for seed in seeds:
                seed_all(seed)
                student = copy.deepcopy(model)
                for prm in student.head.parameters():
                    prm.requires_grad_(False)
                gen = torch.Generator().manual_seed(seed)
                batches = [cal[torch.randint(0, len(cal), (100,), generator=gen)] for _ in range(8)]
                tn.distill(student, dense, batches, cfg["distill_steps"], lr=cfg["distill_lr"])
                with torch.no_grad():
                    pred = student.eval()(Xt).argmax(-1)
                rows.append(dict(base, distilled="yes", seed=seed, accuracy=float((pred == yt).float().mean()),
                                 agreement=float((pred == ref).float().mean())))
    return rows


# ----------------------------------------------------------------------------- report

def section(args, rows, model: str, metric: str, label: str) -> tuple[list[str], list[str]]:
    mine = [r for r in rows if r["model"] == model]
    dense = next(r for r in mine if r["method"] == "dense")
    ratios = sorted({r["ratio"] for r in mine if r["method"] != "dense"})
    claims: list[str] = []
    out = [f"### {model}", "", f"Dense: {label} {fmt(dense[metric])} with {dense['params']:,} recurrent "
           "weights. Cells: metric (stored weights); distilled: mean ± std over seeds.", ""]
    for distilled in ("no", "yes"):
        summary = summarize([r for r in mine if r["distilled"] == distilled and r["method"] != "dense"],
                            ["method", "ratio"], [metric, "agreement", "weight_error", "output_error"])
        by = {(s["method"], s["ratio"]): s for s in summary}
        body = []
        for method in METHODS:
            cells = []
            for r in ratios:
                s = by.get((method, r))
                std = s[metric + "_std"] if distilled == "yes" else None
                cells.append("-" if s is None else f"{fmt(s[metric], std)} ({s['params']:,.0f})")
            body.append([method, *cells])
        when = "after distillation" if distilled == "yes" else "post-training, no data but calibration"
        out += [f"**{label}, {when}**",
                "", table(["method", *[f"1/{r:g} of the weights" for r in ratios]], body), ""]
        if distilled == "no":
            body = [[m, *[f"{by[(m, r)]['weight_error']:.3f} / {by[(m, r)]['output_error']:.3f}"
                          if (m, r) in by else "-" for r in ratios]] for m in METHODS]
            out += ["Relative error of the recurrent weights / of their outputs on the calibration inputs:", "",
                    table(["method", *[f"1/{r:g}" for r in ratios]], body), ""]
            for r in ratios:
                best = max(METHODS, key=lambda m: by[(m, r)][metric] if (m, r) in by else -1)
                claims.append(f"{model}, 1/{r:g} of the weights, no training: best {label} by {best} "
                              f"({fmt(by[(best, r)][metric])}; truncated SVD {fmt(by[('truncated SVD', r)][metric])}, "
                              f"MPO default layout {fmt(by[('MPO default layout', r)][metric])}, "
                              f"magnitude pruning {fmt(by[('magnitude pruning', r)][metric])}); single run, "
                              "deterministic: a ranking, not a claim with an interval")
        name = f"{NAME}-{'vad' if model == VAD else 'mnist'}-{'distilled' if distilled == 'yes' else 'post'}.png"
        plot_sweep(args.out / name, summary, metric, METHODS, ylabel=label,
                   title=f"{model}: {'after distillation' if distilled == 'yes' else 'post-training'}",
                   dense={"params": dense["params"], metric: dense[metric], metric + "_std": 0.0},
                   xlabel="stored recurrent weights")
        out += [f"![{model}]({name})", ""]
    return out, claims


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    rows = rows_for(args, NAME, lambda: vad_rows(cfg, args.seeds) + mnist_rows(cfg, args.seeds))
    s1, c1 = section(args, rows, VAD, "auc", "ROC-AUC")
    s2, c2 = section(args, rows, MNIST, "accuracy", "accuracy")
    intro = [
        "Post-training compression of the two recurrent matrices of a pretrained model at a stored-weight "
        "budget of `numel / ratio` per matrix (pruning: non-zeros, without their index storage; biases, "
        "convolutions and heads stay dense). Calibration inputs are unlabelled and disjoint from the test "
        f"data (VAD: other voices and words; MNIST: {cfg['cal_images']} training images). Distillation: "
        f"{cfg['distill_steps']} Adam steps (lr {cfg['distill_lr']}) of mean squared error to the dense "
        "model's outputs on those inputs, only the recurrent weights trained, the same for every method.",
        "",
    ]
    write_report(args, NAME, "8. Compressing pretrained recurrent models: which method at which size",
                 intro + s1 + s2, c1 + c2)


if __name__ == "__main__":
    main()
