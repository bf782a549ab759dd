"""A batch split over the shards ahead of the worker: repeats, cross-batch duplicates, late events.

`split` leaves out ids repeated within a batch and reduces the batch's partials as if every
event were on time; a shard's step must still drop ids seen in an earlier batch and keep
late events out of the windows, with the same results as reducing the events it kept.
"""

from __future__ import annotations

import polars as pl
from prometheus_client import REGISTRY

from flows import orders
from streamlane import aggregates as agg
from streamlane.dataflow import carried_columns, window_spec
from streamlane.settings import FlowSettings
from streamlane.shards import ShardOutput, ShardState, WindowDef, WindowSpec, route, split
from streamlane.windows import PartitionProgress, Tumbling

S = 1_000_000
MINUTE = 60 * S
PART = "t/0"
SPEC = WindowSpec(
    partitions=(PART,),
    key="store",
    windows=(
        WindowDef(
            "w",
            ("store",),
            Tumbling(MINUTE),
            (agg.count("n"), agg.total("amount", pl.col("v"))),
        ),
    ),
    lateness_us=5 * S,
    dedupe_horizon_us=3600 * S,
    shards=4,
)


def batch(events: list[tuple[str, int, int, float]]) -> pl.DataFrame:
    """Rows of (event id, store, event time in seconds, value), as a flow's source gives them."""
    times = [t * S for _, _, t, _ in events]
    newest: list[int | None] = []
    for i in range(len(times)):
        newest.append(max(times[:i]) if i else None)
    return pl.DataFrame(
        {
            "event_id": [e[0] for e in events],
            "store": [e[1] for e in events],
            "event_time_us": times,
            "v": [e[3] for e in events],
            "own_newest_before_us": pl.Series(newest, dtype=pl.Int64),
            "part": pl.Series([0] * len(events), dtype=pl.Int32),
        }
    )


def step(states: dict[str, ShardState], rows: pl.DataFrame, idle: bool = False) -> ShardOutput:
    """Every shard's step over one batch, their outputs put together."""
    newest = int(rows["event_time_us"].max()) if rows.height else 10**6 * S  # type: ignore[arg-type]
    progress = PartitionProgress(PART, newest, idle, 10**6 * S if idle else 0)
    unique, windows, late = [], [], []
    for shard, item in route(SPEC, split(SPEC, rows), (progress,)):
        out = states.setdefault(shard, ShardState(SPEC)).process(item)
        unique += [out.unique] if out.unique is not None else []
        windows += list(out.windows.values())
        late += list(out.late.values())
    return ShardOutput(_joined(unique), {"w": _joined(windows)}, {"w": _joined(late)})


def _joined(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames) if frames else pl.DataFrame()


def dropped() -> float:
    return REGISTRY.get_sample_value("streamlane_duplicates_dropped_total", {}) or 0.0


def test_repeats_earlier_duplicates_and_late_events_stay_out_of_the_windows() -> None:
    states: dict[str, ShardState] = {}
    before = dropped()
    first = step(
        states,
        batch(
            [("a", 1, 10, 1.0), ("b", 2, 20, 2.0), ("a", 1, 10, 1.0), ("c", 3, 70, 4.0)]
            + [("d", 1, 100, 8.0)]
        ),
    )
    # The repeat of "a" within the batch is dropped before any shard sees it.
    assert sorted(first.unique["event_id"].to_list()) == ["a", "b", "c", "d"]
    assert dropped() - before == 1
    # The watermark (100 s - 5 s) closed the first minute with "a" and "b" in it, once each.
    closed = first.windows["w"].sort("store").select("store", "window_start", "n", "amount")
    assert closed.rows() == [(1, 0, 1, 1.0), (2, 0, 1, 2.0)]

    # "b" again (seen in the batch before) and "e" in the first minute, already closed.
    second = step(states, batch([("b", 2, 101, 2.0), ("e", 3, 30, 16.0), ("f", 3, 80, 32.0)]))
    assert sorted(second.unique["event_id"].to_list()) == ["e", "f"]
    assert dropped() - before == 2
    late = second.late["w"]
    assert late["event_id"].to_list() == ["e"]
    assert late.select("window_start_us", "window_end_us").row(0) == (0, MINUTE)

    final = step(states, pl.DataFrame(), idle=True).windows["w"]
    rows = final.sort("store", "window_start").select("store", "window_start", "n", "amount")
    # Store 3's second minute holds "c" and "f"; the late "e" is in no window.
    assert rows.rows() == [(1, MINUTE, 1, 8.0), (3, MINUTE, 2, 36.0)]


def test_the_split_carries_only_what_later_steps_read() -> None:
    # The enriched records are encoded before the split: the shards and the late outputs
    # read a few columns, and every column kept is copied by the split and each step.
    flow = orders.FLOW
    spec = window_spec(flow, FlowSettings("unused:9092"), (f"{flow.input_topic}/0",))
    carried = carried_columns(flow, spec)
    late_fields = {f for w in flow.windows for f in w.late.data if isinstance(f, str)}
    added_by_the_step = {"window", "window_start", "window_end", "watermark"}
    assert late_fields - added_by_the_step <= carried
    assert {"key", "value", "event_id", "event_time_us", "item_count", "total_usd"} <= carried
    assert "items" not in carried and "store_name" not in carried
