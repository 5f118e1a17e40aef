"""Experiment 4 - MPO fully connected layers on MNIST-5k: FC2 and LeNet-5 (Gao et al., Phys. Rev. Research 2020).

FC2 is 784-256-10 with the paper's modes ([4,7,7,4] -> [4,4,4,4] and
[4,4,4,4] -> [1,10,1,1]); LeNet-5 keeps its two convolutions dense and
turns 400-120-84-10 into MPOs with the paper's modes. Only the fully
connected weights are compressed and counted. Methods at matched parameter
counts: MPO from scratch, MPO decomposed from the trained dense net and
fine-tuned, gradual magnitude pruning, low-rank (truncated SVD, fine-tuned)
and input-first MPS tensor trains from scratch. Then the figure the paper
draws: entanglement entropy per bond of the trained 784 -> 256 MPO layer
(bond 10), and singular-value spectra per bond.

    python benchmarks/experiments/fc.py            # full: ~15 min on 1 core
    python benchmarks/experiments/fc.py --smoke
"""

from __future__ import annotations

import copy
import math
import sys

import _data
import numpy as np
import torch
from _common import accuracy, figure, fit, parse, rows_for, seed_all, steps_per_epoch, table, write_report
from _lstm_sweep import FAIR_ONLY, METHODS, log, report
from torch import nn

import tnlib
import tnlib.nn as tn

NAME = "fc"
FC2 = "FC2 784-256-10"
LENET = "LeNet-5 (MPO 400-120-84-10)"
# (in_dims, out_dims) per fully connected layer, as in the paper.
DIMS = {FC2: [((4, 7, 7, 4), (4, 4, 4, 4)), ((4, 4, 4, 4), (1, 10, 1, 1))],
        LENET: [((2, 10, 10, 2), (2, 5, 6, 2)), ((2, 5, 6, 2), (2, 3, 7, 2)), ((2, 3, 7, 2), (1, 5, 2, 1))]}
FULL = dict(ratios=(2, 8, 32, 100), lenet_ratios=(2, 8, 32), epochs=12, finetune_epochs=4, lr=2e-3,
            finetune_lr=1e-3, batch_size=100, limit=None, entropy_epochs=12)
SMOKE = dict(ratios=(8,), lenet_ratios=(8,), epochs=1, finetune_epochs=1, lr=2e-3, finetune_lr=1e-3,
             batch_size=100, limit=300, entropy_epochs=1)


class Net(nn.Module):
    """``features`` (flatten, or LeNet's convolutions), then fully connected layers with ReLU between."""

    def __init__(self, arch: str, fcs: list[nn.Module]) -> None:
        super().__init__()
        if arch == LENET:
            self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        else:
            self.features = nn.Flatten()
        self.fcs = nn.ModuleList(fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x[:, None] if isinstance(self.features, nn.Sequential) else x)
        for k, fc in enumerate(self.fcs):
            x = fc(x)
            if k < len(self.fcs) - 1:
                x = torch.relu(x)
        return x


def sizes(arch: str) -> list[tuple[int, int]]:
    return [(math.prod(i), math.prod(o)) for i, o in DIMS[arch]]


def low_rank(linear: nn.Linear | None, i: int, o: int, rank: int) -> nn.Module:
    """Rank-``rank`` layer, or the dense one where the factors would not be smaller."""
    if rank * (i + o) >= i * o:
        return copy.deepcopy(linear) if linear is not None else nn.Linear(i, o)
    return tn.LowRankLinear.from_linear(linear, rank) if linear is not None else tn.LowRankLinear(i, o, rank)


def max_bond(in_dims, out_dims) -> int:
    """The largest bond an MPO with these legs can carry."""
    legs = [i * o for i, o in zip(in_dims, out_dims)]
    return max(min(math.prod(legs[:k]), math.prod(legs[k:])) for k in range(1, len(legs)))


def layers(arch: str, method: str, setting: int, dense: Net | None = None) -> list[nn.Module]:
    out = []
    for k, ((in_dims, out_dims), (i, o)) in enumerate(zip(DIMS[arch], sizes(arch))):
        trained = dense.fcs[k] if dense is not None else None
        if method == "dense":
            out.append(nn.Linear(i, o))
        elif method == "MPO (scratch)":
            out.append(tn.MPOLinear(i, o, in_dims=in_dims, out_dims=out_dims,
                                    bond_dim=min(setting, max_bond(in_dims, out_dims))))
        elif method == "MPO (decomposed)":
            out.append(tn.MPOLinear.from_linear(trained, tnlib.Truncation(max_bond=setting), in_dims=in_dims,
                                                out_dims=out_dims))
        elif method == "low-rank":
            out.append(low_rank(trained, i, o, setting))
        elif method == "MPS-TT (scratch)":
            out.append(tn.TTLinear(i, o, setting, num_cores=2))
        elif method == "pruning (gradual)":
            out.append(copy.deepcopy(trained))
        else:
            raise ValueError(f"method={method!r} has no fully connected layers here")
    return out


