"""Every documented error path: the message names the argument, what it got and what was expected."""

import numpy as np
import pytest

import tnlib
from conftest import random_array

W = random_array((16, 12))


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (
            {"out_dims": (4, 5), "in_dims": (3, 4)},
            ValueError,
            r"out_dims=\(4, 5\) multiply to 20 but matrix has 16 rows; pass factors whose product is 16, "
            r"out_dims=None to choose them or pad=True to zero-pad",
        ),
        (
            {"out_dims": (4, 4), "in_dims": (2, 5)},
            ValueError,
            r"in_dims=\(2, 5\) multiply to 10 but matrix has 12 columns; pass factors whose product is 12, "
            r"in_dims=None to choose them$",
        ),
        (
            {"out_dims": (4, 4), "in_dims": (2, 2, 3)},
            ValueError,
            r"out_dims has 2 factors but in_dims has 3; an MPO needs one out and one in leg per core",
        ),
        ({"out_dims": (4, 0, 4)}, ValueError, r"out_dims=\(4, 0, 4\) is invalid; expected positive ints"),
        ({"out_dims": (4, 2.5)}, TypeError, r"out_dims=\(4, 2.5\) is invalid; expected positive ints"),
        ({"out_dims": (4, 0)}, ValueError, r"out_dims=\(4, 0\) is invalid; expected positive ints"),
        ({"out_dims": "44"}, TypeError, r"out_dims must be a sequence of positive ints, got '44'"),
        ({"out_dims": ()}, ValueError, r"out_dims must hold at least one factor"),
        ({"num_cores": 0}, ValueError, r"num_cores=0 is invalid; expected an int >= 1"),
        ({"num_cores": 3, "out_dims": (4, 4)}, ValueError, r"num_cores=3 but the given dims have 2 factors"),
        ({"truncation": {"max_bond": 4}}, TypeError, r"truncation must be a tnlib.Truncation or None, got dict"),
        ({"svd": "magic"}, ValueError, r"svd='magic' is not a registered SVD method; expected one of 'auto'"),
    ],
)
def test_from_matrix_bad_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        tnlib.MPO.from_matrix(W, **kwargs)


def test_from_matrix_bad_matrices():
    with pytest.raises(
        ValueError, match=r"matrix must be 2-D \(M, N\), got shape \(4, 4, 4\); reshape it, or use MPS.from_dense"
    ):
        tnlib.MPO.from_matrix(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match=r"matrix must be non-empty, got shape \(0, 4\)"):
        tnlib.MPO.from_matrix(np.ones((0, 4)))
    bad = W.copy()
    bad[1, 2] = np.nan
    bad[3, 3] = np.inf
    with pytest.raises(ValueError, match=r"matrix has 2 NaN or infinite entries out of 192; expected finite values"):
        tnlib.MPO.from_matrix(bad)
    with pytest.raises(
        TypeError, match=r"matrix has dtype int64; expected one of float32, float64, complex64, complex128"
    ):
        tnlib.MPO.from_matrix(np.ones((4, 4), dtype=np.int64))
    with pytest.raises(TypeError, match=r"matrix has dtype float16; expected one of"):
        tnlib.MPO.from_matrix(np.ones((4, 4), dtype=np.float16))
    with pytest.raises(TypeError, match=r"matrix has dtype object"):
        tnlib.MPO.from_matrix(np.array([[1.0, "a"], [2.0, 3.0]], dtype=object))
    with pytest.raises(
        ValueError,
        match=r"matrix has 1021 rows, which has no balanced factorization into 4 factors "
        r"\(best: \(1, 1, 1, 1021\)\); pass pad=True to zero-pad to 1024",
    ):
        tnlib.MPO.from_matrix(np.ones((1021, 64)))


def test_torch_bad_dtype_and_nan():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"matrix has dtype torch.int32; expected one of"):
        tnlib.MPO.from_matrix(torch.ones((4, 4), dtype=torch.int32))
    with pytest.raises(ValueError, match=r"matrix has 1 NaN or infinite entry out of 16"):
        t = torch.ones((4, 4), dtype=torch.float64)
        t[0, 0] = float("nan")
        tnlib.MPO.from_matrix(t)


