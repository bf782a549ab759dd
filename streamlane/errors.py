"""Errors a user can cause: reported as one line, without a traceback."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

log = logging.getLogger(__name__)


class UserError(Exception):
    """A mistake in configuration, input or environment that the user can fix.

    The message names what is wrong and where; the CLI prints it on one line and
    exits with status 2.
    """


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
