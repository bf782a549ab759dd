"""Progress for output that is not a terminal (a log file, a container's or a service's log):
a line every `PLAIN_PROGRESS_S` instead of a display redrawn in place, which off a terminal
shows nothing until the command ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

PLAIN_PROGRESS_S = 10.0
"""How often long-running commands write a progress line when their output is not a terminal."""


class PlainProgress:
    """Writes the line `describe()` returns when `tick()` is called at least `every_s` after
    the last line written (or after it was made)."""

    def __init__(
        self,
        describe: Callable[[], str],
        stream: TextIO = sys.stderr,
        every_s: float = PLAIN_PROGRESS_S,
    ) -> None:
        self.describe, self.stream, self.every_s = describe, stream, every_s
        self.written = time.monotonic()

    def tick(self) -> None:
        """Write a line if one is due."""
        if time.monotonic() - self.written >= self.every_s:
            print(self.describe(), file=self.stream, flush=True)
            self.written = time.monotonic()
