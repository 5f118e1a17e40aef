"""LSTM and GRU inference with MPO (or any) weight operators, on any array library.

:func:`lstm_forward` runs one LSTM layer in one direction with the gate
layout of ``torch.nn.LSTM``: the pre-activations ``W_ih x_t + b_ih + W_hh
h_{t-1} + b_hh`` are stacked ``(i, f, g, o)`` along the ``4H`` rows, and::

    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

:func:`gru_forward` does the same for ``torch.nn.GRU``: rows ``(r, z, n)``
of ``3H`` and::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

:func:`lstm_cell` and :func:`gru_cell` are one step of each (the
``nn.LSTMCell`` / ``nn.GRUCell`` update), used by the sequence functions.

``W_ih`` and ``W_hh`` may be :class:`tnlib.MPO` objects (as in the MPO-LSTM of
Gao et al. 2020, where the four gates are stacked along the output and the
factor 4 sits in the first output leg), dense arrays, or any callable that
maps ``(batch, in)`` to ``(batch, gates * H)``. The input projection of
every time step is done in one batched application; only the recurrence is
sequential. No torch is needed: a compressed model runs on NumPy or CuPy.
"""

from __future__ import annotations

from typing import Any, Callable

from ._apply import WeightPlan
from ._backend import as_array, check_floating, namespace, prod
from ._recurrence import gru_cell, gru_sequence, input_gates, lstm_cell, lstm_sequence
from .mpo import MPO

__all__ = ["lstm_forward", "gru_forward", "lstm_cell", "gru_cell", "as_operator"]

Operator = Any  # MPO, a (gates * H, N) array, or a callable (batch, N) -> (batch, gates * H)


def as_operator(op: Operator, name: str) -> tuple[Callable[[Any], Any], int, int]:
    """``(apply, rows, cols)`` of an MPO, a 2-D array or a callable (``-1`` sizes for a callable)."""
    if isinstance(op, MPO):
        return _planned(op), op.shape[0], op.shape[1]
    if callable(op) and not hasattr(op, "shape"):
        return op, -1, -1
    w = as_array(op, name)
    if w.ndim != 2:
        raise ValueError(f"{name} must be an MPO, a 2-D (gates * H, N) array or a callable, got shape {tuple(w.shape)}")
    xp = namespace(w)
    wt = xp.matrix_transpose(w)
    return (lambda x: x @ wt), int(w.shape[0]), int(w.shape[1])


def _planned(mpo: MPO) -> Callable[[Any], Any]:
    """``x @ W.T`` for the steps of one recurrence: inputs were checked once, and the cheapest exact
    form of the weight is built at the start and reused (:class:`tnlib._apply.WeightPlan`)."""
    m, n = mpo.shape
    if (m, n) != (prod(mpo.out_dims), prod(mpo.in_dims)):  # zero-padded: MPO.apply pads and crops
        return mpo.apply
    return WeightPlan(mpo.cores)


def _checked(x: Any, w_ih: Operator, w_hh: Operator, gates: int):
    """Validate a layer's inputs; ``(xp, x, W_ih's apply, W_hh's apply)``."""
    x = as_array(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must be (T, B, I) (time-major), got shape {tuple(x.shape)}")
    check_floating(x, "x", half=True)  # a half-precision model runs in half precision
    n_in = int(x.shape[2])
    # W_ih runs once, over every step: MPO.apply (validated, one batched product); W_hh is planned for the steps
    f_ih, rows_ih, cols_ih = (w_ih.apply, *w_ih.shape) if isinstance(w_ih, MPO) else as_operator(w_ih, "w_ih")
    f_hh, rows_hh, cols_hh = as_operator(w_hh, "w_hh")
    if cols_ih not in (-1, n_in):
        raise ValueError(f"w_ih has {cols_ih} columns but x has {n_in} features; expected ({gates}H, {n_in})")
    if rows_hh != -1 and (rows_hh % gates or cols_hh * gates != rows_hh):
        raise ValueError(f"w_hh has shape ({rows_hh}, {cols_hh}); expected ({gates}H, H)")
    if rows_ih != -1 and rows_hh != -1 and rows_ih != rows_hh:
        raise ValueError(f"w_ih has {rows_ih} rows but w_hh has {rows_hh}; both must be {gates}H")
    return namespace(x), x, f_ih, f_hh


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
    xp, x, f_ih, f_hh = _checked(x, w_ih, w_hh, 4)
    return lstm_sequence(xp, input_gates(xp, x, f_ih, bias), f_hh, h0, c0, reverse)


def gru_forward(
    x: Any,
    w_ih: Operator,
    w_hh: Operator,
    b_ih: Any = None,
    b_hh: Any = None,
    h0: Any = None,
    *,
    reverse: bool = False,
) -> tuple[Any, Any]:
    """One GRU layer, one direction, over a whole sequence (the update of ``torch.nn.GRU``).

    Parameters
    ----------
    x : array, shape (T, B, I)
        Time-major input.
    w_ih, w_hh
        Input-to-hidden ``(3H, I)`` and hidden-to-hidden ``(3H, H)`` operators:
        :class:`tnlib.MPO`, arrays, or callables ``(batch, N) -> (batch, 3H)``.
    b_ih, b_hh : arrays, shape (3H,), optional
        The two biases (kept apart: ``b_hn`` sits inside the reset gate).
    h0 : array, shape (B, H), optional
        Initial state (zeros by default).
    reverse
        Run from the last time step to the first; outputs stay in time order.

    Returns
    -------
    output, h_n
        ``output`` of shape ``(T, B, H)``; final state ``(B, H)``.

    Examples
    --------
    >>> import numpy as np, tnlib
    >>> rng = np.random.default_rng(0)
    >>> H, I = 8, 4
    >>> W_ih, W_hh = rng.standard_normal((3 * H, I)), rng.standard_normal((3 * H, H))
    >>> out, h = tnlib.gru_forward(rng.standard_normal((5, 3, I)), tnlib.MPO.from_matrix(W_ih, (6, 4), (2, 2)), W_hh)
    >>> out.shape, h.shape
    ((5, 3, 8), (3, 8))
    """
    xp, x, f_ih, f_hh = _checked(x, w_ih, w_hh, 3)
    return gru_sequence(xp, input_gates(xp, x, f_ih, b_ih), f_hh, b_hh, h0, reverse)
