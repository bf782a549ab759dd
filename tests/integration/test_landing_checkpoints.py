"""A landing that keeps up with a steady stream checkpoints its log after a commit once the
log passes its threshold; a landing working through a backlog, or landing history too busy
writing to afford checkpoints, leaves the log to grow until it is idle, as checkpointing
then would slow it down. Live rows are checkpointed as they land, however busy the writer.
Real broker, real DuckDB file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from flows import orders
from sinks.warehouse import Landing, landed_tables, open_warehouse
from streamlane import metrics
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from tests.integration.test_landing_parse import START_US, enriched_values

FLOW = orders.FLOW


def log_bytes(warehouse: Path) -> int:
    wal = warehouse.with_name(f"{warehouse.name}.wal")
    return wal.stat().st_size if wal.exists() else 0


@contextmanager
def landing_of(
    broker: EmbeddedBroker, warehouse: Path, records: int, live: bool = False, **options: float
) -> Iterator[Landing]:
    """A landing of `records` enriched orders, history (two weeks old) unless `live` (from now)."""
    ensure_topics(broker.bootstrap, FLOW.topics, 1)
    values = enriched_values(records, int(time.time() * 1e6) if live else START_US)
    assert publish(broker.bootstrap, FLOW.enriched.topic, ((None, v) for v in values)) == records
    con = open_warehouse(warehouse)
    con.execute("CHECKPOINT")  # the tables' creation is not what the test looks at
    landing = Landing(con, broker.bootstrap, landed_tables(), **options)
    try:
        yield landing
    finally:
        landing.close()
        con.close()


def checkpoint_count() -> float:
    """Checkpoints the process's landings have run (the metric is the process's)."""
    found = REGISTRY.get_sample_value("streamlane_landing_checkpoint_duration_seconds_count", {})
    return found or 0.0


def land_next(landing: Landing, timeout_s: float = 60) -> int:
    """Records of the next batch the landing writes (waiting for one to be ready)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if landed := landing.poll_once():
            return landed
    raise AssertionError(f"nothing landed within {timeout_s} s")


@pytest.mark.parametrize(
    ("live", "options"),
    [
        (False, {}),
        # Live rows: a dashboard waits for them, so however busy the writer is.
        (True, {"live_checkpoint_busy_share": 0.0}),
    ],
    ids=["keeping up", "busy writer, live rows"],
)
def test_keeping_up_checkpoints_after_the_commit(
    fresh_broker: EmbeddedBroker, tmp_path: Path, live: bool, options: dict[str, float]
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    metrics.LANDING_CHECKPOINT_SECONDS.set(0)  # the process's metric, whoever set it before
    checkpoints_before = checkpoint_count()
    with landing_of(
        fresh_broker, warehouse, 300, live, live_checkpoint_bytes=1, **options
    ) as landing:
        landed = writes = 0
        while landed < 300:
            landed += land_next(landing)
            writes += 1
            # Checked right after the write, before an idle moment could checkpoint.
            assert log_bytes(warehouse) == 0, "a landing that keeps up left its log unsaved"
        rows = landing.con.execute("SELECT count(*) FROM orders_enriched").fetchone()
        assert rows == (300,)
        # Operators see what a checkpoint held writes back for.
        assert REGISTRY.get_sample_value("streamlane_landing_checkpoint_seconds", {}) > 0
        # ...and how often writes waited on one: once after each write that kept up.
        assert checkpoint_count() - checkpoints_before >= writes


@pytest.mark.parametrize(
    ("records", "options"),
    [
        # A backlog: every poll is full.
        (1_000, {"max_batch": 100}),
        # A writer landing history too busy to afford checkpoints: no share of busy time
        # is low enough.
        (300, {"live_checkpoint_busy_share": 0.0}),
    ],
    ids=["backlog", "busy writer, history"],
)
def test_the_log_grows_until_the_landing_is_idle(
    fresh_broker: EmbeddedBroker, tmp_path: Path, records: int, options: dict[str, float]
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with landing_of(
        fresh_broker, warehouse, records, live_checkpoint_bytes=1, **options
    ) as landing:
        landed = land_next(landing)
        assert log_bytes(warehouse) > 0, "a landing that cannot afford it checkpointed"
        if "live_checkpoint_busy_share" in options:
            # Operators see why: the writer's busy share, above the limit.
            assert REGISTRY.get_sample_value("streamlane_landing_busy_share", {}) > 0
        while landed < records:
            landed += land_next(landing)
        # Nothing more to read: a poll finds the landing idle and caught up.
        deadline = time.monotonic() + 30
        while log_bytes(warehouse) > 0 and time.monotonic() < deadline:
            assert landing.poll_once(timeout_s=0.2) == 0
        assert log_bytes(warehouse) == 0, "an idle landing left its log unsaved"


def test_a_live_landing_checkpoints_once_a_table_has_its_rows(
    fresh_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Counted in rows, not log bytes: a checkpoint writes each table's new rows as row groups
    of their own, and DuckDB rewrites small ones together at a later checkpoint."""
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(fresh_broker.bootstrap, FLOW.topics, 1)
    values = enriched_values(200, int(time.time() * 1e6))
    con = open_warehouse(warehouse)
    con.execute("CHECKPOINT")
    landing = Landing(
        con, fresh_broker.bootstrap, landed_tables(),
        live_checkpoint_rows=100, live_checkpoint_bytes=1 << 40,
    )  # fmt: skip
    try:
        new_rows = checkpoints = 0
        for start in range(0, len(values), 40):
            chunk = values[start : start + 40]
            publish(fresh_broker.bootstrap, FLOW.enriched.topic, ((None, v) for v in chunk))
            landed = 0
            while landed < len(chunk):
                # Waiting long enough that no poll finds the landing idle (and checkpoints).
                written = landing.poll_once(timeout_s=60)
                assert written, "nothing landed within 60 s"
                landed += written
                new_rows += written
                if new_rows >= 100:
                    assert log_bytes(warehouse) == 0, f"{new_rows} new rows left unsaved"
                    new_rows, checkpoints = 0, checkpoints + 1
                else:
                    assert log_bytes(warehouse) > 0, f"checkpointed at {new_rows} new rows"
        assert checkpoints >= 1
        assert con.execute("SELECT count(*) FROM orders_enriched").fetchone() == (200,)
    finally:
        landing.close()
        con.close()
