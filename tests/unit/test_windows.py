"""Watermark and tumbling windows: min over partitions, idleness, lateness, never backwards."""

import math
import random

import polars as pl

from streamlane.windows import NEVER, Aggregate, FixedWindows, PartitionProgress, Watermark

S = 1_000_000
PARTS = ["t/0", "t/1"]


def progress(
    part: str, newest_s: float | None, idle: bool = False, idle_for_s: float = 0
) -> PartitionProgress:
    newest = None if newest_s is None else int(newest_s * S)
    return PartitionProgress(part, newest, idle, int(idle_for_s * S))


def test_flow_watermark_is_the_minimum_over_partitions() -> None:
    wm = Watermark(PARTS, lateness_us=30 * S)
    assert wm.advance(progress("t/0", 1000)) == NEVER  # t/1 not heard from yet
    assert wm.advance(progress("t/1", 500)) == 470 * S
    assert wm.advance(progress("t/1", 2000)) == 970 * S


def test_idle_partition_stops_holding_back_and_never_backwards() -> None:
    wm = Watermark(PARTS, lateness_us=30 * S)
    wm.advance(progress("t/0", 1000))
    assert wm.advance(progress("t/1", 100, idle=True)) == 970 * S
    assert wm.advance(progress("t/1", 200)) == 970 * S  # back to active: the watermark stays


def test_all_idle_advances_with_wall_clock() -> None:
    wm = Watermark(PARTS, lateness_us=30 * S)
    wm.advance(progress("t/0", 1000, idle=True, idle_for_s=50))
    assert wm.advance(progress("t/1", 900, idle=True, idle_for_s=50)) == 1020 * S


def test_rows_are_late_against_the_watermark_at_their_arrival() -> None:
    wm = Watermark(PARTS, lateness_us=30 * S)
    wm.advance(progress("t/1", 10_000))
    rows = pl.DataFrame({"own": [None, 5000 * S, 9000 * S]})
    marks = rows.select(m=wm.at_arrival("t/0", pl.col("own")))["m"].to_list()
    assert marks == [NEVER, 4970 * S, 8970 * S]


def test_tumbling_windows_merge_batches_and_close_once() -> None:
    windows = FixedWindows(
        ("k",), 60 * S, (Aggregate("n", pl.len(), "sum"), Aggregate("mx", pl.col("v").max(), "max"))
    )
    windows.add(
        pl.DataFrame({"k": [1, 1, 2], "v": [5, 7, 1], "event_time_us": [0, 59 * S, 61 * S]})
    )
    windows.add(pl.DataFrame({"k": [1], "v": [9], "event_time_us": [30 * S]}))
    closed = windows.close(60 * S)
    assert closed.select("k", "window_start", "n", "mx").rows() == [(1, 0, 3, 9)]
    assert windows.close(60 * S).is_empty()
    assert windows.close(120 * S).select("k", "n").rows() == [(2, 1)]


def test_exact_sums_do_not_depend_on_how_events_were_batched() -> None:
    rng = random.Random(11)
    values = [rng.uniform(0.01, 500.0) for _ in range(2_000)] + [1e16, -1e16, 3.3]
    events = pl.DataFrame({"k": [1] * len(values), "v": values, "event_time_us": [0] * len(values)})

    def closed_sums(batch_sizes: list[int]) -> tuple[float, float]:
        aggregates = (
            Aggregate("exact", pl.col("v"), "fsum"),
            Aggregate("plain", pl.col("v").sum(), "sum"),
        )
        windows = FixedWindows(("k",), 60 * S, aggregates)
        start = 0
        for size in batch_sizes:
            windows.add(events.slice(start, size))
            start += size
        windows.add(events.slice(start))
        row = windows.close(60 * S).row(0, named=True)
        return row["exact"], row["plain"]

    layouts = [[len(values)], [1] * 40 + [7] * 90, [999, 3, 500], list(range(1, 60))]
    sums = [closed_sums(layout) for layout in layouts]
    assert {exact for exact, _ in sums} == {math.fsum(values)}
    # The batch-by-batch float sum is what the exact one replaces: here it varies.
    assert len({plain for _, plain in sums}) > 1
