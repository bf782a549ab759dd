"""DuckDB landing: warehouse tables and idempotent writes of decoded topic batches.

Every table is derived from a flow's declaration: its columns from the output's
schema, its natural key from the output's `Table` (event id; store + window
start; topic, partition and offset for dead letters). A write inserts the rows whose key is not there yet
and stores the landing's Kafka positions in the same transaction, so replaying a
topic, or a crash between writing rows and remembering offsets, leaves the same
rows. The keys are enforced by the landing, not by a unique index: the one writer
checks them on every insert, and an index would cost more than the insert itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import duckdb
import polars as pl

from streamlane.decode import decode_own_output
from streamlane.flow import Flow, Output
from streamlane.schemas import load_schema, parse_rfc3339

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS dead_letters (
    topic VARCHAR, "partition" INTEGER, "offset" BIGINT, reason VARCHAR, raw BLOB, "key" BLOB,
    received_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS landing_batches (
    landed_at TIMESTAMPTZ, "rows" BIGINT, seconds DOUBLE, lag BIGINT
);
CREATE TABLE IF NOT EXISTS landing_offsets (
    topic VARCHAR, "partition" INTEGER, next_offset BIGINT, cluster_id VARCHAR, lag BIGINT,
    PRIMARY KEY (topic, "partition")
);
"""


@dataclass(frozen=True)
class TopicBatch:
    """Records of one topic read in one poll: values plus Kafka metadata per record."""

    topic: str
    values: list[bytes]
    keys: list[bytes | None]
    """Record keys; read only for dead letters (no other table keeps them)."""
    partitions: list[int]
    offsets: list[int]
    timestamps_ms: list[int]
    headers: list[dict[str, str]]


def _events(batch: TopicBatch, event_type: str) -> pl.DataFrame:
    """Decoded output records plus `produced_at`, the Kafka timestamp of each record.

    The record timestamp, unlike the time of landing, is the same on every replay.
    """
    decoded = decode_own_output(batch.values, load_schema(event_type))
    if decoded.rejects.height:
        first = decoded.rejects.row(0, named=True)
        raise ValueError(
            f"{batch.topic}: {decoded.rejects.height} record(s) are not {event_type} "
            f"(first: {first['reason']})"
        )
    produced = pl.Series(batch.timestamps_ms, dtype=pl.Int64).gather(decoded.valid["row"])
    return decoded.valid.with_columns(
        produced_at=pl.from_epoch(produced, time_unit="ms").dt.replace_time_zone("UTC")
    )


def output_rows(output: Output, batch: TopicBatch) -> pl.DataFrame:
    """Table rows of an output's records: each `data` field (date-times as timestamps), the
    table's envelope columns, and `produced_at`."""
    fields = load_schema(output.event_type).document["properties"]["data"]["properties"]
    data = pl.col("data")
    columns = [
        parse_rfc3339(data.struct.field(name)).alias(name)
        if node.get("format") == "date-time"
        else data.struct.field(name)
        for name, node in fields.items()
    ]
    return _events(batch, output.event_type).select(*columns, *output.table.envelope, "produced_at")


def dead_letter_rows(batch: TopicBatch) -> pl.DataFrame:
    """dead_letters rows: origin and reason from the record headers, original bytes as `raw`."""
    headers = batch.headers
    return pl.DataFrame(
        {
            "topic": [h.get("topic") for h in headers],
            "partition": [int(h.get("partition", -1)) for h in headers],
            "offset": [int(h.get("offset", -1)) for h in headers],
            "reason": [h.get("reason") for h in headers],
            "raw": batch.values,
            "key": batch.keys,
            "received_at": batch.timestamps_ms,
        },
        schema={
            "topic": pl.String,
            "partition": pl.Int32,
            "offset": pl.Int64,
            "reason": pl.String,
            "raw": pl.Binary,
            "key": pl.Binary,
            "received_at": pl.Int64,
        },
    ).with_columns(pl.from_epoch("received_at", time_unit="ms").dt.replace_time_zone("UTC"))


@dataclass(frozen=True)
class LandingTable:
    """A warehouse table fed by one topic: how rows are built and which columns key them.

    `near` is a column that is equal on every copy of a row and follows the order in
    which rows land (event time, window start, offset): looking for existing copies only
    where it lies in the batch's range lets DuckDB skip every row group outside it.
    """

    name: str
    rows: Callable[[TopicBatch], pl.DataFrame]
    key: tuple[str, ...]
    near: str


def insert_new(con: duckdb.DuckDBPyConnection, table: LandingTable, rows: pl.DataFrame) -> int:
    """Insert the rows whose key is not in the table yet; return how many were inserted.

    Outputs are deterministic from the input, so a row landed again (a replayed topic, a
    flow that re-emits after a restart) equals the stored one: the first copy is kept and
    later ones are dropped, within the batch and against the table. Looking up existing
    keys in the batch's range of `table.near` is a pruned scan, cheaper than maintaining a
    unique index on every write.
    """
    if rows.is_empty():
        return 0
    rows = rows.unique(subset=list(table.key), keep="first", maintain_order=True)
    low, high = rows[table.near].min(), rows[table.near].max()
    con.register("landing_batch", rows.to_arrow())
    try:
        columns = ", ".join(f'"{c}"' for c in rows.columns)
        keys = ", ".join(f'"{c}"' for c in table.key)
        inserted = con.execute(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM landing_batch "
            f"ANTI JOIN (SELECT {keys} FROM {table.name} "
            f'WHERE "{table.near}" BETWEEN $low AND $high) USING ({keys})',
            {"low": low, "high": high},
        ).fetchone()
    finally:
        con.unregister("landing_batch")
    return int(inserted[0]) if inserted else 0


def _no_records(topic: str) -> TopicBatch:
    return TopicBatch(topic, [], [], [], [], [], [])


def flow_tables(flow: Flow) -> dict[str, LandingTable]:
    """The landing of every topic a flow writes, by topic: its outputs and its dead letters."""
    tables = {
        o.topic: LandingTable(o.table.name, partial(output_rows, o), o.table.key, o.table.near)
        for o in flow.outputs()
    }
    tables[flow.dead_letter_topic] = LandingTable(
        "dead_letters", dead_letter_rows, ("topic", "partition", "offset"), near="offset"
    )
    return tables


def create_tables(con: duckdb.DuckDBPyConnection, tables: dict[str, LandingTable]) -> None:
    """Create each landing table from its rows' types; add columns an older file lacks.

    A new field in an output's schema (an additive change) becomes a new nullable column
    of an existing table; rows landed before it read NULL there.
    """
    con.execute(TABLES_DDL)
    for topic, table in tables.items():
        if table.name == "dead_letters":
            continue
        con.register("new_rows", table.rows(_no_records(topic)).to_arrow())
        try:
            con.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}" AS FROM new_rows')
            have = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table.name]
                ).fetchall()
            }
            for name, kind, *_ in con.execute("DESCRIBE new_rows").fetchall():
                if name not in have:
                    con.execute(f'ALTER TABLE "{table.name}" ADD COLUMN "{name}" {kind}')
        finally:
            con.unregister("new_rows")
