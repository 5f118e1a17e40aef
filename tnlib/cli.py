"""The ``tnlib`` command: decompose a matrix, show its spectrum, describe a saved file.

    tnlib decompose W.npy --out-dims 8,8,8 --in-dims 8,8,8 --max-bond 16 -o W.tnz
    tnlib spectrum W.npy --plot spectrum.png
    tnlib info W.tnz
    tnlib info model.safetensors      # a file written by tnlib.nn.save

Inputs are ``.npy`` files, ``.npz`` archives (``--key`` names the array when
there are several) or, for ``spectrum`` and ``info``, files written by
:func:`tnlib.save`; ``info`` also describes a ``.safetensors`` file written by
:func:`tnlib.nn.save` (its tnlib layers, their settings and bytes). A bad
argument prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

import numpy as np

from . import __version__
from ._optional import optional
from ._out_of_core import npy_header, open_npy
from .io import load, save
from .mpo import MPO
from .mps import MPS
from .spectra import Spectrum, spectrum
from .truncation import Truncation, with_compression

__all__ = ["main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise _UsageError(f"{message} (see '{self.prog} --help')")


_FLAGS = ("num_cores", "out_dims", "in_dims", "chunk_rows", "svd", "pad", "key")


def _as_flags(message: str) -> str:
    """The library's error in the command line's words: its argument names become the flags that set them."""
    message = re.sub(r"Truncation\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), message)
    message = re.sub(r"--max-params=(\d+)", r"the budget of \1 parameters that --compression sets", message)
    message = re.sub(r"\bfirst_out_dim=", "the first factor of --out-dims ", message)
    message = re.sub(r"\b(out_dims|in_dims)=None to choose them", lambda m: f"or omit --{m.group(1).replace('_', '-')} "
                     "to choose them", message)
    message = re.sub(r"\b(" + "|".join(_FLAGS) + r")=", lambda m: "--" + m.group(1).replace("_", "-") + " ", message)
    return re.sub(r"(?<!-)\b(out_dims|in_dims|num_cores|chunk_rows)\b", lambda m: "--" + m.group(1).replace("_", "-"),
                  message)


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 8,8,8, got {text!r}")
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 8,8,8, got {text!r}")
    return dims


def _pick(path: str, arrays: dict[str, Any], key: str | None) -> Any:
    """The array named ``key`` of a file holding several, or its only one."""
    names = list(arrays)
    if key is None:
        if len(names) != 1:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise _UsageError(f"{path} holds {len(names)} arrays ({shown}); pick one with --key")
        key = names[0]
    if key not in arrays:
        raise _UsageError(f"{path} has no array {key!r}; it has {', '.join(names[:20])}")
    return arrays[key]


def _torch_arrays(path: Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise _UsageError(f"{path}: reading a PyTorch file needs torch (pip install 'tnlib[torch]')") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _UsageError(
            f"{path}: refused: it holds Python objects other than tensors, and unpickling them could run code; "
            "tnlib reads only tensors (save the weights with torch.save(model.state_dict(), ...))"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _UsageError(f"{path}: not a PyTorch file of tensors ({first})") from None
    if isinstance(state, torch.Tensor):
        return {"tensor": _host(state)}
    if not isinstance(state, dict):
        raise _UsageError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return {k: _host(v) for k, v in _flatten(state).items() if isinstance(v, torch.Tensor)}


def _flatten(state: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    """A nested checkpoint (``{"model": state_dict, "optimizer": ...}``) as one dict with dotted keys."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _host(tensor: Any) -> np.ndarray:
    """A torch tensor as a NumPy array; bfloat16 (which NumPy lacks) becomes float32, exactly."""
    import torch

    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return t.numpy()


