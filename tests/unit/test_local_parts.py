"""Sink partitions shared out over a cluster's workers, each worker keying to its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from streamlane.localparts import LocalParts, WorkerLayout

T = TypeVar("T")


def _on_worker_threads(calls: list[Callable[[], T]]) -> list[T]:
    """Each call's result, each called on a thread of its own, the threads alive together
    (as a process's workers are when they list their partitions), in the order called."""
    results: dict[int, T] = {}
    turn = threading.Condition()
    done = threading.Barrier(len(calls))
    next_turn = [0]

    def run(n: int) -> None:
        with turn:
            turn.wait_for(lambda: next_turn[0] == n)
            results[n] = calls[n]()
            next_turn[0] += 1
            turn.notify_all()
        done.wait()  # no thread ends, and lets its identity be reused, before all have run

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[n] for n in range(len(calls))]


def test_every_partition_is_listed_by_exactly_one_worker_of_the_cluster() -> None:
    for processes, per_process in [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (4, 2), (3, 1)]:
        listed: list[str] = []
        for process in range(processes):
            parts = LocalParts(16, WorkerLayout(process, processes, per_process))
            for owned in _on_worker_threads([parts.claim] * per_process):
                listed += owned
        assert sorted(listed, key=int) == [str(p) for p in range(16)], (processes, per_process)


def test_a_worker_keys_its_items_to_its_own_partitions_the_same_one_for_the_same_key() -> None:
    parts = LocalParts(16, WorkerLayout(1, 2, 2))

    def claim_and_key() -> tuple[list[str], list[str], list[str]]:
        owned = parts.claim()
        spreads = [str(n) for n in range(40)]
        return owned, [parts.key_for(s) for s in spreads], [parts.key_for(s) for s in spreads]

    first, second = _on_worker_threads([claim_and_key, claim_and_key])
    assert not set(first[0]) & set(second[0])
    for owned, keys, again in (first, second):
        assert len(owned) == 4
        assert set(keys) <= set(owned)
        assert len(set(keys)) > 1  # spread over the worker's partitions
        assert keys == again


def test_a_partition_name_indexes_itself_in_the_runtimes_order_of_partitions() -> None:
    parts = LocalParts(16, WorkerLayout())
    # The runtime sorts the partitions by name ("10" before "2") and wraps the index.
    ordered = sorted(parts.names)
    for name in parts.names:
        assert ordered[parts.index(name) % len(ordered)] == name


def test_any_other_key_indexes_alike_in_every_process_of_a_cluster() -> None:
    """Every process must route a key to the same partition; string hashes that vary per
    process (Python's own) would send a key's records to different workers."""
    keys = ["pizza.orders-3", "store-7", "4242/140000000000"]
    here = [LocalParts(16, WorkerLayout()).index(key) for key in keys]
    program = (
        "import sys; from streamlane.localparts import LocalParts, WorkerLayout; "
        "print([LocalParts(16, WorkerLayout(1, 2, 1)).index(k) for k in sys.argv[1:]])"
    )
    other = subprocess.run(
        [sys.executable, "-c", program, *keys],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == str(here)


def test_a_worker_owning_no_partition_keys_by_its_spread_as_before() -> None:
    parts = LocalParts(2, WorkerLayout(0, 1, 4))
    listed = _on_worker_threads([lambda: (parts.claim(), parts.key_for("7"))] * 4)
    assert [owned for owned, _ in listed] == [["0"], ["1"], [], []]
    assert [key for _, key in listed] == ["0", "1", "7", "7"]


def test_a_worker_beyond_the_layout_lists_every_partition() -> None:
    parts = LocalParts(4, WorkerLayout(0, 1, 1))
    listed = _on_worker_threads([lambda: (parts.claim(), parts.key_for("x"))] * 2)
    (first, first_key), (beyond, beyond_key) = listed
    assert first == beyond == ["0", "1", "2", "3"]
    assert first_key in first  # the layout's one worker keys to its own
    assert beyond_key == "x"  # the one beyond it owns none, and keys as before
