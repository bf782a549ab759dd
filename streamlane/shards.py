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
from streamlane.engine import BATCH_ENGINE, with_series
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
class ShardRows:
    """One shard's rows of a batch, with what its step needs of them computed ahead (`split`).

    `events` are the rows as the flow passes them on. Per row, `id_hash` is the event id's
    64-bit hash, `part` its input partition (a position in the batch's progress), `own_mark`
    the row's own-partition watermark (before it arrived), and
    `window_ends` the end of its window in each tumbling window set. `partials` holds,
    per tumbling window set, the rows' partial aggregates as if every row were first seen
    and on time: the common case, in which the step folds them as they are. `repeats`
    counts the rows left out as repeats of an id earlier in the batch (duplicates
    whatever the state holds).
    """

    events: pl.DataFrame
    id_hash: np.ndarray
    part: np.ndarray
    own_mark: np.ndarray
    window_ends: dict[str, np.ndarray]
    partials: dict[str, pl.DataFrame]
    repeats: int = 0


@dataclass(frozen=True)
class ShardInput:
    """A shard's part of one batch (None: no rows) and the progress of the batch's partitions."""

    shard: str
    rows: ShardRows | None
    progress: tuple[PartitionProgress, ...]


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
PART = "__part"
_SHARD = "__shard"
_FIRST = "__first_in_batch"


def _window_end(window: WindowDef) -> str:
    return f"__window_end_us/{window.name}"


def _tumbling_windows(spec: WindowSpec) -> list[tuple[WindowDef, int]]:
    """The tumbling window sets, with their sizes."""
    return [(w, w.kind.size_us) for w in spec.windows if isinstance(w.kind, Tumbling)]


