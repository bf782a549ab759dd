"""DuckDB landing: warehouse tables and idempotent writes of decoded topic batches.

Every table has a natural key (event id; store + window start; topic, partition
and offset for dead letters). A write inserts the rows whose key is not there yet
and stores the landing's Kafka positions in the same transaction, so replaying a
topic, or a crash between writing rows and remembering offsets, leaves the same
rows. The keys are enforced by the landing, not by a unique index: the one writer
checks them on every insert, and an index would cost more than the insert itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import polars as pl

from streamlane.decode import decode_own_output
from streamlane.schemas import load_schema, parse_rfc3339

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS orders_enriched (
    event_id VARCHAR, order_id VARCHAR, customer_id VARCHAR, store_id BIGINT,
    channel VARCHAR, event_time TIMESTAMPTZ, total DOUBLE, currency VARCHAR, total_usd DOUBLE,
    store_name VARCHAR, city VARCHAR, region VARCHAR,
    items STRUCT(sku VARCHAR, qty BIGINT, unit_price DOUBLE)[],
    latitude DOUBLE, longitude DOUBLE, usd_rate DOUBLE, traceparent VARCHAR,
    produced_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS store_revenue_1m (
    store_id BIGINT, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, orders BIGINT,
    items BIGINT, revenue_usd DOUBLE, avg_order_usd DOUBLE, max_order_usd DOUBLE,
    produced_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS dead_letters (
    topic VARCHAR, "partition" INTEGER, "offset" BIGINT, reason VARCHAR, raw BLOB, "key" BLOB,
    received_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS late_events (
    event_id VARCHAR, order_id VARCHAR, customer_id VARCHAR, store_id BIGINT,
    channel VARCHAR, event_time TIMESTAMPTZ, total DOUBLE, currency VARCHAR, total_usd DOUBLE,
    region VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, watermark TIMESTAMPTZ,
    produced_at TIMESTAMPTZ
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


def enriched_rows(batch: TopicBatch) -> pl.DataFrame:
    """orders_enriched rows from `pizza.order.enriched.v1` records."""
    data = pl.col("data")
    return _events(batch, "pizza.order.enriched.v1").select(
        event_id=data.struct.field("event_id"),
        order_id=data.struct.field("order_id"),
        customer_id=data.struct.field("customer_id"),
        store_id=data.struct.field("store_id"),
        channel=data.struct.field("channel"),
        event_time=pl.col("event_time"),
        total=data.struct.field("total"),
        currency=data.struct.field("currency"),
        total_usd=data.struct.field("total_usd"),
        store_name=data.struct.field("store_name"),
        city=data.struct.field("city"),
        region=data.struct.field("region"),
        items=data.struct.field("items"),
        latitude=data.struct.field("latitude"),
        longitude=data.struct.field("longitude"),
        usd_rate=data.struct.field("usd_rate"),
        traceparent=pl.col("traceparent"),
        produced_at=pl.col("produced_at"),
    )


def revenue_rows(batch: TopicBatch) -> pl.DataFrame:
    """store_revenue_1m rows from `pizza.store.revenue.1m.v1` records."""
    data = pl.col("data")
    fields = ["store_id", "orders", "items", "revenue_usd", "avg_order_usd", "max_order_usd"]
    return _events(batch, "pizza.store.revenue.1m.v1").select(
        data.struct.field("store_id"),
        window_start=parse_rfc3339(data.struct.field("window_start")),
        window_end=parse_rfc3339(data.struct.field("window_end")),
        **{f: data.struct.field(f) for f in fields[1:]},
        produced_at=pl.col("produced_at"),
    )


def late_rows(batch: TopicBatch) -> pl.DataFrame:
    """late_events rows from `pizza.order.late.v1` records."""
    data = pl.col("data")
    plain = ["event_id", "order_id", "customer_id", "store_id", "channel", "total", "currency"]
    return _events(batch, "pizza.order.late.v1").select(
        *[data.struct.field(f) for f in plain],
        event_time=pl.col("event_time"),
        total_usd=data.struct.field("total_usd"),
        region=data.struct.field("region"),
        window_start=parse_rfc3339(data.struct.field("window_start")),
        window_end=parse_rfc3339(data.struct.field("window_end")),
        watermark=parse_rfc3339(data.struct.field("watermark")),
        produced_at=pl.col("produced_at"),
    )


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
class Table:
    """A warehouse table fed by one topic: how rows are built and which columns key them.

    `near` is a column that is equal on every copy of a row and follows the order in
    which rows land (event time, window start, offset): looking for existing copies only
    where it lies in the batch's range lets DuckDB skip every row group outside it.
    """

    name: str
    rows: Callable[[TopicBatch], pl.DataFrame]
    key: tuple[str, ...]
    near: str


def insert_new(con: duckdb.DuckDBPyConnection, table: Table, rows: pl.DataFrame) -> int:
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
