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

    python benchmarks/experiments/fc.py            # full: ~45 min on a shared core (5 seeds, equal budgets)
    python benchmarks/experiments/fc.py --smoke
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Any, Callable

import _data
import numpy as np
import torch
from _common import (
    accuracy,
    figure,
    fit,
    parse,
    predict,
    rows_for,
    seed_all,
    steps_per_epoch,
    table,
    write_report,
)
from _lstm_sweep import FAIR_ONLY, METHODS, best_rate, fair, log, lr_key, ratio_order, report
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
            finetune_lr=1e-3, batch_size=100, limit=None, entropy_epochs=12, seeds=5,
            lr_grid=(1e-3, 3e-3, 1e-2, 3e-2), lr_at=8, val_fraction=0.1)
SMOKE = dict(ratios=(8,), lenet_ratios=(8,), epochs=1, finetune_epochs=1, lr=2e-3, finetune_lr=1e-3,
             batch_size=100, limit=300, entropy_epochs=1, lr_grid=(2e-3, 1e-2), lr_at=8, val_fraction=0.1)


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


def small_dense(arch: str, budget: float) -> list[nn.Module] | None:
    """The widest dense fully connected layers (hidden widths scaled together) with at most ``budget`` weights."""
    (i0, o0), *rest = sizes(arch)
    for width in range(o0, 0, -1):
        widths = [width] + [max(1, round(o * width / o0)) for _, o in rest[:-1]]
        dims = [i0, *widths, rest[-1][1]] if rest else [i0, width]
        if sum(a * b for a, b in zip(dims, dims[1:])) <= budget:
            return [nn.Linear(a, b) for a, b in zip(dims, dims[1:])]
    return None


def holdout(X: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """``(X, y)`` without a random ``fraction`` of it, and that part (the validation data)."""
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(10_000 + seed))
    k = max(1, int(round(fraction * len(X))))
    return X[order[k:]], y[order[k:]], X[order[:k]], y[order[:k]]


