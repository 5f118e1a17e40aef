"""Out-of-core input: dask arrays (and memory-mapped .npy files through them) decompose as in memory."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnlib

da = pytest.importorskip("dask.array")


def decaying(rows, cols, seed):
    """A matrix whose spectra decay, so truncation keeps the leading part exactly as in memory."""
    rng = np.random.default_rng(seed)
    k = min(rows, cols)
    return (rng.standard_normal((rows, k)) * np.exp(-np.arange(k) / 6.0)) @ rng.standard_normal((k, cols))


def assert_same_decomposition(got, want):
    assert got.bond_dims == want.bond_dims
    assert got.report.full_bond_dims == want.report.full_bond_dims
    np.testing.assert_allclose(got.report.discarded, want.report.discarded, rtol=1e-8, atol=1e-10 * want.norm() ** 2)
    assert got.report.norm == pytest.approx(want.report.norm, rel=1e-12)
    dense = want.to_matrix() if isinstance(want, tnlib.MPO) else want.to_dense()
    other = got.to_matrix() if isinstance(got, tnlib.MPO) else got.to_dense()
    assert np.linalg.norm(other - dense) <= 1e-10 * np.linalg.norm(dense)


DIMS = st.sampled_from(
    [((16, 4), (4, 8)), ((8, 4, 2), (8, 2, 2)), ((32, 2, 2), (4, 4, 2)), ((4, 4, 4, 2), (4, 2, 2, 2))]
)


@settings(max_examples=12, deadline=None)
@given(dims=DIMS, bond=st.integers(1, 12), chunk=st.integers(3, 40), seed=st.integers(0, 10**6))
def test_dask_matrix_decomposes_as_in_memory(dims, bond, chunk, seed):
    out_dims, in_dims = dims
    w = decaying(int(np.prod(out_dims)), int(np.prod(in_dims)), seed)
    truncation = tnlib.Truncation(max_bond=bond)
    want = tnlib.MPO.from_matrix(w, out_dims, in_dims, truncation=truncation)
    got = tnlib.MPO.from_matrix(da.from_array(w, chunks=(chunk, -1)), out_dims, in_dims, truncation=truncation)
    assert_same_decomposition(got, want)
    assert isinstance(got.cores[0], np.ndarray) and got.cores[0].dtype == w.dtype


@pytest.mark.parametrize("truncation", [tnlib.Truncation(cutoff=1e-3), tnlib.Truncation(max_discarded=1e-4),
                                        tnlib.Truncation(max_bond=(6, 3))])
def test_other_per_bond_criteria_and_per_bond_caps(truncation):
    w = decaying(64, 32, 1)
    want = tnlib.MPO.from_matrix(w, (16, 2, 2), (4, 4, 2), truncation=truncation)
    got = tnlib.MPO.from_matrix(da.from_array(w, chunks=(7, -1)), (16, 2, 2), (4, 4, 2), truncation=truncation)
    assert_same_decomposition(got, want)


def test_float32_and_a_dask_tensor_into_an_mps():
    w = decaying(64, 32, 2).astype(np.float32)
    t = tnlib.Truncation(max_bond=5)
    got = tnlib.MPO.from_matrix(da.from_array(w, chunks=(16, -1)), (16, 4), (4, 8), truncation=t)
    assert got.cores[0].dtype == np.float32
    want = tnlib.MPO.from_matrix(w.astype(np.float64), (16, 4), (4, 8), truncation=t)
    assert np.linalg.norm(got.to_matrix() - want.to_matrix()) <= 1e-5 * np.linalg.norm(w)
    psi = decaying(32, 64, 3).reshape(8, 4, 8, 8)
    want_mps = tnlib.MPS.from_dense(psi, tnlib.Truncation(max_bond=6))
    got_mps = tnlib.MPS.from_dense(da.from_array(psi, chunks=(3, 4, 8, 8)), tnlib.Truncation(max_bond=6))
    assert_same_decomposition(got_mps, want_mps)


def test_memory_mapped_npy_through_dask(tmp_path):
    w = decaying(256, 64, 4)
    np.save(tmp_path / "big.npy", w)
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    t = tnlib.Truncation(max_bond=8)
    got = tnlib.MPO.from_matrix(da.from_array(mm, chunks=(32, -1)), (16, 4, 4), (4, 4, 4), truncation=t)
    assert_same_decomposition(got, tnlib.MPO.from_matrix(w, (16, 4, 4), (4, 4, 4), truncation=t))


def test_on_a_local_dask_cluster():
    distributed = pytest.importorskip("distributed")
    w = decaying(512, 64, 5)
    t = tnlib.Truncation(max_bond=8)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        with distributed.Client(cluster):
            got = tnlib.MPO.from_matrix(da.from_array(w, chunks=(32, -1)), (32, 4, 4), (4, 4, 4), truncation=t)
            psi = w.reshape(8, 8, 8, 64)  # the graph route of a tensor, chunked along its second leg
            got_mps = tnlib.MPS.from_dense(da.from_array(psi, chunks=(3, 2, 8, 64)), t)
    assert_same_decomposition(got, tnlib.MPO.from_matrix(w, (32, 4, 4), (4, 4, 4), truncation=t))
    assert_same_decomposition(got_mps, tnlib.MPS.from_dense(psi, t))


@pytest.mark.parametrize("chunks", [(3, 1, 8, 8), (8, 2, 4, 8), (2, 4, 8, 3)])
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_dask_tensor_in_any_chunks(chunks, scheduler):
    """A dask tensor chunked along its second leg decomposes as in memory (it raised dask's "Dimension 0
    has 1 blocks, adjust_chunks specified with 4 blocks")."""
    import dask

    psi = decaying(32, 64, 3).reshape(8, 4, 8, 8)
    t = tnlib.Truncation(max_bond=6)
    with dask.config.set(scheduler=scheduler):
        got = tnlib.MPS.from_dense(da.from_array(psi, chunks=chunks), t, svd="lapack")
    assert_same_decomposition(got, tnlib.MPS.from_dense(psi, t, svd="lapack"))


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda: da.ones((16, 16), chunks=4), dict(truncation=None), ValueError, "needs a truncation"),
        (lambda: da.ones((16, 16), chunks=4), dict(truncation=tnlib.Truncation(max_params=40)), ValueError,
         "max_params and max_relative_error"),
        (lambda: da.ones((16, 16), chunks=4, dtype=np.int64), dict(truncation=tnlib.Truncation(max_bond=2)),
         TypeError, "dtype int64"),
        (lambda: da.from_array(np.full((16, 16), np.nan), chunks=4), dict(truncation=tnlib.Truncation(max_bond=2)),
         ValueError, "NaN or inf"),
        (lambda: da.ones((4, 4, 4), chunks=2), dict(truncation=tnlib.Truncation(max_bond=2)), ValueError,
         "must be 2-D"),
        (lambda: da.ones((16, 16), chunks=4), dict(truncation=tnlib.Truncation(max_bond=2), pad=True), ValueError,
         "without padding"),
        (lambda: da.ones((16, 16), chunks=4), dict(truncation=tnlib.Truncation(max_bond=2), out_dims=(4, 5)),
         ValueError, "out_dims"),
    ],
)
def test_bad_dask_input_is_refused_clearly(make, kwargs, error, message):
    kw = dict(out_dims=(4, 4), in_dims=(4, 4))
    kw.update(kwargs)
    with pytest.raises(error, match=message):
        tnlib.MPO.from_matrix(make(), **kw)


