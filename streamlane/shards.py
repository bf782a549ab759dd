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
from streamlane.dedupe import ID_HASH_SEED, RunFiles, SeenIds, run_files
from streamlane.engine import BATCH_ENGINE
from streamlane.errors import UserError, exit_from_step
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

    shard: str
    rows: pl.DataFrame | None
    progress: PartitionProgress


@dataclass(frozen=True)
class ShardOutput:
    """What one shard step produced: first-seen events; closed windows and late events by window."""

    unique: pl.DataFrame | None
    windows: dict[str, pl.DataFrame]
    late: dict[str, pl.DataFrame]


@dataclass(frozen=True)
class WindowDef:
    """One set of windows a flow keeps: its name, grouping columns, kind and aggregates.

    `keys` must include the flow's routing key, so every window lives on one shard.
    """

    name: str
    keys: tuple[str, ...]
    kind: WindowKind
    aggregates: tuple[Aggregate, ...]

    def __post_init__(self) -> None:
        names = [n for a in self.aggregates for n in {a.name, *a.outputs()}]
        taken = {*self.keys, "window_start", "window_end"}
        clashes = sorted({n for n in names if names.count(n) > 1 or n in taken})
        if clashes:
            raise ValueError(
                f"window {self.name!r}: aggregate name(s) used twice: {', '.join(clashes)}"
            )


@dataclass(frozen=True)
class WindowSpec:
    """How a flow dedupes and windows: routing key, lateness, dedupe horizon, window sets."""

    partitions: tuple[str, ...]
    key: str
    windows: tuple[WindowDef, ...]
    lateness_us: int
    dedupe_horizon_us: int
    shards: int = 16
    id_column: str = "event_id"

    def __post_init__(self) -> None:
        for window in self.windows:
            if self.key not in window.keys:
                raise ValueError(
                    f"window {window.name!r} groups by {', '.join(window.keys)}, "
                    f"which must include the flow key {self.key!r}"
                )


ID_HASH = "__id_hash"
OWN_MARK = "__own_mark_us"
_SHARD = "__shard"