def test_from_dense_bad_tensors():
    with pytest.raises(ValueError, match=r"tensor must have at least one leg, got a 0-d array"):
        tnlib.MPS.from_dense(np.float64(3.0))
    with pytest.raises(ValueError, match=r"tensor must be non-empty, got shape \(2, 0\)"):
        tnlib.MPS.from_dense(np.ones((2, 0)))
    with pytest.raises(ValueError, match=r"tensor has 1 NaN or infinite entry"):
        tnlib.MPS.from_dense(np.array([1.0, np.inf]))
    with pytest.raises(TypeError, match=r"tensor has dtype bool"):
        tnlib.MPS.from_dense(np.ones((2, 2), dtype=bool))
    with pytest.raises(
        TypeError, match=r"tensor must be an array .* got BadArray that numpy.asarray cannot convert: no"
    ):
        tnlib.MPS.from_dense(object.__new__(BadArray))


class BadArray:
    def __array__(self, *args, **kwargs):
        raise TypeError("no")


@pytest.mark.parametrize(
    "cores, exc, message",
    [
        ([], ValueError, r"cores must hold at least one core; got an empty list"),
        (
            np.ones((1, 2, 1)),
            TypeError,
            r"cores must be a sequence of arrays with legs \(left, phys, right\), got ndarray",
        ),
        ([np.ones((2, 2))], ValueError, r"cores\[0\] has shape \(2, 2\); an MPS core has 3 legs \(left, phys, right\)"),
        ([np.ones((2, 2, 1))], ValueError, r"cores\[0\] has left bond 2; the boundary bonds must have size 1"),
        ([np.ones((1, 2, 3))], ValueError, r"cores\[0\] has right bond 3; the boundary bonds must have size 1"),
        (
            [np.ones((1, 2, 3)), np.ones((4, 2, 1))],
            ValueError,
            r"bond 0 does not match: cores\[0\] has right bond 3 but cores\[1\] has left bond 4",
        ),
        (
            [np.ones((1, 2, 3)), np.ones((3, 2, 1), dtype=np.float32)],
            TypeError,
            r"cores\[1\] has dtype float32 but cores\[0\] has float64; give every core the same dtype",
        ),
        ([np.ones((1, 2, 1), dtype=np.int32)], TypeError, r"cores\[0\] has dtype int32"),
        ([np.full((1, 2, 1), np.nan)], ValueError, r"cores\[0\] has 2 NaN or infinite entries"),
        ([np.ones((1, 0, 1))], ValueError, r"cores\[0\] has shape \(1, 0, 1\); every leg must have size >= 1"),
    ],
)
def test_mps_constructor_validates(cores, exc, message):
    with pytest.raises(exc, match=message):
        tnlib.MPS(cores)


def test_cores_from_two_libraries():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"cores mix array libraries"):
        tnlib.MPS([np.ones((1, 2, 2)), torch.ones((2, 2, 1), dtype=torch.float64)])


def test_mpo_constructor_validates():
    with pytest.raises(
        ValueError, match=r"cores\[0\] has shape \(1, 2, 1\); an MPO core has 4 legs \(left, out, in, right\)"
    ):
        tnlib.MPO([np.ones((1, 2, 1))])


