"""Stopping the warehouse while it lands a backlog (Ctrl-C, SIGTERM, `streamlane run`
stopping its children): it finishes the write in hand and exits with status 0 and no
traceback, its rows and Kafka positions committed together, and the next start lands the
rest once. Real broker, real DuckDB, the real `streamlane serve` process."""

from __future__ import annotations

import signal
from pathlib import Path

import duckdb
import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from tests.helpers import Processes, wait_until
from tests.integration.test_landing_parse import enriched_values
from tests.pipeline import count, start_warehouse

FLOW = orders.FLOW
RECORDS = 300_000


def rows_and_positions(warehouse: Path) -> tuple[int, int, int]:
    """Rows of `orders_enriched`, their distinct event ids, and the records of its topic
    the landing's committed positions cover (the warehouse process must have exited)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = con.execute(
            "SELECT (SELECT count(*) FROM orders_enriched), "
            "(SELECT count(DISTINCT event_id) FROM orders_enriched), "
            "(SELECT coalesce(sum(next_offset), 0) FROM landing_offsets WHERE topic = ?)",
            [FLOW.enriched.topic],
        ).fetchone()
    assert found is not None
    return int(found[0]), int(found[1]), int(found[2])


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("stop", "again"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "SIGINT twice"],
)
def test_a_warehouse_stopped_while_landing_exits_cleanly_and_resumes(
    fresh_broker: EmbeddedBroker,
    processes: Processes,
    tmp_path: Path,
    stop: signal.Signals,
    again: bool,
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, FLOW.topics, 4)
    published = publish(brokers, FLOW.enriched.topic, ((None, v) for v in enriched_values(RECORDS)))
    assert published == RECORDS

    proc = start_warehouse(processes, brokers, warehouse)
    # The first rows are visible while the rest of the backlog is still being written.
    wait_until(lambda: count(warehouse, "orders_enriched") > 0, 60, "the first rows", 0.05)
    proc.send_signal(stop)
    if again:  # once the first is handled: the write in hand is interrupted, rolled back
        wait_until(lambda: "finishing" in processes.log("warehouse"), 30, "the first signal", 0.01)
        proc.send_signal(stop)
    assert proc.wait(60) == 0
    log = processes.log("warehouse")
    assert "Traceback" not in log, log
    assert f"{stop.name}: finishing the write in hand" in log
    if not again:  # (twice, the second may come while it closes, after the last line)
        assert log.splitlines()[-1].endswith("stopped"), log

    rows, ids, covered = rows_and_positions(warehouse)
    assert rows == ids == covered, "rows and positions commit together"

    start_warehouse(processes, brokers, warehouse, name="warehouse-again")
    wait_until(
        lambda: count(warehouse, "orders_enriched") >= RECORDS, 120, "the rest of the backlog"
    )
    processes.stop_all()
    assert rows_and_positions(warehouse) == (RECORDS, RECORDS, RECORDS)
