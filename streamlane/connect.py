"""Notebook access to a running warehouse over Quack: native DuckDB types, straight into polars.

import streamlane.connect as sl
con = sl.connect()                 # the local warehouse started by `streamlane run`
sl.tables(con)                     # remote SHOW TABLES lists nothing over Quack
con.sql("FROM warehouse.store_revenue_1m ORDER BY window_start DESC LIMIT 10").pl()
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import polars as pl

from streamlane.errors import UserError
from streamlane.extensions import load_extensions
from streamlane.query import endpoint_file

DEFAULT_WAREHOUSE = Path(os.environ.get("STREAMLANE_WAREHOUSE", "data/warehouse.duckdb"))
ALIAS = "warehouse"


def connect(
    address: str | None = None,
    token: str | None = None,
    warehouse: Path = DEFAULT_WAREHOUSE,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the running warehouse attached as `warehouse`.

    `address` is `host:port` of the warehouse's Quack endpoint; by default it is read from
    the endpoint file of a local `warehouse`. The token is `token`, else
    STREAMLANE_QUACK_TOKEN, else the one written beside the warehouse. Reads only.
    """
    if address is None:
        announce = endpoint_file(warehouse)
        if not announce.exists():
            raise UserError(f"no running warehouse for {warehouse} (start `streamlane run`)")
        info = json.loads(announce.read_text())
        address = f"{info['quack_host']}:{info['quack_port']}"
    token = token or os.environ.get("STREAMLANE_QUACK_TOKEN")
    if token is None:
        stored = warehouse.with_name(warehouse.name + ".quack-token")
        if not stored.exists():
            raise UserError(
                f"no Quack token: set STREAMLANE_QUACK_TOKEN or pass token= ({stored} is absent)"
            )
        token = stored.read_text().strip()
    con = duckdb.connect()
    load_extensions(con, "httpfs", "quack")
    con.execute("CREATE SECRET warehouse_token (TYPE quack, TOKEN ?)", [token])
    con.execute(f"ATTACH 'quack:{address}' AS {ALIAS} (DISABLE_SSL true)")
    con.execute(f"SET VARIABLE streamlane_quack_uri = 'quack:{address}'")
    return con


def _uri(con: duckdb.DuckDBPyConnection) -> str:
    uri = con.execute("SELECT getvariable('streamlane_quack_uri')").fetchone()
    if uri is None or uri[0] is None:
        raise UserError("this connection was not made by streamlane.connect.connect()")
    return str(uri[0])


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    """Run `sql` on the warehouse server (its own table names, no `warehouse.` prefix).

    Use it for joins and subqueries over warehouse tables: one Quack query cannot stream
    several remote scans at once.
    """
    return con.execute("SELECT * FROM quack_query(?, ?)", [_uri(con), sql]).pl()


def tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the warehouse's tables (asked of the server: remote SHOW TABLES lists nothing)."""
    frame = query(con, "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1")
    return frame["table_name"].to_list()
