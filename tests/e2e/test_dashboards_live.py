"""Grafana's view of a live pipeline, through lib/pq (the driver family of Grafana's PostgreSQL
data source): the connect-time and editor queries it sends, and every panel of every
provisioned dashboard with its macros expanded as Grafana expands them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import psycopg
import pytest
from nbclient import NotebookClient

from dashboards.macros import expand
from streamlane.query import endpoint_file, run_sql
from streamlane.runner import warehouse_threads_under_run
from tests.clients import Answer, run_go
from tests.helpers import stop_run, wait_until

PASSWORD = "dashboards-live"
PROVISIONED = Path(__file__).parents[2] / "dashboards" / "provisioning" / "dashboards"
NUMERIC = {"INT2", "INT4", "INT8", "FLOAT4", "FLOAT8", "NUMERIC"}
GRAFANA_META = {
    "version": "SELECT current_setting('server_version_num')::int/100 as version",
    "timescaledb": "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
}


def _grafana_editor_queries() -> dict[str, str]:
    constraint = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""
    table = "'orders_enriched'"
    return {
        "schemas": 'SELECT schema_name AS "name" FROM information_schema.schemata '
        "WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast') ORDER BY schema_name",
        "tables": f"""SELECT CASE WHEN {constraint} THEN quote_ident(table_name)
            ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS "table"
            FROM information_schema.tables
            WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog')
            ORDER BY CASE WHEN {constraint} THEN 0 ELSE 1 END, 1""",
        "tables_in_schema": 'SELECT quote_ident(table_name) AS "table" FROM information_schema.tables '
        "WHERE quote_ident(table_schema) = 'main' ORDER BY 1",
        "columns": f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
            FROM information_schema.columns
            WHERE CASE WHEN array_length(parse_ident({table}),1) = 2
                THEN quote_ident(table_schema) = (parse_ident({table}))[1]
                  AND quote_ident(table_name) = (parse_ident({table}))[2]
                ELSE quote_ident(table_name) = {table} AND {constraint}
              END""",
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("live")
    warehouse = base / "warehouse.duckdb"
    with open(base / "run.out", "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "streamlane", "run", "--demo", "--flow", "orders",
             "--flow", "clickstream", "--warehouse", str(warehouse),
             "--data-dir", str(base / "data"), "--rate", "200", "--pg-port", "0", "--quack-port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "STREAMLANE_PG_PASSWORD": PASSWORD},
        )  # fmt: skip
    try:

        def count(table: str) -> int:
            if not endpoint_file(warehouse).exists():
                return 0
            return int(run_sql(warehouse, f"SELECT count(*) AS n FROM {table}")["n"][0])

        for table in (
            *("store_revenue_1m", "late_events", "dead_letters", "landing_batches"),
            *("shop_sessions", "shop_conversion_5m", "click_late_events"),
        ):
            wait_until(lambda t=table: count(t) > 0, 120, f"rows in {table}", every_s=1)
        port = json.loads(endpoint_file(warehouse).read_text())["pg_port"]
        address = f"host=127.0.0.1 port={port} dbname=warehouse sslmode=disable"
        yield {"dsn": f"{address} user=streamlane password={PASSWORD}", "warehouse": str(warehouse)}
    finally:
        stop_run(run)


