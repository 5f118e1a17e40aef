"""Run from outside the source tree, in a venv where only the built wheel (with its torch and onnx extras) is
installed: the README's first Python example and a compress -> save -> load -> export (free batch) -> onnxruntime
round trip."""

import pathlib
import re
import sys
import tempfile

import tnlib

assert "site-packages" in tnlib.__file__, f"tnlib was imported from {tnlib.__file__}, not the installed wheel"
readme = pathlib.Path(sys.argv[1]).read_text()
snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
exec(compile(snippet, "README.md", "exec"), {})

import torch  # noqa: E402

import tnlib.nn as tn  # noqa: E402

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
small, reports = tn.compress(model, compression=4)
path = pathlib.Path(tempfile.mkdtemp()) / "small.safetensors"
tn.save(small, path)
fresh = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
back = tn.load(path, model=fresh)
x = torch.randn(5, 64)
assert torch.equal(back(x), small(x))
import onnxruntime  # noqa: E402

onnx_path = tn.export_onnx(back.eval(), (torch.randn(1, 64),), path.with_suffix(".onnx"))
session = onnxruntime.InferenceSession(str(onnx_path))
for batch in (1, 7, 16):
    x = torch.randn(batch, 64)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    expected = back(x).detach().numpy()
    assert got.shape == expected.shape and abs(got - expected).max() <= 1e-5 * abs(expected).max(), batch
tnlib.show_versions()
print(f"wheel check: tnlib {tnlib.__version__}, torch {torch.__version__}, {len(reports)} layers compressed, "
      "save/load exact, onnxruntime at batches 1, 7, 16 matches eager")
