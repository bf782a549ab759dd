"""Kafka clients' log lines, each kind once a minute.

While Kafka does not answer, every client of a process logs each failed attempt to
connect, several times a second: a flow has a dozen clients, so an outage of a minute
wrote thousands of lines saying the same thing, burying the one line the broker watch
writes about it (and the lines a client queued while it could not deliver them came out
all at once at shutdown). A line of a kind already logged in the last minute is held
back, and the next line of that kind to get through says how many were.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

REPEAT_WINDOW_S = 60.0
_MAX_KINDS = 1000
_NUMBERS = re.compile(r"[0-9]+")


def line_kind(message: str) -> str:
    """What makes two client lines say the same thing: the line with each number (client
    index, address, port, milliseconds) replaced by N."""
    return _NUMBERS.sub("N", message)


class RepeatsHeldBack(logging.Filter):
    """Lets a log line through unless a line of the same kind (`line_kind`) got through
    less than `window_s` ago; a line that gets through after some were held back says how
    many."""

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._passed_at: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        kind = line_kind(message)
        now = self._clock()
        with self._lock:
            passed_at = self._passed_at.get(kind)
            if passed_at is not None and now - passed_at < self.window_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            if len(self._passed_at) >= _MAX_KINDS:
                self._passed_at.clear()
                self._held.clear()
            self._passed_at[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            record.msg = f"{message} ({held} more like it held back since the last one)"
            record.args = None
        return True
