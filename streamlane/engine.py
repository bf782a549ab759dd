"""The polars engine the pipeline's batch work is collected on."""

from __future__ import annotations

from typing import Final

BATCH_ENGINE: Final = "in-memory"
"""Engine for every lazy query over a batch, a shard's share of one, or open windows.

A caught-up flow cuts many small batches, each with a few dozen queries, where the
default (streaming) engine's start-up costs more than the work itself; on a backlog's
large batches the two engines were equally fast in the benchmark.
"""
