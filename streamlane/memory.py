"""Allocator settings for long-running processes that allocate and free per batch.

A flow allocates and frees tens of megabytes per batch (the joined records, the parsed
columns, the encoded outputs). polars' jemalloc keeps freed pages dirty for ten seconds
by default; returning them after one second (read from the environment when polars
first allocates, so this module is imported before polars) keeps a flow's resident
memory near what it uses. Returning glibc's and Arrow's freed blocks as well saved a
little more memory but slowed the flow noticeably in the benchmark, so it is not done.
"""

from __future__ import annotations

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")
