"""Errors a user can cause: reported as one line, without a traceback."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)


class UserError(Exception):
    """A mistake in configuration, input or environment that the user can fix.

    The message names what is wrong and where; the CLI prints it on one line and
    exits with status 2.
    """


def make_folder(path: Path, what: str) -> None:
    """Create folder `path` and its parents unless it exists; UserError naming `what`, the
    folder and why when it cannot be created (a file in the way, no permission)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_the_way = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        why = f"{in_the_way} is a file" if in_the_way else exc.strerror or str(exc)
        raise UserError(f"cannot create the {what} {path}: {why}") from None


def exit_from_step(error: UserError) -> NoReturn:
    """End the process at once with `error` on one line (status 2), from inside a flow step.

    bytewax turns an exception in a step into a panic with its own traceback, and a teardown
    that may wait on Kafka; whoever calls this has nothing the recovery store's last
    snapshot does not already hold.
    """
    log.error("%s", error)
    sys.stderr.write(f"streamlane: error: {error}\n")
    sys.stderr.flush()
    os._exit(2)
