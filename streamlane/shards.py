"""Keyed state shards: dedupe, lateness and window aggregation for one slice of the keys.

Every batch from an input partition is split by key over a fixed number of
shards (more shards than workers, so state spreads when the flow scales out).
Each shard also receives the partition's progress with every batch, in order
behind that batch's rows, so all shards see the same watermark.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from streamlane import metrics
from streamlane.dedupe import SeenIds, hash_ids
from streamlane.windows import NEVER, Aggregate, PartitionProgress, TumblingWindows, Watermark


@dataclass(frozen=True)
class ShardInput:
    """A shard's part of one partition batch (possibly no rows) and the partition's progress."""

    rows: pl.DataFrame | None
    progress: PartitionProgress


@dataclass(frozen=True)
class ShardOutput:
    """What one shard step produced: first-seen events, closed windows, late events."""

    unique: pl.DataFrame | None
    windows: pl.DataFrame | None
    late: pl.DataFrame | None


@dataclass(frozen=True)
class WindowSpec:
    """How a flow dedupes and windows: key column, window size, lateness, aggregates."""

    partitions: tuple[str, ...]
    key: str
    size_us: int
    lateness_us: int
    dedupe_horizon_us: int
    aggregates: tuple[Aggregate, ...]
    shards: int = 16
    id_column: str = "event_id"


def route(
    spec: WindowSpec, rows: pl.DataFrame, progress: PartitionProgress
) -> list[tuple[str, ShardInput]]:
    """Split a batch's rows by key hash over the shards; every shard gets the progress."""
    by_shard: dict[int, pl.DataFrame] = {}
    if rows.height:
        shard_of = (pl.col(spec.key).hash(seed=7) % spec.shards).alias("__shard")
        for (shard,), part in (
            rows.with_columns(shard_of)
            .partition_by("__shard", as_dict=True, include_key=False, maintain_order=True)
            .items()
        ):
            by_shard[int(shard)] = part  # type: ignore[call-overload]
    return [(str(s), ShardInput(by_shard.get(s), progress)) for s in range(spec.shards)]


class ShardState:
    """State of one shard: ids seen, the watermark, and open windows."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.seen = SeenIds(spec.dedupe_horizon_us)
        self.watermark = Watermark(list(spec.partitions), spec.lateness_us)
        self.windows = TumblingWindows(spec.key, spec.size_us, spec.aggregates)

    def process(self, item: ShardInput) -> ShardOutput:
        """Drop duplicates, split late from on-time events, fold on-time ones, close windows.

        Duplicates (an id already seen within the dedupe horizon) are dropped
        before anything else. Late events are returned with their
        `window_start`, `window_end` and the `watermark_us` they met; they are
        still unique events and part of `unique`.
        """
        unique = late = None
        rows = item.rows
        if rows is not None and rows.height:
            first = hash_ids(rows[self.spec.id_column])
            mask = self.seen.first_seen(first, rows["event_time_us"].to_numpy())
            unique = rows.filter(pl.Series(mask))
            metrics.DUPLICATES.inc(rows.height - unique.height)
            arrival = self.watermark.at_arrival(
                item.progress.partition, pl.col("own_newest_before_us")
            )
            end = self.windows.window_end()
            flagged = unique.with_columns(watermark_us=arrival, window_end_us=end)
            is_late = pl.col("window_end_us") <= pl.col("watermark_us")
            late = flagged.filter(is_late).with_columns(
                window_start_us=pl.col("window_end_us") - self.spec.size_us
            )
            self.windows.add(flagged.filter(~is_late))
            metrics.LATE_EVENTS.inc(late.height)
        watermark = self.watermark.advance(item.progress)
        if watermark > NEVER:
            metrics.WATERMARK.set(watermark / 1e6)
        closed = self.windows.close(watermark)
        metrics.WINDOWS.inc(closed.height)
        return ShardOutput(unique, closed if closed.height else None, late)


def shard_step(spec: WindowSpec):  # type: ignore[no-untyped-def]
    """bytewax `stateful_map` mapper running `ShardState.process` (state created on first use)."""

    def step(state: ShardState | None, item: ShardInput) -> tuple[ShardState, ShardOutput]:
        if state is None:
            state = ShardState(spec)
        return state, state.process(item)

    return step
