"""The polars engine the pipeline's batch work is collected on, and how to avoid it."""

from __future__ import annotations

from typing import Final

import polars as pl

BATCH_ENGINE: Final = "in-memory"
"""Engine for every lazy query over a batch, a shard's share of one, or open windows.

A caught-up flow cuts many small batches, each with a few dozen queries, where the
default (streaming) engine's start-up costs more than the work itself; on a backlog's
large batches the two engines were equally fast in the benchmark.
"""


def with_series(frame: pl.DataFrame, *columns: pl.Series, **named: pl.Series) -> pl.DataFrame:
    """`frame` with `columns` (by their names) and `named` replacing or added after its own,
    as `with_columns` does, but put together column by column: `with_columns` runs a query,
    whose fixed cost is many times this on the few rows a state shard's step handles."""
    added = {c.name: c for c in columns} | {name: c.alias(name) for name, c in named.items()}
    kept = [added.pop(name, frame.get_column(name)) for name in frame.columns]
    return pl.DataFrame([*kept, *added.values()])
