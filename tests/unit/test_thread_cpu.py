"""A process's CPU seconds split by kind of thread add up to what the process used, and a
thread streamlane named is counted under its job."""

from __future__ import annotations

import os
import threading
import time

from streamlane.procmem import cpu_seconds, cpu_seconds_by_thread, thread_kind
from streamlane.threadname import name_this_thread

BUSY_S = 0.2


def _busy(job: str, ready: threading.Event, done: threading.Event) -> None:
    name_this_thread(job)
    started = time.thread_time()
    while time.thread_time() - started < BUSY_S:
        sum(range(1000))
    ready.set()
    done.wait(30)


def test_a_named_thread_s_cpu_is_counted_under_its_job_and_the_kinds_add_up() -> None:
    ready, done = threading.Event(), threading.Event()
    worker = threading.Thread(target=_busy, args=("test-busy", ready, done))
    worker.start()
    try:
        assert ready.wait(30)
        used = cpu_seconds_by_thread(os.getpid())
        total = cpu_seconds(os.getpid())
    finally:
        done.set()
        worker.join()
    assert used["test-busy"] >= BUSY_S - 0.02  # clock ticks round it down
    assert used["main"] > 0
    assert total is not None and abs(sum(used.values()) - total) < 0.1


def test_threads_of_the_columnar_engine_and_kafka_clients_are_told_apart() -> None:
    assert thread_kind(10, 10, "python") == "main"
    assert thread_kind(10, 11, "sl-decode") == "decode"
    assert thread_kind(10, 12, "polars-1") == "polars"
    assert thread_kind(10, 13, "rdk:broker111") == "kafka client"
    assert thread_kind(10, 14, "python") == "other"
