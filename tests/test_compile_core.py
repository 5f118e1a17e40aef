"""torch.compile(fullgraph=True) of the core: construction, apply, contraction and chain algebra trace without a
graph break and equal eager (while a graph is captured, finiteness is not read and contractions are one
``torch.einsum``; see ``tnlib._backend.capturing``)."""

import warnings

import pytest

torch = pytest.importorskip("torch")

import tnlib  # noqa: E402

g = torch.Generator().manual_seed(0)
MPO_CORES = [torch.randn(1, 4, 4, 3, generator=g), torch.randn(3, 4, 4, 1, generator=g)]
MPS_CORES = [torch.randn(1, 2, 3, generator=g), torch.randn(3, 2, 2, generator=g), torch.randn(2, 2, 1, generator=g)]
X = torch.randn(5, 16, generator=g)
A, B, C = torch.randn(8, 6, generator=g), torch.randn(6, 5, generator=g), torch.randn(5, 2, generator=g)
FIXED = tnlib.MPO(MPO_CORES)


def mpo(c0, c1):
    return tnlib.MPO([c0, c1])


def mps(*c):
    return tnlib.MPS(list(c))


CASES = {
    "MPO.apply of a fixed MPO": (lambda x: FIXED.apply(x), (X,)),
    "MPO(cores).apply": (lambda c0, c1, x: mpo(c0, c1).apply(x), (*MPO_CORES, X)),
    "MPO.to_matrix": (lambda c0, c1: mpo(c0, c1).to_matrix(), tuple(MPO_CORES)),
    # dynamo (torch 2.13) does not trace the `@` operator between user objects: call the method
    "MPO @ MPO": (lambda c0, c1: mpo(c0, c1).__matmul__(mpo(c0, c1)).to_matrix(), tuple(MPO_CORES)),
    "MPO @ MPS": (lambda c0, c1: mpo(c0, c1).__matmul__(tnlib.MPS([c0[:, 0], c1[:, 0]])).to_dense(), tuple(MPO_CORES)),
    "MPO + MPO": (lambda c0, c1: (mpo(c0, c1) + mpo(c0, c1)).to_matrix(), tuple(MPO_CORES)),
    "2 * MPO - MPO": (lambda c0, c1: (2.0 * mpo(c0, c1) - mpo(c0, c1)).to_matrix(), tuple(MPO_CORES)),
    "MPO.trace": (lambda c0, c1: mpo(c0, c1).trace(), tuple(MPO_CORES)),
    "MPO.kron": (lambda c0, c1: mpo(c0, c1).kron(mpo(c0, c1)).to_matrix(), tuple(MPO_CORES)),
    "MPS.inner": (lambda *c: mps(*c).inner(mps(*c)), tuple(MPS_CORES)),
    "MPS * MPS (Hadamard)": (lambda *c: (mps(*c) * mps(*c)).to_dense(), tuple(MPS_CORES)),
    "MPS.sum": (lambda *c: mps(*c).sum(), tuple(MPS_CORES)),
    "MPS.canonicalize": (lambda *c: mps(*c).canonicalize(0).to_dense(), tuple(MPS_CORES)),
    "tnlib.contract": (lambda a, b, c: tnlib.contract("ij,jk,kl->il", a, b, c), (A, B, C)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_core_compiles_with_fullgraph_and_matches_eager(name):
    fn, args = CASES[name]
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notes while tracing third-party helpers
        got = torch.compile(fn, fullgraph=True, backend="aot_eager")(*args)
    assert torch.allclose(got, fn(*args), atol=1e-5, rtol=1e-5)


def test_inductor_compiled_apply_matches_eager_and_trains():
    cores = [c.clone().requires_grad_() for c in MPO_CORES]
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = torch.compile(lambda c0, c1, x: (mpo(c0, c1).apply(x) ** 2).sum(), fullgraph=True)
        loss = step(*cores, X)
    loss.backward()
    eager = [c.clone().requires_grad_() for c in MPO_CORES]
    (mpo(*eager).apply(X) ** 2).sum().backward()
    assert torch.allclose(loss, (mpo(*MPO_CORES).apply(X) ** 2).sum(), rtol=1e-5)
    assert all(torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5) for a, b in zip(cores, eager))


def test_eager_calls_still_check_finiteness():
    bad = MPO_CORES[0].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        tnlib.MPO([bad, MPO_CORES[1]])
