"""LSTM inference with MPO (or any) weight operators, on any array library.

:func:`lstm_forward` runs one LSTM layer in one direction with the gate
layout of ``torch.nn.LSTM``: the pre-activations ``W_ih x_t + b_ih + W_hh
h_{t-1} + b_hh`` are stacked ``(i, f, g, o)`` along the ``4H`` rows, and::

    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

``W_ih`` and ``W_hh`` may be :class:`tnlib.MPO` objects (as in the MPO-LSTM of
Gao et al. 2020, where the four gates are stacked along the output and the
factor 4 sits in the first output leg), dense arrays, or any callable that
maps ``(batch, in)`` to ``(batch, 4H)``. The input projection of every time
step is done in one batched application; only the recurrence is sequential.
No torch is needed: a compressed model runs on NumPy or CuPy.
"""

from __future__ import annotations

from typing import Any, Callable

import array_api_compat

from ._backend import as_array, check_floating, namespace
from .mpo import MPO

__all__ = ["lstm_forward"]

Operator = Any  # MPO, a (4H, N) array, or a callable (batch, N) -> (batch, 4H)


def _as_function(op: Operator, name: str) -> tuple[Callable[[Any], Any], int, int]:
    if isinstance(op, MPO):
        return op.apply, op.shape[0], op.shape[1]
    if callable(op) and not hasattr(op, "shape"):
        return op, -1, -1
    w = as_array(op, name)
    if w.ndim != 2:
        raise ValueError(f"{name} must be an MPO, a 2-D (4H, N) array or a callable, got shape {tuple(w.shape)}")
    xp = namespace(w)
    wt = xp.matrix_transpose(w)
    return (lambda x: x @ wt), int(w.shape[0]), int(w.shape[1])


def _sigmoid(xp: Any, x: Any) -> Any:
    return 1.0 / (1.0 + xp.exp(-x))


def lstm_forward(
    x: Any,
    w_ih: Operator,
    w_hh: Operator,
    bias: Any = None,
    h0: Any = None,
    c0: Any = None,
    *,
    reverse: bool = False,
) -> tuple[Any, tuple[Any, Any]]:
    """One LSTM layer, one direction, over a whole sequence.

    Parameters
    ----------
    x : array, shape (T, B, I)
        Time-major input.
    w_ih, w_hh
        Input-to-hidden ``(4H, I)`` and hidden-to-hidden ``(4H, H)`` operators:
        :class:`tnlib.MPO`, arrays, or callables ``(batch, N) -> (batch, 4H)``.
    bias : array, shape (4H,), optional
        ``b_ih + b_hh``.
    h0, c0 : arrays, shape (B, H), optional
        Initial states (zeros by default).
    reverse
        Run from the last time step to the first (the backward direction of a
        bidirectional LSTM); outputs stay in time order.

    Returns
    -------
    output, (h_n, c_n)
        ``output`` of shape ``(T, B, H)``; final states ``(B, H)``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> rng = np.random.default_rng(0)
    >>> H, I = 8, 4
    >>> W_ih, W_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    >>> mpo_ih = tnlib.MPO.from_matrix(W_ih, (8, 4), (2, 2))
    >>> out, (h, c) = tnlib.lstm_forward(rng.standard_normal((5, 3, I)), mpo_ih, W_hh)
    >>> out.shape, h.shape
    ((5, 3, 8), (3, 8))
    """
    x = as_array(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must be (T, B, I) (time-major), got shape {tuple(x.shape)}")
    check_floating(x, "x")
    xp = namespace(x)
    steps, batch, n_in = (int(d) for d in x.shape)
    f_ih, rows_ih, cols_ih = _as_function(w_ih, "w_ih")
    f_hh, rows_hh, cols_hh = _as_function(w_hh, "w_hh")
    if cols_ih not in (-1, n_in):
        raise ValueError(f"w_ih has {cols_ih} columns but x has {n_in} features; expected (4H, {n_in})")
    if rows_hh != -1 and (rows_hh % 4 or cols_hh * 4 != rows_hh):
        raise ValueError(f"w_hh has shape ({rows_hh}, {cols_hh}); expected (4H, H)")
    if rows_ih != -1 and rows_hh != -1 and rows_ih != rows_hh:
        raise ValueError(f"w_ih has {rows_ih} rows but w_hh has {rows_hh}; both must be 4H")
    gates_in = f_ih(xp.reshape(x, (steps * batch, n_in)))
    four_h = int(gates_in.shape[-1])
    hidden = four_h // 4
    gates_in = xp.reshape(gates_in, (steps, batch, four_h))
    if bias is not None:
        gates_in = gates_in + bias
    h = h0 if h0 is not None else xp.zeros((batch, hidden), dtype=gates_in.dtype, device=array_api_compat.device(x))
    c = c0 if c0 is not None else xp.zeros((batch, hidden), dtype=gates_in.dtype, device=array_api_compat.device(x))
    outputs: list[Any] = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        z = gates_in[t, ...] + f_hh(h)
        i = _sigmoid(xp, z[:, :hidden])
        f = _sigmoid(xp, z[:, hidden : 2 * hidden])
        g = xp.tanh(z[:, 2 * hidden : 3 * hidden])
        o = _sigmoid(xp, z[:, 3 * hidden :])
        c = f * c + i * g
        h = o * xp.tanh(c)
        outputs[t] = h
    return xp.stack(outputs, axis=0), (h, c)