def _safetensors_arrays(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file; bfloat16 ones (which NumPy lacks) through torch, as float32."""
    safetensors = optional("safetensors", "torch", "reading a .safetensors file")
    SafetensorError = safetensors.SafetensorError  # noqa: N806
    load_file = optional("safetensors.numpy", "torch", "reading a .safetensors file").load_file
    try:
        return dict(load_file(str(path)))
    except SafetensorError as exc:
        raise _UsageError(f"{path}: not a readable safetensors file ({exc})") from None
    except (TypeError, ValueError) as exc:
        if "bfloat16" not in str(exc):
            raise _UsageError(f"{path}: cannot read an array ({exc})") from None
    try:
        from safetensors.torch import load_file as load_torch
    except ImportError:
        raise _UsageError(
            f"{path}: holds bfloat16 tensors, which need torch to read (pip install 'tnlib[torch]')"
        ) from None
    return {k: _host(v) for k, v in load_torch(str(path)).items()}


def _load_matrix(path: str, key: str | None) -> np.ndarray:
    """A matrix from .npy, .npz (``--key``), a PyTorch state dict (.pt/.pth) or .safetensors."""
    p = Path(path)
    if not p.is_file():
        raise _UsageError(f"{path}: no such file")
    try:
        if p.suffix in (".pt", ".pth"):
            return np.asarray(_pick(path, _torch_arrays(p), key))
        if p.suffix == ".safetensors":
            return np.asarray(_pick(path, _safetensors_arrays(p), key))
        with open(p, "rb") as fh:
            head = fh.read(4)
        if head.startswith(b"PK"):  # a zip: .npz, or a tnlib file, or a torch.save file under another name
            with np.load(p, allow_pickle=False) as archive:
                if "__tnlib__" in archive.files:
                    raise _UsageError(f"{path} is a saved tnlib object, not a matrix; see it with `tnlib info {path}`")
                if any(name.endswith("data.pkl") for name in zipfile.ZipFile(p).namelist()):
                    return np.asarray(_pick(path, _torch_arrays(p), key))
                return np.asarray(_pick(path, {n: archive[n] for n in archive.files}, key))
        if key is not None:
            raise _UsageError("--key applies only to files that hold several arrays (.npz, .pt, .safetensors)")
        npy_header(str(p))  # a header that declares more data than the file holds is refused before np.load
        return np.load(p, allow_pickle=False)
    except _UsageError:
        raise
    except ImportError as exc:
        raise _UsageError(f"{path}: {exc}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _UsageError(f"{path}: cannot read an array ({exc})") from None


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an output that would overwrite the input or cannot be written, before any work."""
    out = getattr(args, "output", None)
    if not out:
        return
    if Path(out).resolve() == Path(args.input).resolve():
        raise _UsageError(f"-o {out} is the input file; choose another output path")
    parent = Path(out).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise _UsageError(f"-o {out}: cannot write into {parent}")


def _truncation(args: argparse.Namespace, shape: tuple[int, ...], dtype: Any,
                default: bool = True) -> Truncation | None:
    """The flags' truncation; without any, ``Truncation.default`` (rounding noise dropped) unless ``--exact``
    (or not ``default``: a streamed decomposition needs the user's own truncation, which it names)."""
    flags = ("max_bond", "cutoff", "max_discarded", "max_entropy_loss", "compression")
    given = [f"--{name.replace('_', '-')}" for name in flags if getattr(args, name) is not None]
    if args.exact:
        if given:
            raise _UsageError(f"--exact keeps every singular value; it cannot be combined with {', '.join(given)}")
        return None
    if not given and not default:
        return None
    if not given:
        try:
            return Truncation.default(dtype)
        except TypeError:
            return None  # not a dtype tnlib computes in: the decomposition refuses it, naming the matrix's dtype
    kw = {name: getattr(args, name) for name in flags[:-1] if getattr(args, name) is not None}
    base = Truncation(**kw) if kw else None
    if args.compression is None:
        return base
    try:
        return with_compression(base, shape[0] * shape[1], args.compression)
    except ValueError:
        raise _UsageError(f"--compression must be a finite ratio >= 1, got {args.compression}") from None


def _stream_npy(path: str, chunk_rows: int | None, first_out_dim: int | None) -> Any:
    """A ``.npy`` matrix as a dask array read block by block from disk (:func:`tnlib.open_npy`)."""
    optional("dask.array", "dask", "--out-of-core")
    if not path.endswith(".npy"):
        raise _UsageError(f"--out-of-core reads .npy files block by block, got {path}")
    if not Path(path).is_file():
        raise _UsageError(f"{path}: no such file")
    try:
        return open_npy(path, chunk_rows=chunk_rows, first_out_dim=first_out_dim)
    except OSError as exc:
        raise _UsageError(f"{path}: cannot read an array ({exc})") from None


def _shows_progress(args: argparse.Namespace) -> bool:
    """``--progress`` / ``--no-progress``; by default a bar only when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


@contextlib.contextmanager
def _working(args: argparse.Namespace, what: str) -> Iterator[None]:
    """A tqdm line on stderr naming ``what`` and the time it has taken so far, redrawn twice a second."""
    if not _shows_progress(args):
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc=what, bar_format="{desc}: {elapsed}", file=sys.stderr)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()


def _decompose_out_of_core(args: argparse.Namespace) -> None:
    matrix = _stream_npy(args.input, args.chunk_rows, args.out_dims[0] if args.out_dims else None)
    truncation = _truncation(args, matrix.shape, matrix.dtype, default=False)
    blocks: Any = contextlib.nullcontext()
    if _shows_progress(args):
        blocks = optional("tqdm.dask", "dask", "--out-of-core").TqdmCallback(desc="blocks", file=sys.stderr)
    svd = "randomized" if args.single_pass else args.svd
    with blocks:
        mpo = MPO.from_matrix(matrix, args.out_dims, args.in_dims, num_cores=args.num_cores,
                              truncation=truncation, pad=args.pad, svd=svd)
    _print_and_save(args, mpo, matrix.size)


def _print_and_save(args: argparse.Namespace, mpo: MPO, size: int) -> None:
    print(mpo)
    print(f"parameters {mpo.num_params} (dense {size}), compression ratio {mpo.compression_ratio:.2f}x")
    print(mpo.report)
    if mpo.num_params > size and not args.exact:
        print(f"warning: the decomposition stores {mpo.num_params} parameters for {size} entries "
              f"({mpo.compression_ratio:.2f}x, larger than the input); pass --compression, --max-bond, --cutoff "
              "or --max-discarded to compress, or --exact to keep every singular value without this warning",
              file=sys.stderr)
    if args.output:
        save(args.output, mpo)
        print(f"saved to {args.output}")


def _decompose(args: argparse.Namespace) -> None:
    _check_output(args)
    if args.single_pass and not args.out_of_core:
        raise _UsageError("--single-pass reads a .npy once block by block: it needs --out-of-core")
    if args.single_pass and args.svd not in ("auto", "randomized"):
        raise _UsageError(f"--single-pass sketches the file (svd='randomized'); it cannot use --svd {args.svd}")
    if args.out_of_core:
        _decompose_out_of_core(args)
        return
    matrix = _load_matrix(args.input, args.key)
    if matrix.ndim != 2:
        raise _UsageError(f"{args.input}: expected a 2-D matrix, got shape {matrix.shape}")
    truncation = _truncation(args, matrix.shape, matrix.dtype)
    with _working(args, f"decomposing {args.input} ({matrix.shape[0]} x {matrix.shape[1]})"):
        mpo = MPO.from_matrix(
            matrix, args.out_dims, args.in_dims, num_cores=args.num_cores,
            truncation=truncation, pad=args.pad, svd=args.svd,
        )
    _print_and_save(args, mpo, matrix.size)


def _spectrum(args: argparse.Namespace) -> None:
    _check_output(args)
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
        with _working(args, f"spectra of {args.input} ({matrix.shape[0]} x {matrix.shape[1]})"):
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
    if Path(args.input).suffix == ".safetensors":
        _model_info(Path(args.input))
        return
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


def _model_info(path: Path) -> None:
    """Describe a file written by ``tnlib.nn.save`` from its header and tensor shapes (torch is not needed)."""
    safetensors = optional("safetensors", "torch", "tnlib info of a .safetensors file")
    SafetensorError, safe_open = safetensors.SafetensorError, safetensors.safe_open  # noqa: N806

    if not path.is_file():
        raise _UsageError(f"{path}: no such file")
    try:
        with safe_open(str(path), "np") as fh:
            meta = fh.metadata() or {}
            sizes = {k: (tuple(fh.get_slice(k).get_shape()), fh.get_slice(k).get_dtype()) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise _UsageError(f"{path}: not a readable safetensors file ({exc})") from None
    if "tnlib.nn" not in meta:
        raise _UsageError(f"{path}: a safetensors file, but not one written by tnlib.nn.save (no tnlib.nn header)")
    try:
        header = json.loads(meta["tnlib.nn"])
        layers = dict(header["layers"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _UsageError(f"{path}: its tnlib.nn header is not readable ({exc})") from None
    width = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "U8": 1, "I8": 1, "BOOL": 1}

    def nbytes(key: str) -> int:
        shape, dtype = sizes[key]
        return int(np.prod(shape, dtype=np.int64)) * width.get(str(dtype).upper(), 4)

    total = sum(nbytes(k) for k in sizes)
    print(f"tnlib.nn model file (format {header.get('version', '?')}): {len(sizes)} tensors, {total:,} bytes; "
          f"{len(layers)} tnlib layer(s)")
    owned = 0
    for name, spec in sorted(layers.items()):
        prefix = f"{name}." if name else ""
        mine = sum(nbytes(k) for k in sizes if k.startswith(prefix))
        owned += mine
        attrs = ", ".join(f"{k}={v}" for k, v in dict(spec.get("attrs", {})).items())
        print(f"  {name or '(the file itself)'}: {spec.get('class', '?')}({attrs}) - {mine:,} bytes")
    print(f"  everything else (dense layers, biases, buffers): {total - owned:,} bytes")


def _parser() -> _Parser:
    parser = _Parser(prog="tnlib", description="Tensor-network decomposition of matrices.")
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
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show the time taken so far on stderr (default: when stderr is a terminal)")
    dec.add_argument("--max-bond", type=int, help="cap on every bond dimension")
    dec.add_argument("--cutoff", type=float, help="drop singular values below cutoff * s_max")
    dec.add_argument("--max-discarded", type=float, help="largest discarded weight per bond (relative)")
    dec.add_argument("--max-entropy-loss", type=float, help="largest relative entropy loss per bond")
    dec.add_argument("--compression", type=float, help="target compression ratio (sets a parameter budget)")
    dec.add_argument("--svd", default="auto", help="SVD method (auto, lapack, randomized)")
    dec.add_argument("--exact", action="store_true",
                     help="keep every singular value (without flags, values below 16 eps s_max, rounding noise, "
                          "are dropped: tnlib.Truncation.default), without a warning when the MPO stores more "
                          "than the input")
    dec.add_argument("--out-of-core", action="store_true",
                     help="stream a .npy larger than memory block by block (dask; needs a per-bond truncation)")
    dec.add_argument("--single-pass", action="store_true",
                     help="with --out-of-core: read the file once (a co-range sketch of the first unfolding is "
                          "held instead of the remainder; needs --max-bond well below out_dims[0] * in_dims[0]); "
                          "the report's certificate bounds the error")
    dec.add_argument("--chunk-rows", type=int,
                     help="rows per block with --out-of-core (default: sized to the first of --out-dims)")

    info = sub.add_parser("info", help="describe a file written by tnlib")
    info.add_argument("input", help="file written by tnlib (tnlib decompose -o, tnlib.save, tnlib.nn.save)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        {"decompose": _decompose, "spectrum": _spectrum, "info": _info}[args.command](args)
    except (_UsageError, ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        message = _as_flags(str(exc))
        print(f"tnlib: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. head
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
