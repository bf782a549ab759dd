"""Stop the flow mid-stream and start it again: it resumes from its recovery store, windows stay
exact, and an event re-sent after the restart still counts once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.flowrun import DEDUPE_RUNS
from streamlane.generator import GeneratedRecord
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from streamlane.publish import publish
from tests.e2e.orders_run import finish_and_check, order_stream, start_flow
from tests.helpers import Processes, wait_until
from tests.pipeline import count, event_id, start_warehouse

# Long enough that no partition goes idle across the restart (which would let the
# watermark run ahead on wall-clock time and make the second half late).
IDLE_S = "20"


def _resent(records: list[GeneratedRecord], n: int) -> list[GeneratedRecord]:
    """`n` valid events of the first half, sent again after the restart (same bytes)."""
    valid = [r for r in records if r.kind == "valid"][:n]
    return [GeneratedRecord(r.key, r.value, "duplicate", r.event_time) for r in valid]


@pytest.mark.timeout(420)
def test_flow_resumes_after_stop_without_double_counting(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    recovery = tmp_path / "recovery"
    ensure_topics(brokers, orders.FLOW.topics, 4)
    main, too_late = order_stream()
    half = len(main) // 2
    first, second = main[:half], main[half:] + _resent(main[:half], 100)
    first_ids = {event_id(r) for r in first if r.kind in ("valid", "out_of_order")}

    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in first])
    start_warehouse(processes, brokers, warehouse)
    snapshots = ("--idle-timeout", IDLE_S, "--snapshot-interval", "1")
    port = free_port()
    flow = start_flow(processes, brokers, recovery, *snapshots, "--metrics-port", str(port))
    wait_until(
        lambda: count(warehouse, "orders_enriched") >= len(first_ids),
        120,
        "the first half to land",
        every_s=0.5,
    )
    wait_until(
        lambda: scrape(port).get("streamlane_events_in_total", 0) >= len(first), 30, "first half"
    )
    ids_held = scrape(port).get("streamlane_dedupe_ids", 0)
    assert len(first_ids) <= ids_held <= len(first), f"the dedupe state holds {ids_held} ids"
    stopping = time.monotonic()
    assert processes.stop(flow) == 0, "the flow stops cleanly on SIGINT"
    stop_s = time.monotonic() - stopping
    assert stop_s < 10, f"the flow took {stop_s:.1f} s to stop"
    assert "stopped after a final snapshot" in processes.log("flow")
    # The ids seen are in run files the snapshot names: the re-sent events below are
    # recognised only if the restart reads them back.
    assert list((recovery / DEDUPE_RUNS).rglob("*.ids")), "no dedupe run files were written"

    port = free_port()
    start_flow(processes, brokers, recovery, *snapshots, "--metrics-port", str(port), name="flow2")
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in second])
    wait_until(
        lambda: scrape(port).get("streamlane_events_in_total", 0) >= len(second),
        60,
        "the second half to be read",
    )
    # Exact against the oracle: the re-sent events and any records read twice count once.
    finish_and_check(brokers, warehouse, first + second, too_late)
    # Resumed exactly where the graceful stop snapshotted: nothing of the first half is read again.
    reread = scrape(port)["streamlane_events_in_total"] - len(second) - len(too_late)
    assert reread == 0, f"the restarted flow re-read {reread} records"
