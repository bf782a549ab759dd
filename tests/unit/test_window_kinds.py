"""Hopping and session windows and the richer aggregates, through a state shard.

Random out-of-order streams over two partitions go through `route` and
`ShardState` batch by batch; the windows emitted must be exactly those a
brute-force computation gives over the events that were not reported late, and
every late report must be justified by the watermark it met.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import polars as pl
import pytest

from streamlane import aggregates as agg
from streamlane.shards import ShardState, WindowDef, WindowSpec, route, split
from streamlane.windows import Hopping, PartitionProgress, Session, Tumbling

S = 1_000_000
PARTS = ("t/0", "t/1")
AGGREGATES = (
    agg.count("n"),
    agg.total("amount", pl.col("v")),
    agg.minimum("low", pl.col("v")),
    agg.maximum("high", pl.col("v")),
    agg.mean("avg", pl.col("v")),
    agg.distinct_count("pages", pl.col("page")),
    agg.percentiles("v", pl.col("v"), (0.5, 0.95, 0.99)),
)


def random_stream(seed: int, events: int = 1_500) -> list[tuple[str, dict]]:
    """(partition, event) in arrival order: mostly ordered, some far behind, some re-sent."""
    rng = random.Random(seed)
    clock = {p: 0 for p in PARTS}
    out: list[tuple[str, dict]] = []
    for i in range(events):
        part = rng.choice(PARTS)
        clock[part] += rng.randint(0, 40) * S
        behind = rng.choice([0] * 8 + [rng.randint(0, 120), rng.randint(100, 900)]) * S
        event = {
            "event_id": f"e{i}",
            "visitor": rng.randint(1, 6),
            "event_time_us": max(0, clock[part] - behind),
            "v": round(rng.uniform(0.5, 400.0), 2),
            "page": rng.choice(["home", "cart", "pay", "item"]),
        }
        out.append((part, event))
        if rng.random() < 0.03:
            out.append((part, dict(event)))  # a duplicate: must not count twice
    return out


def run(window, stream, lateness_s: float = 60, batch: int = 17) -> tuple[pl.DataFrame, list]:
    spec = WindowSpec(
        partitions=PARTS,
        key="visitor",
        windows=(WindowDef("w", ("visitor",), window, AGGREGATES),),
        lateness_us=int(lateness_s * S),
        dedupe_horizon_us=10**9 * S,
        shards=1,
    )
    state = ShardState(spec)
    newest: dict[str, int | None] = dict.fromkeys(PARTS)
    closed, late = [], []
    for start in range(0, len(stream), batch):
        by_part = defaultdict(list)
        for part, event in stream[start : start + batch]:
            by_part[part].append(event)
        for part, events in by_part.items():
            own_before = []
            for e in events:
                own_before.append(newest[part])
                t = e["event_time_us"]
                newest[part] = t if newest[part] is None else max(newest[part], t)
            rows = pl.DataFrame(events).with_columns(
                own_newest_before_us=pl.Series(own_before, dtype=pl.Int64),
                part=pl.lit(0, pl.Int32),
            )
            progress = PartitionProgress(part, newest[part], False, 0)
            for _, item in route(spec, split(spec, rows), (progress,)):
                out = state.process(item)
                closed += list(out.windows.values())
                late += list(out.late.values())
    for part in PARTS:  # both idle for a long time: every window closes
        progress = PartitionProgress(part, newest[part], True, 10**6 * S)
        out = state.process(route(spec, {}, (progress,))[0][1])
        closed += list(out.windows.values())
    windows = pl.concat(closed) if closed else pl.DataFrame()
    return windows.sort("visitor", "window_start"), late


def unique_events(stream) -> list[dict]:
    seen, out = set(), []
    for _, e in stream:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            out.append(e)
    return out


def expected_rows(groups: dict[tuple[int, int, int], list[dict]]) -> list[tuple]:
    rows = []
    for (visitor, start, end), events in sorted(groups.items()):
        values = [e["v"] for e in events]
        rows.append(
            (
                visitor,
                start,
                end,
                len(events),
                math.fsum(values),
                min(values),
                max(values),
                math.fsum(values) / len(values),
                len({e["page"] for e in events}),
            )
        )
    return rows


def emitted_rows(windows: pl.DataFrame) -> list[tuple]:
    return windows.select(
        "visitor", "window_start", "window_end", "n", "amount", "low", "high", "avg", "pages"
    ).rows()


def check_percentiles(windows: pl.DataFrame, groups) -> None:
    by_window = {(k[0], k[1]): v for k, v in groups.items()}
    for row in windows.iter_rows(named=True):
        values = np.sort([e["v"] for e in by_window[(row["visitor"], row["window_start"])]])
        for q in (0.5, 0.95, 0.99):
            # The sketch reports the bucket of rank q*(n-1): within 1% of that order statistic.
            true = values[int(math.floor(q * (len(values) - 1) + 1e-9))]
            got = row[agg.quantile_column("v", q)]
            assert abs(got - true) <= agg.SKETCH_ACCURACY * true * 1.0001, (q, got, true)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hopping_windows_equal_brute_force_over_on_time_pairs(seed: int) -> None:
    stream = random_stream(seed)
    size, every = 300 * S, 60 * S
    windows, late = run(Hopping(size, every), stream)
    late_pairs = {
        (r["event_id"], r["window_start_us"]) for frame in late for r in frame.iter_rows(named=True)
    }
    for frame in late:
        assert (frame["window_end_us"] <= frame["watermark_us"]).all()
    assert late_pairs, "the stream has events far behind: some must be late"
    groups: dict[tuple[int, int, int], list[dict]] = defaultdict(list)
    for e in unique_events(stream):
        last = e["event_time_us"] // every * every
        for start in range(last - size + every, last + every, every):
            if (e["event_id"], start) not in late_pairs:
                groups[(e["visitor"], start, start + size)].append(e)
    assert emitted_rows(windows) == expected_rows(groups)
    check_percentiles(windows, groups)


def brute_sessions(events: list[dict], gap: int) -> dict[tuple[int, int, int], list[dict]]:
    by_visitor: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        by_visitor[e["visitor"]].append(e)
    groups = {}
    for visitor, mine in by_visitor.items():
        mine.sort(key=lambda e: e["event_time_us"])
        current = [mine[0]]
        for e in mine[1:]:
            if e["event_time_us"] - current[-1]["event_time_us"] >= gap:
                groups[
                    (visitor, current[0]["event_time_us"], current[-1]["event_time_us"] + gap)
                ] = current
                current = []
            current.append(e)
        groups[(visitor, current[0]["event_time_us"], current[-1]["event_time_us"] + gap)] = current
    return groups


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_sessions_equal_brute_force_over_on_time_events(seed: int) -> None:
    stream = random_stream(seed)
    gap = 120 * S
    windows, late = run(Session(gap), stream)
    late_ids = {r["event_id"] for frame in late for r in frame.iter_rows(named=True)}
    assert late_ids, "the stream has events far behind: some must be late"
    for frame in late:
        for r in frame.iter_rows(named=True):
            t = r["event_time_us"]
            own_ended = t + gap <= r["watermark_us"]
            missed = r["window_start_us"] - gap <= t < r["window_end_us"] <= r["watermark_us"]
            assert own_ended or missed, r
    on_time = [e for e in unique_events(stream) if e["event_id"] not in late_ids]
    groups = brute_sessions(on_time, gap)
    assert emitted_rows(windows) == expected_rows(groups)
    check_percentiles(windows, groups)


def test_an_event_bridging_two_sessions_merges_them() -> None:
    gap = 10 * S
    stream = [
        ("t/0", {"event_id": "a", "visitor": 1, "event_time_us": 0, "v": 1.0, "page": "home"}),
        ("t/1", {"event_id": "b", "visitor": 1, "event_time_us": 15 * S, "v": 2.0, "page": "cart"}),
        ("t/0", {"event_id": "c", "visitor": 1, "event_time_us": 8 * S, "v": 3.0, "page": "cart"}),
    ]
    windows, late = run(Session(gap), stream, batch=1)
    assert not late
    assert emitted_rows(windows) == [(1, 0, 25 * S, 3, 6.0, 1.0, 3.0, 2.0, 2)]


def test_tumbling_path_agrees_with_hopping_of_one_step() -> None:
    stream = random_stream(7)
    tumbling, late_t = run(Tumbling(60 * S), stream)
    hopping, late_h = run(Hopping(60 * S, 60 * S), stream)
    assert tumbling.equals(hopping.select(tumbling.columns))
    ids = lambda frames: sorted(r for f in frames for r in f["event_id"].to_list())  # noqa: E731
    assert ids(late_t) == ids(late_h)


def test_window_kinds_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="multiple of its step"):
        Hopping(300 * S, 70 * S)
    with pytest.raises(ValueError, match="gap must be positive"):
        Session(0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        agg.percentiles("x", pl.col("x"), (0.5, 95))
