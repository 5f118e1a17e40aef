import json

import numpy as np
import pytest

import tnlib
from conftest import random_array


def test_round_trips_are_bit_exact(tmp_path, dtype):
    W = random_array((30, 7), dtype)
    mpo = tnlib.MPO.from_matrix(W, (2, 4, 4), (2, 2, 2), pad=True, truncation=tnlib.Truncation(max_bond=3, cutoff=1e-9))
    path = tmp_path / "w.tnz"
    tnlib.save(path, mpo)
    back = tnlib.load(path)
    assert isinstance(back, tnlib.MPO) and back.shape == (30, 7) and back.center == mpo.center
    assert back.report == mpo.report
    for a, b in zip(mpo.cores, back.cores):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    mps = tnlib.MPS.from_dense(random_array((2, 3, 2), dtype)).canonicalize(1)
    tnlib.save(tmp_path / "s", mps)  # no extension added
    back = tnlib.load(tmp_path / "s")
    assert (
        back.center == 1
        and back.report == mps.report
        and all(np.array_equal(a, b) for a, b in zip(mps.cores, back.cores))
    )
    spec = tnlib.spectrum(mpo)
    tnlib.save(tmp_path / "spec.tnz", spec)
    sback = tnlib.load(tmp_path / "spec.tnz")
    assert sback.kind == "MPO" and all(
        np.array_equal(a, b) for a, b in zip(spec.singular_values, sback.singular_values)
    )


def test_save_from_torch_loads_as_numpy(tmp_path):
    torch = pytest.importorskip("torch")
    mps = tnlib.MPS.from_dense(torch.asarray(random_array((2, 2, 2))))
    tnlib.save(tmp_path / "t.tnz", mps)
    back = tnlib.load(tmp_path / "t.tnz")
    assert all(np.array_equal(c.numpy(), b) for c, b in zip(mps.cores, back.cores))


def saved(tmp_path):
    path = tmp_path / "good.tnz"
    tnlib.save(path, tnlib.MPS.from_dense(random_array((2, 2, 2))))
    return path


def rewrite(path, out, change):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    good = saved(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing.tnz: no such file"):
        tnlib.load(tmp_path / "missing.tnz")
    truncated = tmp_path / "truncated.tnz"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"truncated.tnz: not a readable tnlib file \(truncated or corrupt"):
        tnlib.load(truncated)
    garbage = tmp_path / "garbage.tnz"
    garbage.write_bytes(b"hello world" * 20)
    with pytest.raises(ValueError, match=r"garbage.tnz: not a readable tnlib file"):
        tnlib.load(garbage)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.ones(3))
    with pytest.raises(ValueError, match=r"plain.npz: not a tnlib file \(no tnlib header"):
        tnlib.load(plain)

    def newer(arrays):
        header = json.loads(str(arrays["__tnlib__"]))
        header["version"] = 99
        arrays["__tnlib__"] = np.array(json.dumps(header))

    with pytest.raises(ValueError, match=r"newer.tnz: written by format version 99; this tnlib reads up to version 1"):
        tnlib.load(rewrite(good, tmp_path / "newer.tnz", newer))

    def foreign(arrays):
        arrays["__tnlib__"] = np.array(json.dumps({"format": "other"}))

    with pytest.raises(ValueError, match=r"foreign.tnz: not a tnlib file \(foreign header\)"):
        tnlib.load(rewrite(good, tmp_path / "foreign.tnz", foreign))

    def missing_core(arrays):
        del arrays["core_1"]

    with pytest.raises(ValueError, match=r"missing_core.tnz: header declares num_sites=3 but the file holds 2 arrays"):
        tnlib.load(rewrite(good, tmp_path / "missing_core.tnz", missing_core))

    def bad_bond(arrays):
        arrays["core_1"] = np.ones((3, 2, 2))

    with pytest.raises(ValueError, match=r"bad_bond.tnz: corrupt tnlib file: bond 0 does not match"):
        tnlib.load(rewrite(good, tmp_path / "bad_bond.tnz", bad_bond))

    def pickled(arrays):
        arrays["core_0"] = np.array([object()], dtype=object)

    bad = tmp_path / "pickled.tnz"
    with pytest.raises(ValueError, match=r"pickled.tnz"):
        tnlib.load(rewrite(good, bad, pickled))


