"""Child processes that stop when the process that started them dies.

`streamlane run` starts the embedded broker, the warehouse, the flows and the generators
in sessions of their own, so that a Ctrl-C reaches each of them once, through `run`,
which stops them in order. When `run` itself is killed (SIGKILL, the out-of-memory
killer) it cannot stop them, and they would run on without it, holding the warehouse file
and its ports, so the next `run` could not start. On Linux each child asks the kernel to
send it SIGTERM when its parent dies: the broker exits, and a streamlane process stops as
on any SIGTERM (a flow ends its batch, the warehouse its write in hand). Other systems
have no such request: there, the children of a killed `run` are stopped by hand.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that has the child sent SIGTERM when this
    process dies, or None where the kernel offers no such request (anything but Linux).

    The kernel ties the request to the thread that starts the child: start it from a
    thread that lives as long as the child should (the main thread). A child whose
    parent died before the request was made exits at once, before running anything.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def request() -> None:
        # Runs in the child between fork and exec: nothing here may take a lock.
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:
            os._exit(1)

    return request
