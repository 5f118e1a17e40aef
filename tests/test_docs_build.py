"""The docs build (figures) runs and produces images."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_writes_figures(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    for name in ("spectrum.png", "tradeoff.png", "layouts.png", "compression.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_readme_example_runs():
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "compress_layer.py")],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "entanglement entropy" in r.stdout and "max_params" in r.stdout