def test_save_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match=r"obj must be an MPS, MPO or Spectrum, got ndarray"):
        tnlib.save(tmp_path / "x.tnz", np.ones(3))
    assert not list(tmp_path.iterdir())


def test_concurrent_saves_never_corrupt_and_failures_leave_no_temporary(tmp_path):
    import concurrent.futures

    mpos = [tnlib.MPO.from_matrix(np.full((16, 16), float(k + 1)), (4, 4), (4, 4)) for k in range(8)]
    target = tmp_path / "shared.tnz"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda m: tnlib.save(target, m), mpos * 4))
    loaded = tnlib.load(target)
    assert any(np.allclose(loaded.to_matrix(), m.to_matrix()) for m in mpos)  # one whole writer won
    assert not list(tmp_path.glob("*.tmp"))

    class Boom(Exception):
        pass

    import unittest.mock

    with unittest.mock.patch("numpy.savez", side_effect=Boom("disk full")):
        with pytest.raises(Boom):
            tnlib.save(tmp_path / "other.tnz", mpos[0])
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "other.tnz").exists()


def test_load_validates_the_header_against_the_arrays(tmp_path):
    good = tmp_path / "mpo.tnz"
    tnlib.save(good, tnlib.MPO.from_matrix(random_array((8, 8)), (2, 2, 2), (2, 2, 2)))

    def edit(change):
        def apply(arrays):
            header = json.loads(str(arrays["__tnlib__"]))
            change(header)
            arrays["__tnlib__"] = np.array(json.dumps(header))
        return apply

    cases = [
        (lambda h: h.update(center=0), r"header claims centre 0 but core \d is not right-orthonormal"),
        (lambda h: h.update(version=True), r"invalid format version True"),
        (lambda h: h.update(num_sites=10**9), r"header declares num_sites=1000000000 but the file holds 3 arrays"),
        (lambda h: h.update(shape="64x32"), r"invalid MPO shape '64x32' in the header; expected \[M, N\]"),
        (lambda h: h.update(report=[1, 2]), r"corrupt tnlib file: the report is a list, expected an object"),
        (lambda h: h.update(report={"truncation": 3}), r"the report's truncation is a int, expected an object"),
    ]
    for k, (change, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            tnlib.load(rewrite(good, tmp_path / f"bad{k}.tnz", edit(change)))
    spec = tnlib.spectrum(random_array((16, 16)), (4, 4), (4, 4))
    tnlib.save(tmp_path / "s.tnz", spec)

    def nan_spectrum(arrays):
        arrays["sv_0"] = np.array([1.0, np.nan])

    with pytest.raises(ValueError, match=r"singular values must be finite and non-negative"):
        tnlib.load(rewrite(tmp_path / "s.tnz", tmp_path / "nan.tnz", nan_spectrum))

    def deep(arrays):
        arrays["__tnlib__"] = np.array("[" * 100000 + "]" * 100000)

    with pytest.raises(ValueError, match=r"corrupt tnlib file"):
        tnlib.load(rewrite(good, tmp_path / "deep.tnz", deep))


def test_mpo_shape_must_be_two_ints():
    cores = tnlib.MPO.from_matrix(random_array((16, 16)), (4, 4), (4, 4)).cores
    for bad in ("64", (16,), (16.0, 16), (16, 17)):
        with pytest.raises(ValueError, match=r"shape=.* is invalid; expected \(M, N\)"):
            tnlib.MPO(cores, shape=bad)


def test_a_killed_save_leaves_nothing_after_the_next_successful_one(tmp_path):
    """A writer killed mid-save cannot remove its temporary file; the next save of that path removes the
    temporary files of writers that are gone, and leaves those of live ones alone."""
    import os
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    target = tmp_path / "m.tnz"
    stale = tmp_path / f".m.tnz.{dead_pid}.abc123.tmp"
    stale.write_bytes(b"half a file")
    live = tmp_path / f".m.tnz.{os.getppid()}.def456.tmp"  # a live process (our parent) may be writing it
    live.write_bytes(b"in progress")
    other = tmp_path / f".n.tnz.{dead_pid}.abc123.tmp"  # another target's: not ours to touch
    other.write_bytes(b"x")
    tnlib.save(target, tnlib.MPO.from_matrix(np.eye(4), (2, 2), (2, 2)))
    assert not stale.exists() and live.exists() and other.exists()
    assert np.allclose(tnlib.load(target).to_matrix(), np.eye(4))
