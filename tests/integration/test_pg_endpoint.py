"""The warehouse's PostgreSQL endpoint with real clients: psql and psycopg 3 (text, prepared, binary).

The warehouse runs as `streamlane serve`, the same process and code path as in the pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import struct
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest

from streamlane.query import endpoint_file
from tests.helpers import Processes, wait_until
from tests.integration.conftest import PASSWORD, dsn


def psql(
    ep: dict[str, str], *args: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": password}
    return subprocess.run(
        ["psql", "-h", ep["host"], "-p", ep["port"], "-U", "streamlane", "-d", "warehouse",
         "-X", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


QUERY = (
    "SELECT id, name, ordered_at, amount, waited, even, maybe, half"
    " FROM sample WHERE name = %s OR id < 2 ORDER BY id"
)
UTC_NOON = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
EXPECTED = [
    (0, "name 0", UTC_NOON, Decimal("0.00"), dt.timedelta(0), True, None, 0.0),
    (
        1,
        "name 1",
        UTC_NOON + dt.timedelta(seconds=1),
        Decimal("0.14"),
        dt.timedelta(minutes=1),
        False,
        1,
        0.5,
    ),
    (
        50,
        "name 50",
        UTC_NOON + dt.timedelta(seconds=50),
        Decimal("7.14"),
        dt.timedelta(minutes=50),
        True,
        None,
        25.0,
    ),
]


@pytest.mark.parametrize("mode", ["simple", "prepared", "binary"])
def test_psycopg_reads_every_type_in_each_mode(endpoint: dict[str, str], mode: str) -> None:
    with psycopg.connect(dsn(endpoint)) as conn, conn.cursor(binary=mode == "binary") as cur:
        for _ in range(2):  # the second prepared run uses the server-side statement
            cur.execute(QUERY, ("name 50",), prepare=mode == "prepared")
            assert cur.fetchall() == EXPECTED
        cur.execute("SELECT * FROM sample WHERE id < 0")
        assert cur.fetchall() == []
        assert [d.name for d in cur.description][:2] == ["id", "name"]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_bit_strings_and_big_numbers_arrive_as_postgresql_types(
    endpoint: dict[str, str], binary: bool
) -> None:
    """DuckDB's BIT and BIGNUM reach the server as their stored bytes: they go out as `bit
    varying` and `numeric` (a bit string was sent as bytea, a big number as a Python repr)."""
    sql = (
        "SELECT '101'::BIT AS b, '-123456789012345678901234567890'::VARINT AS v, "
        "0::VARINT AS z, '12'::VARINT AS p"
    )
    with psycopg.connect(dsn(endpoint)) as conn, conn.cursor(binary=binary) as cur:
        row = cur.execute(sql).fetchone()
        assert [d.type_code for d in cur.description] == [1562, 1700, 1700, 1700]
    assert row is not None
    # bit varying in binary: its length in bits, then the bits, padded at the end.
    assert row[0] == (b"\x00\x00\x00\x03\xa0" if binary else "101")
    assert row[1:] == (Decimal("-123456789012345678901234567890"), Decimal(0), Decimal(12))
    shown = psql(endpoint, "-A", "-t", "-c", sql)
    assert shown.stdout.strip() == "101|-123456789012345678901234567890|0|12", shown.stderr


def test_psycopg_large_result_and_parameters(endpoint: dict[str, str]) -> None:
    with psycopg.connect(dsn(endpoint)) as conn:
        rows = conn.execute("SELECT id, ordered_at FROM sample ORDER BY id").fetchall()
        assert len(rows) == 100_000 and rows[-1][0] == 99_999
        got = conn.execute(
            "SELECT %s::TIMESTAMPTZ + INTERVAL 1 HOUR, %s::DECIMAL(10, 2) * 2, %s + 1, %s IS NULL",
            (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), Decimal("1.25"), 41, None),
        ).fetchone()
        assert got == (dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC), Decimal("2.50"), 42, True)


def test_psql_session_and_catalog_queries(endpoint: dict[str, str]) -> None:
    out = psql(
        endpoint, "-A", "-t", "-q",
        "-c", "SELECT current_setting('server_version_num')::int/100 AS version",
        "-c", "SHOW server_version_num",
        "-c", "SET extra_float_digits = 3",
        "-c", "SELECT version()",
        "-c", ";",
        "-c", "-- ping",
        "-c", "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'timescaledb'",
        "-c", "SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_name = 'sample'",
        "-c", "SELECT parse_ident('main.sample')",
        "-c", "BEGIN", "-c", "SELECT count(*) FROM sample", "-c", "COMMIT",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line]
    assert lines[0] == "1500"
    assert lines[1] == "150000"
    assert lines[2].startswith("PostgreSQL 15.0")
    assert "sample" in lines and "{main,sample}" in lines and "100000" in lines


@pytest.mark.parametrize(
    ("sql", "state"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "42501"),
        ("ATTACH '/tmp/other.duckdb' AS other", "25006"),
        ("INSTALL httpfs", "25006"),
        ("LOAD httpfs", "25006"),
        ("COPY sample TO '/tmp/sample.csv'", "25006"),
        ("INSERT INTO sample (id) VALUES (-1)", "25006"),
        ("DELETE FROM sample", "25006"),
        ("CREATE TABLE evil AS SELECT 1", "25006"),
        ("SELECT * FROM nowhere", "42P01"),
        ("SELEC 1", "42601"),
    ],
)
def test_read_only_client_is_refused_with_sqlstate(
    endpoint: dict[str, str], sql: str, state: str
) -> None:
    with psycopg.connect(dsn(endpoint), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(sql)
        assert refused.value.sqlstate == state
        assert conn.execute("SELECT count(*) FROM sample").fetchone() == (100_000,)


@pytest.mark.parametrize(
    "sql", ["SET GLOBAL threads = 1", "PRAGMA threads = 1", "RESET GLOBAL threads"]
)
def test_server_settings_cannot_change(endpoint: dict[str, str], sql: str) -> None:
    threads = "SELECT value FROM duckdb_settings() WHERE name = 'threads'"
    with psycopg.connect(dsn(endpoint), autocommit=True) as conn:
        before = conn.execute(threads).fetchone()
        with pytest.raises(psycopg.Error):
            conn.execute(sql)
        assert conn.execute(threads).fetchone() == before


def test_wrong_password_is_refused(endpoint: dict[str, str]) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(dsn(endpoint, password="wrong"))
    assert "password authentication failed" in str(refused.value)
    assert psql(endpoint, "-c", "SELECT 1", password="wrong").returncode != 0


def test_malformed_message_closes_only_that_connection(endpoint: dict[str, str]) -> None:
    with socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=10) as sock:
        sock.sendall(struct.pack("!ii", 8, 12345678))  # no such protocol version
        reply = sock.recv(4096)
        assert reply[:1] == b"E" and b"08P01" in reply
        assert sock.recv(4096) == b""  # closed by the server
    with socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=10) as sock:
        sock.sendall(struct.pack("!i", 2**30))  # absurd length
        assert sock.recv(4096)[:1] in (b"E", b"")
    with psycopg.connect(dsn(endpoint)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_stops_a_running_query(endpoint: dict[str, str]) -> None:
    with psycopg.connect(dsn(endpoint)) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM range(100000000000) a")
        assert time.monotonic() - started < 10
        timer.join()


def test_stuck_client_does_not_block_others(endpoint: dict[str, str]) -> None:
    stuck = socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=10)
    try:
        stuck.sendall(struct.pack("!i", 100))  # a startup packet that never completes
        with psycopg.connect(dsn(endpoint)) as conn:
            assert conn.execute("SELECT count(*) FROM sample").fetchone() == (100_000,)
    finally:
        stuck.close()


def test_password_generated_beside_the_warehouse_when_unset(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    procs = Processes(tmp_path)
    env_password = os.environ.pop("STREAMLANE_PG_PASSWORD", None)
    try:
        procs.start(
            "serve", "serve", "--warehouse", str(warehouse), "--pg-port", "0", "--quack-port", "0"
        )
        wait_until(endpoint_file(warehouse).exists, 60, "the warehouse endpoint")
        port = json.loads(endpoint_file(warehouse).read_text())["pg_port"]
        password = (tmp_path / "w.duckdb.pg-password").read_text().strip()
        assert oct((tmp_path / "w.duckdb.pg-password").stat().st_mode & 0o777) == "0o600"
        ep = {"host": "127.0.0.1", "port": str(port)}
        with psycopg.connect(dsn(ep, password)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        procs.stop_all()
        if env_password is not None:
            os.environ["STREAMLANE_PG_PASSWORD"] = env_password


def test_psql_lists_tables_and_copies_out(endpoint: dict[str, str]) -> None:
    listed = psql(endpoint, "-c", "\\dt")
    assert listed.returncode == 0, listed.stderr
    assert "sample" in listed.stdout and "table" in listed.stdout
    described = psql(endpoint, "-c", "\\d sample")
    assert described.returncode == 0, described.stderr
    columns = {
        cells[0]: cells[1]
        for line in described.stdout.splitlines()
        if len(cells := [c.strip() for c in line.split("|")]) == 5
    }
    assert columns["id"] == "int8" and columns["amount"] == "numeric(12,2)"
    assert columns["ordered_at"] == "timestamptz" and columns["even"] == "bool"
    for command in ("\\d", "\\d+ sample", "\\dn", "\\l", "\\dt+"):
        ran = psql(endpoint, "-c", command)
        assert ran.returncode == 0 and not ran.stderr, (command, ran.stderr)
    copied = psql(
        endpoint,
        "-c",
        "COPY (SELECT id, name FROM sample WHERE id < 3 ORDER BY id) TO STDOUT WITH CSV",
    )
    assert copied.stdout.splitlines() == ["0,name 0", "1,name 1", "2,name 2"]
    refused = psql(endpoint, "-c", "COPY sample TO '/tmp/streamlane-copy.csv'")
    assert refused.returncode != 0 and "read-only" in refused.stderr


def served(processes: Processes, warehouse: Path, password: str, *options: str) -> dict[str, str]:
    """A warehouse served with `options` and `password`, once its endpoint is up: its address."""
    os.environ["STREAMLANE_PG_PASSWORD"] = password
    try:
        processes.start(
            "serve", "serve", "--warehouse", str(warehouse), "--pg-port", "0", "--quack-port", "0",
            *options,
        )  # fmt: skip
    finally:
        del os.environ["STREAMLANE_PG_PASSWORD"]
    wait_until(endpoint_file(warehouse).exists, 60, "the warehouse endpoint")
    port = json.loads(endpoint_file(warehouse).read_text())["pg_port"]
    return {"host": "127.0.0.1", "port": str(port)}


def test_md5_authentication(tmp_path: Path, processes: Processes) -> None:
    ep = served(processes, tmp_path / "md5.duckdb", "md5-secret", "--pg-auth", "md5")
    assert psql(ep, "-A", "-t", "-c", "SELECT 42", password="md5-secret").stdout.strip() == "42"
    refused = psql(ep, "-c", "SELECT 1", password="wrong")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


def test_duckdb_threads_are_set_by_the_server(
    endpoint: dict[str, str], tmp_path: Path, processes: Processes
) -> None:
    threads = "SELECT value FROM duckdb_settings() WHERE name = 'threads'"
    with duckdb.connect() as own, psycopg.connect(dsn(endpoint), autocommit=True) as conn:
        # By default, DuckDB's own choice (one per core).
        assert conn.execute(threads).fetchone() == own.execute(threads).fetchone()
    one_thread = served(processes, tmp_path / "threads.duckdb", PASSWORD, "--threads", "1")
    with psycopg.connect(dsn(one_thread), autocommit=True) as conn:
        assert conn.execute(threads).fetchone() == ("1",)
