"""The deploy walk of docs/deploy.md, timed: a trained model to an onnxruntime session at a free batch.

A 3-layer MLP (1024 -> 1024 -> 1024 -> 10, float32) is compressed 8x by ``tnlib.nn.compress`` (with 16
calibration batches of 64 rows), saved with ``tnlib.nn.save``, loaded into a fresh architecture, exported with
``tnlib.nn.export_onnx`` (batch free) and opened in onnxruntime. The first table gives each step's time and the
file it writes; the second the latency of one forward pass at batches 1, 16 and 256: eager torch (``no_grad``)
and onnxruntime, dense and compressed, each as a ratio to the dense eager model timed in the same run (best of
20 calls). One BLAS thread, one onnxruntime thread.

    python benchmarks/bench_deploy.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from _timing import best_of
from threadpoolctl import threadpool_limits

import tnlib.nn


def mlp(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, 10)).eval()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    width, batches = (256, (1, 16)) if args.quick else (1024, (1, 16, 256))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dense = mlp(width)
    calibration = [torch.randn(64, width) for _ in range(16)]
    folder = Path(tempfile.mkdtemp())
    (small, _), t_compress = timed(lambda: tnlib.nn.compress(dense, compression=8, calibration=calibration))
    small.eval()
    _, t_save = timed(lambda: tnlib.nn.save(small, folder / "small.safetensors"))
    back, t_load = timed(lambda: tnlib.nn.load(folder / "small.safetensors", model=mlp(width)))
    back.eval()
    example = (torch.randn(1, width),)
    small_onnx, t_export = timed(lambda: tnlib.nn.export_onnx(back, example, folder / "small.onnx"))
    dense_onnx, t_export_dense = timed(lambda: tnlib.nn.export_onnx(dense, example, folder / "dense.onnx"))
    small_session, t_session = timed(lambda: session(small_onnx))
    dense_session = session(dense_onnx)
    torch.save(dense.state_dict(), folder / "dense.pt")

    def size(name: str) -> str:
        return f"{os.path.getsize(folder / name) / 1e6:.2f} MB"

    print(f"### the deploy walk: MLP {width} -> {width} -> {width} -> 10, compressed 8x (calibrated)\n")
    print("| step | time (s) | writes |")
    print("|---|---|---|")
    print(f"| `compress(compression=8, calibration=16 batches)` | {t_compress:.2f} | - |")
    print(f"| `tnlib.nn.save` | {t_save:.3f} | small.safetensors {size('small.safetensors')} "
          f"(dense state_dict {size('dense.pt')}) |")
    print(f"| `tnlib.nn.load` into a fresh model | {t_load:.3f} | - |")
    print(f"| `export_onnx` (batch free) | {t_export:.2f} | small.onnx {size('small.onnx')} "
          f"(dense.onnx {size('dense.onnx')}, exported in {t_export_dense:.2f} s) |")
    print(f"| `onnxruntime.InferenceSession` | {t_session:.3f} | - |")

    print("\n### latency of one forward pass (best of 20), ratio to the dense eager model\n")
    print("| batch | dense eager (ms) | compressed eager | dense onnxruntime | compressed onnxruntime | "
          "max abs diff (ort vs eager) |")
    print("|---|---|---|---|---|---|")
    for b in batches:
        x = torch.randn(b, width)
        feed = {small_session.get_inputs()[0].name: x.numpy()}
        dense_feed = {dense_session.get_inputs()[0].name: x.numpy()}
        with torch.no_grad():
            base = best_of(lambda: dense(x), 20)
            eager = best_of(lambda: back(x), 20)
            want = back(x).numpy()
        ort_small = best_of(lambda: small_session.run(None, feed), 20)
        ort_dense = best_of(lambda: dense_session.run(None, dense_feed), 20)
        diff = float(np.abs(small_session.run(None, feed)[0] - want).max())
        print(f"| {b} | {1e3 * base:.3f} | {eager / base:.2f} | {ort_dense / base:.2f} | {ort_small / base:.2f} | "
              f"{diff:.1e} |")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
