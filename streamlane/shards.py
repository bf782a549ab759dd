"""Keyed state shards: dedupe, lateness and window aggregation for one slice of the keys.

Every batch from an input partition is split by key over a fixed number of
shards (more shards than workers, so state spreads when the flow scales out).
Each shard also receives the partition's progress with every batch, in order
behind that batch's rows, so all shards see the same watermark.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import polars as pl

from streamlane import metrics
from streamlane.dedupe import ID_HASH_SEED, SeenIds
from streamlane.windows import (
    NEVER,
    Aggregate,
    FixedWindows,
    Hopping,
    PartitionProgress,
    Session,
    SessionWindows,
    Tumbling,
    Watermark,
    WindowKind,
    window_starts,
)


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
    """How a flow dedupes and windows: key column, window kind, lateness, aggregates."""

    partitions: tuple[str, ...]
    key: str
    window: WindowKind
    lateness_us: int
    dedupe_horizon_us: int
    aggregates: tuple[Aggregate, ...]
    shards: int = 16
    id_column: str = "event_id"


ID_HASH = "__id_hash"
WINDOW_END = "__window_end_us"
OWN_MARK = "__own_mark_us"
_SHARD = "__shard"


def route(
    spec: WindowSpec, rows: pl.DataFrame, progress: PartitionProgress
) -> list[tuple[str, ShardInput]]:
    """Split a batch's rows by key hash over the shards; every shard gets the progress.

    What every shard needs per row and can compute without its state (the id hash, the
    end of the row's window, the row's own-partition watermark) is computed here, once
    per batch, so a shard step does a handful of array operations however many
    columns the rows carry.
    """
    by_shard: dict[int, pl.DataFrame] = {}
    if rows.height:
        columns = [
            pl.col(spec.id_column).hash(seed=ID_HASH_SEED).alias(ID_HASH),
            (pl.col("own_newest_before_us") - spec.lateness_us).fill_null(NEVER).alias(OWN_MARK),
            (pl.col(spec.key).hash(seed=7) % spec.shards).alias(_SHARD),
        ]
        if isinstance(spec.window, Tumbling):
            size = spec.window.size_us
            columns.append(((pl.col("event_time_us") // size + 1) * size).alias(WINDOW_END))
        prepared = rows.with_columns(columns)
        for (shard,), part in prepared.partition_by(
            _SHARD, as_dict=True, include_key=False, maintain_order=True
        ).items():
            by_shard[int(shard)] = part  # type: ignore[call-overload]
    return [(str(s), ShardInput(by_shard.get(s), progress)) for s in range(spec.shards)]


_INTERNAL = (ID_HASH, WINDOW_END, OWN_MARK)


class ShardState:
    """State of one shard: ids seen, the watermark, and open windows."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.seen = SeenIds(spec.dedupe_horizon_us)
        self.watermark = Watermark(list(spec.partitions), spec.lateness_us)
        window = spec.window
        self.windows: FixedWindows | SessionWindows
        if isinstance(window, Session):
            self.windows = SessionWindows(spec.key, window.gap_us, spec.aggregates)
        else:
            every = window.every_us if isinstance(window, Hopping) else None
            self.windows = FixedWindows(spec.key, window.size_us, spec.aggregates, every)

    def process(self, item: ShardInput) -> ShardOutput:
        """Drop duplicates, split late from on-time events, fold on-time ones, close windows.

        Duplicates (an id already seen within the dedupe horizon) are dropped
        before anything else. Late events are returned with the `window_start_us`
        and `window_end_us` they missed and the `watermark_us` they met; they are
        still unique events and part of `unique`. An event in several hopping
        windows joins the ones still open and is late once for each closed one.
        """
        unique = late = None
        rows = item.rows
        if rows is not None and rows.height:
            times = rows["event_time_us"].to_numpy()
            first = self.seen.first_seen(rows[ID_HASH].to_numpy(), times)
            metrics.DUPLICATES.inc(rows.height - int(first.sum()))
            marks = self.watermark.arrival_marks(item.progress.partition, rows[OWN_MARK].to_numpy())
            unique = rows.filter(pl.Series(first)).drop(_INTERNAL, strict=False)
            if isinstance(self.spec.window, Tumbling):
                late = self._tumbling(rows, first, marks)
            else:
                late = self._assigned(rows.filter(pl.Series(first)), marks[first])
            if late is not None:
                metrics.LATE_EVENTS.inc(late.height)
        watermark = self.watermark.advance(item.progress)
        if watermark > NEVER:
            metrics.WATERMARK.set(watermark / 1e6)
        closed = self.windows.close(watermark)
        metrics.WINDOWS.inc(closed.height)
        return ShardOutput(unique, closed if closed.height else None, late)

    def _partials(self, on_time: pl.LazyFrame, window_start: pl.Expr) -> pl.DataFrame:
        aggregates = [a.partial.alias(a.name) for a in self.spec.aggregates]
        return on_time.group_by(self.spec.key, window_start=window_start).agg(aggregates).collect()

    def _tumbling(
        self, rows: pl.DataFrame, first: np.ndarray, marks: np.ndarray
    ) -> pl.DataFrame | None:
        """The fast path: one window per event, its end computed by `route`."""
        assert isinstance(self.windows, FixedWindows)
        size = self.windows.size_us
        ends = rows[WINDOW_END].to_numpy()
        is_late = first & (ends <= marks)
        on_time = rows.lazy().filter(pl.Series(first & ~is_late))
        self.windows.add_partial(self._partials(on_time, pl.col(WINDOW_END) - size))
        if not is_late.any():
            return None
        return (
            rows.filter(pl.Series(is_late))
            .with_columns(
                watermark_us=pl.Series(marks[is_late]),
                window_end_us=pl.col(WINDOW_END),
                window_start_us=pl.col(WINDOW_END) - size,
            )
            .drop(_INTERNAL)
        )

    def _assigned(self, fresh: pl.DataFrame, marks: np.ndarray) -> pl.DataFrame | None:
        """Hopping and session windows: late events (or event-window pairs) split off, the rest folded."""
        fresh = fresh.drop(_INTERNAL, strict=False)
        if isinstance(self.windows, SessionWindows):
            on_time, late = self.windows.split_late(fresh, marks)
            self.windows.add(on_time)
            return late if late.height else None
        pairs = (
            fresh.with_columns(
                watermark_us=pl.Series(marks, dtype=pl.Int64),
                window_start_us=window_starts(self.windows.kind, pl.col("event_time_us")),
            )
            .explode("window_start_us")
            .with_columns(window_end_us=pl.col("window_start_us") + self.windows.size_us)
        )
        is_late = pl.col("window_end_us") <= pl.col("watermark_us")
        on_time_pairs = pairs.lazy().filter(~is_late).drop("watermark_us", "window_end_us")
        self.windows.add_partial(self._partials(on_time_pairs, pl.col("window_start_us")))
        late = pairs.filter(is_late)
        return late if late.height else None


def shard_step(spec: WindowSpec):  # type: ignore[no-untyped-def]
    """bytewax `stateful_map` mapper running `ShardState.process` (state created on first use)."""

    def step(state: ShardState | None, item: ShardInput) -> tuple[ShardState, ShardOutput]:
        if state is None:
            state = ShardState(spec)
            # Where bytewax placed this key: lets a cluster's spread of state be checked.
            worker = f"{os.getpid()}/{threading.current_thread().name}"
            metrics.STATE_SHARDS.labels(worker=worker).inc()
        return state, state.process(item)

    return step
