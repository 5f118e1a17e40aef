"""Writing files safely: a temporary file of its own in the target's folder, flushed, then renamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then replace ``path`` by it atomically.

    Concurrent writers never mix their bytes (each has its own temporary
    file; the last rename wins whole), and a failed write leaves neither a
    temporary file nor a partial ``path`` behind.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
