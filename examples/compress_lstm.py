"""tnlib's main job end to end: train an LSTM, compress it into MPOs next to pruning, compare.

Trains an LSTM (8 -> 128) on scikit-learn's bundled handwritten digits, read
row by row (8 steps of 8 pixels); then, at several compression ratios of the
LSTM weights, replaces both weight matrices by truncated MPOs
(:meth:`tnlib.nn.MPOLSTM.from_lstm`) and, for comparison, prunes the same
number of weights by magnitude; each is then fine-tuned briefly. Prints a
table of weights kept and test accuracy, and saves the Schmidt spectra and
entanglement entropy per bond of the trained recurrent matrix ``W_hh`` to
``lstm_spectrum.png``. About a minute on one CPU core.

    python examples/compress_lstm.py [--ratios 4 16 64] [--plot lstm_spectrum.png]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

import tnlib
import tnlib.nn as tn


class Classifier(nn.Module):
    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        self.lstm, self.head = lstm, nn.Linear(lstm.hidden_size, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int = 0) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(X).argmax(-1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[4, 16, 64], help="target compression ratios")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the dense LSTM")
    parser.add_argument("--finetune", type=int, default=5, help="fine-tuning epochs after compression")
    parser.add_argument("--plot", default="lstm_spectrum.png", help="where to save the spectrum/entropy figure")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TNLIB_THREADS", "1")))
    torch.manual_seed(0)
    start = time.perf_counter()

    digits = load_digits()
    X = torch.tensor(digits.images / 16.0, dtype=torch.float32)  # (1797, 8 rows, 8 pixels)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = order[:1400], order[1400:]
    Xtr, ytr, Xte, yte = X[train_idx], y[train_idx], X[test_idx], y[test_idx]

    dense = Classifier(nn.LSTM(8, 128, batch_first=True))
    train(dense, Xtr, ytr, args.epochs, 5e-3)
    n_dense = tn.count_parameters(dense.lstm)
    print(
        f"dense LSTM(8 -> 128) on sklearn digits: {n_dense:,} weights, test accuracy {accuracy(dense, Xte, yte):.4f} "
        f"({len(Xtr)} train / {len(Xte)} test images, {time.perf_counter() - start:.1f} s)\n"
    )

    header = f"{'ratio':>6} {'method':<22} {'weights':>8} {'kept':>7} {'acc. compressed':>16} {'acc. fine-tuned':>16}"
    print(header)
    print("-" * len(header))
    for ratio in args.ratios:
        settings = tn.match_compression(dense.lstm, ratio)
        bond = settings["mpo"]["bond_dim"]
        mpo = copy.deepcopy(dense)
        mpo.lstm = tn.MPOLSTM.from_lstm(dense.lstm, tnlib.Truncation(max_bond=bond))
        pruned = copy.deepcopy(dense)
        tn.prune_magnitude(pruned.lstm, settings["pruning"]["sparsity"])
        for name, model in ((f"MPO, bond {bond}", mpo), ("magnitude pruning", pruned)):
            before = accuracy(model, Xte, yte)
            train(model, Xtr, ytr, args.finetune, 2e-3)
            n = tn.count_parameters(model.lstm)
            print(
                f"{ratio:>5g}x {name:<22} {n:>8,} {n / n_dense:>7.1%} "
                f"{before:>16.4f} {accuracy(model, Xte, yte):>16.4f}"
            )

    w_hh = dense.lstm.weight_hh_l0.detach().double().numpy()  # (512, 128): rows (4 gates x 128), columns 128
    spec = tnlib.spectrum(w_hh, out_dims=(8, 8, 8), in_dims=(4, 4, 8))
    print("\nW_hh (512 x 128) as an MPO with out_dims (8, 8, 8), in_dims (4, 4, 8):")
    print(spec)
    try:
        fig = spec.plot()
    except ImportError:
        print("matplotlib is not installed (pip install 'tnlib[plot]'): no figure drawn")
    else:
        fig.savefig(args.plot, dpi=110)
        print(f"saved the Schmidt spectra and entropy per bond to {args.plot}")
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