def _window_end(window: WindowDef) -> str:
    return f"__window_end_us/{window.name}"


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
        for window in spec.windows:
            if isinstance(window.kind, Tumbling):
                size = window.kind.size_us
                end = (pl.col("event_time_us") // size + 1) * size
                columns.append(end.alias(_window_end(window)))
        prepared = rows.with_columns(columns)
        for (shard,), part in prepared.partition_by(
            _SHARD, as_dict=True, include_key=False, maintain_order=True
        ).items():
            by_shard[int(shard)] = part  # type: ignore[call-overload]
    return [(str(s), ShardInput(str(s), by_shard.get(s), progress)) for s in range(spec.shards)]


def _internal(spec: WindowSpec) -> list[str]:
    return [
        ID_HASH,
        OWN_MARK,
        *(_window_end(w) for w in spec.windows if isinstance(w.kind, Tumbling)),
    ]


class ShardState:
    """State of one shard: ids seen, the watermark, and the open windows of each window set.

    With `files`, the ids seen are snapshotted incrementally (see `streamlane.dedupe`).
    """

    def __init__(self, spec: WindowSpec, files: RunFiles | None = None) -> None:
        self.spec = spec
        self.seen = SeenIds(spec.dedupe_horizon_us, files=files)
        self.watermark = Watermark(list(spec.partitions), spec.lateness_us)
        self.internal = _internal(spec)
        self.windows: dict[str, FixedWindows | SessionWindows] = {}
        for window in spec.windows:
            kind = window.kind
            if isinstance(kind, Session):
                store: FixedWindows | SessionWindows = SessionWindows(
                    window.keys, kind.gap_us, window.aggregates
                )
            else:
                every = kind.every_us if isinstance(kind, Hopping) else None
                store = FixedWindows(window.keys, kind.size_us, window.aggregates, every)
            self.windows[window.name] = store

    def process(self, item: ShardInput) -> ShardOutput:
        """Drop duplicates, split late from on-time events, fold on-time ones, close windows.

        Duplicates (an id already seen within the dedupe horizon) are dropped
        before anything else. Each window set judges lateness on its own: late
        events are returned per window set with the `window_start_us` and
        `window_end_us` they missed and the `watermark_us` they met; they are still
        unique events and part of `unique`. An event in several hopping windows
        joins the ones still open and is late once for each closed one.
        """
        unique = None
        late: dict[str, pl.DataFrame] = {}
        rows = item.rows
        if rows is not None and rows.height:
            times = rows["event_time_us"].to_numpy()
            first = self.seen.first_seen(rows[ID_HASH].to_numpy(), times)
            metrics.DUPLICATES.inc(rows.height - int(first.sum()))
            marks = self.watermark.arrival_marks(item.progress.partition, rows[OWN_MARK].to_numpy())
            # Most batches hold no duplicate: no filtering then (each query on a shard's
            # small share of a batch costs more to start than to run).
            fresh = rows if first.all() else rows.filter(pl.Series(first))
            unique = fresh.drop(self.internal)
            for window in self.spec.windows:
                store = self.windows[window.name]
                if isinstance(store, FixedWindows) and isinstance(window.kind, Tumbling):
                    missed = self._tumbling(window, store, fresh, marks[first])
                else:
                    missed = self._assigned(store, unique, marks[first])
                if missed is not None:
                    metrics.LATE_EVENTS.inc(missed.height)
                    late[window.name] = missed
        watermark = self.watermark.advance(item.progress)
        if watermark > NEVER:
            metrics.WATERMARK.set(watermark / 1e6)
        closed = {}
        for name, store in self.windows.items():
            done = store.close(watermark)
            if done.height:
                metrics.WINDOWS.inc(done.height)
                closed[name] = done
        return ShardOutput(unique, closed, late)

    def _tumbling(
        self, window: WindowDef, store: FixedWindows, fresh: pl.DataFrame, marks: np.ndarray
    ) -> pl.DataFrame | None:
        """The fast path: one window per event, its end computed by `route`."""
        end = _window_end(window)
        is_late = fresh[end].to_numpy() <= marks
        on_time = fresh.lazy().filter(pl.Series(~is_late))
        store.add_partial(
            _partials_of(window.keys, window.aggregates, on_time, pl.col(end) - store.size_us)
        )
        if not is_late.any():
            return None
        return (
            fresh.filter(pl.Series(is_late))
            .with_columns(
                watermark_us=pl.Series(marks[is_late]),
                window_end_us=pl.col(end),
                window_start_us=pl.col(end) - store.size_us,
            )
            .drop(self.internal)
        )

    def _assigned(
        self, store: FixedWindows | SessionWindows, fresh: pl.DataFrame, marks: np.ndarray
    ) -> pl.DataFrame | None:
        """Hopping and session windows: late events (or event-window pairs) split off, the rest folded."""
        if isinstance(store, SessionWindows):
            on_time, late = store.split_late(fresh, marks)
            store.add(on_time)
            return late if late.height else None
        pairs = (
            fresh.with_columns(
                watermark_us=pl.Series(marks, dtype=pl.Int64),
                window_start_us=window_starts(store.kind, pl.col("event_time_us")),
            )
            .explode("window_start_us")
            .with_columns(window_end_us=pl.col("window_start_us") + store.size_us)
        )
        is_late = pl.col("window_end_us") <= pl.col("watermark_us")
        on_time_pairs = pairs.lazy().filter(~is_late).drop("watermark_us", "window_end_us")
        store.add_partial(
            _partials_of(store.keys, store.aggregates, on_time_pairs, pl.col("window_start_us"))
        )
        late = pairs.filter(is_late)
        return late if late.height else None


def _partials_of(
    keys: tuple[str, ...],
    aggregates: tuple[Aggregate, ...],
    on_time: pl.LazyFrame,
    window_start: pl.Expr,
) -> pl.DataFrame:
    """One partial row per key and window: each aggregate's `partial` over its events."""
    partial = [a.partial.alias(a.name) for a in aggregates]
    return (
        on_time.group_by(*keys, window_start=window_start).agg(partial).collect(engine=BATCH_ENGINE)
    )


def shard_step(spec: WindowSpec):  # type: ignore[no-untyped-def]
    """bytewax `stateful_map` mapper running `ShardState.process` (state created on first use)."""

    def step(state: ShardState | None, item: ShardInput) -> tuple[ShardState, ShardOutput]:
        if state is None:
            state = ShardState(spec, run_files(item.shard))
            # Where bytewax placed this key: lets a cluster's spread of state be checked.
            worker = f"{os.getpid()}/{threading.current_thread().name}"
            metrics.STATE_SHARDS.labels(worker=worker).inc()
        else:
            try:
                state.seen.check()
            except UserError as exc:
                exit_from_step(exc)
        if state.seen.files is None:
            # Restored from a snapshot that held its runs (written before run files):
            # snapshotted incrementally from here on.
            state.seen.files = run_files(item.shard)
        output = state.process(item)
        metrics.DEDUPE_IDS.labels(shard=item.shard).set(len(state.seen))
        return state, output

    return step
