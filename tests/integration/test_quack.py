"""Notebook access over Quack: native types into polars, table listing, read-only, token checked."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from streamlane.connect import connect, tables
from streamlane.query import endpoint_file


def test_connect_reads_native_types_into_polars(endpoint: dict[str, str]) -> None:
    con = connect(warehouse=Path(endpoint["warehouse"]))
    # polars has no interval type: those columns stay in DuckDB (or cast them first).
    frame = con.sql("SELECT * EXCLUDE (waited) FROM warehouse.sample WHERE id < 3 ORDER BY id").pl()
    assert frame.height == 3
    assert frame.schema["ordered_at"] == pl.Datetime("us", "Etc/UTC")
    assert isinstance(frame.schema["amount"], pl.Decimal)
    assert frame["amount"].to_list() == [Decimal("0.00"), Decimal("0.14"), Decimal("0.29")]
    assert frame["even"].to_list() == [True, False, True]
    waited = con.sql("SELECT waited FROM warehouse.sample WHERE id < 3 ORDER BY id").fetchall()
    assert [w for (w,) in waited] == [timedelta(0), timedelta(minutes=1), timedelta(minutes=2)]


def test_tables_lists_the_remote_tables(endpoint: dict[str, str]) -> None:
    con = connect(warehouse=Path(endpoint["warehouse"]))
    assert {"sample", "stores", "orders_enriched", "store_revenue_1m"} <= set(tables(con))


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO warehouse.sample (id) VALUES (-1)",
        "DELETE FROM warehouse.sample",
        "CREATE TABLE warehouse.evil AS SELECT 1",
    ],
)
def test_quack_clients_cannot_write(endpoint: dict[str, str], sql: str) -> None:
    con = connect(warehouse=Path(endpoint["warehouse"]))
    with pytest.raises(duckdb.Error):  # refused by the server's authorization (or client-side)
        con.execute(sql)
    assert con.sql("SELECT count(*) FROM warehouse.sample").fetchone() == (100_000,)


def test_wrong_token_is_refused(endpoint: dict[str, str]) -> None:
    info = json.loads(endpoint_file(Path(endpoint["warehouse"])).read_text())
    with pytest.raises(duckdb.Error, match="Authentication failed"):
        con = connect(f"{info['quack_host']}:{info['quack_port']}", token="not-the-token")
        con.sql("FROM warehouse.sample LIMIT 1").fetchall()
