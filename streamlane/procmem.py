"""A process's memory and CPU time as the kernel reports them in /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def memory_mib(pid: int, field: str = "VmRSS") -> float | None:
    """A process's memory in MiB: `VmRSS` (resident now) or `VmHWM` (its peak so far) from
    /proc; None once the process is gone or the field is absent.

    A process's own peak is read here rather than from a parent's resource usage of its
    children: the kernel counts a child's peak from before it started its program, when
    it was a copy of the parent, so that figure is at least the parent's size.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) a process has used so far; None once it
    is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces or parentheses: fields are counted after its end.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
