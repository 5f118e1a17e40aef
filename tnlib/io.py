"""Save and load MPS, MPO and Spectrum objects as versioned ``.npz`` files.

A file is a NumPy ``.npz`` archive (never pickle) holding the arrays
(``core_0``, ``core_1``, ... or ``sv_0``, ...) and one ``__tnlib__`` entry: a
JSON header with the format name and version, the kind of object, dims,
dtype, centre and truncation report. Cores are stored as NumPy arrays, so a
round trip is bit-exact; :func:`load` returns NumPy-backed objects (move
them to another library with its ``asarray``).

Loading checks everything before building anything: a missing, truncated,
corrupt, foreign or newer-version file raises an error that names the file.
"""

from __future__ import annotations

import dataclasses
import io as _io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from ._backend import to_host
from ._chain import rebuild, site_cores
from ._checks import is_int
from ._files import atomic_write
from .cross import CrossReport
from .mpo import MPO
from .mps import MPS
from .spectra import Spectrum
from .truncation import SketchCertificate, Truncation, TruncationReport

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "tnlib"
FORMAT_VERSION = 1
_HEADER = "__tnlib__"
_R = TypeVar("_R")


def _report_to_json(report: TruncationReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    out = dataclasses.asdict(report)
    if report.truncation is not None:
        out["truncation"] = dataclasses.asdict(report.truncation)
    return out


def _report_from_json(data: dict[str, Any] | None) -> TruncationReport | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise _Bad(f"corrupt tnlib file: the report is a {type(data).__name__}, expected an object")
    trunc = data.get("truncation")
    if trunc is not None and not isinstance(trunc, dict):
        raise _Bad(f"corrupt tnlib file: the report's truncation is a {type(trunc).__name__}, expected an object")
    return TruncationReport(
        tuple(int(v) for v in data["bond_dims"]),
        tuple(int(v) for v in data["full_bond_dims"]),
        tuple(float(v) for v in data["discarded"]),
        float(data["norm"]),
        None if trunc is None else Truncation(**trunc),
        None if data.get("error") is None else float(data["error"]),
        None if data.get("output_error") is None else float(data["output_error"]),
        None if data.get("relative") is None else tuple(float(v) for v in data["relative"]),
        None if data.get("held_out_error") is None else float(data["held_out_error"]),
        None if data.get("shrinkage") is None else float(data["shrinkage"]),
        _cross_from_json(data.get("cross")),
        _certificate_from_json(data.get("certificate")),
        _unmet_from_json(data.get("unmet", ())),
        None if data.get("gathered_bytes") is None else int(data["gathered_bytes"]),
    )


def _unmet_from_json(data: Any) -> tuple[str, ...]:
    if not isinstance(data, (list, tuple)) or not all(isinstance(u, str) for u in data):
        raise _Bad(f"corrupt tnlib file: the report's unmet guarantees are {data!r}, expected a list of strings")
    return tuple(data)


def _certificate_from_json(data: Any) -> SketchCertificate | None:
    return _record_from_json(data, "certificate is", lambda d: SketchCertificate(
        float(d["error_estimate"]), float(d["error_bound"]), float(d["probability"]),
        int(d["probes"]), tuple(int(v) for v in d["power_iterations"]), tuple(bool(v) for v in d["sketched"]),
    ))


def _cross_from_json(data: Any) -> CrossReport | None:
    return _record_from_json(data, "cross statistics are", lambda d: CrossReport(
        int(d["evals"]), int(d["calls"]), int(d["sweeps"]),
        None if d.get("error") is None else float(d["error"]), int(d["check_size"]),
        bool(d["converged"]), str(d["stopped"]), tuple(float(v) for v in d.get("history", ())),
    ))


def _record_from_json(data: Any, what: str, build: Callable[[dict[str, Any]], _R]) -> _R | None:
    """A report's nested record (``None`` stays ``None``), refused as a corrupt file naming ``what`` when
    it is not an object or lacks a field."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise _Bad(f"corrupt tnlib file: the report's {what} a {type(data).__name__}, expected an object")
    try:
        return build(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise _Bad(f"corrupt tnlib file: the report's {what} incomplete ({exc})") from None


def save(path: str | os.PathLike[str], obj: MPS | MPO | Spectrum) -> None:
    """Write ``obj`` to ``path`` (any extension; ``.tnz`` is customary).

    The file is written to a temporary name and renamed, so an interrupted
    save never leaves a half-written file under ``path``.

    Examples
    --------
    >>> import numpy as np, tnlib, tempfile, os
    >>> mps = tnlib.MPS.from_dense(np.arange(8.0).reshape(2, 2, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "state.tnz")
    >>> tnlib.save(path, mps)
    >>> back = tnlib.load(path)
    >>> back.bond_dims == mps.bond_dims and all((a == b).all() for a, b in zip(back.cores, mps.cores))
    True
    """
    arrays: dict[str, np.ndarray] = {}
    if isinstance(obj, (MPS, MPO)):
        header = {
            "kind": type(obj).__name__,
            "dtype": str(to_host(obj.cores[0]).dtype),
            "num_sites": obj.num_sites,
            "center": obj.center,
            "report": _report_to_json(obj.report),
        }
        if isinstance(obj, MPO):
            header["shape"] = list(obj.shape)
        for k, core in enumerate(obj.cores):
            arrays[f"core_{k}"] = np.ascontiguousarray(to_host(core))
    elif isinstance(obj, Spectrum):
        header = {"kind": "Spectrum", "of": obj.kind, "phys_dims": list(obj.phys_dims), "num_bonds": obj.num_bonds}
        for k, s in enumerate(obj.singular_values):
            arrays[f"sv_{k}"] = np.asarray(s)
    else:
        raise TypeError(f"obj must be an MPS, MPO or Spectrum, got {type(obj).__name__}")
    header.update(format=FORMAT, version=FORMAT_VERSION)
    arrays[_HEADER] = np.array(json.dumps(header))
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


class _Bad(ValueError):
    pass


def load(path: str | os.PathLike[str]) -> MPS | MPO | Spectrum:
    """Read an object written by :func:`save`.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a tnlib file, is truncated or corrupt, is
        inconsistent, or was written by a newer format version; the message
        names the file.

    Examples
    --------
    >>> import os, tempfile, numpy as np, tnlib
    >>> mpo = tnlib.MPO.from_matrix(np.eye(16), (4, 4), (4, 4))
    >>> path = os.path.join(tempfile.mkdtemp(), "eye.tnz")
    >>> tnlib.save(path, mpo)
    >>> bool(np.allclose(tnlib.load(path).to_matrix(), np.eye(16)))
    True
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = path.read_bytes()
        if data.startswith(b"\x93NUMPY"):
            raise _Bad("not a tnlib file (a plain .npy array)")
        if not data.startswith(b"PK"):
            raise _Bad("not a readable tnlib file (not an .npz archive)")
        with np.load(_io.BytesIO(data), allow_pickle=False) as archive:
            if _HEADER not in archive.files:
                raise _Bad("not a tnlib file (no tnlib header; is it a plain .npz?)")
            header = json.loads(str(archive[_HEADER][()]))
            arrays = {name: archive[name] for name in archive.files if name != _HEADER}
        return _build(header, arrays)
    except _Bad as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable tnlib file (truncated or corrupt: {exc})") from None
    except MemoryError:
        raise ValueError(f"{path}: corrupt tnlib file: an array declares more entries than memory holds") from None
    except RecursionError:
        raise ValueError(f"{path}: corrupt tnlib file: its header nests too deeply") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: corrupt tnlib file: {exc}") from None


def _check_center(obj: MPS | MPO, center: int) -> None:
    """The cores left of ``center`` must be left-orthonormal and those right of it right-orthonormal."""
    tol = 1e-4 if obj.dtype in (np.float32, np.complex64) else 1e-8
    for k, core in enumerate(site_cores(obj)):
        if k == center:
            continue
        left, phys, right = core.shape
        m = core.reshape(left * phys, right) if k < center else core.reshape(left, phys * right).conj().T
        gram = m.conj().T @ m
        if not np.allclose(gram, np.eye(gram.shape[0]), atol=tol):
            side = "left" if k < center else "right"
            raise _Bad(f"header claims centre {center} but core {k} is not {side}-orthonormal")


def _build(header: Any, arrays: dict[str, np.ndarray]) -> MPS | MPO | Spectrum:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _Bad("not a tnlib file (foreign header)")
    version: Any = header.get("version")
    if not is_int(version) or version < 1:
        raise _Bad(f"invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise _Bad(
            f"written by format version {version}; this tnlib reads up to version "
            f"{FORMAT_VERSION}: upgrade tnlib"
        )
    kind = header.get("kind")
    if kind in ("MPS", "MPO"):
        return _build_chain(kind, header, arrays)
    if kind == "Spectrum":
        return _build_spectrum(header, arrays)
    raise _Bad(f"unknown object kind {kind!r}")


def _build_chain(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> MPS | MPO:
    n = header.get("num_sites")
    if not is_int(n) or n != len(arrays) or n < 1:
        raise _Bad(f"header declares num_sites={n!r} but the file holds {len(arrays)} arrays")
    names = [f"core_{k}" for k in range(n)]
    if sorted(arrays) != sorted(names):
        raise _Bad(f"expected arrays {names}, found {sorted(arrays)}")
    cores = [arrays[name] for name in names]
    if any(str(c.dtype) != header["dtype"] for c in cores):
        raise _Bad(f"core dtypes do not match the header's {header['dtype']}")
    obj: MPS | MPO
    if kind == "MPS":
        obj = MPS(cores)
    else:
        shape = header.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(is_int(d) for d in shape)):
            raise _Bad(f"invalid MPO shape {shape!r} in the header; expected [M, N]")
        obj = MPO(cores, shape=(int(shape[0]), int(shape[1])))
    center = header.get("center")
    if center is not None and not (is_int(center) and 0 <= center < n):
        raise _Bad(f"invalid center {center!r}")
    if center is not None:
        _check_center(obj, center)
    report = _report_from_json(header.get("report"))
    if report is not None and len(report.bond_dims) != n - 1:
        raise _Bad(f"the report describes {len(report.bond_dims)} bonds but the chain has {n - 1}")
    return rebuild(obj, center, report)


def _build_spectrum(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Spectrum:
    n = header.get("num_bonds")
    if not is_int(n) or n != len(arrays):
        raise _Bad(f"header declares num_bonds={n!r} but the file holds {len(arrays)} arrays")
    names = [f"sv_{k}" for k in range(n)]
    if sorted(arrays) != sorted(names):
        raise _Bad(f"expected arrays {names}, found {sorted(arrays)}")
    values = tuple(np.array(arrays[name], dtype=np.float64) for name in names)
    if any(v.ndim != 1 or v.size == 0 for v in values):
        raise _Bad("singular values must be non-empty 1-D arrays")
    if any(not np.all(np.isfinite(v)) or np.any(v < 0) for v in values):
        raise _Bad("singular values must be finite and non-negative")
    return Spectrum(values, tuple(int(d) for d in header["phys_dims"]), str(header["of"]))
