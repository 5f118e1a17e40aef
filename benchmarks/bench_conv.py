"""Convolutions as Tucker-2 networks: time per batch against the dense nn.Conv2d, at several ranks.

    python benchmarks/bench_conv.py [--quick]

A ``TuckerConv2d`` runs three convolutions (1x1, the small core, 1x1) and
never forms the kernel, so its multiply-adds per output pixel fall with the
ranks. Times are the best of several runs, one thread, measured in the same
process as the dense layer; reported as ratios.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
from _timing import best_of  # noqa: E402

import tnlib.nn as tn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    channels, size, batch, repeat = (64, 16, 4, 3) if args.quick else (256, 32, 8, 7)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
    x = torch.randn(batch, channels, size, size)
    with torch.no_grad():
        dense = best_of(lambda: conv(x), repeat)
        print(f"## Tucker-2 convolutions ({channels} -> {channels}, 3x3, {batch} x {size} x {size} inputs, 1 thread)\n")
        print("| ranks (out, in) | weights kept | multiply-adds / dense | time / dense | relative kernel error |")
        print("|---|---|---|---|---|")
        for r in (channels // 2, channels // 4, channels // 8):
            layer = tn.TuckerConv2d.from_conv2d(conv, ranks=(r, r)).eval()
            t = best_of(lambda: layer(x), repeat)
            err = float((layer.dense_weight() - conv.weight).norm() / conv.weight.norm())
            print(f"| ({r}, {r}) | {layer.num_weights / conv.weight.numel():.3f} | "
                  f"{layer.macs_per_pixel / conv.weight.numel():.3f} | {t / dense:.2f} | {err:.3f} |")
    print(f"\nDense: {dense * 1e3:.2f} ms per batch. A trained kernel keeps more of its norm at a given rank than "
          "this random one (the error column is the worst case).")


if __name__ == "__main__":
    main()