def test_bond_center_alpha_errors():
    mps = tnlib.MPS.from_dense(random_array((2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"bond=3 is out of range; this chain has 3 bonds: 0..2 \(or -3..-1\)"):
        mps.singular_values(3)
    with pytest.raises(ValueError, match=r"bond=-4 is out of range"):
        mps.entropy(-4)
    with pytest.raises(TypeError, match=r"bond must be an int, got 1.0"):
        mps.entropy(1.0)
    with pytest.raises(ValueError, match=r"center=4 is out of range; this chain has 4 cores: 0..3"):
        mps.canonicalize(4)
    with pytest.raises(TypeError, match=r"center must be an int, got True"):
        mps.canonicalize(True)
    for alpha in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"alpha=.* is invalid; expected alpha > 0"):
            mps.entropy(1, alpha=alpha)
    with pytest.raises(ValueError, match=r"alpha=0.0 is invalid"):
        mps.entropies(alpha=0)
    with pytest.raises(TypeError, match=r"alpha must be a real number > 0, got 'x'"):
        mps.entropies(alpha="x")
    with pytest.raises(TypeError, match=r"truncation must be a tnlib.Truncation, got None"):
        mps.truncate(None)
    assert mps.entropy(-1) == pytest.approx(float(mps.entropy(2)))


def test_factorize_errors():
    with pytest.raises(ValueError, match=r"n=0 is invalid; expected an int >= 1"):
        tnlib.factorize(0, 2)
    with pytest.raises(ValueError, match=r"num_factors=0 is invalid"):
        tnlib.factorize(8, 0)
    with pytest.raises(TypeError, match=r"n must be an int, got 8.0"):
        tnlib.factorize(8.0, 2)


def test_silently_accepted_inputs_are_refused():
    W = np.ones((8, 8))
    with pytest.raises(TypeError, match=r"pad must be True or False, got 'no'"):
        tnlib.MPO.from_matrix(W, (2, 4), (2, 4), pad="no")
    mps = tnlib.MPS.from_dense(np.random.default_rng(0).standard_normal((2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"sweeps=0 is invalid; expected an int >= 1"):
        mps.compress(tnlib.Truncation(max_bond=2), algorithm="variational", sweeps=0)
    with pytest.raises(ValueError, match=r"cannot honour cutoff, max_params; use algorithm='svd'"):
        mps.compress(tnlib.Truncation(max_bond=2, cutoff=0.1, max_params=20), algorithm="variational")
    with pytest.raises(TypeError, match=r"max_bonds entry must be an int, got 2.7"):
        tnlib.tradeoff(W, (2, 4), (2, 4), max_bonds=[2.7])
    with pytest.raises(ValueError, match=r"max_bonds is empty"):
        tnlib.tradeoff(W, (2, 4), (2, 4), max_bonds=[])


def test_numpy_integer_truncation_fields_become_python_numbers(tmp_path):
    t = tnlib.Truncation(max_bond=np.int64(4), cutoff=np.float32(0.5))
    assert type(t.max_bond) is int and type(t.cutoff) is float
    mpo = tnlib.MPO.from_matrix(np.random.default_rng(1).standard_normal((16, 16)), (4, 4), (4, 4), truncation=t)
    tnlib.save(tmp_path / "t.tnz", mpo)
    assert tnlib.load(tmp_path / "t.tnz").report.truncation == t


def test_cli_version(capsys):
    from tnlib.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"tnlib {tnlib.__version__}"


def test_more_inputs_refused_clearly():
    W = np.random.default_rng(2).standard_normal((16, 16))
    with pytest.raises(TypeError, match=r"matrix is a masked array; tnlib would ignore its mask"):
        tnlib.MPO.from_matrix(np.ma.masked_array(W, mask=W > 1), (4, 4), (4, 4))
    with pytest.raises(ValueError, match=r"num_cores=100 is invalid; expected at most 32"):
        tnlib.MPO.from_matrix(W, num_cores=100)
    with pytest.raises(ValueError, match=r"num_cores=3000 is invalid"):
        tnlib.MPO.from_matrix(W, num_cores=3000)
    with pytest.raises(ValueError, match=r"too large to factor"):
        tnlib.factorize(2**61 - 1, 3)
    mpo = tnlib.MPO.from_matrix(W, (4, 4), (4, 4))
    with pytest.raises(TypeError, match=r"optimize must be an opt_einsum strategy name"):
        mpo.apply(np.ones((2, 16)), optimize=[(0, 1)])
    spec = tnlib.spectrum(W, (4, 4), (4, 4))
    for bad in (-0.1, float("nan"), 2.0):
        with pytest.raises(ValueError, match=r"max_error=.* is invalid; expected a relative error in \[0, 1\]"):
            spec.rank_for_error(0, bad)
    tnlib.register_svd("nan-svd", lambda a, rank: (np.eye(a.shape[0]), np.full(min(a.shape), np.nan),
                                                   np.eye(a.shape[0], a.shape[1])), overwrite=True)
    with pytest.raises(ValueError, match=r"the SVD method 'nan-svd' returned singular values that are not finite"):
        tnlib.truncated_svd(W, svd="nan-svd")


def test_left_multiplication_and_contiguous_cores():
    W = np.random.default_rng(3).standard_normal((16, 8))
    mpo = tnlib.MPO.from_matrix(W, (4, 4), (2, 4), truncation=tnlib.Truncation(max_bond=3))
    x = np.random.default_rng(4).standard_normal((5, 16))
    np.testing.assert_allclose(x @ mpo, x @ mpo.to_matrix(), atol=1e-12)
    assert all(c.flags.c_contiguous for c in mpo.cores)


def test_torch_inputs_meta_and_requires_grad():
    torch = pytest.importorskip("torch")
    import warnings

    W = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scalar-conversion warnings on the way: the graph is kept, not detached
        mpo = tnlib.MPO.from_matrix(W, (4, 4), (4, 4), truncation=tnlib.Truncation(max_bond=2))
    assert mpo.cores[0].requires_grad
    with pytest.raises(ValueError, match=r"x is on torch's 'meta' device and has no data"):
        mpo.apply(torch.empty(2, 16, dtype=torch.float64, device="meta"))


def test_mixing_array_libraries_in_algebra_is_refused_clearly():
    torch = pytest.importorskip("torch")
    W = np.random.default_rng(5).standard_normal((16, 16))
    a = tnlib.MPO.from_matrix(W, (4, 4), (4, 4))
    b = tnlib.MPO.from_matrix(torch.tensor(W), (4, 4), (4, 4))
    with pytest.raises(TypeError, match=r"\+ needs both MPOs in one array library, got numpy.ndarray and torch.Tensor"):
        a + b
    with pytest.raises(TypeError, match=r"inner needs both MPOs in one array library"):
        a.inner(b)


def test_huge_padding_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"would build a 1000000 x 1000000 array"):
        tnlib.MPO.from_matrix(np.ones((4, 4)), (1000, 1000), (1000, 1000), pad=True)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: tnlib.factorize(16, "2"), TypeError),
        (lambda: tnlib.factorize(16, 0), ValueError),
        (lambda: tnlib.choose_dims((16, 16), num_cores="2"), TypeError),
        (lambda: tnlib.choose_dims((16, 16), num_cores=0), ValueError),
        (lambda: tnlib.choose_dims((16, 16), num_cores=2.0), TypeError),
        (lambda: tnlib.padded_size(1021, True), TypeError),
    ],
)
def test_scalar_arguments_follow_one_convention(call, error):
    """A wrong type is a TypeError, a wrong value a ValueError, everywhere (one validator: tnlib._checks)."""
    with pytest.raises(error):
        call()


