"""Shared fixtures: array backends (library x device) and dtypes, and converters to NumPy.

The backend axis holds every (library, device) pair this machine can run:
NumPy, ``array_api_strict`` and PyTorch on the CPU everywhere; PyTorch on
CUDA and CuPy where a GPU is present (CuPy without a GPU is the one
acceptable skip).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import settings

from tnlib._backend import to_host

# Property tests draw the same examples on every run (a test's own @settings inherits this), so that CI is
# reproducible: a failure found once is found again, and a green run is not a lucky draw.
settings.register_profile("reproducible", derandomize=True)
settings.load_profile("reproducible")


def _torch_has_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


BACKENDS = ["numpy", "array_api_strict", "torch"]
if _torch_has_cuda():
    BACKENDS.append("torch-cuda")
if importlib.util.find_spec("cupy") is not None:
    BACKENDS.append("cupy")

DTYPES = ["float32", "float64", "complex64", "complex128"]

# Tolerances for a reconstruction error relative to the input's norm.
RTOL = {"float32": 1e-5, "complex64": 1e-5, "float64": 1e-12, "complex128": 1e-12}


def _module(name: str):
    if name == "cupy":
        cupy = pytest.importorskip("cupy")
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception:  # noqa: BLE001 - no GPU: the one acceptable skip
            pytest.skip("CuPy is installed but no GPU is available")
        return cupy
    if name == "torch":
        return pytest.importorskip("torch")
    return pytest.importorskip(name)


class Backend:
    """Creates arrays of one library from NumPy data."""

    def __init__(self, name: str):
        library, _, device = name.partition("-")
        self.name = library
        self.device = device or ("cuda" if library == "cupy" else "cpu")
        self.mod = _module(library)

    def asarray(self, a: np.ndarray, dtype: str | None = None):
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        if self.name == "torch":
            return self.mod.asarray(a.copy(), device=self.device)
        if self.name == "cupy":
            return self.mod.asarray(a)
        return self.mod.asarray(a)

    def is_mine(self, x) -> bool:
        import array_api_compat

        checks = {
            "numpy": array_api_compat.is_numpy_array,
            "torch": array_api_compat.is_torch_array,
            "cupy": array_api_compat.is_cupy_array,
            "array_api_strict": lambda y: type(y).__module__.startswith("array_api_strict"),
        }
        if not checks[self.name](x):
            return False
        if self.name == "torch":
            return x.device.type == self.device
        return True


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    """One (library, device) pair; ``backend.is_mine(x)`` also checks the device."""
    return Backend(request.param)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch seed (when torch is installed)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(0)


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


def random_array(shape, dtype: str = "float64", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def host(x) -> np.ndarray:
    return np.asarray(to_host(x))


def rel_err(a, b) -> float:
    a, b = host(a), host(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
