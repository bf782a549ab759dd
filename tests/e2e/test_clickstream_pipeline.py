"""End to end: generated clicks through the real broker, the clickstream flow and the warehouse,
checked against a DuckDB SQL oracle: exact sessions (30-minute gap) per visitor, exact hopping
windows (5 minutes every minute) per shop, late clicks per missed window, dead letters.

The answer does not depend on how partitions interleave: events out of order stay well
inside the lateness, one click per shop far after the stream moves the watermark past every
window of it, and the far-too-late clicks are produced only after all those were emitted.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flows.clickstream import FLOW
from generators.clickstream import SHOPS, Generator
from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratedRecord, GeneratorSettings
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.helpers import Processes, wait_until
from tests.pipeline import (
    assert_outputs_follow_their_schemas,
    count,
    event_id,
    oracle_query,
    start_warehouse,
)

LATENESS_S = 5.0
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TABLE_KEYS = {
    "clicks_enriched": "event_id",
    "shop_sessions": "shop_id, visitor_id, window_start",
    "shop_conversion_5m": "shop_id, window_start",
    "click_late_events": 'event_id, "window", window_start',
}


def click_stream() -> tuple[list[GeneratedRecord], list[GeneratedRecord], list[GeneratedRecord]]:
    """(main stream, one click per shop two hours after it, held-back far-too-late clicks)."""
    settings = GeneratorSettings(
        seed=20261201, count=6000, start=START, events_per_second=1.0, lateness_s=LATENESS_S,
        too_late=0.004,
    )  # fmt: skip
    records = list(Generator(settings))
    main = [r for r in records if r.kind != "too_late"]
    too_late = [r for r in records if r.kind == "too_late"]
    kinds = Counter(r.kind for r in main)
    assert kinds["duplicate"] and kinds["malformed"] and kinds["out_of_order"] and too_late
    end = max(r.event_time for r in main if r.event_time is not None)
    after = end + timedelta(hours=2)
    closing = []
    for shop in range(1, SHOPS + 1):
        event = {
            "specversion": "1.0", "id": f"closing-{shop}", "source": "tests", "type": "shop.click.v1",
            "time": after.isoformat().replace("+00:00", "Z"),
            "data": {"visitor_id": "v-closing", "shop_id": shop, "action": "page_view", "page": "/"},
        }  # fmt: skip
        value = json.dumps(event).encode()
        closing.append(GeneratedRecord(str(shop).encode(), value, "valid", after))
    return main, closing, too_late


ORACLE_EVENTS = f"""
    WITH raw_events AS (
        SELECT value->>'id' AS event_id, seq, CAST(value->>'time' AS TIMESTAMPTZ) AS t,
               CAST(value->'data'->>'shop_id' AS BIGINT) AS shop_id,
               value->'data'->>'visitor_id' AS visitor_id, value->'data'->>'action' AS action,
               value->'data'->>'page' AS page, CAST(value->'data'->>'amount' AS DOUBLE) AS amount
        FROM raw WHERE kind IN ('valid', 'out_of_order')
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1
    ), events AS (
        SELECT e.* FROM raw_events e JOIN read_csv('{REFERENCE_DIR / "shops.csv"}') s USING (shop_id)
    )
"""

ORACLE_SESSIONS = (
    ORACLE_EVENTS
    + """
    , gaps AS (
        SELECT *, coalesce(t - lag(t) OVER w >= INTERVAL 30 MINUTE, true)::INT AS starts_session
        FROM events WINDOW w AS (PARTITION BY shop_id, visitor_id ORDER BY t)
    ), numbered AS (
        SELECT *, sum(starts_session) OVER (
            PARTITION BY shop_id, visitor_id ORDER BY t, starts_session DESC
            ROWS UNBOUNDED PRECEDING) AS session
        FROM gaps
    )
    SELECT shop_id, visitor_id, min(t) AS window_start,
           max(t) + INTERVAL 30 MINUTE AS window_end, count(*) AS events,
           count(*) FILTER (action = 'page_view') AS page_views,
           count(*) FILTER (action = 'add_to_cart') AS add_to_carts,
           count(*) FILTER (action = 'checkout') AS checkouts, count(DISTINCT page) AS pages,
           coalesce(sum(amount) FILTER (action = 'checkout'), 0) AS revenue,
           epoch(max(t) - min(t)) AS duration_s,
           count(*) FILTER (action = 'checkout') > 0 AS converted
    FROM numbered GROUP BY shop_id, visitor_id, session
    ORDER BY shop_id, visitor_id, window_start
"""
)

ORACLE_CONVERSION = (
    ORACLE_EVENTS
    + """
    , windowed AS (
        SELECT e.*, ws AS window_start
        FROM events e, unnest(generate_series(
            to_timestamp(floor(epoch(t) / 60) * 60) - INTERVAL 4 MINUTE,
            to_timestamp(floor(epoch(t) / 60) * 60), INTERVAL 1 MINUTE)) AS u(ws)
    )
    SELECT shop_id, window_start, window_start + INTERVAL 5 MINUTE AS window_end,
           count(DISTINCT visitor_id) AS visitors,
           count(DISTINCT visitor_id) FILTER (action = 'checkout') AS buyers,
           count(*) FILTER (action = 'page_view') AS page_views,
           count(DISTINCT visitor_id) FILTER (action = 'checkout') / count(DISTINCT visitor_id)
               AS conversion_rate,
           avg(amount) FILTER (action = 'checkout') AS checkout_mean,
           min(amount) FILTER (action = 'checkout') AS checkout_min,
           max(amount) FILTER (action = 'checkout') AS checkout_max,
           list(amount ORDER BY amount) FILTER (action = 'checkout') AS checkouts
    FROM windowed GROUP BY ALL ORDER BY shop_id, window_start
