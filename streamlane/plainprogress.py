"""Progress for output that is not a terminal (a log file, a container's or a service's log):
a line every `PLAIN_PROGRESS_S` instead of a display redrawn in place, which off a terminal
shows nothing until the command ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

PLAIN_PROGRESS_S = 10.0
"""How often long-running commands write a progress line when their output is not a terminal."""


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class PlainProgress:
    """Writes (with `write`) the text `describe()` returns when `tick()` is called at least
    `every_s` after the last was written (or after it was made)."""

    def __init__(
        self,
        describe: Callable[[], str],
        write: Callable[[str], None] = _to_stderr,
        every_s: float = PLAIN_PROGRESS_S,
    ) -> None:
        self.describe, self.write, self.every_s = describe, write, every_s
        self.written = time.monotonic()

    def tick(self) -> None:
        """Write the progress if it is due."""
        if time.monotonic() - self.written >= self.every_s:
            self.write(self.describe())
            self.written = time.monotonic()
