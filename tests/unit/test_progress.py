"""Progress lines: the lag figure (total input lag and the partitions furthest behind), a
flow's line from its own metrics, rates over the last window, and the progress log's pacing."""

from __future__ import annotations

import logging

import pytest

from flows import orders
from streamlane.progresslines import (
    ProgressLog,
    RateMeter,
    broker_memory_figure,
    flow_line,
    lag_figure,
    landing_line,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lag_names_the_partition_furthest_behind() -> None:
    metrics = {
        "streamlane_consumer_lag": 1_530.0,
        "streamlane_consumer_lag|pizza.orders": 1_530.0,
        "streamlane_consumer_lag|pizza.orders/0": 30.0,
        "streamlane_consumer_lag|pizza.orders/5": 1_500.0,
    }
    assert lag_figure(metrics, "pizza.orders") == "1,530 (p5: 1,500, p0: 30)"


def test_lag_lists_at_most_four_partitions() -> None:
    metrics = {"streamlane_consumer_lag": 15.0} | {
        f"streamlane_consumer_lag|pizza.orders/{p}": float(p) for p in range(6)
    }
    assert lag_figure(metrics, "pizza.orders") == "15 (p5: 5, p4: 4, p3: 3, p2: 2, +1 more)"


def test_no_lag_is_a_plain_zero() -> None:
    assert lag_figure({}, "pizza.orders") == "0"
    assert lag_figure({"streamlane_consumer_lag|pizza.orders/1": 0.0}, "pizza.orders") == "0"


def test_flow_line_counts_each_output_and_says_when_kafka_is_down() -> None:
    flow = orders.FLOW
    out = "streamlane_events_out_total|"
    metrics = {
        "streamlane_events_in_total": 1_200.0,
        f"{out}{flow.enriched.topic}": 1_150.0,
        f"{out}{flow.windows[0].output.topic}": 40.0,
        f"{out}{flow.dead_letter_topic}": 12.0,
        "streamlane_late_events_total": 3.0,
        "streamlane_duplicates_dropped_total": 11.0,
        "streamlane_consumer_lag": 7.0,
        f"streamlane_consumer_lag|{flow.input_topic}/2": 7.0,
    }
    assert flow_line(flow, metrics) == (
        "orders: events in 1,200 · enriched 1,150 · windows 40 · dead letters 12 · late 3"
        " · duplicates 11 · lag 7 (p2: 7)"
    )
    down = flow_line(flow, metrics | {"streamlane_broker_up": 0.0})
    assert down.endswith(" · Kafka not answering: waiting")


def test_landing_line_says_when_the_landing_is_paused() -> None:
    metrics = {"streamlane_landed_rows_total": 2_500.0, "streamlane_landing_lag": 30.0}
    assert landing_line(metrics) == "landed rows 2,500 · landing lag 30"
    paused = landing_line(metrics | {"streamlane_landing_paused": 1.0})
    assert paused.endswith(" · warehouse not writable: landing paused")


def test_broker_memory_reads_in_mib_then_in_gib() -> None:
    assert broker_memory_figure(45.3) == "embedded broker 45 MiB"
    assert broker_memory_figure(1023.4) == "embedded broker 1,023 MiB"
    assert broker_memory_figure(1023.6) == "embedded broker 1.0 GiB"
    assert broker_memory_figure(12_902.0) == "embedded broker 12.6 GiB"


def test_rate_covers_the_last_window_from_a_start_at_zero() -> None:
    clock = Clock()
    rates = RateMeter(window_s=10, clock=clock)
    clock.now += 4
    assert rates.per_s("rows", 400) == 100  # counted from 0 when the meter was made
    clock.now += 6
    assert rates.per_s("rows", 1_600) == 160
    clock.now += 5
    # The base is now the newest reading at least 10 s old (400, 11 s ago), not the start.
    assert rates.per_s("rows", 1_600) == pytest.approx(1_200 / 11)
    clock.now += 10
    assert rates.per_s("rows", 1_600) == 0
    assert rates.per_s("other", 0) == 0  # each name has its own readings


def test_a_total_that_falls_reads_as_zero_and_is_not_kept() -> None:
    clock = Clock()
    rates = RateMeter(window_s=10, clock=clock)
    clock.now += 10
    assert rates.per_s("rows", 1_000) == 100
    clock.now += 1
    assert rates.per_s("rows", 0) == 0  # the process could not be read
    clock.now += 9
    assert rates.per_s("rows", 2_000) == 100  # from 1,000 at 10 s, not from the 0


def test_lines_with_rates_say_how_fast_events_come_in_and_rows_land() -> None:
    clock = Clock()
    rates = RateMeter(window_s=10, clock=clock)
    clock.now += 10
    line = flow_line(orders.FLOW, {"streamlane_events_in_total": 25_000.0}, rates)
    assert line.startswith("orders: events in 25,000 (2,500/s) · enriched 0 · "), line
    landing = landing_line({"streamlane_landed_rows_total": 12_345.0}, rates)
    assert landing == "landed rows 12,345 (1,234/s) · landing lag 0"


def test_progress_log_writes_a_line_only_when_it_changed_and_once_on_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    said = iter(["events 0", "events 1", "events 1", "events 2", "events 2"])
    caplog.set_level(logging.INFO, logger="streamlane.progresslines")
    progress = ProgressLog(lambda: next(said), every_s=3600)  # ticked by hand below
    with progress:
        progress.tick()
        progress.tick()
        progress.tick()
    assert [r.getMessage() for r in caplog.records] == ["events 1", "events 2", "events 2"]


def test_progress_log_says_nothing_when_nothing_happened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamlane.progresslines")
    with ProgressLog(lambda: "events 0", every_s=3600):
        pass
    assert caplog.records == []