def split(spec: WindowSpec, rows: pl.DataFrame) -> dict[int, ShardRows]:
    """A batch's rows by shard (key hash), each with what the shard step needs of them.

    `rows` are a batch's events as a flow's source gives them (`part`, `event_time_us` and
    `own_newest_before_us` among their columns; see `streamlane.source.PartitionBatch`).
    Everything a shard step can compute without its state (the id hashes, each row's
    own-partition watermark and window ends, the partial aggregates of the tumbling
    window sets) is computed here, once per batch and for all shards in a few queries,
    so it can run off the worker (a flow does it on the source's decode threads): there
    each query on a shard's small share of a batch waited behind the decoding's large
    ones for the columnar engine's threads. A repeat of an id earlier in the batch (on
    the same shard) is left out and counted in `repeats`: the first occurrence wins, as
    in the shard's own dedupe.
    """
    if not rows.height:
        return {}
    tumbling = _tumbling_windows(spec)
    internal = [
        pl.col(spec.id_column).hash(seed=ID_HASH_SEED).alias(ID_HASH),
        pl.col("part").alias(PART),
        (pl.col("own_newest_before_us") - spec.lateness_us).fill_null(NEVER).alias(OWN_MARK),
        *(
            ((pl.col("event_time_us") // size + 1) * size).alias(_window_end(w))
            for w, size in tumbling
        ),
    ]
    shard = (pl.col(spec.key).hash(seed=7) % spec.shards).alias(_SHARD)
    first = pl.struct(_SHARD, ID_HASH).is_first_distinct().alias(_FIRST)
    prepared = rows.with_columns(shard, *internal).with_columns(first)
    # An id repeated within the batch is a duplicate whatever the state holds: dropped
    # here, a shard's rows mostly hold none, and the step can fold the partials as they are.
    is_first = prepared.get_column(_FIRST).to_numpy()
    shard_of = prepared.get_column(_SHARD).to_numpy().astype(np.int64)
    repeats = np.bincount(shard_of[~is_first], minlength=spec.shards)
    if not is_first.all():
        prepared = prepared.filter(pl.col(_FIRST))
    events = _by_shard(prepared.select(_SHARD, *rows.columns))
    arrays = _by_shard(prepared.select(_SHARD, *(c.meta.output_name() for c in internal)))
    partials: dict[int, dict[str, pl.DataFrame]] = {s: {} for s in events}
    for window, size in tumbling:
        start = pl.col(_window_end(window)) - size
        keys = (_SHARD, *window.keys)
        reduced = _partials_of(keys, window.aggregates, prepared.lazy(), start)
        for s, partial in _by_shard(reduced).items():
            partials[s][window.name] = partial
    return {
        s: ShardRows(
            part,
            arrays[s].get_column(ID_HASH).to_numpy(),
            arrays[s].get_column(PART).to_numpy(),
            arrays[s].get_column(OWN_MARK).to_numpy(),
            {w.name: arrays[s].get_column(_window_end(w)).to_numpy() for w, _ in tumbling},
            partials[s],
            int(repeats[s]),
        )
        for s, part in events.items()
    }


def _by_shard(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
    parts = frame.partition_by(_SHARD, as_dict=True, include_key=False, maintain_order=True)
    return {int(shard): part for (shard,), part in parts.items()}  # type: ignore[call-overload]


def route(
    spec: WindowSpec, rows: dict[int, ShardRows], progress: tuple[PartitionProgress, ...]
) -> list[tuple[str, ShardInput]]:
    """One item per shard: its share of a batch's rows (from `split`, None when it has none)
    and the progress of the batch's partitions, which every shard gets so all see the same
    watermark."""
    return [(str(s), ShardInput(str(s), rows.get(s), progress)) for s in range(spec.shards)]


class ShardState:
    """State of one shard: ids seen, the watermark, and the open windows of each window set.

    With `files`, the ids seen are snapshotted incrementally (see `streamlane.dedupe`).
    """

    def __init__(self, spec: WindowSpec, files: RunFiles | None = None) -> None:
        self.spec = spec
        self.seen = SeenIds(spec.dedupe_horizon_us, files=files)
        self.watermark = Watermark(list(spec.partitions), spec.lateness_us)
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
        if rows is not None and rows.events.height:
            times = rows.events["event_time_us"].to_numpy()
            slowest = self.watermark.slowest_newest_us()
            first = self.seen.first_seen(rows.id_hash, times, slowest)
            metrics.DUPLICATES.inc(rows.repeats + rows.events.height - int(first.sum()))
            partitions = [p.partition for p in item.progress]
            marks = self.watermark.arrival_marks(partitions, rows.part, rows.own_mark)
            # Most batches hold no duplicate: no filtering then (each query on a shard's
            # small share of a batch costs more to start than to run).
            kept: np.ndarray | None = None if first.all() else first
            if kept is None:
                unique = rows.events
            else:
                # Rows picked by position: a filter runs a query, many times dearer here.
                unique, marks = rows.events.gather(np.flatnonzero(kept)), marks[kept]
            for window in self.spec.windows:
                store = self.windows[window.name]
                if isinstance(store, FixedWindows) and isinstance(window.kind, Tumbling):
                    missed = self._tumbling(window, store, rows, unique, kept, marks)
                else:
                    missed = self._assigned(store, unique, marks)
                if missed is not None:
                    metrics.LATE_EVENTS.inc(missed.height)
                    late[window.name] = missed
        for progress in item.progress:
            self.watermark.advance(progress)
        watermark = self.watermark.value_us
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
        self,
        window: WindowDef,
        store: FixedWindows,
        rows: ShardRows,
        unique: pl.DataFrame,
        kept: np.ndarray | None,
        marks: np.ndarray,
    ) -> pl.DataFrame | None:
        """The fast path: one window per event, its end and the rows' partials from `split`.

        `kept` marks the rows seen for the first time (None: all of them), which `unique`
        and `marks` hold."""
        ends = rows.window_ends[window.name]
        if kept is not None:
            ends = ends[kept]
        is_late = ends <= marks
        if not is_late.any():
            if kept is None:
                store.add_partial(rows.partials[window.name])
            else:
                store.add_partial(self._partials(window, store, unique, ends, None))
            return None
        store.add_partial(self._partials(window, store, unique, ends, ~is_late))
        late_ends = ends[is_late]
        return with_series(
            unique.gather(np.flatnonzero(is_late)),
            watermark_us=pl.Series(marks[is_late]),
            window_end_us=pl.Series(late_ends),
            window_start_us=pl.Series(late_ends - store.size_us),
        )

    @staticmethod
    def _partials(
        window: WindowDef,
        store: FixedWindows,
        events: pl.DataFrame,
        ends: np.ndarray,
        keep: np.ndarray | None,
    ) -> pl.DataFrame:
        """Partials of `events` (those `keep` marks, or all) whose windows end at `ends`."""
        end = _window_end(window)
        frame = events.lazy().with_columns(pl.Series(end, ends))
        if keep is not None:
            frame = frame.filter(pl.Series(keep))
        start = pl.col(end) - store.size_us
        return _partials_of(window.keys, window.aggregates, frame, start)

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
