"""Which recovery stores flow processes are using, so that abandoned ones can be removed.

A flow process holds a shared lock on its recovery store's broker marker for as long as it
runs (the processes of a cluster share one store, and each holds it). A store of an
embedded broker is of no use once that broker has stopped: the broker keeps topics in
memory only. `streamlane run` removes its flows' stores when it stops, but a run that was
killed could not, so at start it also removes every embedded broker's store that no
process holds.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path
from typing import BinaryIO

MARKER = "broker.json"
"""The file in a recovery store naming the broker (cluster id) the store belongs to."""

_held: list[BinaryIO] = []


def hold(store: Path) -> None:
    """Hold a shared lock on `store` until this process exits, whatever the exit: the
    system releases it with the process."""
    handle = open(store / MARKER, "rb")  # noqa: SIM115 - open for the process's lifetime
    fcntl.flock(handle, fcntl.LOCK_SH)
    _held.append(handle)


def remove_abandoned(folder: Path, pattern: str) -> list[Path]:
    """Remove the recovery stores in `folder` whose names match `pattern` (a glob) and that
    no process holds; return the ones removed. A store without a marker (being created
    right now, or left half made) is kept."""
    removed = []
    for store in sorted(folder.glob(pattern)):
        try:
            handle = open(store / MARKER, "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a flow process runs on it
            shutil.rmtree(store, ignore_errors=True)
            removed.append(store)
    return removed
