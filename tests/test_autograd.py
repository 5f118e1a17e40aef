"""Gradients through the core: torch tensors that require grad stay in their graph (checked by gradcheck)."""

import warnings

import pytest

torch = pytest.importorskip("torch")

import tnlib  # noqa: E402
import tnlib.rnn  # noqa: E402


def mps_cores(seed, n=4, d=2, r=3):
    g = torch.Generator().manual_seed(seed)
    dims = [1] + [r] * (n - 1) + [1]
    return [torch.randn(dims[k], d, dims[k + 1], dtype=torch.float64, generator=g, requires_grad=True)
            for k in range(n)]


def mpo_cores(seed, n=3, o=2, i=2, r=2):
    g = torch.Generator().manual_seed(seed)
    dims = [1] + [r] * (n - 1) + [1]
    return [torch.randn(dims[k], o, i, dims[k + 1], dtype=torch.float64, generator=g, requires_grad=True)
            for k in range(n)]


def dense(seed, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=torch.float64, generator=g, requires_grad=True)


def mps(*c):
    return tnlib.MPS(list(c))


def mpo(*c):
    return tnlib.MPO(list(c))


TWO = tnlib.Truncation(max_bond=2)

# operation name -> (function of tensors returning a tensor, its inputs)
OPERATIONS = {
    "MPS(cores).to_dense": (lambda *c: mps(*c).to_dense(), lambda: mps_cores(0)),
    "MPS.entropies": (lambda *c: torch.stack(list(mps(*c).entropies())), lambda: mps_cores(1)),
    "MPS.singular_values": (lambda *c: mps(*c).singular_values(1), lambda: mps_cores(2)),
    "MPS.canonicalize (QR)": (lambda *c: torch.cat([x.reshape(-1) for x in mps(*c).canonicalize(2).cores]),
                              lambda: mps_cores(3)),
    "MPS + MPS": (lambda *c: (mps(*c[:4]) + mps(*c[4:])).to_dense(), lambda: mps_cores(4) + mps_cores(5)),
    "MPS.inner": (lambda *c: mps(*c[:4]).inner(mps(*c[4:])), lambda: mps_cores(6) + mps_cores(7)),
    "MPS.dot": (lambda *c: mps(*c[:4]).dot(mps(*c[4:])), lambda: mps_cores(8) + mps_cores(9)),
    "MPS.truncate (fixed ranks)": (lambda *c: mps(*c).truncate(TWO).to_dense(), lambda: mps_cores(10)),
    "MPS.compress (svd, fixed ranks)": (lambda *c: mps(*c).compress(TWO).to_dense(), lambda: mps_cores(11)),
    "MPS.from_dense (fixed ranks)": (lambda t: tnlib.MPS.from_dense(t, TWO).to_dense(),
                                     lambda: [dense(12, 2, 3, 2, 3)]),
    "MPO(cores).to_matrix": (lambda *c: mpo(*c).to_matrix(), lambda: mpo_cores(13)),
    "MPO.apply": (lambda x, *c: mpo(*c).apply(x), lambda: [dense(14, 5, 8)] + mpo_cores(15)),
    "MPO @ vectors": (lambda x, *c: mpo(*c) @ x, lambda: [dense(16, 8, 3)] + mpo_cores(17)),
    "MPO.trace": (lambda *c: mpo(*c).trace(), lambda: mpo_cores(18)),
    "MPO scaled": (lambda *c: (mpo(*c) * 2.5).to_matrix(), lambda: mpo_cores(19)),
    "MPO times a 0-d tensor": (lambda a, *c: (a * mpo(*c)).to_matrix(), lambda: [dense(25)] + mpo_cores(26)),
    "MPO.truncate (fixed ranks)": (lambda *c: mpo(*c).truncate(tnlib.Truncation(max_bond=1)).to_matrix(),
                                   lambda: mpo_cores(20)),
    "MPO.from_matrix (fixed ranks)": (
        lambda w: tnlib.MPO.from_matrix(w, (2, 4), (4, 2), truncation=tnlib.Truncation(max_bond=3)).to_matrix(),
        lambda: [dense(21, 8, 8)]),
    "MPO.from_matrix (complex, fixed ranks)": (
        lambda w: tnlib.MPO.from_matrix(w, (2, 4), (4, 2), truncation=tnlib.Truncation(max_bond=3)).to_matrix(),
        lambda: [torch.randn(8, 8, dtype=torch.complex128, generator=torch.Generator().manual_seed(27),
                             requires_grad=True)]),
    "MPO.from_matrix of the identity (a degenerate spectrum, kept whole)": (
        lambda w: tnlib.MPO.from_matrix(w, (2, 4), (4, 2), truncation=tnlib.Truncation(max_bond=8)).to_matrix(),
        lambda: [torch.eye(8, dtype=torch.float64, requires_grad=True)]),
    "MPO.from_matrix of a rank-2 matrix at max_bond 5 (zero singular values kept)": (
        lambda w: tnlib.MPO.from_matrix(w, (3, 4), (4, 3), truncation=tnlib.Truncation(max_bond=5)).to_matrix(),
        lambda: [(dense(28, 12, 2) @ dense(29, 2, 12)).detach().requires_grad_()]),
    "MPS.norm": (lambda *c: mps(*c).norm(), lambda: mps_cores(32)),
    "MPO.norm (padded: the matrix of shape)": (
        lambda *c: tnlib.MPO(list(c), shape=(7, 8)).norm(), lambda: mpo_cores(33)),
    "gru_forward with MPO weights": (
        lambda x, *c: tnlib.rnn.gru_forward(x, mpo(*c[:2]), mpo(*c[2:]))[0],
        lambda: [dense(34, 3, 2, 4)] + mpo_cores(35, n=2, o=3, i=2) + [dense(36, 1, 3, 3, 2), dense(37, 2, 3, 1, 1)]),
    "lstm_forward with MPO weights": (
        lambda x, *c: tnlib.rnn.lstm_forward(x, mpo(*c[:2]), mpo(*c[2:]))[0],
        lambda: [dense(22, 3, 2, 4)] + mpo_cores(23, n=2, o=4, i=2) + mpo_cores(24, n=2, o=4, i=2)),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_gradcheck(name):
    fn, make = OPERATIONS[name]
    inputs = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "converting a tensor that requires grad to a scalar" on the way
        out = fn(*inputs)
    assert out.requires_grad, f"{name} detached its result"
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_a_detached_input_gives_a_detached_result():
    cores = mpo_cores(30)
    w = tnlib.MPO([c.detach() for c in cores])
    assert not w.to_matrix().requires_grad
    x = dense(31, 2, 8)
    assert tnlib.MPO(cores).apply(x.detach()).requires_grad  # the cores still carry their graph


def test_a_cut_inside_a_degenerate_multiplet_has_no_gradient_and_says_so():
    """torch's own SVD backward returns NaN here without a word; the truncated result is not unique."""
    # the unfolding of this 4 x 4 matrix at its one bond is the 4 x 4 identity: four equal singular values
    w = torch.eye(4, dtype=torch.float64).reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4)
    w.requires_grad_()
    mpo = tnlib.MPO.from_matrix(w, (2, 2), (2, 2), truncation=tnlib.Truncation(max_bond=2))
    assert torch.allclose(torch.linalg.svdvals(w.detach().reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4)),
                          torch.ones(4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="gradient of this SVD does not exist: singular values .* are equal"):
        (mpo.to_matrix() * torch.randn(4, 4, dtype=torch.float64)).sum().backward()


