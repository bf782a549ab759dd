"""End to end: generated orders through the real broker, flow and warehouse, checked against a
SQL oracle; then the landing replays the topics and must change nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.e2e.orders_run import finish_and_check, order_stream, snapshot, start_flow
from tests.helpers import Processes, wait_until
from tests.pipeline import assert_outputs_follow_their_schemas, start_warehouse

OFFSETS_SQL = 'SELECT * FROM landing_offsets ORDER BY topic, "partition"'


@pytest.mark.timeout(420)
def test_orders_pipeline_matches_oracle(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, orders.FLOW.topics, 4)
    main, too_late = order_stream()
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main])
    landing = start_warehouse(processes, brokers, warehouse)
    start_flow(processes, brokers, tmp_path / "recovery", "--idle-timeout", "4")

    before = finish_and_check(brokers, warehouse, main, too_late)
    assert_outputs_follow_their_schemas(brokers, orders.FLOW)

    # Landing again over the same topics changes nothing.
    offsets = run_sql(warehouse, OFFSETS_SQL)
    processes.stop(landing)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM landing_offsets")
    start_warehouse(processes, brokers, warehouse, name="warehouse-again")
    wait_until(
        lambda: run_sql(warehouse, OFFSETS_SQL).equals(offsets),
        120,
        "the replayed landing to catch up",
        every_s=1,
    )
    after = snapshot(warehouse)
    for table, frame in before.items():
        assert after[table].equals(frame), f"{table} changed when landing again"