def _panels() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel title, panel type, SQL) for every target of every provisioned dashboard."""
    out = []
    for path in sorted(PROVISIONED.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((board["title"], panel["title"], panel["type"], target["rawSql"]))
    return out


def test_grafana_connect_and_editor_queries(live: dict[str, str], go_client: Path) -> None:
    queries = {**GRAFANA_META, **_grafana_editor_queries()}
    answers = dict(
        zip(
            queries,
            run_go(go_client, live["dsn"], [(q, None) for q in queries.values()]),
            strict=True,
        )
    )
    assert all(a.error is None for a in answers.values()), {
        k: a.error for k, a in answers.items() if a.error
    }
    assert answers["version"].rows == [["1500"]]
    assert answers["timescaledb"].rows == []
    assert ["main"] in answers["schemas"].rows
    for key in ("tables", "tables_in_schema"):
        tables = [r[0] for r in answers[key].rows]
        assert {
            "orders_enriched",
            "store_revenue_1m",
            "dead_letters",
            "late_events",
            "stores",
        } <= set(tables)
    columns = dict(answers["columns"].rows)
    assert columns["event_time"] == "TIMESTAMP WITH TIME ZONE" and "total_usd" in columns


def _check_panel(kind: str, answer: Answer) -> None:
    types = [t.upper() for _, t in answer.columns]
    if kind == "timeseries":
        assert answer.columns[0][0] == "time", "time series need time first"
        assert types[0] in NUMERIC | {"TIMESTAMPTZ", "TIMESTAMP"}
        values = [
            t
            for (name, _), t in zip(answer.columns[1:], types[1:], strict=True)
            if name != "metric"
        ]
        assert values and all(t in NUMERIC for t in values), answer.columns
    elif kind == "stat":
        assert types and all(t in NUMERIC for t in types), answer.columns
    elif kind == "geomap":
        names = [name for name, _ in answer.columns]
        assert "latitude" in names and "longitude" in names
    assert answer.rows, "the panel shows no data over a live pipeline"


def test_every_panel_runs_against_the_live_warehouse(live: dict[str, str], go_client: Path) -> None:
    regions, shops = run_go(
        go_client,
        live["dsn"],
        [
            ("SELECT DISTINCT region FROM stores ORDER BY 1", None),
            ("SELECT shop_name FROM shops ORDER BY 1", None),
        ],
    )
    now = datetime.now(UTC)
    variables = {
        "region": [r[0] for r in regions.rows if r[0]],
        "shop": [r[0] for r in shops.rows if r[0]],
    }
    panels = _panels()
    assert len(panels) >= 21
    since, until = now - timedelta(hours=3), now + timedelta(minutes=5)
    sql = [(expand(q, since, until, variables), None) for _, _, _, q in panels]
    answers = run_go(go_client, live["dsn"], sql)
    for (board, title, kind, _), answer in zip(panels, answers, strict=True):
        assert answer.error is None, f"{board} / {title}: {answer.error}"
        try:
            _check_panel(kind, answer)
        except AssertionError as exc:
            raise AssertionError(f"{board} / {title}: {exc}") from None


def test_notebook_runs_against_the_live_pipeline(
    live: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = nbformat.read(
        Path(__file__).parents[2] / "notebooks" / "explore.ipynb", as_version=4
    )
    monkeypatch.setenv("STREAMLANE_WAREHOUSE", live["warehouse"])
    monkeypatch.setenv("STREAMLANE_PG_PASSWORD", PASSWORD)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    printed = [o.get("text", "") for c in notebook.cells for o in c.get("outputs", [])]
    assert any("windows" in text and "regions" in text for text in printed)


def test_the_warehouse_beside_the_flows_leaves_them_a_core(live: dict[str, str]) -> None:
    """Under `streamlane run` the warehouse's DuckDB has one thread fewer than the cores (at
    least one), unless STREAMLANE_WAREHOUSE_THREADS says otherwise."""
    threads = run_sql(Path(live["warehouse"]), "SELECT current_setting('threads') AS n")["n"][0]
    assert str(threads) == warehouse_threads_under_run()


def test_readers_never_see_half_a_landing_batch(live: dict[str, str]) -> None:
    """Each enriched record is one row (the flow dedupes), landed in the same transaction as its
    offset: in any snapshot the row count equals the enriched topic's landed offsets."""
    snapshot = (
        "SELECT (SELECT count(*) FROM orders_enriched), "
        "(SELECT sum(next_offset) FROM landing_offsets WHERE topic = 'pizza.orders.enriched')"
    )
    with psycopg.connect(live["dsn"], autocommit=True) as conn:
        seen = set()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            rows, offsets = conn.execute(snapshot).fetchone()
            assert rows == offsets, f"a query saw {rows} rows for {offsets} landed records"
            seen.add(rows)
    assert len(seen) > 1, "the landing did not move while the test watched"
