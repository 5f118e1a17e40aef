"""The layout's rules, checked on the source: no import cycles, no private names
used across modules, the core free of torch, the public API what ``__init__`` exports."""

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tnlib

ROOT = Path(tnlib.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str, *, top_level: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for the imports of ``module``: those that run when it is
    imported (``top_level``), or every one, function-level imports included."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [alias.name for alias in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            found += [(s, [], node.lineno) for s in submodules] or [(target, names, node.lineno)]
    return found


def _top_level_imports(module: str) -> list[tuple[str, list[str]]]:
    return [(t, names) for t, names, _ in _imports(module, top_level=True)]


def _function_level_imports(module: str) -> list[tuple[str, int]]:
    top = {(t, line) for t, _, line in _imports(module, top_level=True)}
    return [(t, line) for t, _, line in _imports(module, top_level=False) if (t, line) not in top]


# Only these may be imported inside a function: optional or heavy dependencies that a user may
# not have installed (or that cost seconds to import), and tnlib's own plotting module, whose
# matplotlib import is itself lazy.
LAZY_ALLOWED = ("torch", "cupy", "jax", "dask", "matplotlib", "safetensors", "onnx", "onnxscript", "tqdm", "scipy",
                "warnings", "tnlib._plot", "threadpoolctl")


def test_function_level_imports_are_only_of_optional_dependencies():
    bad = []
    for module in MODULES:
        for target, line in _function_level_imports(module):
            root = target.split(".")[0]
            if target not in LAZY_ALLOWED and root not in LAZY_ALLOWED:
                bad.append(f"{module}:{line} imports {target} inside a function")
    assert not bad, "function-level imports of tnlib modules (move them to the top of the module):\n" + "\n".join(bad)


def test_no_import_cycles():
    """Every import counts, function-level ones too: a circle hidden in a function is still a circle."""
    graph = {
        m: {t for t, _, _ in _imports(m, top_level=False) if t in MODULES and t != m and not m.startswith(t + ".")}
        for m in MODULES
    }
    # a package's __init__ imports its children; a child importing its own package is not a cycle
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = path[path.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def _private_imports(path: Path, module: str | None) -> list[str]:
    """Private functions, classes or constants imported from another module
    (importing a private *module* of the package is how the layers connect)."""
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            target = _resolve(module, node) if module else (node.module or "")
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    continue
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    bad.append(f"{path.name}:{node.lineno} imports {alias.name}")
    # module._private, for modules of the package bound to a name here
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            target = _resolve(module, node) if module else (node.module or "")
            aliases |= {a.asname or a.name for a in node.names if f"{target}.{a.name}" in MODULES}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.asname and a.name in MODULES}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            bad.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return bad


def test_no_private_name_used_across_modules():
    bad = []
    for module, path in MODULES.items():
        bad += _private_imports(path, module)
    for path in (ROOT.parent / "tests").rglob("*.py"):
        bad += _private_imports(path, None)
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_core_never_imports_torch_at_import_time():
    for module in MODULES:
        if module.startswith("tnlib.nn"):
            continue
        imported = {t for t, _ in _top_level_imports(module)}
        assert not {t for t in imported if t.split(".")[0] in ("torch", "cupy", "matplotlib")}, module


def test_public_modules_export_what_init_exports():
    public = set(tnlib.__all__)
    for info in pkgutil.iter_modules(tnlib.__path__):
        if info.name.startswith("_") or info.name in ("nn", "cli"):
            continue
        if info.name in public:  # a namespace of its own (tnlib.qtt.grid, ...)
            continue
        mod = importlib.import_module(f"tnlib.{info.name}")
        exported = set(getattr(mod, "__all__", ()))
        user_facing = {n for n in exported if n in public}
        assert user_facing, f"tnlib.{info.name} is public but nothing of it is in tnlib.__all__"
    for name in tnlib.__all__:
        assert hasattr(tnlib, name), name


def test_nn_is_reachable_after_import_tnlib_and_torch_is_imported_only_then():
    code = (
        "import sys, tnlib; assert 'torch' not in sys.modules, 'import tnlib imported torch'; "
        "layer = tnlib.nn.MPOLinear(16, 16, bond_dim=2); assert 'torch' in sys.modules; "
        "assert callable(tnlib.nn.compress) and callable(tnlib.nn.distill)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nn_implementation_modules_are_private_and_names_do_not_shadow_modules():
    import tnlib.nn

    nn_root = ROOT / "nn"
    public_modules = [p.stem for p in nn_root.glob("*.py") if not p.stem.startswith("_")]
    assert public_modules == [], f"tnlib.nn modules should be private (start with _): {public_modules}"
    for name in tnlib.nn.__all__:
        obj = getattr(tnlib.nn, name)
        assert not isinstance(obj, types.ModuleType), f"tnlib.nn.{name} is a module"
    with pytest.raises(AttributeError):
        tnlib.bogus  # noqa: B018


def test_architecture_page_names_every_module():
    """docs/architecture.md stays true: every module of tnlib appears in it."""
    page = (ROOT.parent / "docs" / "architecture.md").read_text()
    missing = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.name == "__init__.py" and rel.parent != Path("."):
            continue  # a package is named by its folder (tnlib/svd/, tnlib/nn/)
        if rel.name not in page:
            missing.append(str(rel))
    assert not missing, f"docs/architecture.md does not mention: {sorted(missing)}"


def _layers() -> tuple[list[str], dict[str, int]]:
    """The layers of docs/architecture.md's table, bottom up, and the layer of every module in its module column."""
    page = (ROOT.parent / "docs" / "architecture.md").read_text()
    table = page[page.index("| layer | module |"):].split("\n\n")[0].splitlines()[2:]
    names: list[str] = []
    layer_of: dict[str, int] = {}
    for row in table:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if cells[0]:
            names.append(cells[0])
        for path in re.findall(r"`tnlib/([\w/]+?)(?:\.py)?/?`", cells[1]):
            layer_of["tnlib." + path.replace("/", ".")] = len(names) - 1
    return names, layer_of


def test_imports_follow_the_layer_order_of_the_architecture_page():
    names, layer_of = _layers()

    def layer(module: str) -> int | None:
        while module:
            if module in layer_of:
                return layer_of[module]
            module = module.rpartition(".")[0]
        return None

    unplaced = sorted(m for m in MODULES if m != "tnlib" and layer(m) is None)
    assert not unplaced, f"docs/architecture.md's table places no layer for {unplaced}"
    upward = []
    for module in MODULES:
        if module == "tnlib":
            continue  # the package's __init__ gathers the public API from every layer
        mine = layer(module)
        assert mine is not None
        for target, _ in _top_level_imports(module):
            theirs = layer(target) if target.startswith("tnlib.") else None
            if theirs is not None and theirs > mine:
                upward.append(f"{module} ({names[mine]}) imports {target} ({names[theirs]})")
    assert not upward, "imports that run upward against the layer table:\n" + "\n".join(upward)


NN_MAY_IMPORT = {"tnlib", "tnlib.metric", "tnlib.rnn", "tnlib.truncation", "tnlib._apply", "tnlib._cost", "tnlib._legs",
                 "tnlib._recurrence", "tnlib._backend", "tnlib._checks", "tnlib._files", "tnlib._choose",
                 "tnlib.quantization", "tnlib._plot", "tnlib._optional"}
"""The core modules tnlib.nn may import (docs/architecture.md lists them): a new one is a decision, not a slip."""


def test_nn_imports_only_the_listed_core_modules():
    found = {}
    for module in MODULES:
        if module.startswith("tnlib.nn"):
            for target, _, line in _imports(module, top_level=False):
                if target.startswith("tnlib") and not target.startswith("tnlib.nn") and target not in NN_MAY_IMPORT:
                    found.setdefault(target, []).append(f"{module}:{line}")
    assert not found, f"tnlib.nn imports core modules off its list: {found}"
    page = (ROOT.parent / "docs" / "architecture.md").read_text()
    for name in NN_MAY_IMPORT - {"tnlib"}:
        assert f"`{name.removeprefix('tnlib.')}`" in page or f"`{name}`" in page, name


def test_nn_groups_are_private_and_tests_mirror_them():
    groups = sorted(p.name for p in (ROOT / "nn").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert groups and all(g.startswith("_") for g in groups), groups
    for group in groups:
        modules = [p.stem for p in (ROOT / "nn" / group).glob("*.py") if p.stem != "__init__"]
        assert modules and all(m.startswith("_") for m in modules), (group, modules)
        assert (ROOT.parent / "tests" / "nn" / group.lstrip("_")).is_dir(), group


def test_the_wheel_holds_every_package_and_the_version_is_written_once():
    """Every folder of tnlib with an __init__.py is a package the build finds (a subpackage missing from the
    wheel would install a broken tnlib), and pyproject.toml reads the version from tnlib.__version__."""
    import setuptools
    import tomllib

    config = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    found = set(setuptools.find_packages(str(ROOT.parent), **config["tool"]["setuptools"]["packages"]["find"]))
    packages = {".".join(p.parent.relative_to(ROOT.parent).parts) for p in ROOT.rglob("__init__.py")}
    assert packages <= found, sorted(packages - found)
    assert "version" in config["project"]["dynamic"] and "version" not in config["project"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tnlib.__version__"}
