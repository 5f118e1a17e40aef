"""Writing files safely: a temporary file of its own in the target's folder, flushed, then renamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: alive
        return True
    return True


def _remove_stale(path: Path) -> None:
    """Remove the temporary files of earlier writes of ``path`` whose writing process is gone (a killed
    write cannot clean up after itself); those of live writers are left alone."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                pass  # another writer removed it first


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then replace ``path`` by it atomically.

    Concurrent writers never mix their bytes (each has its own temporary
    file, named ``.<name>.<pid>.<random>.tmp``; the last rename wins whole),
    and a failed write leaves neither a temporary file nor a partial ``path``
    behind. A write killed before it could clean up leaves its temporary
    file; the next successful write of ``path`` removes it (its process is
    gone).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _remove_stale(path)
    finally:
        if tmp.exists():
            tmp.unlink()
