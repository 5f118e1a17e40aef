"""The command line, run as a subprocess as a user would."""

import subprocess
import sys

import numpy as np
import pytest

import tnlib


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tnlib", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


class _Evil:
    """Unpickling this would run code (print here)."""

    def __reduce__(self):
        return (print, ("unpickled: this must never run",))


@pytest.fixture
def matrix_file(tmp_path):
    W = np.random.default_rng(0).standard_normal((64, 64))
    np.save(tmp_path / "W.npy", W)
    np.savez(tmp_path / "two.npz", first=W, second=W[:8])
    tnlib.save(tmp_path / "saved.tnz", tnlib.MPO.from_matrix(W, (8, 8), (8, 8)))
    try:
        import torch
    except ImportError:  # torch is in the dev extras; without it the .pt files are not written
        torch = None
    if torch is not None:
        torch.save({"w": torch.tensor(W), "b": torch.zeros(3)}, tmp_path / "state.pt")
        torch.save({"w": torch.tensor(W)}, tmp_path / "renamed.bin")  # a torch zip under another name
        torch.save({"model": {"w": torch.tensor(W)}, "step": 3}, tmp_path / "nested.pt")  # a training checkpoint
        torch.save({"w": torch.tensor(W, dtype=torch.bfloat16)}, tmp_path / "bf16.pt")
        from safetensors.torch import save_file as save_torch

        save_torch({"w": torch.tensor(W, dtype=torch.bfloat16)}, str(tmp_path / "bf16.safetensors"))
        torch.save({"w": _Evil()}, tmp_path / "evil.pt")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json       ")
    from safetensors.numpy import save_file

    save_file({"w": W, "b": np.zeros(3)}, str(tmp_path / "state.safetensors"))
    return W


