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

The signal handler only notes the request and wakes a thread of its own, which logs it,
calls the process's `on_stop` and runs the grace period: Python runs a handler between
any two instructions of the main thread, also while that thread holds a lock, and also
inside the handler itself when the signal comes again. The children of a killed
`streamlane run` were seen to receive their SIGTERM more than once: a handler that set an
event, which takes a lock, was found waiting for that lock inside itself, and the
warehouse never stopped; in a flow, the repeat interrupted the final snapshot.

A process of a flow cluster cannot be interrupted that way while another process of the
cluster runs: its dataflow waits for its peers to close their connections, outside the
interpreter, where neither the interrupt nor a second signal reaches it. Such a process
installs the handler with `exit_after`: once interrupted, it exits that much later if it
is still running, saying so in one line. Its previous snapshot stays valid, as after
any interrupt.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from streamlane.threadname import name_this_thread

log = logging.getLogger(__name__)

GRACE_S = 8.0
"""Below the 10 s every child of `streamlane run` gets to stop."""
REPEATED_SIGTERM_S = 0.5
"""A SIGTERM within this time of a first SIGTERM is that one again, not a second request:
the children of a killed `streamlane run` were seen to receive their SIGTERM (`lifeline`)
more than once within a fraction of a second. A second Ctrl-C always interrupts."""

_requested = False
_finished = False
_first_signal: dict[str, tuple[int, float]] = {}
FINISHED_EXIT_STATUS = 130
"""A process interrupted after its command finished, while Python tears it down."""


def stop_requested() -> bool:
    """Whether this process was asked to stop (input partitions then report EOF)."""
    return _requested


def request_stop() -> None:
    """Ask this process's input partitions to end at their next poll, as a first signal
    does but without its grace period (for a flow run inside another program)."""
    global _requested
    _requested = True


def forget_stop_request() -> None:
    """Let input partitions run again after `request_stop` (for a process that runs flows
    one after another)."""
    global _requested
    _requested = False
    _first_signal.clear()


class StopRequested(KeyboardInterrupt):
    """A wait given up because this process was asked to stop (`stop_requested`). It is an
    interrupt, so whatever handles one (and `interrupted`) handles it: the process stops at
    once instead of finishing that wait, whose caller cannot go on without it."""


def give_up_if_stopping() -> None:
    """Raise StopRequested once this process was asked to stop: for a wait that checks
    between its steps whether to go on."""
    if _requested:
        raise StopRequested


@dataclass(frozen=True)
class ExitAfterInterrupt:
    """How a process that an interrupt may not end exits: `after_s` later, logging what
    `why` says then (the reason can change while the process waits)."""

    after_s: float
    why: Callable[[], str]


@dataclass(frozen=True)
class _Handling:
    on_stop: Callable[[], None] | None
    doing: str
    exit_after: ExitAfterInterrupt | None


EXIT_STATUS = 1
"""A process that exits on its own after an interrupt did not stop as asked."""

_exit_armed = threading.Event()
_handling = _Handling(None, "", None)
_wake_read = _wake_write = -1
_INTERRUPTED = 0
"""What the signal handler tells the stopping thread after an interrupt (a signal number
otherwise)."""


def _exit_unless_stopped(exit_after: ExitAfterInterrupt) -> None:
    log.error("%s", exit_after.why())
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


def finished() -> None:
    """The command is done, and Python is about to tear the process down: the grace period's
    interrupt is not sent any more, and a signal ends the process at once. An interrupt
    there (in the wait for the threads of a pool to end, say) left Python waiting forever
    for threads it had not yet told to end. What the command wrote is flushed first, so that
    exit loses none of it."""
    global _finished
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a closed pipe
            stream.flush()
    _finished = True


def _interrupt(exit_after: ExitAfterInterrupt | None) -> None:
    if _finished:
        return
    _arm_exit(exit_after)
    _thread.interrupt_main()


def _tell_stopping_thread(what: int) -> None:
    with contextlib.suppress(BlockingIOError):  # the thread has plenty to do already
        os.write(_wake_write, bytes([what]))


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Python runs this on the main thread between any two of its instructions: also while
    # the main thread holds a lock, and inside this handler when the signal comes again.
    # Taking a lock here could wait for the main thread itself, forever; so it takes none,
    # and leaves logging, `on_stop` and the timers to the stopping thread.
    global _requested
    if _finished:
        os._exit(FINISHED_EXIT_STATUS)
    this = (signum, time.monotonic())
    first = _first_signal.setdefault("first", this)  # one step: a nested call sees it
    if first is this:
        if not _requested:
            _requested = True
            _tell_stopping_thread(signum)
            return
        # Asked to stop already (`request_stop`): a signal interrupts.
    elif signum == first[0] == signal.SIGTERM and this[1] - first[1] < REPEATED_SIGTERM_S:
        return
    _tell_stopping_thread(_INTERRUPTED)
    raise KeyboardInterrupt


def _stopping() -> None:
    """The stopping thread: does what a signal asks for, outside the signal handler."""
    name_this_thread("stopping")
    while True:
        what = os.read(_wake_read, 1)[0]
        handling = _handling
        if what == _INTERRUPTED:
            _arm_exit(handling.exit_after)
            continue
        log.info("%s: %s", signal.Signals(what).name, handling.doing)
        if handling.on_stop:
            handling.on_stop()
        timer = threading.Timer(GRACE_S, _interrupt, (handling.exit_after,))
        timer.daemon = True
        timer.start()


def install(
    on_stop: Callable[[], None] | None = None,
    doing: str = "finishing the current batch and snapshotting",
    exit_after: ExitAfterInterrupt | None = None,
) -> None:
    """Handle SIGINT and SIGTERM as described in the module docstring (main thread only).

    `on_stop` is called at the first signal, besides ending input partitions (the
    warehouse stops its loop there), on a thread of its own; `doing` is what the process
    logs it is doing then. A SIGTERM within `REPEATED_SIGTERM_S` of the first is not a
    second signal. With `exit_after`, a process still running `exit_after.after_s` after
    it was interrupted (the grace period over, or a second signal) logs what
    `exit_after.why` says and exits with `EXIT_STATUS`.
    """
    global _handling, _wake_read, _wake_write
    _handling = _Handling(on_stop, doing, exit_after)
    if _wake_write < 0:
        _wake_read, _wake_write = os.pipe()
        os.set_blocking(_wake_write, False)
        threading.Thread(target=_stopping, name="stopping", daemon=True).start()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


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
