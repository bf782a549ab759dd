"""The orders e2e stream, its SQL oracle, and the checks both e2e tests make on the warehouse.

The expected answer does not depend on how partitions interleave: events out of
order stay well inside the lateness on their own partition, and the far-too-late
events are produced only after every window of the main stream was emitted.
"""

from __future__ import annotations

import math
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from flows import orders
from streamlane.generator import GeneratedRecord, GeneratorSettings, OrderGenerator
from streamlane.paths import REFERENCE_DIR
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.helpers import Processes, wait_until
from tests.pipeline import count, event_id, oracle_query

LATENESS_S = 5.0
START = datetime(2026, 11, 2, 11, 50, tzinfo=UTC)
TABLE_KEYS = {
    "orders_enriched": "event_id",
    "store_revenue_1m": "store_id, window_start",
    "dead_letters": 'topic, "partition", "offset"',
    "late_events": "event_id",
}


def order_stream(count: int = 7000) -> tuple[list[GeneratedRecord], list[GeneratedRecord]]:
    """Main stream cut just before a minute boundary, and the held-back far-too-late events."""
    settings = GeneratorSettings(
        seed=20261123, count=count, start=START, lateness_s=LATENESS_S, too_late=0.004
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
    kinds = Counter(r.kind for r in main)
    assert kinds["duplicate"] and kinds["malformed"] and kinds["out_of_order"] and too_late
    return main, too_late


def oracle_windows(records: list[GeneratedRecord]) -> pl.DataFrame:
    """Per store and minute: the expected window, by plain DuckDB SQL over the raw events."""
    return oracle_query(
        records,
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
        """,
    )


def snapshot(warehouse: Path) -> dict[str, pl.DataFrame]:
    """Every warehouse table, ordered by its key."""
    return {t: run_sql(warehouse, f"SELECT * FROM {t} ORDER BY {k}") for t, k in TABLE_KEYS.items()}


def assert_windows_match(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert actual.height == expected.height, "window count differs from the oracle"
    for col in ("store_id", "orders", "items"):
        assert actual[col].to_list() == expected[col].to_list(), col
    for col in ("window_start", "window_end"):
        assert actual[col].dt.epoch("us").to_list() == expected[col].dt.epoch("us").to_list(), col
    for col in ("revenue_usd", "avg_order_usd", "max_order_usd"):
        for a, e in zip(actual[col].to_list(), expected[col].to_list(), strict=True):
            assert math.isclose(a, e, rel_tol=1e-9), (col, a, e)


def start_flow(
    processes: Processes, brokers: str, recovery: Path, *extra: str, name: str = "flow"
) -> subprocess.Popen[bytes]:
    return processes.start(
        name, "flow", "run", "orders", "--brokers", brokers, "--recovery-dir", str(recovery),
        "--lateness", str(LATENESS_S), *extra,
    )  # fmt: skip


def finish_and_check(
    brokers: str, warehouse: Path, main: list[GeneratedRecord], too_late: list[GeneratedRecord]
) -> dict[str, pl.DataFrame]:
    """Wait for the main stream's windows, send the too-late events, then check every table.

    Returns the warehouse snapshot the checks were made on.
    """
    expected_windows = oracle_windows(main)
    unique_ids = {event_id(r) for r in main if r.kind in ("valid", "out_of_order")}
    late_ids = {event_id(r) for r in too_late}
    malformed = [r for r in main if r.kind == "malformed"]
    wait_until(
        lambda: count(warehouse, "store_revenue_1m") >= expected_windows.height,
        180,
        "every window of the main stream to land",
        every_s=1,
    )
    # Only now do the far-too-late events arrive: their windows are long closed.
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in too_late])
    for table, expected in (
        ("late_events", len(late_ids)),
        ("orders_enriched", len(unique_ids | late_ids)),
        ("dead_letters", len(malformed)),
    ):
        wait_until(lambda t=table, n=expected: count(warehouse, t) >= n, 120, table, every_s=1)

    tables = snapshot(warehouse)
    for table, key in TABLE_KEYS.items():
        counted = run_sql(
            warehouse, f"SELECT count(*) AS n, count(DISTINCT ({key})) AS k FROM {table}"
        )
        assert counted["n"][0] == counted["k"][0], f"{table} holds a key twice"
    assert set(tables["orders_enriched"]["event_id"].to_list()) == unique_ids | late_ids
    assert set(tables["late_events"]["event_id"].to_list()) == late_ids
    dead = tables["dead_letters"]
    assert Counter(dead["raw"].to_list()) == Counter(r.value for r in malformed)
    assert dead["reason"].null_count() == 0
    assert dead.filter(pl.col("reason").str.starts_with("unknown store_id")).height > 0, (
        "enrichment misses are dead letters too"
    )
    assert_windows_match(tables["store_revenue_1m"], expected_windows)
    late = tables["late_events"]
    assert (late["window_end"] <= late["watermark"]).all(), "a late event's window had closed"
    return tables
