"""Test helpers: waiting on conditions and supervising child processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from streamlane import procmem

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.2) -> T:
    """Poll `condition` until it returns a truthy value; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from /proc (`VmRSS` now, `VmHWM` its peak), in MiB."""
    found = procmem.memory_mib(pid, field)
    if found is None:
        raise AssertionError(f"no {field} for process {pid}")
    return found


class Processes:
    """Starts `python -m streamlane ...` children and stops every one of them at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlane", *args], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 15) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        return _wait_or_kill(proc, timeout_s)

    def stop_all(self, timeout_s: float = 15) -> None:
        """Signal every child at once, then wait for each: the processes of a flow cluster
        finish only once all of them are asked to stop."""
        running = [proc for proc in self.running if proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGINT)
        for proc in running:
            _wait_or_kill(proc, timeout_s)
        self.running.clear()

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """`proc`'s exit status, once it has exited; killed if it has not within `timeout_s`."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def metric_values(port: int, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each sample of metric `name` a process exposes, filtered by `labels`;
    [] while it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return []
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def stop_run(run: subprocess.Popen[bytes] | subprocess.Popen[str], timeout_s: float = 30) -> None:
    """Stop a `streamlane run` as a user would (SIGTERM), so that it stops its children, which
    run in sessions of their own: killing `run` alone would leave them running. It is killed
    only if it has not stopped within `timeout_s`."""
    if run.poll() is None:
        run.send_signal(signal.SIGTERM)
        try:
            run.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()


def the_error_line(log: str) -> str:
    """The one `streamlane: error:` line of a process that stopped on a user error, after
    checking that its log holds no traceback or panic besides it."""
    assert "Traceback" not in log and "panicked" not in log, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("streamlane: error:")]
    assert len(errors) == 1, log[-2000:]
    return errors[0]
