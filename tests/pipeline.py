"""What every flow's end-to-end test needs: a warehouse process, row counts, event ids, and
plain DuckDB SQL over the records a test produced (its oracle)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import duckdb
import polars as pl

from streamlane.decode import decode_record
from streamlane.flow import Flow
from streamlane.generator import GeneratedRecord
from streamlane.query import endpoint_file, run_sql
from streamlane.schemas import load_schema
from streamlane.topicread import read_to_end
from tests.helpers import Processes, wait_until

__all__ = [
    "assert_outputs_follow_their_schemas",
    "count",
    "event_id",
    "oracle_query",
    "start_warehouse",
]


def event_id(record: GeneratedRecord) -> str:
    return record.value.split(b'"id":"')[1].split(b'"')[0].decode()


def oracle_query(records: list[GeneratedRecord], sql: str) -> pl.DataFrame:
    """`sql` run by a plain DuckDB over the records as table `raw` (seq, value, kind)."""
    raw = pl.DataFrame(
        {
            "seq": list(range(len(records))),
            "value": [r.value.decode("utf-8", "replace") for r in records],
            "kind": [r.kind for r in records],
        }
    )
    con = duckdb.connect()
    con.register("raw", raw.to_arrow())
    return con.execute(sql).pl()


def count(warehouse: Path, table: str) -> int:
    return int(run_sql(warehouse, f"SELECT count(*) AS n FROM {table}")["n"][0])


def _announced_by(warehouse: Path, proc: subprocess.Popen[bytes]) -> bool:
    announce = endpoint_file(warehouse)
    try:
        return json.loads(announce.read_text())["pid"] == proc.pid
    except (OSError, ValueError, KeyError):
        return False


def start_warehouse(
    processes: Processes, brokers: str, warehouse: Path, *extra: str, name: str = "warehouse"
) -> subprocess.Popen[bytes]:
    """Start `streamlane serve` and wait until it announces its endpoint (a file left by a
    killed predecessor does not count)."""
    proc = processes.start(
        name,
        "serve",
        "--brokers",
        brokers,
        "--warehouse",
        str(warehouse),
        "--pg-port",
        "0",
        "--quack-port",
        "0",
        *extra,
    )
    wait_until(lambda: _announced_by(warehouse, proc), 60, "the warehouse endpoint")
    return proc


def assert_outputs_follow_their_schemas(
    brokers: str, flow: Flow, may_be_empty: frozenset[str] = frozenset()
) -> None:
    """Every record the flow wrote to each of its output topics is valid against the
    output's JSON Schema, as a consumer validating with the schema file would decide
    (the exact per-record decode). Each topic must hold a record, unless named in
    `may_be_empty`."""
    for output in {o.topic: o for o in flow.outputs()}.values():
        schema = load_schema(output.event_type)
        records = read_to_end(brokers, output.topic)
        assert records or output.topic in may_be_empty, f"{output.topic} holds no record"
        refused = Counter(
            reason for m in records if (reason := decode_record(m.value(), schema)[1])
        )
        assert not refused, f"{output.topic}: records its schema refuses: {refused.most_common(5)}"
