"""What a calibrated ``compress`` costs against the whitened truncated SVD of the same matrices, same run.

An MLP (``w -> w -> 4w -> w``, float32, random weights) with 16 calibration batches of 64 correlated rows is
compressed by ``tnlib.nn.compress`` with calibration, at 8x fewer weights (uniform) and at 3 bits per weight
(``bytes=``, global), and each time is divided by the reference: per weight matrix, the input Gram of the same
calibration rows (recorded by ``tnlib.nn.record_grams``), a factor ``C = L L^T`` and the SVD of ``W L`` truncated to
the rank of 8x fewer weights (the whitened truncation of SVD-LLM, NumPy, float64), once with ``L`` from the
eigendecomposition and once from the Cholesky factorization (SVD-LLM's own whitening, the faster). Either is the
floor a calibrated search could reach if it tried nothing but the truncated SVD. One BLAS thread.

    python benchmarks/bench_compress_time.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import print_against_whitened_svd, whitened_svd_seconds
from threadpoolctl import threadpool_limits

import tnlib.nn


def mlp(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 4 * width),
                               torch.nn.ReLU(), torch.nn.Linear(4 * width, width)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    width = 128 if args.quick else 768
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = mlp(width)
    mix = torch.randn(width, width) / width**0.5
    batches = [torch.randn(64, width) @ mix for _ in range(16)]
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    references = {how: whitened_svd_seconds(model, names, batches, 1 / 8, how) for how in ("eigh", "cholesky")}
    rows = []
    for label, kwargs in (("compression=8, uniform", dict(compression=8)),
                          ("bytes=3 bits per weight, global", dict(bytes=weights * 3 // 8, allocation="global"))):
        t0 = time.perf_counter()
        tnlib.nn.compress(model, calibration=batches, **kwargs)
        rows.append((label, time.perf_counter() - t0))
    print(f"### calibrated compress of an MLP {width}-{width}-{4 * width}-{width} against the whitened SVD\n")
    print_against_whitened_svd(references, rows)


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
