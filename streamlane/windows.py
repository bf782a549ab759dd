"""Event-time watermarks and tumbling windows over polars frames.

Watermark semantics (the README's "Watermark and lateness" section):

- a partition's watermark is the newest event time seen on it minus the allowed
  lateness; the flow's watermark is the minimum over partitions, so a partition
  read later than the others never makes their events late;
- a partition that has delivered nothing for the idle timeout stops holding the
  watermark back; when every partition is idle, the watermark advances with
  wall-clock time from the newest event time seen;
- the watermark never moves backwards; a window is emitted once the watermark
  reaches its end; an event whose window ends at or before the watermark when it
  arrives is late.

Each state shard keeps its own copy of every partition's progress (progress is
broadcast to all shards in order with the data), so all shards agree without
talking to each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

NEVER = -(2**62)
"""A watermark before any event time (microseconds)."""


@dataclass(frozen=True)
class PartitionProgress:
    """What an input partition has delivered so far, as of one of its batches."""

    partition: str
    newest_us: int | None
    """Newest event time seen on the partition, or None before its first valid event."""
    idle: bool
    """True when the partition delivered nothing for the idle timeout."""
    idle_for_us: int
    """Wall-clock time since the partition last delivered a record."""


@dataclass
class Watermark:
    """The flow watermark as seen by one state shard; see the module docstring."""

    partitions: list[str]
    lateness_us: int
    progress: dict[str, PartitionProgress] = field(default_factory=dict)
    value_us: int = NEVER

    def _held_back_by(self, exclude: str | None) -> int:
        """Minimum partition watermark over the non-idle partitions, except `exclude`."""
        low: int | None = None
        for name in self.partitions:
            if name == exclude:
                continue
            seen = self.progress.get(name)
            if seen is not None and seen.idle:
                continue
            mark = (
                NEVER
                if seen is None or seen.newest_us is None
                else seen.newest_us - self.lateness_us
            )
            low = mark if low is None else min(low, mark)
        return 2**62 if low is None else low

    def at_arrival(self, partition: str, own_newest_before: pl.Expr) -> pl.Expr:
        """Per-row watermark when each row of a batch from `partition` arrived.

        `own_newest_before` is, per row, the newest event time its partition had
        delivered before that row (null before the first).
        """
        others = self._held_back_by(exclude=partition)
        own = (own_newest_before - self.lateness_us).fill_null(NEVER)
        return pl.max_horizontal(pl.lit(self.value_us), pl.min_horizontal(pl.lit(others), own))

    def arrival_marks(self, partition: str, own_marks: np.ndarray) -> np.ndarray:
        """Per-row watermark at arrival, as `at_arrival`, from the rows' own partition marks.

        `own_marks` is, per row, the newest event time its partition had delivered
        before that row minus the lateness (`NEVER` before the first).
        """
        others = self._held_back_by(exclude=partition)
        return np.maximum(self.value_us, np.minimum(others, own_marks))

    def advance(self, update: PartitionProgress) -> int:
        """Take a partition's progress and return the (never decreasing) flow watermark."""
        self.progress[update.partition] = update
        known = [self.progress.get(p) for p in self.partitions]
        if all(p is not None and p.idle for p in known):
            advanced = [
                p.newest_us - self.lateness_us + p.idle_for_us
                for p in known
                if p is not None and p.newest_us is not None
            ]
            candidate = max(advanced) if advanced else NEVER
        else:
            candidate = self._held_back_by(exclude=None)
        self.value_us = max(self.value_us, candidate)
        return self.value_us


