"""Run from outside the source tree, in a venv where only the built wheel (with its torch extra) is installed:
the README's first Python example and a compress -> save -> load round trip."""

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
tnlib.show_versions()
print(f"wheel check: tnlib {tnlib.__version__}, {len(reports)} layers compressed, round trip exact")
