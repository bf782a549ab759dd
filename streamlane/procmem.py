"""A process's memory and CPU time as the kernel reports them in /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

from streamlane.threadname import PREFIX


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
    return _used_s(stat)


def _used_s(stat: str) -> float:
    # The command name may hold spaces or parentheses: fields are counted after its end.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_kind(pid: int, tid: int, name: str) -> str:
    """What a thread of process `pid` is, by its kernel name: `main` (the process's first
    thread), the job of a thread streamlane named (`sl-decode` is `decode`), `polars` (the
    columnar engine's pool), `kafka client` (the Kafka clients' threads), else `other`."""
    if tid == pid:
        return "main"
    if name.startswith(PREFIX):
        return name.removeprefix(PREFIX)
    if name.startswith("polars"):
        return "polars"
    if name.startswith("rdk:"):
        return "kafka client"
    return "other"


def cpu_seconds_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds a process has used so far, by kind of thread (`thread_kind`), plus
    `ended threads`: what threads that have already exited used. Empty once it is gone."""
    total = cpu_seconds(pid)
    if total is None:
        return {}
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            seconds = _used_s((task / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile: counted below
        kind = thread_kind(pid, int(task.name), name)
        used[kind] = used.get(kind, 0.0) + seconds
    used["ended threads"] = max(0.0, total - sum(used.values()))
    return used
