"""Threads streamlane starts carry their job in the kernel's thread name."""

from __future__ import annotations

import threading
from pathlib import Path

from streamlane.threadname import name_this_thread


def _kernel_name_of_a_thread_named(job: str) -> str:
    seen: list[str] = []

    def run() -> None:
        name_this_thread(job)
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return seen[0]


def test_a_named_thread_is_seen_by_the_kernel_with_its_job() -> None:
    assert _kernel_name_of_a_thread_named("decode") == "sl-decode"


def test_a_name_longer_than_the_kernel_keeps_is_cut_to_its_fifteen_bytes() -> None:
    assert _kernel_name_of_a_thread_named("a-very-long-job-name") == "sl-a-very-long-"