def sweep(arch: str, ratios, seeds, cfg, data: Callable[[int], tuple]) -> list[dict]:
    """Rows of ``arch`` over seeds x ratios x methods; ``data(seed)`` is that seed's split.

    With ``cfg["lr_grid"]``: the equal-budget protocol of ``_lstm_sweep.run`` (every model the dense
    net's ``epochs`` at its final size, gradual pruning's ramp of ``finetune_epochs`` first; each
    method's learning rate chosen from the grid by validation loss at ``cfg["lr_at"]`` on the first
    seed; a small dense net of each size). Without it, the earlier protocol (scratch models
    ``epochs`` at ``lr``, the others ``finetune_epochs`` at ``finetune_lr``).
    """
    rows: list[dict] = []
    loss = nn.functional.cross_entropy
    equal = fair(cfg)
    chosen_lr: dict[tuple[str, float], float] = {}
    order = ratio_order(cfg, ratios)
    methods = [m for m in METHODS if equal or m not in FAIR_ONLY]
    for seed in seeds:
        X, y, Xt, yt = data(seed)
        if equal:
            X, y, Xv, yv = holdout(X, y, cfg["val_fraction"], seed)
        spe = steps_per_epoch(len(X), cfg["batch_size"])

        def trained(key: tuple[str, float], make: Callable[[], tuple], desc: str):
            """``make()``'s net trained; on the first seed once per grid value, the best on validation kept."""
            def attempt(lr: float | None):
                net, before, on_step, epochs, default_lr, at_final = make()
                sec = fit(net, X, y, loss, epochs=epochs, lr=default_lr if lr is None else lr,
                          batch_size=cfg["batch_size"], seed=seed, desc=desc, on_step=on_step)
                val = float(loss(predict(net, Xv), yv)) if equal else float("nan")
                return val, (net, before, sec, at_final)

            val, lr, (net, before, sec, at_final) = best_rate(cfg, chosen_lr, key, attempt)
            return val, lr, net, before, sec, at_final

        def dense_make():
            seed_all(seed)
            return Net(arch, layers(arch, "dense", 0)), None, None, cfg["epochs"], cfg["lr"], cfg["epochs"] * spe

        val, lr, dense, _, sec, at_final = trained(("dense", 1.0), dense_make, f"{arch} dense s{seed}")
        n_dense = fc_params(dense)
        extra = dict(lr=lr, steps_at_final_size=at_final, val_loss=val, stored_bytes=tn.stored_bytes(dense)) \
            if equal else {}
        rows.append(dict(experiment=NAME, task=arch, method="dense", ratio=1.0, setting="", params=n_dense,
                         compression=1.0, seed=seed, train_seconds=round(sec, 2), **extra,
                         accuracy=accuracy(dense, Xt, yt)))
        log(rows[-1])
        for ratio in order:
            budget = n_dense / ratio
            for method in methods:
                scratch = "scratch" in method
                if method == "pruning (gradual)":
                    setting: Any = 1.0 - 1.0 / ratio
                elif method == "small dense (scratch)":
                    fcs = small_dense(arch, budget)
                    if fcs is None:
                        continue
                    setting = "x".join(str(fc.out_features) for fc in fcs[:-1])
                else:
                    found = largest(lambda s: Net(arch, layers(arch, method, s, None if scratch else dense)), budget)
                    if found is None:
                        continue
                    setting = found[0]

                def make(method=method, setting=setting, scratch=scratch):
                    seed_all(seed)
                    epochs = cfg["epochs"] if equal or scratch else cfg["finetune_epochs"]
                    default_lr = cfg["lr"] if scratch else cfg["finetune_lr"]
                    if method == "pruning (gradual)":
                        net = copy.deepcopy(dense)
                        if equal:  # the sparsity ramp first, then the same steps at the final sparsity
                            ramp, epochs = cfg["finetune_epochs"] * spe, cfg["finetune_epochs"] + cfg["epochs"]
                        else:
                            ramp = max(1, 3 * epochs * spe // 4)
                        pruners = [tn.GradualPruner(fc, setting, end_step=max(1, ramp),
                                                    frequency=max(1, ramp // 20)) for fc in net.fcs]
                        one_shot = copy.deepcopy(dense)
                        for fc in one_shot.fcs:
                            tn.prune_magnitude(fc, setting)
                        on_step = lambda: [p.step() for p in pruners]  # noqa: E731
                        on_step()
                        return net, accuracy(one_shot, Xt, yt), on_step, epochs, default_lr, epochs * spe - ramp
                    if method == "small dense (scratch)":
                        net = Net(arch, small_dense(arch, budget))
                    else:
                        net = Net(arch, layers(arch, method, setting, None if scratch else dense))
                    if not scratch:
                        net.features.load_state_dict(dense.features.state_dict())
                    before = None if scratch else accuracy(net, Xt, yt)
                    return net, before, None, epochs, default_lr, epochs * spe

                key = lr_key(cfg, method, ratio)
                val, lr, net, before, sec, at_final = trained(key, make, f"{arch} {method} {ratio:g}x s{seed}")
                n = fc_params(net)
                extra = dict(lr=lr, steps_at_final_size=at_final, val_loss=val, stored_bytes=tn.stored_bytes(net)) \
                    if equal else {}
                rows.append(dict(experiment=NAME, task=arch, method=method, ratio=float(ratio),
                                 setting=f"{setting:.3g}" if isinstance(setting, float) else setting, params=n,
                                 compression=round(n_dense / n, 2), seed=seed, train_seconds=round(sec, 2),
                                 **extra, accuracy=accuracy(net, Xt, yt),
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
    data = lambda s: _data.mnist(limit=cfg["limit"], split_seed=s)  # noqa: E731
    X, y, Xt, yt = data(0)
    rows = rows_for(args, NAME, lambda: sweep(FC2, cfg["ratios"], args.seeds, cfg, data)
                    + sweep(LENET, cfg["lenet_ratios"], args.seeds, cfg, data))
    print("entropy study", file=sys.stderr)
    entropy = entropy_study(args, cfg, X, y, Xt, yt)
    s1, c1 = report(args, rows, [FC2], name=NAME)
    args.cfg = dict(cfg, ratios=cfg["lenet_ratios"])
    s2, c2 = report(args, rows, [LENET], name=NAME)
    args.cfg = cfg
    write_report(args, NAME, "4. MPO fully connected layers on MNIST-5k: FC2 and LeNet-5",
                 [protocol(cfg), "", *s1, *s2, *entropy],
                 c1 + c2)


def protocol(cfg: dict) -> str:
    """The paragraph that states how the rows were trained."""
    shared = ("Uniform bond (MPO, MPS-TT), rank (low-rank) or sparsity (pruning, per layer) across the fully "
              "connected layers.")
    if not fair(cfg):
        return (f"4,000 training and 1,000 test images. Dense nets train {cfg['epochs']} epochs; scratch models "
                f"{cfg['epochs']}, models from the dense net fine-tune {cfg['finetune_epochs']}; Adam, lr "
                f"{cfg['lr']} / {cfg['finetune_lr']}. " + shared)
    return (f"4,000 training and 1,000 test images, the split redrawn per seed; a random {cfg['val_fraction']:.0%} "
            f"of the training images held out for validation. Equal budgets: every net trains {cfg['epochs']} "
            f"epochs at its final size (gradual pruning ramps its sparsity over {cfg['finetune_epochs']} epochs "
            f"first); Adam, each method's learning rate chosen from {list(cfg['lr_grid'])} by validation loss at "
            f"{float(cfg['lr_at']):g}x on the first seed and reused at every ratio and seed. The small dense net "
            "scales the hidden widths together. " + shared)


if __name__ == "__main__":
    main()