def test_decompose_info_spectrum(tmp_path, matrix_file):
    r = run(
        "decompose",
        "W.npy",
        "--out-dims",
        "4,4,4",
        "--in-dims",
        "4,4,4",
        "--max-bond",
        "5",
        "-o",
        "W.tnz",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "bond_dims=(5, 5)" in r.stdout and "error bound" in r.stdout and "saved to W.tnz" in r.stdout
    mpo = tnlib.load(tmp_path / "W.tnz")
    assert mpo.bond_dims == (5, 5)
    r = run("info", "W.tnz", cwd=tmp_path)
    assert r.returncode == 0 and "compression ratio" in r.stdout and "TruncationReport" in r.stdout
    r = run(
        "spectrum", "W.npy", "--out-dims", "4,4,4", "--in-dims", "4,4,4", "--plot", "s.png", "-o", "s.tnz", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "entropy" in r.stdout and (tmp_path / "s.png").stat().st_size > 1000
    assert isinstance(tnlib.load(tmp_path / "s.tnz"), tnlib.Spectrum)
    r = run("spectrum", "W.tnz", cwd=tmp_path)
    assert r.returncode == 0 and "Spectrum of an MPO" in r.stdout


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--cutoff", "0.5"], "cutoff=0.5"),
        (["--max-discarded", "0.3"], "max_discarded=0.3"),
        (["--max-entropy-loss", "0.2"], "max_entropy_loss=0.2"),
        (["--compression", "10"], "max_params=409"),
    ],
)
def test_decompose_truncation_flags(tmp_path, matrix_file, flags, expected):
    r = run("decompose", "W.npy", *flags, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert expected in r.stdout


def test_npz_key(tmp_path, matrix_file):
    r = run("decompose", "two.npz", "--key", "second", cwd=tmp_path)
    assert r.returncode == 0 and "shape=(8, 64)" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["decompose", "missing.npy"], "missing.npy: no such file"),
        (["decompose", "two.npz"], "holds 2 arrays (first, second); pick one with --key"),
        (["decompose", "two.npz", "--key", "third"], "has no array 'third'"),
        (["decompose", "W.npy", "--max-bond", "x"], "argument --max-bond: invalid int value: 'x'"),
        (["decompose", "W.npy", "--out-dims", "4,a"], "expected comma-separated positive ints"),
        (["decompose", "W.npy", "--out-dims", "4,4", "--in-dims", "4,4,4"],
         "--out-dims has 2 factors but --in-dims has 3"),
        (["decompose", "W.npy", "--num-cores", "0"], "--num-cores 0 is invalid"),
        (["decompose", "W.npy", "--svd", "bogus"], "--svd 'bogus' is not a registered SVD method"),
        (["decompose", "W.npy", "--out-dims", "4,4,2"], "--out-dims (4, 4, 2) multiply to 32 but matrix has 64 rows; "
                                                         "pass factors whose product is 64, or omit --out-dims"),
        (["decompose", "W.npy", "--out-of-core", "--out-dims", "3,2", "--max-bond", "2"],
         "the first factor of --out-dims 3 is invalid"),
        (["decompose", "W.npy", "--out-of-core", "--chunk-rows", "0", "--max-bond", "2"], "--chunk-rows 0 is invalid"),
        (["decompose", "corrupt.safetensors"], "corrupt.safetensors: not a readable safetensors file"),
        (["decompose", "evil.pt"], "evil.pt: refused: it holds Python objects other than tensors"),
        (["decompose", "W.npy", "--cutoff", "2"], "--cutoff=2.0 is invalid"),
        (["decompose", "W.npy", "-o", "W.npy"], "-o W.npy is the input file"),
        (["decompose", "W.npy", "-o", "no/such/dir/out.tnz"], "cannot write into"),
        (["decompose", "saved.tnz"], "saved.tnz is a saved tnlib object, not a matrix"),
        (["decompose", "state.pt"], "holds 2 arrays (w, b); pick one with --key"),
        (["decompose", "state.safetensors", "--key", "zz"], "has no array 'zz'"),
        (["decompose", "W.npy", "--compression", "0"], "--compression must be a finite ratio >= 1"),
        (["decompose", "W.npy", "--compression", "0.5"], "--compression must be a finite ratio >= 1"),
        (["info", "W.npy"], "W.npy: not a tnlib file (a plain .npy array)"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, matrix_file, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_help_on_every_command(tmp_path):
    for cmd in ([], ["decompose"], ["spectrum"], ["info"]):
        r = run(*cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "usage: tnlib" in r.stdout


@pytest.mark.parametrize("name, key", [("state.pt", "w"), ("state.safetensors", "w"), ("renamed.bin", None)])
def test_decompose_reads_state_dicts_and_safetensors(tmp_path, matrix_file, name, key):
    if name != "state.safetensors":
        pytest.importorskip("torch")
    r = run("decompose", name, *(["--key", key] if key else []), "--max-bond", "4", "-o", "out.tnz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert tnlib.load(tmp_path / "out.tnz").shape == (64, 64)


def test_unwritable_output_fails_before_the_work(tmp_path, matrix_file):
    r = run("decompose", "W.npy", "-o", str(tmp_path / "missing" / "out.tnz"), cwd=tmp_path)
    assert r.returncode == 2 and "cannot write into" in r.stderr and r.stdout == ""


@pytest.mark.parametrize(("name", "key", "tol"), [("nested.pt", "model.w", 0.0), ("bf16.pt", None, 1e-2),
                                                  ("bf16.safetensors", None, 1e-2)])
def test_checkpoints_and_bfloat16_files_are_read(tmp_path, matrix_file, name, key, tol):
    pytest.importorskip("torch")
    args = ["decompose", name, "--out-dims", "8,8", "--in-dims", "8,8", "-o", "out.tnz"]
    args += ["--key", key] if key else []
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    back = tnlib.load(tmp_path / "out.tnz").to_matrix()
    assert np.abs(back - matrix_file).max() <= tol * np.abs(matrix_file).max() + 1e-9
    assert "unpickled" not in r.stdout


def test_an_exact_decomposition_larger_than_its_input_warns_unless_asked(tmp_path, matrix_file):
    r = run("decompose", "W.npy", "--out-dims", "8,8", "--in-dims", "8,8", cwd=tmp_path)
    assert r.returncode == 0 and "warning: the decomposition stores" in r.stderr and "--exact" in r.stderr
    r = run("decompose", "W.npy", "--out-dims", "8,8", "--in-dims", "8,8", "--exact", cwd=tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr
    r = run("decompose", "W.npy", "--out-dims", "8,8", "--in-dims", "8,8", "--compression", "4", cwd=tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr


def test_without_flags_rounding_noise_is_dropped(tmp_path):
    """A smooth kernel of numerical rank ~10: without flags the CLI stores 47x less; --exact keeps every value."""
    x = np.linspace(0, 1, 512)
    kernel = np.exp(-3 * (x[:, None] - x[None, :]) ** 2)
    np.save(tmp_path / "k.npy", kernel)
    dims = ["--out-dims", "8,8,8", "--in-dims", "8,8,8"]
    r = run("decompose", "k.npy", *dims, "-o", "k.tnz", cwd=tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    mpo = tnlib.load(tmp_path / "k.tnz")
    assert mpo.num_params < kernel.size / 40 and mpo.report.truncation == tnlib.Truncation.default()
    assert np.linalg.norm(kernel - mpo.to_matrix()) < 1e-14 * np.linalg.norm(kernel)
    r = run("decompose", "k.npy", *dims, "--exact", "-o", "e.tnz", cwd=tmp_path)
    assert r.returncode == 0 and tnlib.load(tmp_path / "e.tnz").bond_dims == (64, 64)
    r = run("decompose", "k.npy", *dims, "--exact", "--max-bond", "4", cwd=tmp_path)
    assert r.returncode == 2 and "--exact keeps every singular value" in r.stderr and "--max-bond" in r.stderr


def test_progress_line_when_asked_and_at_a_terminal_only(tmp_path, matrix_file, monkeypatch, capsys):
    dims = ["--out-dims", "8,8", "--in-dims", "8,8"]
    r = run("decompose", "W.npy", *dims, "--max-bond", "4", "--progress", cwd=tmp_path)
    assert r.returncode == 0 and "decomposing W.npy (64 x 64): 00:0" in r.stderr, r.stderr
    r = run("spectrum", "W.npy", *dims, "--progress", cwd=tmp_path)
    assert r.returncode == 0 and "spectra of W.npy (64 x 64): 00:0" in r.stderr, r.stderr
    r = run("decompose", "W.npy", *dims, "--max-bond", "4", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""  # stderr is a pipe here: no line by default
    import tnlib.cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # at a terminal: on by default, --no-progress off
    assert tnlib.cli.main(["decompose", str(tmp_path / "W.npy"), *dims, "--max-bond", "4"]) == 0
    assert "decomposing" in capsys.readouterr().err
    assert tnlib.cli.main(["decompose", str(tmp_path / "W.npy"), *dims, "--max-bond", "4", "--no-progress"]) == 0
    assert "decomposing" not in capsys.readouterr().err


def test_info_describes_a_file_written_by_nn_save(tmp_path, matrix_file):
    torch = pytest.importorskip("torch")
    import tnlib.nn

    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
    small, _ = tnlib.nn.compress(net, compression=4, layers=["0"])
    small[2] = tnlib.nn.QuantizedLinear.from_linear(net[2], tnlib.Quantization(4, 32))
    tnlib.nn.save(small, tmp_path / "model.safetensors")
    r = run("info", "model.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tnlib.nn model file" in r.stdout and "2 tnlib layer(s)" in r.stdout
    assert "0: MPOLinear(in_features=64, out_features=64" in r.stdout
    assert "2: QuantizedLinear(in_features=64, out_features=64, bits=4, group_size=32" in r.stdout
    r = run("info", "state.safetensors", cwd=tmp_path)
    assert r.returncode == 2 and "not one written by tnlib.nn.save" in r.stderr
    r = run("info", "corrupt.safetensors", cwd=tmp_path)
    assert r.returncode == 2 and "not a readable safetensors file" in r.stderr


def test_a_compression_too_high_is_named_by_its_flag(tmp_path, matrix_file):
    r = run("decompose", "W.npy", "--compression", "100000", cwd=tmp_path)
    assert r.returncode == 2 and "--compression" in r.stderr and "--max-params" not in r.stderr