@dataclass(frozen=True)
class Aggregate:
    """A window aggregate: `partial` over a batch's events, combined across batches by `merge`.

    `sum`, `max` and `min` combine partial values. Summing floats batch by batch gives
    a result that depends (in its last bits) on how the events were batched, so a
    window recomputed after a restart could differ from the one emitted before it.
    `fsum` makes a float sum exact instead: `partial` yields the values themselves
    (e.g. `pl.col("x")`), they are kept per window, and the window's result is their
    correctly rounded sum, the same however the events arrived.
    """

    name: str
    partial: pl.Expr
    merge: str  # "sum" | "max" | "min" | "fsum"

    def merged(self) -> pl.Expr:
        col = pl.col(self.name)
        merges = {
            "sum": col.sum(),
            "max": col.max(),
            "min": col.min(),
            "fsum": col.list.explode(keep_nulls=False, empty_as_null=False),
        }
        return merges[self.merge].alias(self.name)


def _finish(aggregates: tuple[Aggregate, ...], windows: pl.DataFrame) -> pl.DataFrame:
    """Closed windows with every `fsum` aggregate's kept values replaced by their exact sum."""
    exact = [a.name for a in aggregates if a.merge == "fsum"]
    if not exact or windows.is_empty():
        return windows
    return windows.with_columns(
        pl.Series(name, [math.fsum(v) for v in windows[name].to_list()], dtype=pl.Float64)
        for name in exact
    )


@dataclass
class TumblingWindows:
    """Open tumbling windows `[start, start + size)` per key, merged batch by batch.

    Each batch's events are reduced to one partial row per key and window; partials
    are kept as they come and merged only when windows close (or when enough have
    piled up), so a batch that closes nothing costs one group-by. `earliest_start`
    lets `close` return at once when no open window can have ended yet.
    """

    key: str
    size_us: int
    aggregates: tuple[Aggregate, ...]
    open: pl.DataFrame | None = None
    pending: list[pl.DataFrame] = field(default_factory=list)
    earliest_start: int | None = None

    _COMPACT_AFTER = 32

    def add(self, events: pl.DataFrame, time_col: str = "event_time_us") -> None:
        """Fold on-time events into their windows (callers drop late events first)."""
        if events.is_empty():
            return
        partial = (
            events.lazy()
            .with_columns(window_start=(pl.col(time_col) // self.size_us) * self.size_us)
            .group_by(self.key, "window_start")
            .agg([a.partial.alias(a.name) for a in self.aggregates])
            .collect()
        )
        self._take(partial)

    def add_partial(self, partial: pl.DataFrame) -> None:
        """Fold already-reduced rows (key, `window_start`, one column per aggregate)."""
        if not partial.is_empty():
            self._take(partial)

    def _take(self, partial: pl.DataFrame) -> None:
        first = int(partial["window_start"].min())  # type: ignore[arg-type]
        if self.earliest_start is None or first < self.earliest_start:
            self.earliest_start = first
        self.pending.append(partial)
        if len(self.pending) >= self._COMPACT_AFTER:
            self._compact()

    def _compact(self) -> None:
        parts = ([] if self.open is None else [self.open]) + self.pending
        self.pending = []
        if not parts:
            return
        self.open = (
            pl.concat(parts)
            .lazy()
            .group_by(self.key, "window_start")
            .agg([a.merged() for a in self.aggregates])
            .collect()
        )

    def window_end(self, time_col: str = "event_time_us") -> pl.Expr:
        """Expression: end of the window an event falls in."""
        return (pl.col(time_col) // self.size_us + 1) * self.size_us

    def close(self, watermark_us: int) -> pl.DataFrame:
        """Remove and return the windows whose end is at or before the watermark."""
        if self.earliest_start is None or self.earliest_start + self.size_us > watermark_us:
            return pl.DataFrame()
        self._compact()
        assert self.open is not None
        end = pl.col("window_start") + self.size_us
        done = self.open.filter(end <= watermark_us)
        self.open = self.open.filter(end > watermark_us)
        self.earliest_start = (
            None if self.open.is_empty() else int(self.open["window_start"].min())  # type: ignore[arg-type]
        )
        if done.is_empty():
            return done
        done = _finish(self.aggregates, done)
        return done.with_columns(window_end=end).sort(self.key, "window_start")
