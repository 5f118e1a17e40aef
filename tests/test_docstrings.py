"""Every public name of ``tnlib`` and ``tnlib.nn`` has a numpydoc docstring with an example, and the example runs."""

import ast
import doctest
import inspect

import pytest

import tnlib
import tnlib.nn

PUBLIC = ([("tnlib", name) for name in tnlib.__all__] + [("tnlib.nn", name) for name in tnlib.nn.__all__]
          + [("tnlib.qtt", name) for name in tnlib.qtt.__all__])
CONSTANTS = {("tnlib", "MAX_DENSE_SIZE")}  # a documented module constant: ints carry no docstring of their own


def _object(module: str, name: str):
    return getattr({"tnlib": tnlib, "tnlib.nn": tnlib.nn, "tnlib.qtt": tnlib.qtt}[module], name)


@pytest.mark.parametrize(("module", "name"), [p for p in PUBLIC if p not in CONSTANTS], ids=lambda v: str(v))
def test_public_name_has_a_docstring_whose_example_runs(module, name):
    obj = _object(module, name)
    doc = obj.__doc__
    assert doc and doc.strip(), f"{module}.{name} has no docstring"
    assert ">>>" in doc, f"{module}.{name}'s docstring has no runnable example"
    heading = "Examples\n--------" in inspect.cleandoc(doc)
    assert heading, f"{module}.{name}'s example is not under a numpydoc 'Examples' heading"
    test = doctest.DocTestParser().get_doctest(doc, {}, f"{module}.{name}", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{module}.{name}: {result.failed} example(s) failed"


def test_every_public_constant_has_an_attribute_docstring():
    """A constant's docstring is the string literal right after its assignment (what the API pages render)."""
    import tnlib._chain as defining

    tree = ast.parse(inspect.getsource(defining))
    for module, name in CONSTANTS:
        body = tree.body
        at = [k for k, node in enumerate(body) if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]
        assert at, f"{module}.{name} is not assigned in {defining.__name__}"
        after = body[at[0] + 1]
        documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        assert documented, f"{module}.{name} has no docstring"