def test_cli_streams_a_npy_from_disk(tmp_path):
    w = decaying(256, 64, 6)
    np.save(tmp_path / "big.npy", w)
    r = subprocess.run(
        [sys.executable, "-m", "tnlib", "decompose", "big.npy", "--out-of-core", "--chunk-rows", "32",
         "--out-dims", "16,4,4", "--in-dims", "4,4,4", "--max-bond", "8", "-o", "big.tnz", "--progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "blocks" in r.stderr  # the progress bar (asked for: stderr is not a terminal here)
    want = tnlib.MPO.from_matrix(w, (16, 4, 4), (4, 4, 4), truncation=tnlib.Truncation(max_bond=8))
    assert_same_decomposition(tnlib.load(tmp_path / "big.tnz"), want)
    r = subprocess.run([sys.executable, "-m", "tnlib", "decompose", "big.npy", "--out-of-core"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "needs a truncation" in r.stderr


def test_open_npy_reads_blocks_without_mapping_the_file(tmp_path):
    w = decaying(100, 24, 7).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    arr = tnlib.open_npy(tmp_path / "w.npy", chunk_rows=16)
    assert arr.shape == (100, 24) and arr.dtype == np.float32 and arr.chunks[0][0] == 16
    np.testing.assert_array_equal(arr.compute(), w)
    np.testing.assert_array_equal(arr[17:53, 3:9].compute(), w[17:53, 3:9])
    np.save(tmp_path / "f.npy", np.asfortranarray(w))
    with pytest.raises(ValueError, match="Fortran order"):
        tnlib.open_npy(tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", w.reshape(10, 10, 24))
    with pytest.raises(ValueError, match="expected a 2-D matrix"):
        tnlib.open_npy(tmp_path / "t.npy")
    raw = (tmp_path / "w.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="the header declares a 100 x 24 float32 array .* \\(truncated or corrupt\\)"):
        tnlib.open_npy(tmp_path / "short.npy").compute()
    with pytest.raises(ValueError, match="chunk_rows"):
        tnlib.open_npy(tmp_path / "w.npy", chunk_rows=0)


@settings(max_examples=8, deadline=None)
@given(dims=DIMS, bond=st.integers(1, 12), seed=st.integers(0, 10**6))
def test_complex_dask_input_decomposes_as_in_memory(dims, bond, seed):
    """The carry of the first step is U_1^H A_1, not U_1^T A_1 (complex input used to give garbage)."""
    out_dims, in_dims = dims
    rows, cols = int(np.prod(out_dims)), int(np.prod(in_dims))
    w = decaying(rows, cols, seed) + 1j * decaying(rows, cols, seed + 1)
    truncation = tnlib.Truncation(max_bond=bond)
    want = tnlib.MPO.from_matrix(w, out_dims, in_dims, truncation=truncation)
    got = tnlib.MPO.from_matrix(da.from_array(w, chunks=(5, -1)), out_dims, in_dims, truncation=truncation)
    assert_same_decomposition(got, want)
    t = w.reshape(4, rows // 4, cols)
    mps = tnlib.MPS.from_dense(da.from_array(t, chunks=(4, 3, -1)), truncation=truncation)
    assert_same_decomposition(mps, tnlib.MPS.from_dense(t, truncation=truncation))


def _with_shape(src, dst, shape):
    """A copy of the .npy ``src`` whose header declares ``shape`` (the data left as it was)."""
    raw = src.read_bytes()
    end = raw.index(b"\n") + 1
    header = raw[:end].decode("latin1")
    start = header.index("'shape': (")
    close = header.index(")", start)
    body = header[:start] + f"'shape': {shape}" + header[close + 1 :].rstrip(" \n")
    dst.write_bytes(body.ljust(end - 1).encode("latin1") + b"\n" + raw[end:])
    return dst


def test_a_header_that_declares_more_than_the_file_holds_is_refused(tmp_path):
    src = tmp_path / "W.npy"
    np.save(src, np.ones((8, 4)))
    big = _with_shape(src, tmp_path / "big.npy", (8 * 10**9, 4))
    with pytest.raises(ValueError, match=r"big.npy: the header declares a 8000000000 x 4 float64 array"):
        tnlib.open_npy(str(big))
    r = subprocess.run([sys.executable, "-m", "tnlib", "decompose", str(big), "--max-bond", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "the header declares a 8000000000 x 4 float64 array" in r.stderr
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(ValueError, match=r"text.npy: not a .npy file"):
        tnlib.open_npy(str(tmp_path / "text.npy"))


@pytest.mark.parametrize("scale", [1e-170, 1e170, 1e300])
def test_dask_input_far_from_unit_scale_decomposes_as_at_scale_1(scale):
    w = decaying(64, 32, 3)
    t = tnlib.Truncation(max_bond=5)
    ref = tnlib.MPO.from_matrix(da.from_array(w, chunks=(7, -1)), (8, 4, 2), (8, 2, 2), truncation=t)
    far = tnlib.MPO.from_matrix(da.from_array(w * scale, chunks=(7, -1)), (8, 4, 2), (8, 2, 2), truncation=t)
    assert far.bond_dims == ref.bond_dims
    assert far.report.relative_error_bound == pytest.approx(ref.report.relative_error_bound, rel=1e-9)
    assert far.report.norm == pytest.approx(ref.report.norm * scale, rel=1e-12)


class _LazyRows:
    """A matrix read from a .npy file on indexing, as HDF5 and zarr datasets are (shape, dtype, slicing)."""

    def __init__(self, path):
        self.mm = np.load(path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = self.mm.shape, self.mm.dtype, 2

    def __getitem__(self, index):
        return np.array(self.mm[index])


def _peak_of(f):
    import tracemalloc

    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("source", ["memmap", "lazy", "lazy_small_chunks"])
def test_any_dask_matrix_streams_within_open_npys_bound(tmp_path, monkeypatch, source):
    """A dask matrix that is not open_npy's (da.from_array of a memory map, or of an HDF5/zarr-like lazy
    dataset) is read in the same row blocks as open_npy's files: it took 2.7-4.3x the file in memory
    through a rechunk and a reshape (and the row reader must not be pickled whole into dask's token)."""
    import dask
    import dask.array as da

    import tnlib._out_of_core as ooc

    monkeypatch.setattr(ooc, "_BLOCK_BYTES", 2 * 2**20)  # blocks of 2 MiB on a 32 MiB file
    w = decaying(1024, 4096, 8)
    path = tmp_path / "w.npy"
    np.save(path, w)
    dims, trunc = ((16, 8, 8), (8, 16, 32)), tnlib.Truncation(max_bond=8)  # remainder: 1/16 of the input
    if source == "memmap":
        x = da.from_array(np.load(path, mmap_mode="r"))  # dask copies the map here, before tnlib is called
    else:
        x = da.from_array(_LazyRows(path), chunks=(256 if source == "lazy" else 8, -1), asarray=False)
    with dask.config.set(scheduler="sync"):
        mapped = tnlib.open_npy(path, first_out_dim=16)
        npy = _peak_of(lambda: tnlib.MPO.from_matrix(mapped, *dims, truncation=trunc, svd="lapack"))
        got = _peak_of(lambda: tnlib.MPO.from_matrix(x, *dims, truncation=trunc, svd="lapack"))
        result = tnlib.MPO.from_matrix(x, *dims, truncation=trunc, svd="lapack")
    assert got <= 1.25 * npy + 2**20, (got / 2**20, npy / 2**20)
    assert got < 0.35 * w.nbytes
    # exact LAPACK SVDs on both sides ("auto" accepts fast factors within 5 % of the optimal weight)
    assert_same_decomposition(result, tnlib.MPO.from_matrix(w, *dims, truncation=trunc, svd="lapack"))


class _CountingRows(_LazyRows):
    """A lazy matrix that counts the rows read from it."""

    def __init__(self, path):
        super().__init__(path)
        self.rows_read = 0

    def __getitem__(self, index):
        out = super().__getitem__(index)
        self.rows_read += out.shape[0]
        return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_pass_reads_once_and_stays_within_twice_the_two_pass_error(tmp_path, seed):
    import dask
    import dask.array as da

    rng = np.random.default_rng(seed)
    # an MPO with decaying bonds plus noise: its unfoldings are not exactly low rank
    cores = [rng.standard_normal((1, 16, 8, 20)) * np.exp(-0.2 * np.arange(20)),
             rng.standard_normal((20, 8, 8, 20)) * np.exp(-0.2 * np.arange(20)) / 8,
             rng.standard_normal((20, 4, 8, 1)) / 8]
    w = tnlib.MPO(cores).to_matrix()
    w = w + 1e-3 * np.linalg.norm(w) / np.sqrt(w.size) * rng.standard_normal(w.shape)
    np.save(tmp_path / "w.npy", w)
    dims, trunc = ((16, 8, 4), (8, 8, 8)), tnlib.Truncation(max_bond=10)
    errors, reads = {}, {}
    for svd in ("auto", "randomized"):
        source = _CountingRows(tmp_path / "w.npy")
        x = da.from_array(source, chunks=(64, -1), asarray=False)
        with dask.config.set(scheduler="sync"):
            mpo = tnlib.MPO.from_matrix(x, *dims, truncation=trunc, svd=svd)
        reads[svd] = source.rows_read / w.shape[0]
        errors[svd] = float(np.linalg.norm(w - mpo.to_matrix()) / np.linalg.norm(w))
        if svd == "randomized":
            cert = mpo.report.certificate
            assert errors[svd] <= cert.error_bound
            assert mpo.report.relative_error_bound == pytest.approx(cert.error_bound)
            assert abs(cert.error_estimate - errors[svd]) <= 0.5 * errors[svd]  # 16 probes: within a factor
    assert reads == {"auto": 2.0, "randomized": 1.0}
    assert errors["randomized"] <= 2.0 * errors["auto"]


def test_single_pass_of_a_tensor_and_from_the_cli(tmp_path):
    import dask.array as da

    w = decaying(512, 256, 3).reshape(64, 8, 256)
    mps = tnlib.MPS.from_dense(da.from_array(w, chunks=(64, 2, 256)), truncation=tnlib.Truncation(max_bond=8),
                               svd="randomized")
    err = float(np.linalg.norm(w - mps.to_dense()) / np.linalg.norm(w))
    assert err <= mps.report.certificate.error_bound
    np.save(tmp_path / "big.npy", decaying(1024, 256, 4))
    args = [sys.executable, "-m", "tnlib", "decompose", "big.npy", "--out-of-core", "--out-dims", "32,4,8",
            "--in-dims", "8,4,8", "--max-bond", "8"]
    r = subprocess.run(args + ["--single-pass"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "with probability 0.999" in r.stdout
    r = subprocess.run(args[:5] + ["--single-pass", "--max-bond", "8"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "needs --out-of-core" in r.stderr


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_single_pass_certificate_at_any_scale(scale):
    import dask.array as da

    rng = np.random.default_rng(9)
    w = tnlib.MPO([rng.standard_normal((1, 32, 8, 12)), rng.standard_normal((12, 8, 16, 1))]).to_matrix()
    w = w + 1e-3 * np.linalg.norm(w) / np.sqrt(w.size) * rng.standard_normal(w.shape)
    mpo = tnlib.MPO.from_matrix(da.from_array(w * scale, chunks=(64, -1)), (32, 8), (8, 16),
                                truncation=tnlib.Truncation(max_bond=12), svd="randomized")
    err = float(np.linalg.norm(w - mpo.to_matrix() / scale) / np.linalg.norm(w))
    cert = mpo.report.certificate
    assert 1e-4 < err <= cert.error_bound < 1e-2
    assert abs(cert.error_estimate - err) < 0.5 * err


def test_single_pass_refuses_what_it_cannot_sketch():
    import dask.array as da

    x = da.from_array(decaying(256, 256, 5), chunks=(64, -1))
    with pytest.raises(ValueError, match="sizes its sketch from the first bond's max_bond"):
        tnlib.MPO.from_matrix(x, (16, 16), (16, 16), truncation=tnlib.Truncation(cutoff=1e-3), svd="randomized")
    with pytest.raises(ValueError, match=r"keeps 50 sketched rows of the first unfolding, which has only 32"):
        tnlib.MPO.from_matrix(x, (4, 64), (8, 32), truncation=tnlib.Truncation(max_bond=8), svd="randomized")
    bad = decaying(256, 256, 5)
    bad[100, 3], bad[7, 0] = np.nan, np.inf
    for svd in ("randomized", "auto"):
        with pytest.raises(ValueError, match=r"matrix contains NaN or inf in 2 rows \(7, 100\)"):
            tnlib.MPO.from_matrix(da.from_array(bad, chunks=(64, -1)), (16, 16), (16, 16),
                                  truncation=tnlib.Truncation(max_bond=4), svd=svd)
    with pytest.raises(ValueError, match=r"tensor contains NaN or inf in 2 slices of the first axis \(0, 6\)"):
        tnlib.MPS.from_dense(da.from_array(bad.reshape(16, 16, 256)), truncation=tnlib.Truncation(max_bond=4))


def test_default_dims_of_a_large_dask_matrix_stream(tmp_path):
    """The first site holds at least 8x the first bond, so what the first step keeps is at most 1/8 of the input."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(5)
    w = rng.standard_normal((2048, 4096))  # 8M entries
    t = tnlib.Truncation(max_bond=8)
    mpo = tnlib.MPO.from_matrix(da.from_array(w, chunks=(512, 4096)), truncation=t)
    assert mpo.out_dims[0] * mpo.in_dims[0] >= 64
    held = mpo.bond_dims[0] * w.size / (mpo.out_dims[0] * mpo.in_dims[0])
    assert held <= w.size / 8
    d1 = mpo.out_dims[0] * mpo.in_dims[0]  # the report says what was held: R (d1 x d1), U_1, the remainder
    assert mpo.report.gathered_bytes == 8 * (d1 * d1 + d1 * mpo.bond_dims[0] + held)
    assert mpo.report.gathered_bytes < w.nbytes / 4 and "MiB gathered into memory" in str(mpo.report)
    path = tmp_path / "mpo.tnz"
    tnlib.save(path, mpo)
    assert tnlib.load(path).report == mpo.report
    assert tnlib.MPO.from_matrix(w, mpo.out_dims, mpo.in_dims, truncation=t).report.gathered_bytes is None
    in_memory = tnlib.MPO.from_matrix(w, mpo.out_dims, mpo.in_dims, truncation=t)  # the same dims, in memory
    assert mpo.report.relative_error == pytest.approx(in_memory.report.relative_error, rel=1e-9)
    small = tnlib.MPO.from_matrix(da.from_array(w[:64, :64], chunks=32), truncation=tnlib.Truncation(max_bond=8))
    assert (small.out_dims, small.in_dims) == tnlib.choose_dims((64, 64))  # small inputs keep the balanced default
