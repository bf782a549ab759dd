"""Sink partitions owned by the worker that makes their records, so output stays on it.

A partitioned sink's items go to the worker that owns the partition they are keyed to.
When every worker lists every partition, the runtime spreads the partitions over the
workers, and of N workers' items about (N - 1)/N leave the worker that made them:
between processes of a cluster, each is pickled and sent over the network, once more
after the state shards' exchange. Here each worker lists only its own share of the
partitions (the same fixed set whatever the layout, so a recovery store written by one
layout resumes under another), and keys its items to one of them: they are written
where they were made.

Correctness never depends on this: a key that names no partition of the calling worker
is still routed by its hash, as before, to whichever worker owns that partition.
"""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerLayout:
    """Where a process's workers sit in their cluster: this process's index, how many
    processes the cluster has, and how many workers each runs."""

    process_id: int = 0
    processes: int = 1
    workers_per_process: int = 1

    @property
    def workers(self) -> int:
        """The cluster's worker count."""
        return self.processes * self.workers_per_process


class LocalParts:
    """The partitions of one sink (named "0" to `count` - 1) shared out over a cluster's
    workers, and which of them the calling worker owns.

    Each worker of the process calls `claim` once, from its own thread, when it lists
    the sink's partitions: the first to call is the process's first worker, and so on.
    A worker of global index g owns the partitions p with p % workers == g; with more
    workers than partitions, the last ones own none and their items are routed by hash.
    A worker claiming beyond the layout (the layout given was wrong) lists every
    partition, which the runtime then shares out among the workers listing each.
    """

    def __init__(self, count: int, layout: WorkerLayout) -> None:
        self.names = tuple(str(p) for p in range(count))
        self.layout = layout
        # The runtime orders partitions by name and indexes that order with `index`.
        self._order = {name: i for i, name in enumerate(sorted(self.names))}
        self._claimed = 0
        # None for a worker beyond the layout, which lists every partition and owns none.
        self._by_thread: dict[int, tuple[str, ...] | None] = {}
        self._lock = threading.Lock()

    def claim(self) -> list[str]:
        """The partitions the calling worker owns (every one when it is beyond the layout)."""
        thread = threading.get_ident()
        with self._lock:
            if thread not in self._by_thread:
                local = self._claimed
                self._claimed += 1
                if local >= self.layout.workers_per_process:
                    log.warning(
                        "worker %d of a process laid out for %d: its sink partitions are "
                        "shared out by the runtime",
                        local + 1,
                        self.layout.workers_per_process,
                    )
                    self._by_thread[thread] = None
                else:
                    worker = self.layout.process_id * self.layout.workers_per_process + local
                    self._by_thread[thread] = tuple(
                        name
                        for p, name in enumerate(self.names)
                        if p % self.layout.workers == worker
                    )
            owned = self._by_thread[thread]
        return list(self.names if owned is None else owned)

    def owns(self, part: str) -> bool:
        """Whether the calling worker claimed `part`."""
        return part in (self._by_thread.get(threading.get_ident()) or ())

    def key_for(self, spread: str) -> str:
        """The item key that sends an item to one of the calling worker's own partitions,
        the same one for the same `spread` (so records keyed alike keep their order); just
        `spread` when the worker owns none."""
        owned = self._by_thread.get(threading.get_ident())
        if not owned:
            return spread
        return owned[zlib.adler32(spread.encode()) % len(owned)]

    def index(self, item_key: str) -> int:
        """The runtime's partition function: a partition's name indexes itself in the
        runtime's order; any other key indexes by its hash."""
        found = self._order.get(item_key)
        return found if found is not None else zlib.adler32(item_key.encode())
