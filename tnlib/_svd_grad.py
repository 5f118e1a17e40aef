r"""The thin SVD in an autograd graph (torch) or under JAX's transformations, with a backward that never
returns NaN where the gradient exists.

The derivative of the SVD (Townsend, "Differentiating the singular value decomposition", 2016; the complex
case: Wan and Zhang, 2019) has the factors :math:`F_{ij} = 1 / (s_j^2 - s_i^2)` and :math:`1 / s_i`.
``torch.linalg.svd``'s and ``jnp.linalg.svd``'s backward divide by zero when two singular values coincide
or one is zero, and the gradient comes out NaN with no warning: an identity-like matrix, a tensor of lower
rank than the bond kept, any degenerate spectrum. Here:

* a pair of equal singular values, when the loss does not depend on how the singular vectors of that
  multiplet are chosen (the antisymmetric part of :math:`U^H \bar U + V^H \bar V` vanishes on the
  pair), which is the case for a truncation that keeps or drops whole multiplets, gets the limit of its
  term as the two values separate: nothing when only :math:`U` carries a gradient (tnlib's sweeps, which
  form the rest as the projection :math:`U^H A`), the reconstruction's term when the factors are used as
  the product :math:`U S V^H`; the gradient is then the exact one;
* when the loss does depend on that choice (typically a truncation that keeps part of a multiplet,
  whose result is not unique) the gradient does not exist: torch's backward raises a ``RuntimeError``
  that says so; under JAX, which cannot raise on values inside a transformation, that gradient is NaN;
* a zero singular value contributes nothing through :math:`1 / s` (a pseudo-inverse): its singular
  vectors do not enter any product of the factors.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = ["differentiable_svd", "svd_backward"]

_FUNCTIONS: dict[str, Any] = {}  # the torch.autograd.Function and the jax.custom_vjp, made on first use

UNDEFINED = (
    "the gradient of this SVD does not exist: singular values {i} and {j} are equal ({value:.6g}) and the loss "
    "depends on how the singular vectors of that multiplet are chosen. This is what a truncation that keeps part "
    "of a degenerate multiplet does; choose a bond that keeps or drops whole multiplets "
    "(tnlib.Truncation(degeneracy_tol=...) moves the cut), or detach the input"
)


def _adj(xp: Any, a: Any) -> Any:
    return xp.conj(xp.matrix_transpose(a))


def svd_backward(u: Any, s: Any, vh: Any, gu: Any, gs: Any, gvh: Any, *, refuse: bool) -> Any:
    """The gradient with respect to ``A = U diag(S) Vh`` (thin) given those of its factors (any may be None).

    ``refuse``: raise a ``RuntimeError`` where the gradient does not exist (values can be read); otherwise
    (JAX) the gradient is NaN there.
    """
    xp = array_api_compat.array_namespace(u, s, vh)
    k = s.shape[0]
    device = array_api_compat.device(s)
    gu = xp.zeros_like(u) if gu is None else gu
    gvh = xp.zeros_like(vh) if gvh is None else gvh
    gs = xp.zeros_like(s) if gs is None else gs
    v, gv = _adj(xp, vh), _adj(xp, gvh)
    eps = float(xp.finfo(s.dtype).eps)
    tol = 1e3 * eps * (xp.max(s) if k else 0.0)
    j = _adj(xp, u) @ gu
    kk = _adj(xp, v) @ gv
    j_skew = j - _adj(xp, j)
    k_skew = kk - _adj(xp, kk)
    eye = xp.eye(k, dtype=xp.bool, device=device)
    degenerate = (xp.abs(s[None, :] - s[:, None]) <= tol) & ~eye
    # on a degenerate pair s_i = s_j the two terms below are F_ij s (J_skew + K_skew)_ij: a loss that does not
    # depend on the basis of the multiplet (U -> U Q, V -> V Q) has (J_skew + K_skew)_ij = 0 there
    skew = xp.abs(j_skew + k_skew)
    size = (xp.max(xp.abs(j)) + xp.max(xp.abs(kk))) if k else 0.0
    dependent = degenerate & (skew > 1e-8 * size)
    if refuse and bool(xp.any(dependent)):
        flat = int(xp.argmax(xp.reshape(xp.astype(dependent, xp.int8), (-1,))))
        i, jj = divmod(flat, k)
        raise RuntimeError(UNDEFINED.format(i=i, j=jj, value=float(s[i])))
    denom = s[None, :] ** 2 - s[:, None] ** 2
    safe = xp.where(degenerate | eye, xp.ones_like(denom), denom)
    f = xp.astype(xp.where(degenerate | eye, xp.zeros_like(denom), 1.0 / safe), u.dtype)
    s_c = xp.astype(s, u.dtype)
    big = s > tol
    inv_s = xp.astype(xp.where(big, 1.0 / xp.where(big, s, xp.ones_like(s)), xp.zeros_like(s)), u.dtype)
    # A degenerate pair. When the loss uses U alone (tnlib's sweeps form the rest as the projection U^H A,
    # so V carries no gradient), it sees only the span of the multiplet and the pair contributes nothing.
    # When it uses the factors as a product U S V^H, the pair's term is the limit as the two values separate
    # with J = M S, K = N S held: M_ij + (N_ij - conj M_ji) / 2 (the reconstruction's gradient, exactly).
    m_ = j * inv_s[None, :]
    n_ = kk * inv_s[None, :]
    uses_v = xp.any(gvh != 0)
    limit = xp.where(uses_v, m_ + (n_ - _adj(xp, m_)) / 2, xp.zeros_like(m_))
    pair = xp.where(degenerate, limit, (f * j_skew) * s_c[None, :] + s_c[:, None] * (f * k_skew))
    if not refuse:
        pair = xp.where(dependent, xp.full_like(pair, float("nan")), pair)
    diag_gs = xp.astype(gs, u.dtype)[:, None] * xp.astype(eye, u.dtype)
    inner = pair + diag_gs
    if xp.isdtype(u.dtype, "complex floating"):
        diag_j = xp.sum(j_skew * xp.astype(eye, u.dtype), axis=1)
        inner = inner + (diag_j * inv_s / 2)[:, None] * xp.astype(eye, u.dtype)
    ga = u @ inner @ vh
    m, n = u.shape[0], v.shape[0]
    if m > k:
        ga = ga + ((gu - u @ j) * inv_s[None, :]) @ vh
    if n > k:
        ga = ga + (u * inv_s[None, :]) @ _adj(xp, gv - v @ kk)
    return ga


def _torch_function() -> Any:
    import torch

    class _SVD(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            u, s, vh = torch.linalg.svd(x, full_matrices=False)
            ctx.save_for_backward(u, s, vh)
            return u, s, vh

        @staticmethod
        def backward(ctx: Any, gu: Any, gs: Any, gvh: Any) -> Any:
            u, s, vh = ctx.saved_tensors
            return svd_backward(u, s, vh, gu, gs, gvh, refuse=not torch.compiler.is_compiling())

    return _SVD.apply


def _jax_function() -> Any:
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def svd(x: Any) -> Any:
        return tuple(jnp.linalg.svd(x, full_matrices=False))

    def forward(x: Any) -> Any:
        out = svd(x)
        return out, out

    def backward(saved: Any, grads: Any) -> Any:
        u, s, vh = saved
        return (svd_backward(u, s, vh, *grads, refuse=False),)

    svd.defvjp(forward, backward)
    return svd


def differentiable_svd(a: Any) -> tuple[Any, Any, Any]:
    """``linalg.svd(a, full_matrices=False)`` of a torch tensor or a JAX array, with the backward of
    :func:`svd_backward`."""
    kind = "torch" if array_api_compat.is_torch_array(a) else "jax"
    if kind not in _FUNCTIONS:
        _FUNCTIONS[kind] = _torch_function() if kind == "torch" else _jax_function()
    return tuple(_FUNCTIONS[kind](a))
