"""Array namespaces, input validation and host transfers.

The backend of every computation is found from its inputs with
:func:`array_api_compat.array_namespace`; there is no global switch. NumPy,
CuPy, PyTorch and any Array-API library (for example ``array_api_strict``)
work the same way, and results keep the input's namespace, dtype and device.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Iterator

import array_api_compat
import numpy as np

from ._jax import is_tracer

__all__ = [
    "capturing",
    "namespace",
    "as_array",
    "scalar",
    "as_matrix",
    "frobenius_norm",
    "BLOCK_BYTES",
    "block_size",
    "leading_blocks",
    "sum_squares",
    "check_floating",
    "check_finite",
    "to_host",
    "itemsize",
    "prod",
    "SUPPORTED_DTYPES",
]

SUPPORTED_DTYPES = ("float32", "float64", "complex64", "complex128")
HALF_DTYPES = ("float16", "bfloat16")  # arithmetic only (recurrences, products); never decomposed


def capturing(*arrays: Any) -> bool:
    """Whether a torch graph is being captured (``torch.compile``, ``torch.export``, ONNX export,
    ``torch.jit.trace``): values cannot be read then, and neither opt_einsum's path search nor a Python cache
    can be traced. With ``arrays``, only when one of them is a torch tensor; with none, whenever torch is
    capturing (the torch layers ask before they choose a kernel). Never imports torch."""
    if arrays and not any(array_api_compat.is_torch_array(a) for a in arrays):
        return False
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())


def namespace(*arrays: Any) -> Any:
    """Return the Array-API namespace shared by ``arrays``."""
    return array_api_compat.array_namespace(*arrays)


def scalar(x: Any) -> float:
    """``float(x)`` of a 0-d array, read without recording it in an autograd graph (a value for a decision
    or a report, never part of a differentiable result).

    Under a JAX transformation (``jit``, ``grad``) there is no value to read: that is refused with a
    ``TypeError`` saying so, instead of JAX's tracer error from deep inside.
    """
    if is_tracer(x):
        raise TypeError(
            "this tnlib operation reads a value of its input to choose a scale, a rank or a report (it is "
            "data-dependent) and cannot run on traced JAX values inside jax.jit / jax.grad; call it outside the "
            "transformed function (apply, @, to_dense, to_matrix, trace, canonicalize, inner and chain algebra "
            "can be traced)"
        )
    detach = getattr(x, "detach", None)
    return float(detach() if callable(detach) else x)


def as_array(value: Any, name: str) -> Any:
    """Return ``value`` unchanged if it is an array, else ``numpy.asarray(value)``.

    Lists, tuples and scalars have no backend of their own; they become NumPy
    arrays, so ``MPS.from_dense([[1.0, 0.0], [0.0, 1.0]])`` works. A torch
    tensor that requires grad stays in its autograd graph: results are
    differentiable with respect to it (pass ``x.detach()`` for a detached
    result).
    """
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; tnlib would ignore its mask. Fill it first "
            f"(numpy.ma.filled({name}, 0.0)) or pass {name}.data if the mask does not matter"
        )
    if array_api_compat.is_torch_array(value):
        if value.device.type == "meta":
            raise ValueError(f"{name} is on torch's 'meta' device and has no data; move it to a real device")
    if isinstance(value, np.ndarray) and not value.dtype.isnative:
        return value.astype(value.dtype.newbyteorder("="))  # big-endian data (from another machine's file)
    if array_api_compat.is_array_api_obj(value):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be an array (NumPy, CuPy, PyTorch or any Array-API "
            f"library), got {type(value).__name__} that numpy.asarray cannot "
            f"convert: {exc}"
        ) from None


def _dtype_name(xp: Any, dtype: Any, names: tuple[str, ...] = SUPPORTED_DTYPES) -> str | None:
    for name in names:
        if dtype == getattr(xp, name, None):
            return name
    return None


def check_floating(x: Any, name: str, *, half: bool = False) -> str:
    """Raise ``TypeError`` unless ``x`` has a supported floating dtype.

    Returns the dtype's name (one of :data:`SUPPORTED_DTYPES`, or of
    :data:`HALF_DTYPES` where ``half`` allows them: arithmetic such as a
    recurrence, never a decomposition).
    """
    xp = namespace(x)
    names = SUPPORTED_DTYPES + HALF_DTYPES if half else SUPPORTED_DTYPES
    found = _dtype_name(xp, x.dtype, names)
    if found is None:
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected one of "
            f"{', '.join(names)}. Convert it first, e.g. "
            f"{name}.astype('float64') for NumPy or {name}.double() for torch"
        )
    return found


def is_array_like(value: Any) -> bool:
    """Whether ``value`` is an array of some library, a nested list or tuple, a number or a string (what
    :func:`as_array` reads or refuses itself), as opposed to a handle to data elsewhere (a future)."""
    return (array_api_compat.is_array_api_obj(value) or isinstance(value, (np.ndarray, list, tuple, str, bytes))
            or isinstance(value, (int, float, complex)))


def as_matrix(value: Any, name: str = "matrix", hint: str = "") -> Any:
    """``value`` as a non-empty, finite 2-D array of a supported dtype, or an error naming ``name``."""
    a = as_array(value, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (M, N), got shape {tuple(a.shape)}{hint}")
    if 0 in a.shape:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(a.shape)}")
    check_floating(a, name)
    check_finite(a, name)
    return a


BLOCK_BYTES = 16 * 2**20
"""Largest temporary (bytes) of the blockwise reductions over large arrays."""


def block_size(nbytes: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Bytes per block for a blockwise pass over ``nbytes``: ``block_bytes``, or an eighth of the array
    when that is smaller (but not below 256 KiB), so that temporaries stay small next to the array."""
    return min(block_bytes, max(2**18, nbytes // 8))


def leading_blocks(x: Any, block_bytes: int = BLOCK_BYTES) -> Iterator[Any]:
    """Slices of ``x`` along its first axis of at most about ``block_bytes`` each (``x`` itself when smaller).

    Reductions over a large array run block by block so that their
    temporaries (``abs``, squares, a scaled copy) stay at one block's size
    instead of the whole array's.
    """
    size = array_api_compat.size(x) or 0
    nbytes = size * itemsize(x)
    block_bytes = block_size(nbytes, block_bytes)
    if x.ndim == 0 or nbytes <= block_bytes:
        yield x
        return
    rows = x.shape[0]
    step = max(1, (rows * block_bytes) // nbytes)
    for i in range(0, rows, step):
        yield x[i : min(i + step, rows), ...]


def sum_squares(x: Any, block_bytes: int = BLOCK_BYTES) -> float:
    """``||x||_F^2`` as a Python float, block by block (no scaling: for arrays near unit scale)."""
    xp = namespace(x)
    return sum(scalar(xp.linalg.vector_norm(b)) ** 2 for b in leading_blocks(x, block_bytes))


def frobenius_norm(x: Any, block_bytes: int = BLOCK_BYTES) -> float:
    """``||x||_F`` as a Python float, scaled by the largest entry first so that neither tiny nor huge
    entries under- or overflow in the sum of squares; block by block, so the extra memory is a few
    blocks of ``block_bytes`` whatever the size of ``x``."""
    xp = namespace(x)
    if not array_api_compat.size(x):
        return 0.0
    peak = max(_peak(xp, b) for b in leading_blocks(x, block_bytes))
    if peak == 0.0 or not math.isfinite(peak):
        return peak
    low, high = _SAFE_SINGLE if is_single(x) else _SAFE_DOUBLE
    if low < peak < high / math.sqrt(array_api_compat.size(x) or 1):
        # no square can overflow, and those that underflow are below 2^-1000 of the largest: no scaling
        return math.sqrt(sum(scalar(xp.linalg.vector_norm(b)) ** 2 for b in leading_blocks(x, block_bytes)))
    scaled = (scalar(xp.linalg.vector_norm(b / peak)) ** 2 for b in leading_blocks(x, block_bytes))
    return peak * math.sqrt(sum(scaled))


# peaks between which the plain sum of squares neither overflows nor loses what matters to underflow
_SAFE_DOUBLE, _SAFE_SINGLE = (2.0**-400, 2.0**400), (2.0**-30, 2.0**60)


def is_single(x: Any) -> bool:
    """Whether ``x`` is float32 or complex64."""
    name = str(x.dtype)
    return "float32" in name or "complex64" in name


def rounding_unit(x: Any) -> float:
    """The machine epsilon of ``x``'s precision (float32 / complex64, else float64)."""
    return float(np.finfo(np.float32 if is_single(x) else np.float64).eps)


def _peak(xp: Any, b: Any) -> float:
    """``max |b|`` (NaN if ``b`` holds one); a real NumPy block by two reductions, without an array of
    absolute values."""
    if isinstance(b, np.ndarray) and not np.iscomplexobj(b):
        hi, lo = float(np.max(b)), float(np.min(b))
        return math.nan if math.isnan(hi) or math.isnan(lo) else max(hi, -lo)
    return scalar(xp.max(xp.abs(b)))


def binary_exponent(x: Any) -> int:
    """The power of two of the largest entry of ``x`` (``frexp``'s exponent; 0 for a zero or non-finite ``x``):
    dividing by ``2**binary_exponent(x)`` brings ``x`` to unit scale exactly."""
    xp = namespace(x)
    peak = scalar(xp.max(xp.abs(x))) if array_api_compat.size(x) else 0.0
    return math.frexp(peak)[1] if peak > 0 and math.isfinite(peak) else 0


def far_exponent(x: Any) -> int:
    """:func:`binary_exponent` when ``x`` is far from unit scale (beyond ``2**+-100``), else 0: what is
    that far out is worked on at unit scale, where no product or square of its entries under- or overflows."""
    e = binary_exponent(x)
    return e if abs(e) > 100 else 0


def times_power_of_two(x: Any, e: int) -> Any:
    """``x * 2**e`` exactly where the result is in range, saturating to ``inf`` / 0 beyond it (never NaN):
    applied in steps of at most ``2**+-100`` (within float32's range), stopping once every entry is 0 or inf."""
    xp = namespace(x)
    while e:
        step = max(-100, min(100, e))
        with np.errstate(over="ignore", under="ignore"):  # saturating is the documented result
            x = x * (2.0**step)
        e -= step
        if not bool(xp.any(xp.isfinite(x) & (x != 0))):
            break
    return x


def itemsize(x: Any) -> int:
    """Bytes per entry of an array of a supported dtype."""
    name = _dtype_name(namespace(x), x.dtype)
    return {"float32": 4, "float64": 8, "complex64": 8, "complex128": 16}.get(name or "", 8)


def check_finite(x: Any, name: str, block_bytes: int = BLOCK_BYTES) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite entries (checked block by block).

    A value being traced by JAX has no entries yet: it is checked when it is
    concrete (eager calls), not inside ``jit``.
    """
    if is_tracer(x) or capturing(x):
        return
    xp = namespace(x)
    if not all(_finite(xp, b) for b in leading_blocks(x, block_bytes)):
        bad = sum(int(xp.sum(xp.astype(~xp.isfinite(b), xp.int64))) for b in leading_blocks(x, block_bytes))
        raise ValueError(
            f"{name} has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'}"
            f" out of {array_api_compat.size(x)}; expected finite values"
        )


def _finite(xp: Any, b: Any) -> bool:
    """Whether every entry of the block ``b`` is finite (a real NumPy block: its :func:`_peak` is).

    Elsewhere a finite sum proves it (a NaN or infinite entry makes the sum NaN or infinite) at a
    seventeenth of ``all(isfinite(b))``'s time on a CPU torch tensor, which allocates a mask; only a sum
    that overflows (or a block that does hold one) pays for the mask.
    """
    if isinstance(b, np.ndarray) and not np.iscomplexobj(b) and b.size:
        return math.isfinite(_peak(xp, b))
    return bool(xp.all(xp.isfinite(xp.sum(b)))) or bool(xp.all(xp.isfinite(b)))


def to_host(x: Any) -> np.ndarray:
    """Copy a (small) array to a NumPy array on the host.

    Used only off the hot path: for singular-value spectra that drive host-side
    decisions (bond allocation) and for printing.
    """
    if isinstance(x, np.ndarray):
        return x
    if is_tracer(x):
        raise TypeError(
            "this tnlib operation reads its input onto the host (NumPy) and cannot run on traced JAX values inside "
            "jax.jit / jax.grad; call it outside the transformed function"
        )
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    try:
        return np.from_dlpack(x)
    except Exception:  # noqa: BLE001 - any library-specific failure
        return np.asarray(array_api_compat.to_device(x, "cpu"))


def prod(values: Any) -> int:
    """The product of ``values`` as a Python int (a plain loop, so graph tracers such as
    ``torch.compile`` fold it to a constant)."""
    out = 1
    for v in values:
        out *= int(v)
    return out
