"""How a streamlane process takes stop signals: a SIGTERM repeated at once (as the children of
a killed `streamlane run` receive it) is one request, the work of stopping is done off the
signal handler, and a signal while Python tears the process down ends it at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until

CHILD = """
import logging, sys, threading, time
from streamlane import shutdown

logging.basicConfig(level=logging.INFO, stream=sys.stdout)

shutdown.REPEATED_SIGTERM_S = float(sys.argv[1])

def on_stop():
    on_main = threading.current_thread() is threading.main_thread()
    print("on_stop", "on the main thread" if on_main else "off the main thread", flush=True)

shutdown.install(on_stop=on_stop, doing="stopping the test loop")
print("ready", flush=True)
try:
    while not shutdown.stop_requested():
        time.sleep(0.01)
    time.sleep(float(sys.argv[2]))  # the work still in hand
    print("stopped as asked", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
if sys.argv[3] == "hang-in-teardown":
    shutdown.finished()
    print("finished", flush=True)
    threading.Thread(target=threading.Event().wait).start()  # Python waits for it at exit
"""


def _sigterm_then_again(
    tmp_path: Path,
    *,
    repeat_window_s: float,
    work_s: float,
    again_once: bytes,
    again: int = 1,
    end: str = "exit",
) -> tuple[int, str]:
    """Run the child, send it SIGTERM, and once it has said `again_once` send it SIGTERM
    `again` more times; its exit status and what it said."""
    out = tmp_path / "child.out"
    with open(out, "wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(repeat_window_s), str(work_s), end],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: b"ready" in out.read_bytes(), 30, "the child to install its handler")
        child.send_signal(signal.SIGTERM)
        wait_until(lambda: again_once in out.read_bytes(), 10, f"the child to say {again_once!r}")
        for _ in range(again):
            child.send_signal(signal.SIGTERM)
        status = child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return status, out.read_text()


@pytest.mark.timeout(90)
def test_a_sigterm_repeated_at_once_is_one_request(tmp_path: Path) -> None:
    status, said = _sigterm_then_again(
        tmp_path, repeat_window_s=30, work_s=1, again_once=b"on_stop", again=2
    )
    assert status == 0, said
    assert "stopped as asked" in said, said
    assert said.count("on_stop") == 1, said
    assert "on_stop off the main thread" in said, "the handler leaves the work to a thread"
    assert "SIGTERM: stopping the test loop" in said


@pytest.mark.timeout(90)
def test_a_second_sigterm_after_the_repeat_window_interrupts(tmp_path: Path) -> None:
    status, said = _sigterm_then_again(
        tmp_path, repeat_window_s=0, work_s=30, again_once=b"on_stop"
    )
    assert status == 0, said
    assert "interrupted" in said, said


@pytest.mark.timeout(90)
def test_a_signal_while_python_tears_the_process_down_ends_it(tmp_path: Path) -> None:
    status, said = _sigterm_then_again(
        tmp_path, repeat_window_s=0, work_s=0, again_once=b"finished", end="hang-in-teardown"
    )
    assert status == 130, said
