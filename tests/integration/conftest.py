"""A live warehouse PostgreSQL endpoint over a sample table, shared by the client tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import duckdb
import pytest

from streamlane.query import endpoint_file
from tests.helpers import Processes, wait_until

PASSWORD = "pg-endpoint-test"
SAMPLE = """
CREATE TABLE sample AS
SELECT i::BIGINT AS id,
       'name ' || i AS name,
       TIMESTAMPTZ '2026-11-23 12:00:00+00' + to_seconds(i) AS ordered_at,
       (i / 7)::DECIMAL(12, 2) AS amount,
       to_minutes(i) AS waited,
       i % 2 = 0 AS even,
       CASE WHEN i % 5 = 0 THEN NULL ELSE i::INTEGER END AS maybe,
       (i * 0.5)::DOUBLE AS half
FROM range(100000) r(i)
"""


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("pg")
    warehouse = base / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(SAMPLE)
    procs = Processes(base)
    os.environ["STREAMLANE_PG_PASSWORD"] = PASSWORD
    try:
        procs.start(
            "serve", "serve", "--warehouse", str(warehouse), "--pg-port", "0", "--quack-port", "0"
        )
    finally:
        del os.environ["STREAMLANE_PG_PASSWORD"]
    try:
        announce = endpoint_file(warehouse)
        wait_until(announce.exists, 60, "the warehouse endpoint")
        info = json.loads(announce.read_text())
        yield {"host": "127.0.0.1", "port": str(info["pg_port"]), "warehouse": str(warehouse)}
    finally:
        procs.stop_all()


def dsn(ep: dict[str, str], password: str = PASSWORD) -> str:
    return f"host={ep['host']} port={ep['port']} user=streamlane password={password} dbname=any"
