"""Optional dependencies: imported where they are used, and a missing one named with the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["optional"]


def optional(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or an ``ImportError`` of one line: what needs it and the ``pip install`` that adds it.

    >>> optional("json", "none", "a doctest").__name__
    'json'
    >>> optional("no_such_module_here", "plot", "drawing")
    Traceback (most recent call last):
    ...
    ImportError: drawing needs no_such_module_here: pip install 'tnlib[plot]'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}: pip install 'tnlib[{extra}]'") from None
