"""Allocator settings for long-running processes that allocate and free per batch.

A flow allocates and frees tens of megabytes per batch (the joined records, the parsed
columns, the encoded outputs). polars' jemalloc keeps freed pages dirty for ten seconds
by default; returning them after one second (read from the environment when polars
first allocates, so this module is imported before polars) keeps a flow's resident
memory near what it uses. Returning glibc's and Arrow's freed blocks as well saved a
little more memory but slowed the flow noticeably in the benchmark, so it is not done.

glibc gives each thread that contends for the allocator an arena of its own, up to eight
per core, and an arena keeps what its thread freed. A flow's threads (the worker, the
decode threads, the columnar engine's and the Kafka clients') each free batch-sized
blocks; with one arena per core a backlog's peak memory was lower in the benchmark, at
the same speed. A MALLOC_ARENA_MAX set in the environment (read by glibc itself) is kept.
"""

from __future__ import annotations

import ctypes
import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter for the most arenas it creates."""


def _one_arena_per_core() -> None:
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator has no arenas to bound
        return
    # Before any thread allocates: an arena once created is kept.
    mallopt(M_ARENA_MAX, max(2, os.cpu_count() or 2))


_one_arena_per_core()
