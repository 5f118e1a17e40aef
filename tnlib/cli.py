"""The ``tnlib`` command: decompose a matrix, show its spectrum, describe a saved file.

    tnlib decompose W.npy --out-dims 8,8,8 --in-dims 8,8,8 --max-bond 16 -o W.tnz
    tnlib spectrum W.npy --plot spectrum.png
    tnlib info W.tnz

Inputs are ``.npy`` files, ``.npz`` archives (``--key`` names the array when
there are several) or, for ``spectrum`` and ``info``, files written by
:func:`tnlib.save`. A bad argument prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, NoReturn, Sequence

import numpy as np

from .io import load, save
from .mpo import MPO
from .mps import MPS
from .spectra import Spectrum, spectrum
from .truncation import Truncation

__all__ = ["main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 8,8,8, got {text!r}")
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 8,8,8, got {text!r}")
    return dims


def _load_matrix(path: str, key: str | None) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise _UsageError(f"{path}: no such file")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                if key is None:
                    if len(archive.files) != 1:
                        raise _UsageError(
                            f"{path} holds {len(archive.files)} arrays ({', '.join(archive.files)}); "
                            "pick one with --key"
                        )
                    key = archive.files[0]
                if key not in archive.files:
                    raise _UsageError(f"{path} has no array {key!r}; it has {', '.join(archive.files)}")
                return archive[key]
        if key is not None:
            raise _UsageError("--key applies only to .npz files")
        return np.load(p, allow_pickle=False)
    except _UsageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _UsageError(f"{path}: cannot read an array ({exc})") from None


def _truncation(args: argparse.Namespace, shape: tuple[int, ...]) -> Truncation | None:
    kw: dict[str, Any] = {}
    for name in ("max_bond", "cutoff", "max_discarded", "max_entropy_loss"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.compression is not None:
        if not args.compression > 0:
            raise _UsageError(f"--compression must be > 0, got {args.compression}")
        kw["max_params"] = max(1, int(shape[0] * shape[1] / args.compression))
    return Truncation(**kw) if kw else None


def _decompose(args: argparse.Namespace) -> None:
    matrix = _load_matrix(args.input, args.key)
    if matrix.ndim != 2:
        raise _UsageError(f"{args.input}: expected a 2-D matrix, got shape {matrix.shape}")
    truncation = _truncation(args, matrix.shape)
    mpo = MPO.from_matrix(
        matrix, args.out_dims, args.in_dims, num_cores=args.num_cores,
        truncation=truncation, pad=args.pad, svd=args.svd,
    )
    print(mpo)
    print(f"parameters {mpo.num_params} (dense {matrix.size}), compression ratio {mpo.compression_ratio:.2f}x")
    print(mpo.report)
    if args.output:
        save(args.output, mpo)
        print(f"saved to {args.output}")


def _spectrum(args: argparse.Namespace) -> None:
    spec: Spectrum
    try:
        obj: Any = load(args.input)
    except ValueError:
        obj = None
    if isinstance(obj, Spectrum):
        spec = obj
    elif isinstance(obj, (MPS, MPO)):
        spec = spectrum(obj)
    else:
        matrix = _load_matrix(args.input, args.key)
        if matrix.ndim != 2:
            raise _UsageError(f"{args.input}: expected a 2-D matrix, got shape {matrix.shape}")
        spec = spectrum(matrix, args.out_dims, args.in_dims, num_cores=args.num_cores, pad=args.pad)
    print(spec)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        spec.plot().savefig(args.plot, dpi=120)
        print(f"plot saved to {args.plot}")
    if args.output:
        save(args.output, spec)
        print(f"saved to {args.output}")


def _info(args: argparse.Namespace) -> None:
    obj = load(args.input)
    if isinstance(obj, Spectrum):
        print(obj)
        return
    print(obj)
    print(f"parameters {obj.num_params}")
    if isinstance(obj, MPO):
        print(f"compression ratio {obj.compression_ratio:.2f}x")
    if obj.report is not None:
        print(obj.report)


def _parser() -> _Parser:
    parser = _Parser(prog="tnlib", description="Tensor-network decomposition of matrices.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"tnlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    dec = sub.add_parser("decompose", help="decompose a matrix into an MPO and print the report")
    dec.add_argument("input", help=".npy or .npz file with a 2-D matrix (rows = outputs)")
    dec.add_argument("-o", "--output", help="save the MPO here (.tnz)")
    spec = sub.add_parser("spectrum", help="print the Schmidt spectrum of every bond")
    spec.add_argument("input", help=".npy/.npz matrix or a file written by tnlib")
    spec.add_argument("--plot", help="save a plot (PNG) here")
    spec.add_argument("-o", "--output", help="save the Spectrum here (.tnz)")
    for p in (dec, spec):
        p.add_argument("--key", help="array name inside an .npz file")
        p.add_argument("--out-dims", type=_dims, help="row factors, e.g. 8,8,8")
        p.add_argument("--in-dims", type=_dims, help="column factors, e.g. 8,8,8")
        p.add_argument("--num-cores", type=int, help="number of cores when dims are not given")
        p.add_argument("--pad", action="store_true", help="zero-pad sizes that do not factor")
    dec.add_argument("--max-bond", type=int, help="cap on every bond dimension")
    dec.add_argument("--cutoff", type=float, help="drop singular values below cutoff * s_max")
    dec.add_argument("--max-discarded", type=float, help="largest discarded weight per bond (relative)")
    dec.add_argument("--max-entropy-loss", type=float, help="largest relative entropy loss per bond")
    dec.add_argument("--compression", type=float, help="target compression ratio (sets a parameter budget)")
    dec.add_argument("--svd", default="auto", help="SVD method (auto, lapack, randomized)")

    info = sub.add_parser("info", help="describe a file written by tnlib")
    info.add_argument("input", help="file written by tnlib (tnlib decompose -o, tnlib.save)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        {"decompose": _decompose, "spectrum": _spectrum, "info": _info}[args.command](args)
    except (_UsageError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"tnlib: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. head
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
