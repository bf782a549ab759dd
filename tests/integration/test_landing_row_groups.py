"""A landing working through a backlog writes an output's rows in whole row groups, holding
the rest of a poll back for the next write, and a landing stopped there (records held back
or not) loses nothing and lands nothing twice after a restart. Real broker, real DuckDB
file."""

from __future__ import annotations

import time
from pathlib import Path

from flows import orders
from sinks.warehouse import Landing, landed_tables, open_warehouse
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from tests.integration.test_landing_parse import enriched_values

FLOW = orders.FLOW
ENRICHED = FLOW.enriched.topic
ROW_GROUP = 150
POLL = 100


def landing(broker: EmbeddedBroker, warehouse: Path) -> Landing:
    """A landing of the orders flow's topics into `warehouse`, in polls of `POLL` records
    and row groups of `ROW_GROUP` rows. A poll waits long enough for a full one while the
    topic holds that many more records, so the backlog's polls are all full."""
    return Landing(
        open_warehouse(warehouse), broker.bootstrap, landed_tables(),
        max_batch=POLL, row_group_rows=ROW_GROUP, poll_timeout_s=3,
    )  # fmt: skip


def stored(warehouse: Landing) -> tuple[int, int]:
    """Rows of enriched orders the warehouse holds, and distinct event ids among them."""
    found = warehouse.con.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM orders_enriched"
    ).fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


def land_until(warehouse: Landing, rows: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while stored(warehouse)[0] < rows:
        assert time.monotonic() < deadline, f"fewer than {rows} rows landed in {timeout_s} s"
        warehouse.poll_once(timeout_s=1)


def test_a_landing_stopped_in_a_backlog_lands_each_record_once_after_a_restart(
    fresh_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    ensure_topics(fresh_broker.bootstrap, FLOW.topics, 3)
    values = enriched_values(1_000)
    assert publish(fresh_broker.bootstrap, ENRICHED, ((None, v) for v in values)) == 1_000
    warehouse = tmp_path / "warehouse.duckdb"
    first = landing(fresh_broker, warehouse)
    try:
        land_until(first, 1)
        # Two full polls: one row group written, the rest of the second held back.
        assert stored(first) == (ROW_GROUP, ROW_GROUP)
    finally:
        first.close()
        first.con.close()
    second = landing(fresh_broker, warehouse)
    try:
        land_until(second, 1_000)
        assert stored(second) == (1_000, 1_000)
    finally:
        second.close()
        second.con.close()
