"""Silero VAD v6 (16 kHz), a pretrained voice-activity detector shipped in the ``silero-vad`` package.

The weights are those of the package's TorchScript model ``silero_vad.jit``
(MIT licence, Silero Team), read from its state dict; this module is an eager
PyTorch implementation of the published architecture so that its recurrent
cell can be swapped: an STFT as
a strided convolution (256-point, hop 128), four convolutions with ReLU, an
``nn.LSTMCell(128, 128)`` run once per 32 ms chunk (512 samples plus 64 of
context), and a 1x1 convolution with a sigmoid. ``check_against_package``
compares it with the package's own TorchScript model.
"""

from __future__ import annotations

import importlib.resources

import torch
from torch import nn

RATE = 16_000
CHUNK = 512
CONTEXT = 64


_KEYS = {
    "stft.forward_basis_buffer": "stft_conv.weight",
    **{f"encoder.{k}.reparam_conv.{p}": f"conv{k + 1}.{p}" for k in range(4) for p in ("weight", "bias")},
    **{f"decoder.rnn.{p}": f"lstm_cell.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    "decoder.decoder.2.weight": "final_conv.weight",
    "decoder.decoder.2.bias": "final_conv.bias",
}


def _package_model() -> torch.jit.ScriptModule:
    path = str(importlib.resources.files("silero_vad.data").joinpath("silero_vad.jit"))
    return torch.jit.load(path).eval()


class SileroVAD(nn.Module):
    """``forward(audio (B, T)) -> speech probability per 32 ms chunk (B, ceil(T / 512))``."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)

    @classmethod
    def pretrained(cls) -> SileroVAD:
        state = _package_model()._model.state_dict()  # the 16 kHz model
        model = cls()
        model.load_state_dict({ours: state[theirs] for theirs, ours in _KEYS.items()})
        return model.eval()

    def encode(self, chunk: torch.Tensor) -> torch.Tensor:
        """One chunk with its context ``(B, 576)`` -> the cell's input ``(B, 128)``."""
        x = nn.functional.pad(chunk.unsqueeze(1), (0, 64), mode="reflect")
        x = self.stft_conv(x)
        x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        return x.squeeze(-1)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.final_conv(torch.relu(h).unsqueeze(-1))).squeeze(1).mean(dim=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch, length = audio.shape
        chunks = -(-length // CHUNK)
        audio = nn.functional.pad(audio, (CONTEXT, chunks * CHUNK - length))
        h = c = audio.new_zeros(batch, 128)
        probs = []
        for k in range(chunks):
            x = self.encode(audio[:, k * CHUNK : k * CHUNK + CHUNK + CONTEXT])
            out = self.lstm_cell(x, (h, c))
            h, c = out
            probs.append(self.decode(h))
        return torch.stack(probs, dim=1)


def check_against_package(audio: torch.Tensor) -> float:
    """Largest difference between this model and the package's TorchScript model on ``audio`` (1-D)."""
    jit = _package_model()
    ours = SileroVAD.pretrained()
    with torch.no_grad():
        theirs = [float(jit(chunk.unsqueeze(0), RATE)) for chunk in audio.split(CHUNK) if len(chunk) == CHUNK]
        mine = ours(audio[: len(theirs) * CHUNK].unsqueeze(0))[0]
    return float((mine - torch.tensor(theirs)).abs().max())
