"""``tnlib.show_versions()``: what a bug report needs to know about the installation."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from typing import Any

import tnlib

__all__ = ["show_versions", "versions"]

_LIBRARIES = ("numpy", "scipy", "opt_einsum", "array_api_compat", "torch", "safetensors", "jax", "cupy", "dask",
              "matplotlib", "tqdm", "onnx", "onnxruntime")


def _version(name: str) -> str | None:
    """The installed version of ``name`` (its distribution, else its module), or ``None`` when absent; never
    imports it."""
    for dist in (name, name.replace("_", "-"), "cupy-cuda12x" if name == "cupy" else name):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _blas() -> list[str]:
    """The BLAS/LAPACK libraries NumPy loaded and their threads (threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["(install threadpoolctl to list the BLAS libraries and their threads)"]
    return [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads) {i.get('filepath')}"
            for i in threadpool_info()]


def versions() -> dict[str, Any]:
    """tnlib's, Python's and the platform's versions, every optional library's (``None``: not installed) and
    the BLAS in use, as a dict.

    Examples
    --------
    >>> import tnlib
    >>> info = tnlib.versions()
    >>> info["tnlib"] == tnlib.__version__, "numpy" in info["libraries"]
    (True, True)
    """
    return {
        "tnlib": tnlib.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "blas": _blas(),
    }


def show_versions() -> None:
    """Print :func:`versions` as lines to paste into a bug report.

    Examples
    --------
    >>> import tnlib
    >>> tnlib.show_versions()  # doctest: +ELLIPSIS
    tnlib ...
    python ...
    """
    info = versions()
    print(f"tnlib {info['tnlib']}")
    print(f"python {info['python']} on {info['platform']}")
    for name, version in info["libraries"].items():
        print(f"  {name:<17} {version or 'not installed'}")
    for line in info["blas"]:
        print(f"  blas {line}")
