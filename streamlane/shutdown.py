"""Graceful stop of a flow process: finish the batch in hand, snapshot, exit.

The first SIGINT or SIGTERM asks every input partition of the process to end (EOF)
at its next poll. bytewax then closes the running epoch, which writes the recovery
snapshot of every step, flushes the sinks and returns; the next start resumes
exactly after the records of that last batch, reading nothing twice. When that has
not happened within the grace period (a cluster peer that keeps running holds the
dataflow open, say), or on a second signal, the process is interrupted at once: the
previous snapshot stays valid, and the next start reprocesses what came after it.
"""

from __future__ import annotations

import _thread
import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

GRACE_S = 8.0
"""Below the 10 s every child of `streamlane run` gets to stop."""

_requested = threading.Event()


def stop_requested() -> bool:
    """Whether this process was asked to stop (input partitions then report EOF)."""
    return _requested.is_set()


def request_stop() -> None:
    """Ask this process's input partitions to end at their next poll, as a first signal
    does but without its grace period (for a flow run inside another program)."""
    _requested.set()


def forget_stop_request() -> None:
    """Let input partitions run again after `request_stop` (for a process that runs flows
    one after another)."""
    _requested.clear()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt
    _requested.set()
    log.info("%s: finishing the current batch and snapshotting", signal.Signals(signum).name)
    timer = threading.Timer(GRACE_S, _thread.interrupt_main)
    timer.daemon = True
    timer.start()


def install() -> None:
    """Handle SIGINT and SIGTERM as described in the module docstring (main thread only)."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
