"""PyTorch layers: MPOLinear against nn.Linear, MPOLSTM against nn.LSTM, same run.

* ``MPOLinear`` forward and forward+backward time against ``nn.Linear`` for
  1024 x 1024 and 4096 x 4096 layers at bond 8, 16, 32 and batch 1 and 64,
  with the FLOP ratio (MPO forward FLOPs / dense FLOPs).
* ``MPOLSTM`` inference time per sequence step against ``nn.LSTM`` at hidden
  256 and 1024 (input = hidden), at the bond dims that give about 10x and 50x
  fewer weight parameters (measured from the modules).

float32, CPU, one thread (``torch.set_num_threads(1)``).

    python benchmarks/bench_nn.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of
from torch import nn

import tnlib
import tnlib.nn as tn
from tnlib._apply import apply_subscripts, best_split


def mpo_flops(layer, batch):
    cores = list(layer.cores)
    subs = apply_subscripts(len(cores))
    chain = tnlib.contraction_plan(subs, (batch, *layer.in_dims), *(c.shape for c in cores)).flops
    return min(chain, best_split(cores, batch)[1])


def linear_rows(sizes, bonds, batches, repeat):
    print("| layer | bond | batch | params ratio | FLOP ratio | fwd MPO / dense | fwd+bwd MPO / dense |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        dense = nn.Linear(n, n)
        for bond in bonds:
            layer = tn.MPOLinear(n, n, bond_dim=bond)
            ratio = n * n / sum(c.numel() for c in layer.cores)
            for batch in batches:
                x = torch.randn(batch, n, requires_grad=True)
                with torch.no_grad():
                    layer(x)
                    t_d = best_of(lambda: dense(x), repeat)
                    t_m = best_of(lambda: layer(x), repeat)
                t_db = best_of(lambda: dense(x).sum().backward(), repeat)
                t_mb = best_of(lambda: layer(x).sum().backward(), repeat)
                flops = mpo_flops(layer, batch) / (2 * batch * n * n)
                print(
                    f"| {n}x{n} | {bond} | {batch} | {ratio:.0f}x | {flops:.3f} | {t_m / t_d:.2f} "
                    f"({t_m * 1e3:.2f} ms vs {t_d * 1e3:.2f}) | {t_mb / t_db:.2f} |",
                    flush=True,
                )


def lstm_rows(hiddens, ratios, steps, repeat):
    print("\n| hidden | target ratio | bond | measured ratio | nn.LSTM ms/step | MPOLSTM ms/step | MPO / dense |")
    print("|---|---|---|---|---|---|---|")
    for h in hiddens:
        lstm = nn.LSTM(h, h)
        dense = tn.count_parameters(lstm)
        x = torch.randn(steps, 1, h)
        for target in ratios:
            bond = tn.match_compression(lstm, target)["mpo"]["bond_dim"]
            model = tn.MPOLSTM(h, h, bond_dim=bond, num_cores=3)
            measured = dense / tn.count_parameters(model)
            with torch.no_grad():
                t_d = best_of(lambda: lstm(x), repeat) / steps
                t_m = best_of(lambda: model(x), repeat) / steps
            print(
                f"| {h} | {target}x | {bond} | {measured:.1f}x | {t_d * 1e3:.3f} | {t_m * 1e3:.3f} | {t_m / t_d:.2f} |",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("# PyTorch layers, float32, CPU, 1 thread (ratios < 1: MPO faster)\n")
    if args.quick:
        linear_rows([256], [8], [1, 64], 3)
        lstm_rows([64], [10], 20, 2)
    else:
        linear_rows([1024, 4096], [8, 16, 32], [1, 64], 5)
        lstm_rows([256, 1024], [10, 50], 50, 3)


if __name__ == "__main__":
    main()
