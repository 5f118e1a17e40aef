"""What a running ``compress`` tells its user: a tqdm bar (``progress=``) and log records (``verbose=``).

Every phase and every layer is logged at ``INFO`` on the ``tnlib.nn`` logger, whether or not anyone listens (a
library does not configure logging; an application that does sees the records). ``verbose=True`` shows them on
stderr for the one call: a handler is added to the logger and removed when the call ends, and the logger's level is
put back.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Iterator

__all__ = ["Progress", "tracking", "LOGGER"]

LOGGER = logging.getLogger("tnlib.nn")


class Progress:
    """The bar (or ``None``) and the clock of one ``compress`` call; logs each phase and layer."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.started = time.perf_counter()
        self.layer_started = self.started

    def phase(self, message: str, *args: Any) -> None:
        """Log the start or end of a phase of the whole call."""
        LOGGER.info(message, *args)

    def step(self, name: str) -> None:
        """Layer ``name`` is being converted: named on the bar."""
        self.layer_started = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(name, refresh=True)

    def done(self, name: str, result: Any = None) -> None:
        """Layer ``name`` is converted (``result``: its report, or what was found for it); logged with its time."""
        seconds = time.perf_counter() - self.layer_started
        said = "" if result is None else f": {result if isinstance(result, str) else repr(result)}"
        LOGGER.info("layer %s done in %.2f s%s", name, seconds, said)
        if self.bar is not None:
            self.bar.update(1)

    def extend(self, count: int) -> None:
        """``count`` more layer conversions than the bar was opened for (a refit decided on the way)."""
        if self.bar is not None:
            self.bar.total += count
            self.bar.refresh()

    def close(self, count: int) -> None:
        """The call ends: close the bar, log the total time."""
        if self.bar is not None:
            self.bar.close()
        LOGGER.info("compress converted %d layer(s) in %.2f s", count, time.perf_counter() - self.started)


@contextlib.contextmanager
def tracking(progress: Any, verbose: Any, total: int) -> Iterator[Progress]:
    """A :class:`Progress` over ``total`` layers: a tqdm bar when ``progress``, records on stderr when ``verbose``."""
    for name, flag in (("progress", progress), ("verbose", verbose)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    bar = None
    if progress:
        from tqdm.auto import tqdm  # a core dependency, imported when a bar is asked for

        bar = tqdm(total=total, desc="compress", unit="layer")
    handler, level = None, LOGGER.level
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
    try:
        yield Progress(bar)
    finally:
        if handler is not None:
            LOGGER.removeHandler(handler)
            LOGGER.setLevel(level)
        if bar is not None:
            bar.close()
