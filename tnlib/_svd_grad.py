r"""The thin SVD of a torch tensor that requires grad, with a backward that never returns NaN silently.

The derivative of the SVD (Townsend, "Differentiating the singular value decomposition", 2016; the complex
case: Wan and Zhang, 2019) has the factors :math:`F_{ij} = 1 / (s_j^2 - s_i^2)` and :math:`1 / s_i`.
``torch.linalg.svd``'s backward divides by zero when two singular values coincide or one is zero, and the
gradient comes out NaN or inf with no warning: an identity-like matrix, a tensor of lower rank than the
bond kept, any degenerate spectrum. Here:

* a pair of equal singular values contributes nothing when the loss does not depend on how the
  singular vectors of that multiplet are chosen (the antisymmetric part of :math:`U^H \bar U` and
  :math:`V^H \bar V` vanishes on the pair), which is exactly the case for a truncation that keeps or
  drops whole multiplets: the gradient is then the exact one;
* when the loss does depend on that choice (typically a truncation that keeps part of a multiplet,
  whose result is not unique) the gradient does not exist, and the backward raises a ``RuntimeError``
  that says so;
* a zero singular value contributes nothing through :math:`1 / s` (a pseudo-inverse): its singular
  vectors do not enter any product of the factors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["differentiable_svd", "svd_backward"]

_FUNCTION: list[Any] = []  # the torch.autograd.Function, defined on first use (torch is optional)


def svd_backward(u: Any, s: Any, vh: Any, gu: Any, gs: Any, gvh: Any) -> Any:
    """The gradient with respect to ``A = U diag(S) Vh`` (thin) given those of its factors (any may be None)."""
    import torch

    k = s.shape[0]
    v = vh.mH
    real = torch.finfo(s.dtype)
    scale = float(s.max()) if k else 0.0
    tol = 1e3 * real.eps * scale
    gu = torch.zeros_like(u) if gu is None else gu
    gvh = torch.zeros_like(vh) if gvh is None else gvh
    gs = torch.zeros_like(s) if gs is None else gs
    gv = gvh.mH
    j = u.mH @ gu
    kk = v.mH @ gv
    j_skew = j - j.mH
    k_skew = kk - kk.mH
    diff = s[None, :] - s[:, None]  # s_j - s_i
    degenerate = diff.abs() <= tol
    degenerate.fill_diagonal_(False)
    if bool(degenerate.any()):
        size = float(j_skew.abs().max()) + float(k_skew.abs().max())
        dependent = degenerate & ((j_skew.abs() + k_skew.abs()) > 1e-8 * size)
        if bool(dependent.any()):
            i, jj = (int(x) for x in dependent.nonzero()[0])
            raise RuntimeError(
                f"the gradient of this SVD does not exist: singular values {i} and {jj} are equal "
                f"({float(s[i]):.6g}) and the loss depends on how the singular vectors of that multiplet are chosen. "
                "This is what a truncation that keeps part of a degenerate multiplet does; choose a bond that "
                "keeps or drops whole multiplets (tnlib.Truncation(degeneracy_tol=...) moves the cut), or detach "
                "the input"
            )
    denom = (s[None, :] ** 2 - s[:, None] ** 2)
    safe = torch.where(degenerate | torch.eye(k, dtype=torch.bool, device=s.device), torch.ones_like(denom), denom)
    f = torch.where(degenerate, torch.zeros_like(denom), 1.0 / safe)
    f.fill_diagonal_(0.0)
    f = f.to(u.dtype)
    s_c = s.to(u.dtype)
    inv_s = torch.where(s > tol, 1.0 / torch.where(s > tol, s, torch.ones_like(s)), torch.zeros_like(s)).to(u.dtype)
    inner = (f * j_skew) * s_c[None, :] + s_c[:, None] * (f * k_skew) + torch.diag(gs.to(u.dtype))
    if u.is_complex():
        inner = inner + torch.diag(torch.diagonal(j_skew) * inv_s / 2)
    ga = u @ inner @ vh
    m, n = u.shape[0], v.shape[0]
    if m > k:
        ga = ga + (gu - u @ j) * inv_s[None, :] @ vh
    if n > k:
        ga = ga + (u * inv_s[None, :]) @ (gv - v @ kk).mH
    return ga


def differentiable_svd(a: Any) -> tuple[Any, Any, Any]:
    """``torch.linalg.svd(a, full_matrices=False)`` with the backward of :func:`svd_backward`."""
    if not _FUNCTION:
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
                return svd_backward(u, s, vh, gu, gs, gvh)

        _FUNCTION.append(_SVD)
    return tuple(_FUNCTION[0].apply(a))
