"""A missing optional package is one line that names the extra to install; the CLI exits 2 with it."""

import subprocess
import sys

import numpy as np
import pytest

import tnlib
import tnlib.cli


def test_tnlib_nn_without_torch_names_the_extra():
    code = "import sys; sys.modules['torch'] = None\ntry:\n    import tnlib.nn\nexcept ImportError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "tnlib.nn needs torch: pip install 'tnlib[torch]'", out.stderr


def test_the_cli_exits_2_naming_the_extra(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "w.npy", np.ones((8, 8)))
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    code = tnlib.cli.main(["decompose", str(tmp_path / "w.npy"), "--out-of-core", "--max-bond", "2"])
    assert code == 2 and "--out-of-core needs dask: pip install 'tnlib[dask]'" in capsys.readouterr().err


def test_export_and_save_name_their_extras(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import tnlib.nn

    layer = tnlib.nn.MPOLinear(8, 8, bond_dim=2).eval()
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"^export_onnx needs onnx: pip install 'tnlib\[onnx\]'$"):
        tnlib.nn.export_onnx(layer, (torch.randn(1, 8),), tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ImportError, match=r"^tnlib.nn.save needs safetensors: pip install 'tnlib\[torch\]'$"):
        tnlib.nn.save(layer, tmp_path / "x.safetensors")
