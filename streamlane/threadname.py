"""Names of the operating system's threads, for tools that list a process's threads.

`top -H`, `ps -L` and /proc show a thread by its kernel name, which Python (before 3.14)
leaves as the program's: every thread of a flow reads `python`. The threads streamlane
starts name themselves `sl-<job>`, so the CPU a decode thread or a landing reader uses
can be told from the worker's, the columnar engine's (`polars-N`) and the Kafka
clients' (`rdk:...`).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

PREFIX = "sl-"
_PR_SET_NAME = 15
_KERNEL_NAME_BYTES = 15
"""The kernel keeps this many bytes of a thread's name (16 with the terminating zero)."""


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def name_this_thread(job: str) -> None:
    """Name the calling thread `sl-<job>` for the operating system, cut to the 15 bytes
    the kernel keeps. Where threads cannot be named (not Linux), nothing happens."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_NAME, (PREFIX + job).encode()[:_KERNEL_NAME_BYTES], 0, 0, 0)
