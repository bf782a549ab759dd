"""End to end: generated orders through the real broker, flow and warehouse, checked against a SQL oracle.

The expected answer does not depend on how partitions interleave: events out of
order stay well inside the lateness on their own partition, and the far-too-late
events are produced only after every window of the main stream was emitted.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratedRecord, GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.helpers import Processes, wait_until

LATENESS_S = 5.0
IDLE_S = 4.0
START = datetime(2026, 11, 2, 11, 50, tzinfo=UTC)


def _stream() -> tuple[list[GeneratedRecord], list[GeneratedRecord]]:
    """Main stream cut just before a minute boundary, and the held-back far-too-late events."""
    settings = GeneratorSettings(
        seed=20261123, count=7000, start=START, lateness_s=LATENESS_S, too_late=0.004
    )
    records = list(OrderGenerator(settings))
    clock_times = [r.event_time for r in records if r.kind == "valid"]
    boundary = clock_times[-1].replace(second=0, microsecond=0)
    # Keep records up to the last in-order event before the boundary, so the last
    # window closes soon after the partitions go idle.
    last = max(i for i, r in enumerate(records) if r.kind == "valid" and r.event_time < boundary)
    kept = records[: last + 1]
    main = [r for r in kept if r.kind != "too_late"]
    too_late = [r for r in kept if r.kind == "too_late"]
    return main, too_late


def _oracle(records: list[GeneratedRecord]) -> pl.DataFrame:
    """Per store and minute: the expected window, by plain DuckDB SQL over the raw events."""
    raw = pl.DataFrame(
        {
            "seq": list(range(len(records))),
            "value": [r.value.decode("utf-8", "replace") for r in records],
            "kind": [r.kind for r in records],
        }
    )
    con = duckdb.connect()
    con.register("raw", raw.to_arrow())
    return con.execute(
        f"""
        WITH events AS (
            SELECT value->>'id' AS id, seq,
                   CAST(value->>'time' AS TIMESTAMPTZ) AS t,
                   CAST(value->'data'->>'store_id' AS BIGINT) AS store_id,
                   CAST(value->'data'->>'total' AS DOUBLE) AS total,
                   value->'data'->>'currency' AS currency,
                   (SELECT sum(CAST(i->>'qty' AS BIGINT))
                      FROM unnest(CAST(value->'data'->'items' AS JSON[])) AS u(i)) AS qty
            FROM raw WHERE kind IN ('valid', 'out_of_order')
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq) = 1
        ), priced AS (
            SELECT e.*, e.total * fx.usd_rate AS total_usd,
                   to_timestamp(floor(epoch(e.t) / 60) * 60) AS window_start
            FROM events e JOIN read_csv('{REFERENCE_DIR / "fx_rates.csv"}') fx USING (currency)
        )
        SELECT store_id, window_start, window_start + INTERVAL 1 MINUTE AS window_end,
               count(*) AS orders, sum(qty) AS items, sum(total_usd) AS revenue_usd,
               sum(total_usd) / count(*) AS avg_order_usd, max(total_usd) AS max_order_usd
        FROM priced GROUP BY ALL ORDER BY store_id, window_start
        """
    ).pl()


def _count(warehouse: Path, table: str) -> int:
    return int(run_sql(warehouse, f"SELECT count(*) AS n FROM {table}")["n"][0])


def _snapshot(warehouse: Path) -> dict[str, pl.DataFrame]:
    keys = {
        "orders_enriched": "event_id",
        "store_revenue_1m": "store_id, window_start",
        "dead_letters": 'topic, "partition", "offset"',
        "late_events": "event_id",
    }
    return {t: run_sql(warehouse, f"SELECT * FROM {t} ORDER BY {k}") for t, k in keys.items()}


def _assert_close(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert actual.height == expected.height, "window count differs from the oracle"
    for col in ("store_id", "orders", "items"):
        assert actual[col].to_list() == expected[col].to_list(), col
    for col in ("window_start", "window_end"):
        assert actual[col].dt.epoch("us").to_list() == expected[col].dt.epoch("us").to_list(), col
    for col in ("revenue_usd", "avg_order_usd", "max_order_usd"):
        for a, e in zip(actual[col].to_list(), expected[col].to_list(), strict=True):
            assert math.isclose(a, e, rel_tol=1e-9), (col, a, e)


@pytest.mark.timeout(420)
def test_orders_pipeline_matches_oracle(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, orders.TOPICS, 4)
    main, too_late = _stream()
    kinds = Counter(r.kind for r in main)
    assert kinds["duplicate"] and kinds["malformed"] and kinds["out_of_order"] and too_late
    publish(brokers, orders.INPUT_TOPIC, [(r.key, r.value) for r in main])

    common = ["--brokers", brokers]
    processes.start("warehouse", "serve", *common, "--warehouse", str(warehouse))
    processes.start(
        "flow", "flow", "run", "orders", *common,
        "--recovery-dir", str(tmp_path / "recovery"),
        "--lateness", str(LATENESS_S), "--idle-timeout", str(IDLE_S),
    )  # fmt: skip

    expected_windows = _oracle(main)
    valid = [r for r in main if r.kind in ("valid", "out_of_order")]
    unique_ids = {r.value.split(b'"id":"')[1].split(b'"')[0].decode() for r in valid}
    malformed = [r for r in main if r.kind == "malformed"]

    wait_until(
        lambda: warehouse.with_name(warehouse.name + ".endpoint.json").exists(), 60, "warehouse"
    )
    wait_until(
        lambda: _count(warehouse, "store_revenue_1m") >= expected_windows.height,
        180,
        "every window of the main stream to land",
        every_s=1,
    )
    # Only now do the far-too-late events arrive: their windows are long closed.
    publish(brokers, orders.INPUT_TOPIC, [(r.key, r.value) for r in too_late])
    late_ids = {r.value.split(b'"id":"')[1].split(b'"')[0].decode() for r in too_late}
    wait_until(
        lambda: _count(warehouse, "late_events") >= len(late_ids), 120, "late events", every_s=1
    )
    wait_until(
        lambda: _count(warehouse, "orders_enriched") >= len(unique_ids | late_ids),
        120,
        "enriched orders",
        every_s=1,
    )
    wait_until(
        lambda: _count(warehouse, "dead_letters") >= len(malformed), 60, "dead letters", every_s=1
    )

    before = _snapshot(warehouse)
    enriched_ids = set(before["orders_enriched"]["event_id"].to_list())
    assert enriched_ids == unique_ids | late_ids
    assert set(before["late_events"]["event_id"].to_list()) == late_ids
    assert Counter(before["dead_letters"]["raw"].to_list()) == Counter(r.value for r in malformed)
    assert before["dead_letters"]["reason"].null_count() == 0
    unknown_store = before["dead_letters"].filter(
        pl.col("reason").str.starts_with("unknown store_id")
    )
    assert unknown_store.height > 0, "enrichment misses are dead letters too"
    _assert_close(before["store_revenue_1m"], expected_windows)
    late = before["late_events"]
    assert (late["window_end"] <= late["watermark"]).all(), "a late event's window had closed"
    offsets = run_sql(warehouse, 'SELECT * FROM landing_offsets ORDER BY topic, "partition"')

    # Landing again over the same topics changes nothing.
    processes.stop(processes.running[0])
    con = duckdb.connect(str(warehouse))
    con.execute("DELETE FROM landing_offsets")
    con.close()
    again = processes.start("warehouse-again", "serve", *common, "--warehouse", str(warehouse))
    wait_until(
        lambda: warehouse.with_name(warehouse.name + ".endpoint.json").exists(), 60, "warehouse"
    )
    wait_until(
        lambda: run_sql(
            warehouse, 'SELECT * FROM landing_offsets ORDER BY topic, "partition"'
        ).equals(offsets),
        120,
        "the replayed landing to catch up",
        every_s=1,
    )
    after = _snapshot(warehouse)
    for table, frame in before.items():
        assert after[table].equals(frame), f"{table} changed when landing again"
    processes.stop(again)
