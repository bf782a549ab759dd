"""Cyclic garbage collection for processes that move records through Kafka clients.

Every record read or produced is a short-lived Python object that the cyclic collector
tracks (a Kafka message, a produce request), and a partition's pending records survive
long enough to reach the oldest generation. With the interpreter's default thresholds,
collections in a backlog kept walking hundreds of thousands of live records and every
object loaded at start-up: in a sampling profile of the benchmark's flow the worker spent
about 8% of its time there. These records hold no reference cycles (reference counting
frees them), so collecting rarely loses nothing.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 100_000
"""Allocations (net of frees) between collections of the youngest generation; the
default, 700, is less than one poll of one partition."""


def collect_rarely() -> None:
    """Exempt everything allocated so far (modules, schemas, reference data) from cyclic
    collection, and collect the youngest generation only every `YOUNG_THRESHOLD` net
    allocations; older generations keep their default ratios. Call once, after start-up
    and before the first record is read. Objects in reference cycles are still freed,
    only later."""
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
