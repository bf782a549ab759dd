"""Event-time watermarks and tumbling, hopping and session windows over polars frames.

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

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from streamlane.aggregates import Aggregate, compact_sketches, finish
from streamlane.engine import BATCH_ENGINE

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

    def slowest_newest_us(self) -> int | None:
        """The newest event time of the slowest partition that is not idle (`NEVER` while one
        has yet to deliver an event); None when every partition is idle."""
        low = self._held_back_by(exclude=None)
        if low == 2**62:
            return None
        return NEVER if low == NEVER else low + self.lateness_us

    def at_arrival(self, partition: str, own_newest_before: pl.Expr) -> pl.Expr:
        """Per-row watermark when each row of a batch from `partition` arrived.

        `own_newest_before` is, per row, the newest event time its partition had
        delivered before that row (null before the first).
        """
        others = self._held_back_by(exclude=partition)
        own = (own_newest_before - self.lateness_us).fill_null(NEVER)
        return pl.max_horizontal(pl.lit(self.value_us), pl.min_horizontal(pl.lit(others), own))

    def arrival_marks(
        self, partitions: list[str], parts: np.ndarray, own_marks: np.ndarray
    ) -> np.ndarray:
        """Per-row watermark at arrival, as `at_arrival`, for rows of one or more partitions.

        `parts` is, per row, its partition as a position in `partitions`; `own_marks` the
        newest event time its partition had delivered before that row minus the lateness
        (`NEVER` before the first). Rows of a batch cut from several partitions at once are
        judged by the watermark before any of the batch's progress, as if each partition's
        rows had arrived first.
        """
        others = np.array([self._held_back_by(exclude=p) for p in partitions], dtype=np.int64)
        return np.maximum(self.value_us, np.minimum(others[parts], own_marks))

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
class Tumbling:
    """Windows of `size_us` one after another, aligned to the epoch: each event is in one."""

    size_us: int

    def __post_init__(self) -> None:
        if self.size_us <= 0:
            raise ValueError(f"window size must be positive, got {self.size_us} us")

    @property
    def every_us(self) -> int:
        return self.size_us


@dataclass(frozen=True)
class Hopping:
    """Windows of `size_us` starting every `every_us` (epoch-aligned): an event is in size/every.

    The size must be a whole number of steps, so every window starts on a step.
    """

    size_us: int
    every_us: int

    def __post_init__(self) -> None:
        if self.every_us <= 0 or self.size_us <= 0 or self.size_us % self.every_us:
            raise ValueError(
                f"hopping window size ({self.size_us} us) must be a positive multiple "
                f"of its step ({self.every_us} us)"
            )


@dataclass(frozen=True)
class Session:
    """Per key, events less than `gap_us` apart form one session `[first, last + gap)`."""

    gap_us: int

    def __post_init__(self) -> None:
        if self.gap_us <= 0:
            raise ValueError(f"session gap must be positive, got {self.gap_us} us")


WindowKind = Tumbling | Hopping | Session


def window_starts(window: Tumbling | Hopping, time: pl.Expr) -> pl.Expr:
    """Per event time, the list of starts of the fixed windows that contain it (ascending)."""
    last = (time // window.every_us) * window.every_us
    first = last - (window.size_us - window.every_us)
    return pl.int_ranges(first, last + window.every_us, window.every_us)


@dataclass
class FixedWindows:
    """Open fixed-size windows `[start, start + size)` per key (tumbling or hopping), merged batch by batch.

    Each batch's events are reduced to one partial row per key and window; partials
    are kept as they come and merged only when windows close (or when enough have
    piled up), so a batch that closes nothing costs one group-by. `earliest_start`
    lets `close` return at once when no open window can have ended yet.
    """

    keys: tuple[str, ...]
    size_us: int
    aggregates: tuple[Aggregate, ...]
    every_us: int | None = None
    """Step between window starts (hopping); None for tumbling windows."""
    open: pl.DataFrame | None = None
    pending: list[pl.DataFrame] = field(default_factory=list)
    earliest_start: int | None = None

    _COMPACT_AFTER = 32

    @property
    def kind(self) -> Tumbling | Hopping:
        if self.every_us is None:
            return Tumbling(self.size_us)
        return Hopping(self.size_us, self.every_us)

    def add(self, events: pl.DataFrame, time_col: str = "event_time_us") -> None:
        """Fold on-time events into every window they fall in (callers drop late events first)."""
        if events.is_empty():
            return
        partial = (
            events.lazy()
            .with_columns(window_start=window_starts(self.kind, pl.col(time_col)))
            .explode("window_start")
            .group_by(*self.keys, "window_start")
            .agg([a.partial.alias(a.name) for a in self.aggregates])
            .collect(engine=BATCH_ENGINE)
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

    def _merged(self) -> pl.LazyFrame | None:
        """A query merging the open windows with the pending partials (which it takes: the
        pending list is left empty), one row per key and window; None when there are none."""
        parts = ([] if self.open is None else [self.open]) + self.pending
        self.pending = []
        if not parts:
            return None
        return (
            pl.concat([part.lazy() for part in parts])
            .group_by(*self.keys, "window_start")
            .agg([a.merged() for a in self.aggregates])
        )

    def _compact(self) -> None:
        merged = self._merged()
        if merged is not None:
            self.open = compact_sketches(self.aggregates, merged.collect(engine=BATCH_ENGINE))

    def close(self, watermark_us: int) -> pl.DataFrame:
        """Remove and return the windows whose end is at or before the watermark."""
        if self.earliest_start is None or self.earliest_start + self.size_us > watermark_us:
            return pl.DataFrame()
        merged = self._merged()
        assert merged is not None
        # One query merges the windows and orders them, the open ones first, so the closed
        # ones are a slice: on the worker each query waits for the columnar engine's
        # threads, which the decode threads keep busy.
        end = pl.col("window_start") + self.size_us
        ordered = merged.sort(end <= watermark_us, *self.keys, "window_start").collect(
            engine=BATCH_ENGINE
        )
        starts = ordered.get_column("window_start").to_numpy()
        ends = starts + self.size_us
        still_open = int((ends > watermark_us).sum())
        self.open = compact_sketches(self.aggregates, ordered.slice(0, still_open))
        self.earliest_start = int(starts[:still_open].min()) if still_open else None
        if still_open == ordered.height:
            return pl.DataFrame()
        return finish(
            self.aggregates, ordered.slice(still_open), window_end=pl.Series(ends[still_open:])
        )


@dataclass
class SessionWindows:
    """Open sessions per key: events closer than `gap_us` to a session join (and may merge) it.

    A session is `[first event, last event + gap)` and closes once the watermark
    reaches its end. Closed sessions are final: an event that arrives after its
    session was emitted, and would have extended it, is late, as is an event whose own
    session `[t, t + gap)` has already ended. Everything else is on time, so the
    sessions emitted are exactly the sessions of the on-time events. The newest
    emitted session per key is remembered only while an on-time event could still
    fall into it.
    """

    keys: tuple[str, ...]
    gap_us: int
    aggregates: tuple[Aggregate, ...]
    open: pl.DataFrame | None = None
    """One row per open session: key, `window_start`, `last_us`, one column per aggregate."""
    emitted: pl.DataFrame | None = None
    """Per key, the newest emitted session: key, `emitted_start`, `emitted_end`."""
    earliest_last: int | None = None

    def split_late(
        self, events: pl.DataFrame, marks: np.ndarray, time_col: str = "event_time_us"
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(on-time events, late events) against each event's watermark at arrival.

        Late events get `window_start_us` and `window_end_us` (the emitted session
        they missed, or their own session) and `watermark_us`.
        """
        t = pl.col(time_col)
        frame = events.with_columns(watermark_us=pl.Series(marks, dtype=pl.Int64))
        if self.emitted is not None and self.emitted.height:
            frame = frame.join(self.emitted, on=list(self.keys), how="left", maintain_order="left")
        else:
            frame = frame.with_columns(
                emitted_start=pl.lit(None, pl.Int64), emitted_end=pl.lit(None, pl.Int64)
            )
        missed = t < pl.col("emitted_end").fill_null(NEVER)
        own_ended = t + self.gap_us <= pl.col("watermark_us")
        joins_emitted = missed & (t >= pl.col("emitted_start") - self.gap_us)
        frame = frame.with_columns(__late=missed | own_ended)
        late = frame.filter("__late").with_columns(
            window_start_us=pl.when(joins_emitted).then("emitted_start").otherwise(t),
            window_end_us=pl.when(joins_emitted).then("emitted_end").otherwise(t + self.gap_us),
        )
        helpers = ["emitted_start", "emitted_end", "__late"]
        on_time = frame.filter(~pl.col("__late")).drop([*helpers, "watermark_us"])
        return on_time, late.drop(helpers)

    def add(self, events: pl.DataFrame, time_col: str = "event_time_us") -> None:
        """Fold on-time events into sessions, merging sessions an event now bridges."""
        if events.is_empty():
            return
        partial = (
            events.lazy()
            .group_by(*self.keys, window_start=pl.col(time_col))
            .agg([a.partial.alias(a.name) for a in self.aggregates])
            .with_columns(last_us=pl.col("window_start"))
            .collect(engine=BATCH_ENGINE)
        )
        untouched = None
        parts = [partial]
        if self.open is not None and self.open.height:
            keys = partial.select(self.keys).unique()
            parts.insert(0, self.open.join(keys, on=list(self.keys), how="semi"))
            untouched = self.open.join(keys, on=list(self.keys), how="anti")
        ordered = pl.concat(parts).sort(*self.keys, "window_start")
        reach = pl.col("last_us").cum_max().shift(1).over(self.keys)
        starts_new = reach.is_null() | (pl.col("window_start") >= reach + self.gap_us)
        merged = (
            ordered.lazy()
            .with_columns(__session=starts_new.cum_sum())
            .group_by(*self.keys, "__session")
            .agg(
                pl.col("window_start").min(),
                pl.col("last_us").max(),
                *[a.merged() for a in self.aggregates],
            )
            .drop("__session")
            .collect(engine=BATCH_ENGINE)
        )
        merged = compact_sketches(self.aggregates, merged).select(partial.columns)
        self.open = merged if untouched is None else pl.concat([untouched, merged])
        earliest = int(merged["last_us"].min())  # type: ignore[arg-type]
        if self.earliest_last is None or earliest < self.earliest_last:
            self.earliest_last = earliest

    def close(self, watermark_us: int) -> pl.DataFrame:
        """Remove and return the sessions whose end (last event + gap) is at or before the watermark."""
        if self.emitted is not None and self.emitted.height:
            self.emitted = self.emitted.filter(pl.col("emitted_end") + self.gap_us > watermark_us)
        if self.earliest_last is None or self.earliest_last + self.gap_us > watermark_us:
            return pl.DataFrame()
        assert self.open is not None
        end = pl.col("last_us") + self.gap_us
        done = self.open.filter(end <= watermark_us)
        self.open = self.open.filter(end > watermark_us)
        self.earliest_last = (
            None if self.open.is_empty() else int(self.open["last_us"].min())  # type: ignore[arg-type]
        )
        if done.is_empty():
            return done
        done = done.with_columns(window_end=end).drop("last_us")
        newest = (
            done.group_by(*self.keys)
            .agg(pl.all().sort_by("window_end").last())
            .select(*self.keys, emitted_start="window_start", emitted_end="window_end")
        )
        kept = (
            []
            if self.emitted is None
            else [self.emitted.join(newest, on=list(self.keys), how="anti")]
        )
        self.emitted = pl.concat([*kept, newest])
        return finish(self.aggregates, done).sort(*self.keys, "window_start")
