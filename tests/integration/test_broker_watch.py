"""A broker watch asks Kafka only while something uses it: the sources, sinks and landings
that took it give it back when they close, and the last one stops its probes."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from flows.orders import FLOW
from sinks.kafka import KafkaFrameSink
from sinks.warehouse import Landing, landed_tables, open_warehouse
from streamlane.broker import EmbeddedBroker
from streamlane.brokerwatch import watch, watched
from streamlane.kafka import ensure_topics
from tests.helpers import wait_until


def test_a_watch_stops_asking_once_its_last_user_releases_it(
    fresh_broker: EmbeddedBroker,
) -> None:
    brokers = fresh_broker.bootstrap
    first, second = watch(brokers), watch(brokers)
    assert first is second  # one probe thread however many users
    first.release()
    assert second.probing and brokers in watched()
    second.release()
    assert brokers not in watched()
    wait_until(lambda: not first.probing, 10, "the watch to stop asking")
    again = watch(brokers)
    try:
        assert again is not first and again.probing
    finally:
        again.release()


def test_a_closed_landing_and_closed_sink_leave_no_watch(
    fresh_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, FLOW.topics, 1)
    con = open_warehouse(tmp_path / "warehouse.duckdb")
    landing = Landing(con, brokers, landed_tables())
    try:
        assert brokers in watched()
    finally:
        landing.close()
        con.close()
    assert brokers not in watched()

    sink = KafkaFrameSink(brokers, FLOW.enriched.topic)
    parts = [sink.build_part("enriched", part, None) for part in sink.list_parts()[:2]]
    parts[0].write_batch([pl.DataFrame({"key": [b"k"], "value": [b"{}"]})])
    parts[0].snapshot()
    for part in parts:
        assert brokers in watched()
        part.close()
    assert brokers not in watched()
    # A sink built again (a flow run again in the same process) gets a producer of its own.
    rebuilt = sink.build_part("enriched", "0", None)
    try:
        assert brokers in watched()
    finally:
        rebuilt.close()
