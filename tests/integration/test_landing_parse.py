"""The landing parses a flow's outputs inside DuckDB: the rows must be exactly those the
Python parse builds, duplicates must land once, and records DuckDB refuses must still
land (or be named) through the Python path. Records come from the flow's own encoders."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from flows import orders
from sinks.duckdb import (
    PARSE_CHUNK_ROWS,
    LandingTable,
    RecordsRefused,
    TopicBatch,
    create_tables,
    flow_tables,
    insert_new,
    insert_parsed,
    land_batches,
    landed_copies,
    prepare,
    raw_records_registered,
)
from streamlane.dataflow import enriched_records, window_records

FLOW = orders.FLOW
TABLES = flow_tables(FLOW)
MINUTE_US = 60_000_000
START_US = 1_795_000_000_000_000


def enriched_values(count: int, start_us: int = START_US) -> list[bytes]:
    """`count` enriched orders as the flow writes them, one store per ten orders, the first
    at `start_us` (event time)."""
    frame = pl.DataFrame(
        {
            "event_id": [f"e-{i}" for i in range(count)],
            "order_id": [f"o-{i}" for i in range(count)],
            "customer_id": [f"c-{i % 7}" for i in range(count)],
            "store_id": [i // 10 for i in range(count)],
            "channel": ["web" if i % 2 else "app" for i in range(count)],
            "items": [
                [{"sku": "margherita", "qty": 1 + i % 3, "unit_price": 9.5}] for i in range(count)
            ],
            "total": [9.5 * (1 + i % 3) for i in range(count)],
            "currency": ["EUR"] * count,
            "store_name": [f"Store {i // 10}" for i in range(count)],
            "city": ["Vienna"] * count,
            "region": ["AT-9"] * count,
            "latitude": [48.2] * count,
            "longitude": [16.37] * count,
            "usd_rate": [1.08] * count,
            "total_usd": [1.08 * 9.5 * (1 + i % 3) for i in range(count)],
            "store_version": ["stores.csv"] * count,
            "event_time_us": [start_us + i * 1_234_567 for i in range(count)],
            "traceparent": [f"00-{i:032x}-{i:016x}-01" for i in range(count)],
        }
    )
    return [v.encode() for v in enriched_records(FLOW, frame)["value"]]


def window_values(count: int) -> list[bytes]:
    """`count` closed one-minute store windows as the flow writes them."""
    windows = FLOW.windows[0]
    closed = pl.DataFrame(
        {
            "store_id": [i % 5 for i in range(count)],
            "window_start": [START_US + (i // 5) * MINUTE_US for i in range(count)],
            "window_end": [START_US + (i // 5 + 1) * MINUTE_US for i in range(count)],
            "orders": [1 + i for i in range(count)],
            "items": [2 + i for i in range(count)],
            "revenue_usd": [10.25 * (1 + i) for i in range(count)],
            "max_order_usd": [10.25] * count,
        }
    )
    return [v.encode() for v in window_records(FLOW, windows, closed)["value"]]


def batch_of(topic: str, values: list[bytes]) -> TopicBatch:
    n = len(values)
    return TopicBatch(
        topic=topic,
        values=values,
        keys=[],
        partitions=[0] * n,
        offsets=list(range(n)),
        timestamps_ms=[START_US // 1000 + 10 * i for i in range(n)],
        headers=[],
    )


def fresh_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    create_tables(con, TABLES)
    return con


def land(con: duckdb.DuckDBPyConnection, table: LandingTable, batch: TopicBatch) -> int:
    """Land one batch as the landing does; how many rows the table gained."""
    before = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()
    land_batches(con, [(table, batch, prepare(table, batch))])
    after = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()
    assert before is not None and after is not None
    return int(after[0]) - int(before[0])


def parse_in_duckdb(con: duckdb.DuckDBPyConnection, table: LandingTable, batch: TopicBatch) -> int:
    """`insert_parsed` alone, committed: the rows it inserted (RecordsRefused rolls back)."""
    prepared = prepare(table, batch)
    assert isinstance(prepared, pa.Table), "own output records should be parsed inside DuckDB"
    with raw_records_registered(con, [(table, prepared)]):
        con.execute("BEGIN TRANSACTION")
        try:
            inserted = insert_parsed(con, table)
        except RecordsRefused:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return inserted


def table_rows(con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
    return pl.from_arrow(con.execute(f"SELECT * FROM {name} ORDER BY ALL").to_arrow_table())  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("topic", "values"),
    [
        (FLOW.enriched.topic, enriched_values(2 * PARSE_CHUNK_ROWS + 300)),
        (FLOW.windows[0].output.topic, window_values(300)),
    ],
    ids=["enriched", "windows"],
)
def test_duckdb_parse_lands_what_the_python_parse_lands(
    tmp_path: Path, topic: str, values: list[bytes]
) -> None:
    table = TABLES[topic]
    # A replayed record inside the batch: a later copy with a later Kafka timestamp, first
    # in its chunk of the records DuckDB parses (earlier in it than the original in its own).
    split = min(PARSE_CHUNK_ROWS, len(values))
    batch = batch_of(topic, [*values[:split], values[3], *values[split:]])
    in_duckdb, in_python = fresh_warehouse(tmp_path / "a.db"), fresh_warehouse(tmp_path / "b.db")
    assert parse_in_duckdb(in_duckdb, table, batch) == len(values)
    assert insert_new(in_python, table, table.rows(batch)) == len(values)
    landed = table_rows(in_duckdb, table.name)
    assert landed.height == len(values)
    assert landed.equals(table_rows(in_python, table.name))
    # The first copy is the one kept: its Kafka timestamp, not the replayed one's.
    assert landed["produced_at"].max() == table_rows(in_python, table.name)["produced_at"].max()
    # Landing the batch again (a replayed topic) adds nothing.
    assert land(in_duckdb, table, batch) == 0
    assert table_rows(in_duckdb, table.name).equals(landed)


def test_records_duckdb_refuses_land_through_the_python_parse(tmp_path: Path) -> None:
    topic = FLOW.enriched.topic
    table = TABLES[topic]
    values = enriched_values(3)
    # Valid RFC 3339, but not the form the flow writes: the Python parse reads it.
    event = json.loads(values[1])
    event["time"] = event["time"].replace("Z", "+00:00")
    # A field the record lacks (written before the schema had it) lands as NULL.
    older = json.loads(values[2])
    del older["data"]["store_version"]
    batch = batch_of(topic, [values[0], json.dumps(event).encode(), json.dumps(older).encode()])
    con = fresh_warehouse(tmp_path / "w.db")
    with pytest.raises(RecordsRefused, match=table.name):
        parse_in_duckdb(con, table, batch)
    assert table_rows(con, table.name).is_empty()
    # The landing writes the batch again, parsed in Python, and the registration of the
    # refused records did not outlive the rolled-back transaction.
    assert land(con, table, batch) == 3
    landed = table_rows(con, table.name).sort("event_id")
    expected = pl.Series([START_US + i * 1_234_567 for i in range(3)]).cast(
        pl.Datetime("us", "UTC")
    )
    assert landed["event_time"].to_list() == expected.to_list()
    assert landed["store_version"].to_list() == ["stores.csv", "stores.csv", None]


def wrong_type() -> bytes:
    event = json.loads(enriched_values(1, START_US + MINUTE_US)[0])
    event["data"]["store_id"] = "not a number"
    return json.dumps(event).encode()


def too_large() -> bytes:
    """An integer the output's schema does not bound, too large for a 64-bit column."""
    event = json.loads(enriched_values(1, START_US + 2 * MINUTE_US)[0])
    event["data"]["items"][0]["qty"] = 2**64
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    "foreign",
    [[wrong_type(), b"{}"], [b"\xff\xfe not text", b"not JSON"], [too_large(), wrong_type()]],
    ids=["refused-by-duckdb", "not-utf8", "beyond-64-bits"],
)
def test_records_not_of_the_output_type_land_in_dead_letters(
    tmp_path: Path, foreign: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Records another writer sent to an output topic do not stop the landing: the rest of
    the batch lands, and they are kept in dead_letters with why, where they were read and
    their bytes (text that is not UTF-8 is not handed to DuckDB's parse at all)."""
    topic = FLOW.enriched.topic
    table = TABLES[topic]
    valid = enriched_values(2)
    batch = batch_of(topic, [valid[0], foreign[0], valid[1], foreign[1]])
    con = fresh_warehouse(tmp_path / "w.db")
    with caplog.at_level(logging.WARNING, logger="sinks.duckdb"):
        assert land(con, table, batch) == 2
    [told] = [r.getMessage() for r in caplog.records]
    assert told.startswith("pizza.orders.enriched: 2 record(s) are not pizza.order.enriched.v1")
    assert told.endswith("; kept in dead_letters")
    kept = dead_letters(con)
    assert kept.select("topic", "partition", "offset", "raw", "key").rows() == [
        (topic, 0, 1, foreign[0], None),
        (topic, 0, 3, foreign[1], None),
    ]
    assert all(r.startswith("not pizza.order.enriched.v1: ") for r in kept["reason"])
    assert kept["received_at"].to_list() == [
        datetime.fromtimestamp(batch.timestamps_ms[i] / 1000, UTC) for i in (1, 3)
    ]
    # Landed again (a replayed topic), neither table gains a row.
    assert land(con, table, batch) == 0
    assert dead_letters(con).equals(kept)


def dead_letters(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return table_rows(con, "dead_letters").sort("offset")


def test_a_dead_letter_without_its_origin_lands_under_its_own_position(tmp_path: Path) -> None:
    """A record in a dead-letter topic whose headers do not name where it came from (sent
    there by another writer) lands under its own topic, partition and offset: two of them
    are not taken for copies of one."""
    topic = FLOW.dead_letter_topic
    origin = {"topic": "pizza.orders", "partition": "2", "offset": "7", "reason": "bad"}
    batch = TopicBatch(
        topic=topic,
        values=[b"a", b"b", b"c"],
        keys=[None, b"k", None],
        partitions=[1, 1, 1],
        offsets=[10, 11, 12],
        timestamps_ms=[START_US // 1000] * 3,
        headers=[origin, {"partition": "not a number"}, {}],
    )
    con = fresh_warehouse(tmp_path / "w.db")
    assert land(con, TABLES[topic], batch) == 3
    assert dead_letters(con).select("topic", "partition", "offset", "reason", "key").rows() == [
        ("pizza.orders", 2, 7, "bad", None),
        (topic, 1, 11, None, b"k"),
        (topic, 1, 12, None, None),
    ]


def test_a_refused_table_rolls_back_the_whole_batch_before_it_is_written_again(
    tmp_path: Path,
) -> None:
    windows_topic, enriched_topic = FLOW.windows[0].output.topic, FLOW.enriched.topic
    event = json.loads(enriched_values(1)[0])
    event["time"] = event["time"].replace("Z", "+00:00")  # DuckDB's parse refuses this form
    batches = [
        batch_of(windows_topic, window_values(20)),
        batch_of(enriched_topic, [json.dumps(event).encode()]),
    ]
    con = fresh_warehouse(tmp_path / "w.db")
    con.execute("CREATE TABLE positions (n INTEGER)")
    land_batches(
        con,
        [(TABLES[b.topic], b, prepare(TABLES[b.topic], b)) for b in batches],
        lambda: con.execute("INSERT INTO positions VALUES (1)"),
    )
    # The windows parsed before the refusal were rolled back with it, not landed twice.
    assert table_rows(con, TABLES[windows_topic].name).height == 20
    assert table_rows(con, TABLES[enriched_topic].name).height == 1
    assert table_rows(con, "positions").height == 1


@pytest.mark.parametrize(
    ("topic", "values"),
    [
        (FLOW.enriched.topic, enriched_values(400)),
        (FLOW.windows[0].output.topic, window_values(400)),
    ],
    ids=["enriched", "windows"],
)
@pytest.mark.parametrize("parse", ["duckdb", "python"])
def test_a_batch_spanning_the_landed_rows_lands_only_the_new_ones(
    tmp_path: Path, topic: str, values: list[bytes], parse: str
) -> None:
    """A flow catching up on partitions of unequal size gives landing batches that span
    most of what is landed, stored rows and new ones interleaved: each new row lands
    once, and no stored row lands again."""
    table = TABLES[topic]
    con = fresh_warehouse(tmp_path / "w.db")
    stored = values[::2]
    for start in range(0, len(stored), 50):
        assert land(con, table, batch_of(topic, stored[start : start + 50])) == 50
    # Every record, each of the first two again (one stored, one new) at the batch's end.
    batch = batch_of(topic, [*values, values[0], values[1]])
    if parse == "duckdb":
        added = parse_in_duckdb(con, table, batch)
    else:
        added = insert_new(con, table, table.rows(batch))
    assert added == len(values) - len(stored)
    everything = fresh_warehouse(tmp_path / "all.db")
    assert land(everything, table, batch_of(topic, values)) == len(values)
    landed = table_rows(con, table.name).drop("produced_at")
    assert landed.equals(table_rows(everything, table.name).drop("produced_at"))


def test_a_batch_s_stragglers_are_looked_up_by_their_values(tmp_path: Path) -> None:
    """The rows farthest behind in a batch (events that arrived minutes late) are looked up
    in a scan DuckDB filters by their values, the rest in one filtered by their range: one
    range over both made every write read all the rows landed since the late ones."""
    table = TABLES[FLOW.enriched.topic]
    con = fresh_warehouse(tmp_path / "w.db")
    values = enriched_values(200)
    assert land(con, table, batch_of(FLOW.enriched.topic, values)) == 200
    # The same 200 rows again, as a batch to look up.
    con.execute("CREATE TEMP TABLE probe AS SELECT event_id, event_time FROM orders_enriched")
    plan = con.execute(f"EXPLAIN ANALYZE {landed_copies(table, 'probe')}").fetchall()[0][1]
    assert "event_time IN (" in plan, "the stragglers' scan is not filtered by their values"
    assert "event_time>=" in plan, "the other rows' scan is not filtered by their range"
    # ...and both halves find their copies: all 200 are stored.
    assert len(con.execute(landed_copies(table, "probe")).fetchall()) == 200
