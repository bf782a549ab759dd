"""psql, psycopg, JDBC and Go lib/pq give the same answers for the same queries.

Text values are the server's own encoding for psql and JDBC, so they must match to
the byte; lib/pq turns timestamps and booleans into Go values before they reach
us, so its answers are compared after normalizing those two.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg

from tests.clients import run_go, run_jdbc
from tests.integration.conftest import PASSWORD, dsn

TYPED = "SELECT id, name, ordered_at, amount, waited, even, maybe, half FROM sample WHERE id < 12 ORDER BY id"
BY_NAME = "SELECT id, name, amount FROM sample WHERE name = $1"
EMPTY = "SELECT id, name FROM sample WHERE id < 0"
ALL_ROWS = "SELECT id, ordered_at, amount, maybe FROM sample ORDER BY id"
QUERIES: list[tuple[str, str | None]] = [
    (TYPED, None),
    (BY_NAME, "name 4242"),
    (EMPTY, None),
    (ALL_ROWS, None),
]
EXPECTED_TYPES = {
    "id": "INT8", "name": "TEXT", "ordered_at": "TIMESTAMPTZ", "amount": "NUMERIC",
    "waited": "INTERVAL", "even": "BOOL", "maybe": "INT4", "half": "FLOAT8",
}  # fmt: skip


def psql_rows(ep: dict[str, str], sql: str) -> list[list[str | None]]:
    done = subprocess.run(
        ["psql", "-h", ep["host"], "-p", ep["port"], "-U", "streamlane", "-d", "w", "-X", "-A",
         "-t", "-F", "\t", "-P", "null=\\N", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": PASSWORD}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [
        [None if v == "\\N" else v for v in line.split("\t")] for line in done.stdout.splitlines()
    ]


def _normal(value: str | None) -> object:
    """lib/pq hands timestamps, booleans and floats over as Go values; compare those as values."""
    if value in ("t", "true"):
        return True
    if value in ("f", "false"):
        return False
    if value is not None and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value is not None and re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", value):
        return float(value)
    return value


def test_jdbc_and_psql_agree_byte_for_byte(
    endpoint: dict[str, str], go_client: Path, jdbc_client: Path
) -> None:
    answers = run_jdbc(jdbc_client, endpoint["host"], endpoint["port"], PASSWORD, QUERIES)
    assert [a.error for a in answers] == [None] * 4
    typed, by_name, empty, everything = answers
    assert typed.rows == psql_rows(endpoint, TYPED)
    assert (
        by_name.rows
        == psql_rows(endpoint, BY_NAME.replace("$1", "'name 4242'"))
        == [["4242", "name 4242", "606.00"]]
    )
    assert empty.rows == [] and [c for c, _ in empty.columns] == ["id", "name"]
    assert len(everything.rows) == 100_000
    assert everything.rows == psql_rows(endpoint, ALL_ROWS)
    assert {name: kind.upper() for name, kind in typed.columns} == {
        "id": "INT8", "name": "TEXT", "ordered_at": "TIMESTAMPTZ", "amount": "NUMERIC",
        "waited": "INTERVAL", "even": "BOOL", "maybe": "INT4", "half": "FLOAT8",
    }  # fmt: skip


def test_go_lib_pq_agrees(endpoint: dict[str, str], go_client: Path, jdbc_client: Path) -> None:
    answers = run_go(go_client, dsn(endpoint) + " sslmode=disable", QUERIES)
    assert [a.error for a in answers] == [None] * 4
    typed, by_name, empty, everything = answers
    assert dict(typed.columns) == EXPECTED_TYPES
    expected = psql_rows(endpoint, TYPED)
    assert [[_normal(v) for v in row] for row in typed.rows] == [
        [_normal(v) for v in row] for row in expected
    ]
    assert by_name.rows == [["4242", "name 4242", "606.00"]]
    assert empty.rows == []
    assert len(everything.rows) == 100_000 and everything.rows[-1][0] == "99999"


def test_psycopg_agrees(endpoint: dict[str, str]) -> None:
    with psycopg.connect(dsn(endpoint)) as conn:
        rows = conn.execute(TYPED.replace("$1", "%s")).fetchall()
    expected = psql_rows(endpoint, TYPED)
    assert [str(r[0]) for r in rows] == [r[0] for r in expected]
    assert [r[2] for r in rows] == [_normal(r[2]) for r in expected]
    assert [None if r[6] is None else str(r[6]) for r in rows] == [r[6] for r in expected]


def test_errors_carry_sqlstate_in_every_client(
    endpoint: dict[str, str], go_client: Path, jdbc_client: Path
) -> None:
    bad = [("SELECT * FROM no_such_table", None), ("DELETE FROM sample", None)]
    for answers in (
        run_go(go_client, dsn(endpoint) + " sslmode=disable", bad),
        run_jdbc(jdbc_client, endpoint["host"], endpoint["port"], PASSWORD, bad),
    ):
        assert [a.error.split()[0] if a.error else None for a in answers] == ["42P01", "25006"], (
            answers
        )


def test_polars_read_database_uri_agrees(endpoint: dict[str, str]) -> None:
    """polars' default engine (connectorx) reads with binary COPY; it has no interval type."""
    uri = f"postgresql://streamlane:{PASSWORD}@{endpoint['host']}:{endpoint['port']}/warehouse"
    columns = "id, name, ordered_at, amount, even, maybe, half"
    frame = pl.read_database_uri(f"SELECT {columns} FROM sample WHERE id < 12 ORDER BY id", uri)
    expected = psql_rows(endpoint, f"SELECT {columns} FROM sample WHERE id < 12 ORDER BY id")
    assert frame["id"].to_list() == [int(r[0]) for r in expected]
    assert frame["name"].to_list() == [r[1] for r in expected]
    assert [t.replace(tzinfo=dt.UTC) for t in frame["ordered_at"].to_list()] == [
        _normal(r[2]) for r in expected
    ]
    # connectorx reads NUMERIC with its own scale: compare the values.
    assert frame["amount"].to_list() == [Decimal(r[3]) for r in expected]
    assert frame["maybe"].to_list() == [None if r[5] is None else int(r[5]) for r in expected]
    everything = pl.read_database_uri("SELECT id, ordered_at, amount FROM sample", uri)
    assert everything.height == 100_000