def test_degenerate_spectra_kept_whole_give_finite_exact_gradients():
    w = torch.eye(8, dtype=torch.float64, requires_grad=True)
    torch_native = torch.linalg.svd(w, full_matrices=False)
    (torch_native[0][:, :3] @ torch_native[2][:3]).sum().backward()
    assert not torch.isfinite(w.grad).all()  # the failure mode this guards against
    w.grad = None
    out = tnlib.MPO.from_matrix(w, (2, 4), (4, 2), truncation=tnlib.Truncation(max_bond=8)).to_matrix()
    (out * torch.arange(64.0, dtype=torch.float64).reshape(8, 8)).sum().backward()
    assert torch.allclose(w.grad, torch.arange(64.0, dtype=torch.float64).reshape(8, 8))


def test_a_truncated_svd_used_as_a_product_has_the_reconstructions_gradient_on_a_degenerate_spectrum():
    w = torch.eye(6, dtype=torch.float64, requires_grad=True)
    weights = torch.arange(36.0, dtype=torch.float64).reshape(6, 6)
    t = tnlib.truncated_svd(w, tnlib.Truncation(max_bond=6))
    ((t.U * t.S) @ t.Vh * weights).sum().backward()
    assert torch.allclose(w.grad, weights)  # the full reconstruction is w itself
