"""Compressed convolutions against dense: one layer as a Tucker-2 network at several ranks, and a whole CNN
compressed 2x and 4x, time per batch (eager and compiled, batch 1 and 32) against the dense model.

    python benchmarks/bench_conv.py [--quick]

A ``TuckerConv2d`` runs three convolutions (1x1, the small core, 1x1) and
never forms the kernel, so its multiply-adds per output pixel fall with the
ranks; an ``MPOConv2d`` of the truncated SVD's layout runs as two (the
``kh x kw`` one to ``rank`` channels, then 1x1). The CNN table also times the
compressed model with its kernels formed from the cores on every call (how an
MPO convolution ran before it used the low-rank form). Times are the best of
several runs, one thread, measured in the same process as the dense model;
reported as ratios.
"""

from __future__ import annotations

import argparse
import copy
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
from _timing import best_of  # noqa: E402
from torch import nn  # noqa: E402

import tnlib.nn as tn  # noqa: E402


def cnn(width: int) -> nn.Sequential:
    """A plain image classifier: four 3x3 convolutions (two strided), ReLU, global pooling, a linear head."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10)).eval()


def low_rank(layer: tn.MPOConv2d) -> bool:
    """Whether the layer's kernel is the truncated SVD's layout (it then runs as two convolutions)."""
    (o0, *o1), (i0, *i1) = layer.out_dims, layer.in_dims
    return len(o1) == 1 and ((o1[0] == 1 and i0 == 1) or (o0 == 1 and i1[0] == 1))


def kernel_formed(layer: nn.Module) -> None:
    """Make an MPO convolution form its kernel from the cores on every call (the form before the low-rank path)."""
    conv = torch.nn.functional.conv2d
    layer.forward = lambda x: conv(x, layer.kernel(), layer.bias, layer.stride, layer.padding, layer.dilation)


def whole_cnn(quick: bool) -> None:
    width, size, repeat = (16, 32, 3) if quick else (64, 64, 7)
    torch.manual_seed(0)
    dense = cnn(width)
    print(f"\n## A CNN compressed (widths {width}-{4 * width}, {size} x {size} inputs, 1 thread)\n")
    print("Per batch, no_grad; ratios to the dense model in the same run (below 1: faster). `compress` without "
          "calibration, random weights (a trained kernel keeps more of its norm at a rank).\n")
    print("| model | batch | dense eager (ms) | eager / dense | compiled / dense compiled | "
          "kernel formed per call / dense | layers as low-rank pairs |")
    print("|---|---|---|---|---|---|---|")
    compiled_dense = torch.compile(dense)
    for ratio in (2, 4):
        small, reports = tn.compress(dense, compression=ratio)
        pairs = sum(1 for m in small.modules() if isinstance(m, tn.MPOConv2d) and low_rank(m))
        convs = sum(1 for m in small.modules() if isinstance(m, (tn.MPOConv2d, tn.TuckerConv2d)))
        compiled = torch.compile(small)
        formed = copy.deepcopy(small)
        for m in formed.modules():
            if isinstance(m, tn.MPOConv2d):
                kernel_formed(m)
        for batch in (1, 32):
            x = torch.randn(batch, 3, size, size)
            with torch.no_grad():
                for f in (dense, small, compiled_dense, compiled, formed):
                    f(x)  # warm: compile, cached forms
                t_dense = best_of(lambda: dense(x), repeat)
                t_small = best_of(lambda: small(x), repeat)
                t_cd = best_of(lambda: compiled_dense(x), repeat)
                t_cs = best_of(lambda: compiled(x), repeat)
                t_formed = best_of(lambda: formed(x), repeat)
            print(f"| {ratio}x | {batch} | {t_dense * 1e3:.2f} | {t_small / t_dense:.2f} | {t_cs / t_cd:.2f} | "
                  f"{t_formed / t_dense:.2f} | {pairs} of {convs} |")


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
    whole_cnn(args.quick)


if __name__ == "__main__":
    main()