def test_numpy_integers_are_accepted_as_counts_everywhere():
    assert tnlib.factorize(np.int64(16), np.int32(2)) == (4, 4)
    assert tnlib.choose_dims((16, 16), num_cores=np.int64(2)) == ((4, 4), (4, 4))
    mpo = tnlib.MPO.from_matrix(np.eye(16), num_cores=np.int16(2), truncation=tnlib.Truncation(max_bond=np.int64(3)))
    assert mpo.bond_dims == (3,)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (lambda a, rank: (lambda u, s, vh: (u, s[::-1].copy(), vh))(*np.linalg.svd(a, full_matrices=False)),
         "not in descending order"),
        (lambda a, rank: (lambda u, s, vh: (u[:, :2], s[:2], vh[:2]))(*np.linalg.svd(a, full_matrices=False)),
         "2 singular values where"),
        (lambda a, rank: (lambda u, s, vh: (u, s, vh[:2]))(*np.linalg.svd(a, full_matrices=False)),
         r"expected \("),
    ],
    ids=["ascending", "too-few", "shapes"],
)
def test_a_registered_svd_that_breaks_its_contract_is_refused(method, message):
    tnlib.register_svd("broken-svd", method, overwrite=True)
    W = np.random.default_rng(0).standard_normal((12, 10))
    with pytest.raises(ValueError, match="the SVD method 'broken-svd' returned .*" + message):
        tnlib.truncated_svd(W, tnlib.Truncation(max_bond=5), svd="broken-svd")
    with pytest.raises(ValueError, match="the SVD method 'broken-svd' returned"):
        tnlib.MPO.from_matrix(W, (3, 4), (2, 5), truncation=tnlib.Truncation(max_bond=5), svd="broken-svd")


