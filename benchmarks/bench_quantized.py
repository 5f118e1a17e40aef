"""The inference cost of ``tnlib.nn.QuantizedLinear`` (codes dequantized on every call) against ``nn.Linear``.

A random ``nn.Linear(N, M)`` is quantized round-to-nearest at 8 bits (one scale per row) and at 4, 3 and 2 bits (one
scale per 64 inputs); each layer is called in eager ``torch.no_grad()`` at batch 1 and 32, best of 20 calls, and
its time divided by the dense layer's measured in the same run. The quantized layer never keeps its dense weight, so
each call pays for unpacking the codes and forming the weight: the price of the smaller memory. One thread.

    python benchmarks/bench_quantized.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of
from threadpoolctl import threadpool_limits

import tnlib
import tnlib.nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    shapes = [(64, 256)] if args.quick else [(768, 768), (768, 3072), (3072, 768)]
    forms = [(8, None), (4, 64), (3, 64), (2, 64)]
    print("### QuantizedLinear against nn.Linear, eager, ms per call (ratio to dense)\n")
    print("| out x in | batch | dense (ms) | " + " | ".join(f"int{b}" for b, _ in forms) + " |")
    print("|---|---|---|" + "---|" * len(forms))
    for out, n_in in shapes:
        dense = torch.nn.Linear(n_in, out)
        layers = [tnlib.nn.QuantizedLinear.from_linear(dense, tnlib.Quantization(bits=b, group_size=g))
                  for b, g in forms]
        for batch in (1, 32):
            x = torch.randn(batch, n_in)
            with torch.no_grad():
                reference = best_of(lambda: dense(x), 20)
                times = [best_of(lambda q=q: q(x), 20) for q in layers]
            cells = " | ".join(f"{1e3 * t:.2f} ({t / reference:.0f}x)" for t in times)
            print(f"| {out} x {n_in} | {batch} | {1e3 * reference:.3f} | {cells} |")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