def fc_params(net: Net) -> int:
    return sum(tn.count_parameters(fc) for fc in net.fcs)


def largest(build, budget: float, top: int = 512) -> tuple[int, int] | None:
    """Largest integer setting whose built model has at most ``budget`` weights: ``(setting, params)``."""
    best, lo, hi = None, 1, top
    while lo <= hi:
        mid = (lo + hi) // 2
        params = fc_params(build(mid))
        if params <= budget:
            best, lo = (mid, params), mid + 1
        else:
            hi = mid - 1
    return best


def sweep(arch: str, ratios, seeds, cfg, X, y, Xt, yt) -> list[dict]:
    rows = []
    loss = nn.functional.cross_entropy
    steps = cfg["finetune_epochs"] * steps_per_epoch(len(X), cfg["batch_size"])
    for seed in seeds:
        seed_all(seed)
        dense = Net(arch, layers(arch, "dense", 0))
        sec = fit(dense, X, y, loss, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"], seed=seed,
                  desc=f"{arch} dense s{seed}")
        n_dense = fc_params(dense)
        rows.append(dict(experiment=NAME, task=arch, method="dense", ratio=1.0, setting="", params=n_dense,
                         compression=1.0, seed=seed, train_seconds=round(sec, 2), accuracy=accuracy(dense, Xt, yt)))
        log(rows[-1])
        for ratio in ratios:
            budget = n_dense / ratio
            for method in [m for m in METHODS if m not in FAIR_ONLY]:  # fc keeps the earlier protocol
                seed_all(seed)
                if method == "pruning (gradual)":
                    setting = 1.0 - 1.0 / ratio
                    net = copy.deepcopy(dense)
                    pruners = [tn.GradualPruner(fc, setting, end_step=max(1, 3 * steps // 4),
                                                frequency=max(1, steps // 20)) for fc in net.fcs]
                    one_shot = copy.deepcopy(dense)
                    for fc in one_shot.fcs:
                        tn.prune_magnitude(fc, setting)
                    before = accuracy(one_shot, Xt, yt)
                    on_step = lambda: [p.step() for p in pruners]  # noqa: E731
                    on_step()
                else:
                    scratch = "scratch" in method
                    found = largest(lambda s: Net(arch, layers(arch, method, s, None if scratch else dense)), budget)
                    if found is None:
                        continue
                    setting = found[0]
                    seed_all(seed)
                    net = Net(arch, layers(arch, method, setting, None if scratch else dense))
                    if not scratch:
                        net.features.load_state_dict(dense.features.state_dict())
                    before = None if scratch else accuracy(net, Xt, yt)
                    on_step = None
                finetune = method != "MPO (scratch)" and method != "MPS-TT (scratch)"
                sec = fit(net, X, y, loss, epochs=cfg["finetune_epochs"] if finetune else cfg["epochs"],
                          lr=cfg["finetune_lr"] if finetune else cfg["lr"], batch_size=cfg["batch_size"], seed=seed,
                          desc=f"{arch} {method} {ratio:g}x s{seed}", on_step=on_step)
                n = fc_params(net)
                rows.append(dict(experiment=NAME, task=arch, method=method, ratio=float(ratio),
                                 setting=f"{setting:.3g}" if isinstance(setting, float) else setting, params=n,
                                 compression=round(n_dense / n, 2), seed=seed, train_seconds=round(sec, 2),
                                 accuracy=accuracy(net, Xt, yt),
                                 accuracy_before_finetune="" if before is None else before))
                log(rows[-1])
    return rows


def entropy_study(args, cfg, X, y, Xt, yt) -> list[str]:
    """Entropy per bond of the trained 784 -> 256 MPO (bond 10), its dense counterpart and a random matrix."""
    (in_dims, out_dims), _ = DIMS[FC2]
    seed_all(0)
    mpo_net = Net(FC2, [tn.MPOLinear(784, 256, in_dims=in_dims, out_dims=out_dims, bond_dim=10),
                        tn.MPOLinear(256, 10, in_dims=DIMS[FC2][1][0], out_dims=DIMS[FC2][1][1], bond_dim=10)])
    fit(mpo_net, X, y, nn.functional.cross_entropy, epochs=cfg["entropy_epochs"], lr=cfg["lr"],
        batch_size=cfg["batch_size"], seed=0, desc="FC2 MPO bond 10")
    seed_all(0)
    dense = Net(FC2, layers(FC2, "dense", 0))
    fit(dense, X, y, nn.functional.cross_entropy, epochs=cfg["entropy_epochs"], lr=cfg["lr"],
        batch_size=cfg["batch_size"], seed=0, desc="FC2 dense")
    trained = mpo_net.fcs[0].mpo.canonicalize(0)
    w_dense = dense.fcs[0].weight.detach().double().numpy()
    dense_mpo = tnlib.MPO.from_matrix(w_dense, out_dims, in_dims)
    rng = np.random.default_rng(0)
    random_mpo = tnlib.MPO.from_matrix(rng.standard_normal((256, 784)), out_dims, in_dims)
    curves = {"MPO layer trained from scratch (bond 10)": trained.entropies(),
              "dense layer, exact MPO": dense_mpo.entropies(),
              "random Gaussian matrix, exact MPO": random_mpo.entropies()}
    full = dense_mpo.bond_dims
    with figure(args.out / f"{NAME}-entropy.png", ncols=2, figsize=(10, 4)) as (ax, ax2):
        bonds = np.arange(1, len(full) + 1)
        for (label, s), m in zip(curves.items(), "osD"):
            ax.plot(bonds, s, marker=m, label=label)
        ax.plot(bonds, np.log(np.minimum(10, full)), "k:", label="ln 10 (bond-10 ceiling)")
        ax.set_xticks(bonds)
        ax.set_xlabel("bond")
        ax.set_ylabel("entanglement entropy S (nats)")
        ax.set_title("FC2 784 -> 256, modes [4,7,7,4] -> [4,4,4,4]", fontsize=10)
        ax.set_ylim(0, 1.45 * max(float(v) for s in curves.values() for v in s))
        ax.legend(fontsize=8, loc="upper right")
        for k, m in zip(range(len(full)), "o^s"):
            s = dense_mpo.singular_values(k)
            ax2.loglog(np.arange(1, len(s) + 1), s / s[0], marker=m, markersize=3,
                       label=f"bond {k + 1} (full rank {full[k]})")
        ax2.set_xlabel("index")
        ax2.set_ylabel("singular value / largest")
        ax2.set_title("Schmidt spectra of the trained dense layer", fontsize=10)
        ax2.legend(fontsize=8)
    body = [[label, *(f"{v:.3f}" for v in s)] for label, s in curves.items()]
    body.append(["ln(full bond dimension)", *(f"{np.log(d):.3f}" for d in full)])
    acc = accuracy(mpo_net, Xt, yt)
    middle = int(np.argmax(curves["MPO layer trained from scratch (bond 10)"])) + 1
    return ["### Entanglement entropy per bond (the paper's figure)", "",
            f"FC2 with both layers as bond-10 MPOs trained from scratch ({cfg['entropy_epochs']} epochs, test "
            f"accuracy {acc:.3f}); entropies S_k = -sum p ln p of the normalised squared Schmidt values of the "
            f"784 -> 256 layer's MPO in canonical form, next to the dense FC2 layer trained the same way and a "
            f"Gaussian random matrix, both decomposed exactly with the same modes:", "",
            table(["weight", *(f"bond {k + 1}" for k in range(len(full)))], body), "",
            f"![entropy]({NAME}-entropy.png)", "",
            f"The trained MPO layer carries most entropy at bond {middle}; the trained dense layer's entropies are "
            f"{'below' if np.all(dense_mpo.entropies() < random_mpo.entropies()) else 'not all below'} those of a "
            f"random matrix at every bond.", ""]


def main(argv=None) -> None:
    args = parse(__doc__.splitlines()[0], FULL, SMOKE, argv)
    cfg = args.cfg
    X, y, Xt, yt = _data.mnist(limit=cfg["limit"])
    rows = rows_for(args, NAME, lambda: sweep(FC2, cfg["ratios"], args.seeds, cfg, X, y, Xt, yt)
                    + sweep(LENET, cfg["lenet_ratios"], args.seeds, cfg, X, y, Xt, yt))
    print("entropy study", file=sys.stderr)
    entropy = entropy_study(args, cfg, X, y, Xt, yt)
    s1, c1 = report(args, rows, [FC2], name=NAME)
    args.cfg = dict(cfg, ratios=cfg["lenet_ratios"])
    s2, c2 = report(args, rows, [LENET], name=NAME)
    args.cfg = cfg
    write_report(args, NAME, "4. MPO fully connected layers on MNIST-5k: FC2 and LeNet-5",
                 [f"4,000 training and 1,000 test images. Dense nets train {cfg['epochs']} epochs; scratch models "
                  f"{cfg['epochs']}, models from the dense net fine-tune {cfg['finetune_epochs']}; Adam, lr "
                  f"{cfg['lr']} / {cfg['finetune_lr']}. Uniform bond (MPO, MPS-TT), rank (low-rank) or "
                  f"sparsity (pruning, per layer) across the fully connected layers.", "", *s1, *s2, *entropy],
                 c1 + c2)


if __name__ == "__main__":
    main()