def test_smaller_inputs_are_accepted_or_refused_clearly():
    torch = pytest.importorskip("torch")
    assert tnlib.MPO.identity((2, 3), like=[1.0]).to_matrix().shape == (6, 6)  # a list: NumPy
    with pytest.raises(TypeError, match=r"dtype=torch.float32 is not a dtype of numpy; pass like="):
        tnlib.MPO.identity((2, 3), dtype=torch.float32)
    assert tnlib.MPO.identity((2, 3), dtype=torch.float32, like=torch.zeros(0)).dtype == torch.float32
    with pytest.raises(TypeError, match=r"dtype=<class 'numpy.int64'> is invalid; expected float32"):
        tnlib.MPO.zeros((2,), (2,), dtype=np.int64)
    big = np.random.default_rng(0).standard_normal((16, 16)).astype(">f8")  # another machine's byte order
    mpo = tnlib.MPO.from_matrix(big, (4, 4), (4, 4))
    np.testing.assert_allclose(mpo.to_matrix(), big, atol=1e-12)
    assert tnlib.Truncation(max_bond=np.array([3, 5])).max_bond == (3, 5)
    with pytest.raises(ValueError, match=r"optimize='bogus' is not an opt_einsum strategy"):
        mpo.apply(np.ones((2, 16)), optimize="bogus")
    with pytest.raises(TypeError, match=r"vectors\[1\] has dtype <U1"):
        tnlib.MPS.product_state([np.ones(2), np.array(["a"])])
    with pytest.raises(ValueError, match=r"vectors\[0\] has 1 NaN or infinite entry"):
        tnlib.MPS.product_state([np.array([np.nan, 1.0])])


def test_mixed_libraries_and_array_factors_are_refused_or_accepted_clearly():
    torch = pytest.importorskip("torch")
    W = np.random.default_rng(5).standard_normal((16, 16))
    m = tnlib.MPO.from_matrix(torch.tensor(W), (4, 4), (4, 4))
    state = tnlib.MPS.from_dense(np.ones((4, 4)))
    with pytest.raises(TypeError, match=r"@ needs the MPO and the MPS in one array library, got torch.Tensor and "
                                        r"numpy.ndarray"):
        m @ state
    with pytest.raises(TypeError, match=r"the factor is a numpy.ndarray but the MPO's cores are torch.Tensor"):
        m * np.array(2.0)
    with pytest.raises(TypeError, match=r"multiplied by a number or a 0-d array, got an array of shape \(2,\)"):
        m * torch.ones(2)
    with pytest.raises(TypeError, match=r"numeric 0-d array, got dtype torch.bool"):
        m * torch.tensor(True)
    two = torch.tensor(2.0, dtype=torch.float64)
    assert torch.allclose((m * two).to_matrix(), 2 * m.to_matrix())
    assert torch.allclose((two * m).to_matrix(), (m / torch.tensor(0.5, dtype=torch.float64)).to_matrix())
