"""PyTorch layers against their dense counterparts, same run: eager, compiled, and through ONNX.

* ``MPOLinear`` against ``nn.Linear`` at 1024^2 and 4096^2, bond 8-64,
  batch 1-256, inference (``no_grad``: the cached fast form) and
  forward+backward, beside the FLOP ratio of the route taken.
* ``MPOLSTM`` / ``MPOGRU`` against ``nn.LSTM`` / ``nn.GRU`` per sequence
  step at hidden 256, 512, 1024 (input = hidden), 4x, 10x and 50x fewer
  weights, batch 1 and 32, for the default 3-core layout and for the layout
  (2-4 cores) with the fewest FLOPs at batch 1; eager and
  ``torch.compile``d (inductor), with the FLOP ratio at batch 1.
* One LSTM step (``nn.LSTMCell`` / ``MPOLSTMCell``, the streaming form)
  exported with :func:`tnlib.nn.export_onnx` and run by onnxruntime:
  per-step time and file size against the dense export.

float32, CPU, one thread everywhere (torch, BLAS, onnxruntime). Ratios are
MPO / dense: below 1 the compressed model is faster.

    python benchmarks/bench_nn.py [--quick] [--no-compile] [--no-onnx]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import warnings

import torch
from _timing import best_of
from threadpoolctl import threadpool_limits
from torch import nn

import tnlib.nn as tn
from tnlib._apply import WeightPlan, chain_flops

KINDS = {"LSTM": (nn.LSTM, tn.MPOLSTM, 4), "GRU": (nn.GRU, tn.MPOGRU, 3)}


def plan_flops(cores, batch: int) -> float:
    """FLOPs of the route the inference plan takes at ``batch`` (forms built once, not counted)."""
    plan = WeightPlan([c.detach() for c in cores])
    chain, merged = chain_flops(plan.shapes, batch), 2.0 * batch * plan.macs_per_row
    with torch.no_grad():
        takes_chain = plan.contracts(torch.randn(batch, math.prod(s[2] for s in plan.shapes)))
    return chain if takes_chain else merged


def linear_rows(sizes, bonds, batches, repeat):
    print("## MPOLinear vs nn.Linear\n")
    print("| layer | bond | batch | weights ratio | FLOP ratio | no_grad MPO / dense | fwd+bwd MPO / dense |")
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
                flops = plan_flops(layer.cores, batch) / (2 * batch * n * n)
                print(
                    f"| {n}x{n} | {bond} | {batch} | {ratio:.0f}x | {flops:.3f} | {t_m / t_d:.2f} "
                    f"({t_m * 1e3:.3f} vs {t_d * 1e3:.3f} ms) | {t_mb / t_db:.2f} |",
                    flush=True,
                )


def weight_count(module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if "bias" not in n)


def bond_for(kind: str, hidden: int, ratio: float, num_cores: int) -> int | None:
    """The largest uniform bond whose MPO model has at most ``1 / ratio`` of the dense weights."""
    dense_cls, mpo_cls, _ = KINDS[kind]
    budget = weight_count(dense_cls(hidden, hidden)) / ratio
    best, lo, hi = None, 1, 4 * hidden
    while lo <= hi:
        mid = (lo + hi) // 2
        try:
            count = weight_count(mpo_cls(hidden, hidden, bond_dim=mid, num_cores=num_cores))
        except ValueError:  # a bond no core can carry
            count = math.inf
        if count <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def step_flops(model) -> float:
    """FLOPs of one recurrent step's ``W_hh h`` at batch 1, on the inference plan's route."""
    return plan_flops(list(model.cores_hh_l0), 1)


def fastest_layout(kind: str, hidden: int, ratio: float) -> tuple[int, int]:
    """``(num_cores, bond)`` with the fewest batch-1 FLOPs for ``W_hh h`` at the ratio (2-4 cores)."""
    options = []
    for cores in (2, 3, 4):
        bond = bond_for(kind, hidden, ratio, cores)
        if bond is not None:
            model = KINDS[kind][1](hidden, hidden, bond_dim=bond, num_cores=cores)
            options.append((step_flops(model), cores, bond))
    _, cores, bond = min(options)
    return cores, bond


def compiled(module, fullgraph=True):
    """``torch.compile`` (inductor); tnlib modules with ``fullgraph=True`` (a graph break fails)."""
    # each model is a new specialisation of the same forward code: allow more than dynamo's default 8
    torch._dynamo.config.recompile_limit = 256
    return torch.compile(module, fullgraph=fullgraph)


def rnn_rows(kinds, hiddens, ratios, batches, steps, repeat, compile_models):
    print("\n## MPOLSTM / MPOGRU vs nn.LSTM / nn.GRU, ms per step\n")
    print("Compiled columns (inductor) for the fewest-FLOP layout at batch 1.\n")
    print("| cell | hidden | ratio | batch | layout (cores, bond) | weights ratio | FLOP ratio | dense | MPO eager "
          "| eager MPO / dense | dense compiled | MPO compiled | compiled MPO / dense |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        dense_cls, mpo_cls, gates = KINDS[kind]
        for h in hiddens:
            dense = dense_cls(h, h).eval()
            dense_weights = weight_count(dense)
            dense_compiled = {}
            for ratio in ratios:
                fast = fastest_layout(kind, h, ratio)
                for cores, bond in sorted({(3, bond_for(kind, h, ratio, 3)), fast}):
                    model = mpo_cls(h, h, bond_dim=bond, num_cores=cores).eval()
                    measured = dense_weights / weight_count(model)
                    flops = step_flops(model) / (2 * gates * h * h)
                    for batch in batches:
                        x = torch.randn(steps, batch, h)
                        cells = ["-", "-", "-"]
                        with torch.no_grad():
                            model(x)
                            t_d = best_of(lambda: dense(x), repeat) / steps
                            t_m = best_of(lambda: model(x), repeat) / steps
                            if compile_models and batch == 1 and (cores, bond) == fast:
                                if batch not in dense_compiled:
                                    c_d = dense_compiled[batch] = compiled(dense, fullgraph=False)  # nn.LSTM breaks
                                    c_d(x)
                                c_d, c_m = dense_compiled[batch], compiled(model)
                                c_m(x)
                                tc_d = best_of(lambda: c_d(x), repeat) / steps
                                tc_m = best_of(lambda: c_m(x), repeat) / steps
                                cells = [f"{tc_d * 1e3:.3f}", f"{tc_m * 1e3:.3f}", f"{tc_m / tc_d:.2f}"]
                        print(
                            f"| {kind} | {h} | {ratio}x | {batch} | ({cores}, {bond}) | {measured:.1f}x | {flops:.2f} "
                            f"| {t_d * 1e3:.3f} | {t_m * 1e3:.3f} | {t_m / t_d:.2f} | " + " | ".join(cells) + " |",
                            flush=True,
                        )


def onnx_rows(hiddens, ratios, repeat):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    print("\n## One LSTM step exported with tnlib.nn.export_onnx, run by onnxruntime (batch 1), ms per step\n")
    print("Compression ratio here counts every stored parameter (biases too), as the file does.\n")
    print("| hidden | ratio | layout | dense ms | MPO ms | MPO / dense | dense file | MPO file "
          "| file / (dense file / ratio) |")
    print("|---|---|---|---|---|---|---|---|---|")
    folder = tempfile.mkdtemp()
    for h in hiddens:
        dense = nn.LSTMCell(h, h).eval()
        args = (torch.randn(1, h), (torch.randn(1, h), torch.randn(1, h)))
        feed = {"x": args[0].numpy(), "h": args[1][0].numpy(), "c": args[1][1].numpy()}
        names = dict(input_names=["x", "h", "c"], output_names=["h_next", "c_next"])
        path_d = tn.export_onnx(dense, args, os.path.join(folder, f"dense{h}.onnx"), **names)
        s_d = ort.InferenceSession(str(path_d), options)
        t_d = best_of(lambda: s_d.run(None, feed), repeat)
        for ratio in ratios:
            cores, bond = fastest_layout("LSTM", h, ratio)
            cell = tn.MPOLSTMCell(h, h, bond_dim=bond, num_cores=cores).eval()
            measured = sum(p.numel() for p in dense.parameters()) / sum(p.numel() for p in cell.parameters())
            path_m = tn.export_onnx(cell, args, os.path.join(folder, f"mpo{h}_{ratio}.onnx"), **names)
            s_m = ort.InferenceSession(str(path_m), options)
            t_m = best_of(lambda: s_m.run(None, feed), repeat)
            size_d, size_m = path_d.stat().st_size, path_m.stat().st_size
            print(
                f"| {h} | {ratio}x ({measured:.1f}x) | ({cores}, {bond}) | {t_d * 1e3:.3f} | {t_m * 1e3:.3f} "
                f"| {t_m / t_d:.2f} | {size_d / 1e6:.2f} MB | {size_m / 1e6:.3f} MB "
                f"| {size_m / (size_d / measured):.2f} |",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*")
    print("# PyTorch layers, float32, CPU, 1 thread (ratios < 1: MPO faster)\n")
    with threadpool_limits(1):
        if args.quick:
            linear_rows([256], [8], [1, 64], 3)
            rnn_rows(["LSTM"], [64], [10], [1], 10, 2, compile_models=not args.no_compile)
            if not args.no_onnx:
                onnx_rows([64], [10], 20)
        else:
            linear_rows([1024, 4096], [8, 16, 32, 64], [1, 8, 64, 256], 5)
            rnn_rows(["LSTM", "GRU"], [256, 512, 1024], [4, 10, 50], [1, 32], 20, 5, not args.no_compile)
            if not args.no_onnx:
                onnx_rows([256, 512, 1024], [10, 50], 200)


if __name__ == "__main__":
    main()
