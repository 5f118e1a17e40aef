"""The LSTM and GRU recurrences of :mod:`tnlib.rnn` on trusted inputs, in any array namespace.

:func:`tnlib.lstm_forward` and :func:`tnlib.gru_forward` validate their
arguments and then run :func:`input_gates` and :func:`lstm_sequence` /
:func:`gru_sequence`; the torch layers of :mod:`tnlib.nn`, which check their
inputs themselves, call these directly (a decoder calls a layer once per
step, where the checks would cost as much as the step). The one-step updates
:func:`lstm_cell` and :func:`gru_cell` (public in :mod:`tnlib.rnn`) live here
too. A step at batch 1 is bound by its number of array operations, not their
size, so each is written with few (one sigmoid for three LSTM gates, fused
``addcmul`` and ``lerp`` where the namespace has them).
"""

from __future__ import annotations

from typing import Any, Callable

import array_api_compat

from ._backend import namespace

__all__ = ["input_gates", "lstm_sequence", "gru_sequence", "lstm_cell", "gru_cell"]


def input_gates(xp: Any, x: Any, f_ih: Callable[[Any], Any], bias: Any) -> Any:
    """``W_ih x_t + bias`` for every step of ``x`` ``(T, B, I)`` in one batched application: ``(T, B, gates H)``."""
    steps, batch, n_in = x.shape  # not int(): a batch left symbolic by torch.export stays so
    gates_in = f_ih(xp.reshape(x, (steps * batch, n_in)))
    gates_in = xp.reshape(gates_in, (steps, batch, gates_in.shape[-1]))
    return gates_in if bias is None else gates_in + bias


def _zeros(xp: Any, gates_in: Any, gates: int) -> Any:
    batch, width = gates_in.shape[1], int(gates_in.shape[2])  # the batch may be symbolic (torch.export)
    return xp.zeros((batch, width // gates), dtype=gates_in.dtype, device=array_api_compat.device(gates_in))


def _steps(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def lstm_sequence(xp: Any, gates_in: Any, f_hh: Callable[[Any], Any], h0: Any, c0: Any,
                  reverse: bool) -> tuple[Any, tuple[Any, Any]]:
    """The LSTM recurrence over ``gates_in`` ``(T, B, 4H)`` (input gates with both biases) from ``h0``, ``c0``
    (zeros when ``None``): ``(output (T, B, H), (h_n, c_n))``."""
    h = h0 if h0 is not None else _zeros(xp, gates_in, 4)
    c = c0 if c0 is not None else _zeros(xp, gates_in, 4)
    steps = int(gates_in.shape[0])
    outputs: list[Any] = [None] * steps
    for t in _steps(steps, reverse):
        h, c = lstm_cell(gates_in[t, ...], h, c, f_hh, xp=xp)
        outputs[t] = h
    return xp.stack(outputs, axis=0), (h, c)


def gru_sequence(xp: Any, gates_in: Any, f_hh: Callable[[Any], Any], b_hh: Any, h0: Any,
                 reverse: bool) -> tuple[Any, Any]:
    """The GRU recurrence over ``gates_in`` ``(T, B, 3H)`` (input gates with ``b_ih``) from ``h0`` (zeros when
    ``None``): ``(output (T, B, H), h_n)``."""
    h = h0 if h0 is not None else _zeros(xp, gates_in, 3)
    steps = int(gates_in.shape[0])
    outputs: list[Any] = [None] * steps
    for t in _steps(steps, reverse):
        h = gru_cell(gates_in[t, ...], h, f_hh, b_hh, xp=xp)
        outputs[t] = h
    return xp.stack(outputs, axis=0), h


def _sigmoid(xp: Any, x: Any) -> Any:
    native = getattr(xp, "sigmoid", None)  # one fused kernel where the library has one (torch)
    return native(x) if native is not None else 1.0 / (1.0 + xp.exp(-x))


def _addcmul(xp: Any, a: Any, b: Any, c: Any) -> Any:
    """``a + b * c``, in one kernel where the library has one (torch): a step at batch 1 is bound by the
    number of operations, not their size."""
    native = getattr(xp, "addcmul", None)
    return native(a, b, c) if native is not None else a + b * c


def lstm_cell(gates_in: Any, h: Any, c: Any, f_hh: Callable[[Any], Any], *, xp: Any = None) -> tuple[Any, Any]:
    """One LSTM step: ``gates_in = W_ih x + b_ih + b_hh`` (``(B, 4H)``), states ``(B, H)``.

    ``xp`` is the array namespace (default: found from ``gates_in``); pass it
    to skip the look-up, e.g. ``xp=torch`` inside a captured graph.
    """
    xp = namespace(gates_in) if xp is None else xp
    hidden = int(h.shape[-1])
    z = gates_in + f_hh(h)
    s = _sigmoid(xp, z)  # the input, forget and output gates in one call (the g block's values go unused)
    g = xp.tanh(z[:, 2 * hidden : 3 * hidden])
    c = _addcmul(xp, s[:, hidden : 2 * hidden] * c, s[:, :hidden], g)
    return s[:, 3 * hidden :] * xp.tanh(c), c


def gru_cell(gates_in: Any, h: Any, f_hh: Callable[[Any], Any], b_hh: Any = None, *, xp: Any = None) -> Any:
    """One GRU step: ``gates_in = W_ih x + b_ih`` (``(B, 3H)``), ``b_hh`` ``(3H,)`` or ``None``, ``h`` ``(B, H)``;
    ``xp`` as in :func:`lstm_cell`."""
    xp = namespace(gates_in) if xp is None else xp
    hidden = int(h.shape[-1])
    hh = f_hh(h)
    if b_hh is not None:
        hh = hh + b_hh
    rz = _sigmoid(xp, gates_in[:, : 2 * hidden] + hh[:, : 2 * hidden])  # reset and update gates in one call
    r, z = rz[:, :hidden], rz[:, hidden:]
    n = xp.tanh(_addcmul(xp, gates_in[:, 2 * hidden :], r, hh[:, 2 * hidden :]))
    lerp = getattr(xp, "lerp", None)  # n + z (h - n) in one kernel where the library has one (torch)
    return lerp(n, h, z) if lerp is not None else (1.0 - z) * n + z * h