"""
)


def assert_same(actual: pl.DataFrame, expected: pl.DataFrame, exact: list[str], close: list[str]):
    assert actual.height == expected.height, "window count differs from the oracle"
    for col in exact:
        got, want = actual[col], expected[col]
        if got.dtype == pl.Datetime("us", "UTC"):
            got, want = got.dt.epoch("us"), want.dt.epoch("us")
        assert got.to_list() == want.to_list(), col
    for col in close:
        for a, e in zip(actual[col].to_list(), expected[col].to_list(), strict=True):
            assert (a is None and e is None) or math.isclose(a, e, rel_tol=1e-9), (col, a, e)


def assert_percentiles(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    checked = 0
    for got, values in zip(actual.iter_rows(named=True), expected["checkouts"], strict=True):
        for q in (0.5, 0.95, 0.99):
            reported = got[f"checkout_p{100 * q:g}"]
            if values is None:
                assert reported is None
                continue
            true = sorted(values)[math.floor(q * (len(values) - 1) + 1e-9)]
            assert abs(reported - true) <= 0.01 * true * 1.0001, (got, q, true)
            checked += 1
    assert checked > 100, "too few windows with checkouts to check the percentiles"


def _unknown_shop(record: GeneratedRecord) -> bool:
    try:
        return json.loads(record.value)["data"]["shop_id"] == SHOPS + 100
    except (ValueError, KeyError):
        return False


@pytest.mark.timeout(420)
def test_clickstream_pipeline_matches_oracle(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, FLOW.topics, 4)
    main, closing, too_late = click_stream()
    publish(brokers, FLOW.input_topic, [(r.key, r.value) for r in main + closing])
    start_warehouse(processes, brokers, warehouse)
    processes.start(
        "flow", "flow", "run", "clickstream", "--brokers", brokers,
        "--recovery-dir", str(tmp_path / "recovery"), "--lateness", str(LATENESS_S),
        "--idle-timeout", "4",
    )  # fmt: skip

    sessions = oracle_query(main, ORACLE_SESSIONS)
    conversion = oracle_query(main, ORACLE_CONVERSION)
    assert sessions.filter(pl.col("visitor_id").is_duplicated()).height, "visitors came back"
    for table, expected in (("shop_sessions", sessions), ("shop_conversion_5m", conversion)):
        wait_until(
            lambda t=table, n=expected.height: count(warehouse, t) >= n,
            180, f"every window of {table} to land", every_s=1,
        )  # fmt: skip
    # Only now do the far-too-late clicks arrive: every window they belong to is closed.
    publish(brokers, FLOW.input_topic, [(r.key, r.value) for r in too_late])
    late_ids = {event_id(r) for r in too_late}
    malformed = [r for r in main if r.kind == "malformed"]
    unique_ids = {event_id(r) for r in main if r.kind in ("valid", "out_of_order")}
    # A click misses its session and each of the five hopping windows it falls in.
    wait_until(
        lambda: count(warehouse, "click_late_events") >= 6 * len(late_ids), 120, "late clicks"
    )
    wait_until(lambda: count(warehouse, "dead_letters") >= len(malformed), 60, "dead letters")

    for table, key in TABLE_KEYS.items():
        counted = run_sql(
            warehouse, f"SELECT count(*) AS n, count(DISTINCT ({key})) AS k FROM {table}"
        )
        assert counted["n"][0] == counted["k"][0], f"{table} holds a key twice"
    enriched = run_sql(warehouse, "SELECT event_id, shop_name FROM clicks_enriched")
    dead = run_sql(warehouse, 'SELECT raw, reason FROM dead_letters ORDER BY "offset"')
    misses = [r for r in malformed if _unknown_shop(r)]
    closing_ids = {f"closing-{s}" for s in range(1, SHOPS + 1)}
    assert set(enriched["event_id"]) == unique_ids | late_ids | closing_ids
    assert enriched["shop_name"].null_count() == 0
    assert Counter(dead["raw"].to_list()) == Counter(r.value for r in malformed)
    assert dead.filter(pl.col("reason").str.starts_with("unknown shop_id")).height == len(misses)
    assert misses, "enrichment misses are dead letters too"

    got_sessions = run_sql(
        warehouse, f"SELECT * FROM shop_sessions ORDER BY {TABLE_KEYS['shop_sessions']}"
    )
    assert_same(
        got_sessions, sessions,
        exact=["shop_id", "visitor_id", "window_start", "window_end", "events", "page_views",
               "add_to_carts", "checkouts", "pages", "converted"],
        close=["revenue", "duration_s"],
    )  # fmt: skip
    got_conversion = run_sql(
        warehouse, f"SELECT * FROM shop_conversion_5m ORDER BY {TABLE_KEYS['shop_conversion_5m']}"
    )
    assert_same(
        got_conversion, conversion,
        exact=["shop_id", "window_start", "window_end", "visitors", "buyers", "page_views",
               "checkout_min", "checkout_max"],
        close=["conversion_rate", "checkout_mean"],
    )  # fmt: skip
    assert_percentiles(got_conversion, conversion)

    late = run_sql(
        warehouse, 'SELECT event_id, "window", window_end, watermark FROM click_late_events'
    )
    assert set(late["event_id"]) == late_ids
    assert Counter(late["window"]) == {
        "sessions": len(late_ids),
        "conversion_5m": 5 * len(late_ids),
    }
    assert (late["window_end"] <= late["watermark"]).all(), "a late click's window had closed"
    assert_outputs_follow_their_schemas(brokers, FLOW)
