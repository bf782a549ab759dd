"""Graceful stop of a process: finish the work in hand, then exit.

The first SIGINT or SIGTERM asks the process to stop. A flow's input partitions end (EOF)
at their next poll: bytewax then closes the running epoch, which writes the recovery
snapshot of every step, flushes the sinks and returns; the next start resumes exactly
after the records of that last batch, reading nothing twice. The warehouse finishes the
write in hand (its rows and its Kafka positions commit together) and stops. When that has
not happened within the grace period (a cluster peer that keeps running holds the
dataflow open, say), or on a second signal, the process is interrupted at once: a flow's
previous snapshot stays valid, and the next start reprocesses what came after it; the
warehouse's write in hand rolls back, and the next start lands it again from Kafka.

A process of a flow cluster cannot be interrupted that way while another process of the
cluster runs: its dataflow waits for its peers to close their connections, outside the
interpreter, where neither the interrupt nor a second signal reaches it. Such a process
installs the handler with `exit_after`: once interrupted, it exits that much later if it
is still running, saying so in one line. Its previous snapshot stays valid, as after
any interrupt.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
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


@dataclass(frozen=True)
class ExitAfterInterrupt:
    """How a process that an interrupt may not end exits: `after_s` later, logging `why`."""

    after_s: float
    why: str


EXIT_STATUS = 1
"""A process that exits on its own after an interrupt did not stop as asked."""

_exit_armed = threading.Event()


def _exit_unless_stopped(exit_after: ExitAfterInterrupt) -> None:
    log.error("%s", exit_after.why)
    logging.shutdown()  # the line is written before the process ends
    os._exit(EXIT_STATUS)


def _arm_exit(exit_after: ExitAfterInterrupt | None) -> None:
    """With `exit_after`, exit later unless the process has ended by then (the timer is a
    daemon thread, so a process that ends does not wait for it)."""
    if exit_after is not None and not _exit_armed.is_set():
        _exit_armed.set()
        timer = threading.Timer(exit_after.after_s, _exit_unless_stopped, (exit_after,))
        timer.daemon = True
        timer.start()


def _interrupt(exit_after: ExitAfterInterrupt | None) -> None:
    _arm_exit(exit_after)
    _thread.interrupt_main()


def _on_signal(
    on_stop: Callable[[], None] | None,
    doing: str,
    exit_after: ExitAfterInterrupt | None,
    signum: int,
    _frame: FrameType | None,
) -> None:
    if _requested.is_set():
        _arm_exit(exit_after)
        raise KeyboardInterrupt
    _requested.set()
    log.info("%s: %s", signal.Signals(signum).name, doing)
    if on_stop:
        on_stop()
    timer = threading.Timer(GRACE_S, _interrupt, (exit_after,))
    timer.daemon = True
    timer.start()


def install(
    on_stop: Callable[[], None] | None = None,
    doing: str = "finishing the current batch and snapshotting",
    exit_after: ExitAfterInterrupt | None = None,
) -> None:
    """Handle SIGINT and SIGTERM as described in the module docstring (main thread only).

    `on_stop` is called at the first signal, besides ending input partitions (the
    warehouse stops its loop there); `doing` is what the process logs it is doing then.
    With `exit_after`, a process still running `exit_after.after_s` after it was
    interrupted (the grace period over, or a second signal) logs `exit_after.why` and
    exits with `EXIT_STATUS`.
    """
    handler = partial(_on_signal, on_stop, doing, exit_after)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or during, innermost last."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` comes of an interrupt (Ctrl-C again, or the grace period over): DuckDB
    reports a statement it interrupted as an error raised from the KeyboardInterrupt."""
    return any(isinstance(e, KeyboardInterrupt) for e in causes(exc))
