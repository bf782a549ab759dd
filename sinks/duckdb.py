"""DuckDB landing: warehouse tables and idempotent writes of decoded topic batches.

Every table is derived from a flow's declaration: its columns from the output's
schema, its natural key from the output's `Table` (event id; store + window
start; topic, partition and offset for dead letters). A write inserts the rows whose key is not there yet
and stores the landing's Kafka positions in the same transaction, so replaying a
topic, or a crash between writing rows and remembering offsets, leaves the same
rows. The keys are enforced by the landing, not by a unique index: the one writer
checks them on every insert, and an index would cost more than the insert itself.

An output's records are parsed by DuckDB itself, from the raw bytes, in the statement
that inserts them: that costs about half the CPU of parsing them in Python and handing
the columns over, and the landing is bound by its CPU. Records it cannot parse that way
(a timestamp written in another RFC 3339 form, a field missing, as in records written
before it was added to the schema, bytes that are not UTF-8, anything not of the
output's type) take the exact Python path, which lands them, or keeps those not of the
output's type in `dead_letters` with what is wrong (`land_batches`). So do records DuckDB
would read as the output's type by converting a value (a fraction into an integer, a
number into text), which a screen keeps from it (`sinks.parse_screen`), and records
breaking a value rule of their schema, on which its statement fails (`sinks.value_rules`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeAlias

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from sinks.parse_screen import ParseScreen
from sinks.value_rules import own_time, refusal_filter, ruled_properties
from streamlane.decode import decode_batch
from streamlane.dlq import header_integer
from streamlane.flow import Flow, Output
from streamlane.schemas import json_kind, load_schema, parse_rfc3339
from streamlane.sqlquote import identifier, literal

log = logging.getLogger(__name__)

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

    def without(self, rows: list[int]) -> TopicBatch:
        """The batch without the records at positions `rows`, the others in their order."""
        dropped = set(rows)
        kept = [i for i in range(len(self.values)) if i not in dropped]

        def pick(column: list[Any]) -> list[Any]:
            return [column[i] for i in kept] if column else []

        return TopicBatch(
            self.topic, pick(self.values), pick(self.keys), pick(self.partitions),
            pick(self.offsets), pick(self.timestamps_ms), pick(self.headers),
        )  # fmt: skip


class RecordsNotOfType(ValueError):
    """Records of an output topic that are not of the output's event type (written there by
    something else): their positions in the batch and why each is not."""

    def __init__(self, topic: str, event_type: str, rows: list[int], reasons: list[str]) -> None:
        super().__init__(
            f"{topic}: {len(rows)} record(s) are not {event_type} (first: {reasons[0]})"
        )
        self.topic = topic
        self.event_type = event_type
        self.rows = rows
        self.reasons = reasons


def _events(batch: TopicBatch, event_type: str) -> pl.DataFrame:
    """Decoded output records plus `produced_at`, the Kafka timestamp of each record;
    RecordsNotOfType when some are not of `event_type`.

    The decode is the input's (`decode_batch`), every rule of the schema checked, with no
    limit on how far ahead of the clock a record's time is: this path lands the batches
    DuckDB's parse does not, whose records another writer may have sent. The record
    timestamp, unlike the time of landing, is the same on every replay.
    """
    decoded = decode_batch(batch.values, load_schema(event_type), max_ahead_s=None)
    if decoded.rejects.height:
        raise RecordsNotOfType(
            batch.topic,
            event_type,
            decoded.rejects["row"].to_list(),
            decoded.rejects["reason"].to_list(),
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
    """dead_letters rows: origin (topic, partition, offset) and reason from the record
    headers, original bytes as `raw`. A record whose headers do not name its origin (one
    another writer sent to the dead-letter topic) is landed under its own topic, partition
    and offset, which are as unique, so no two such records are taken for copies."""
    topics: list[str | None] = []
    partitions: list[int] = []
    offsets: list[int] = []
    for i, headers in enumerate(batch.headers):
        topic = headers.get("topic")
        partition = header_integer(headers.get("partition"))
        offset = header_integer(headers.get("offset"))
        if topic is None or partition is None or offset is None:
            topic, partition, offset = batch.topic, batch.partitions[i], batch.offsets[i]
        topics.append(topic)
        partitions.append(partition)
        offsets.append(offset)
    return _dead_letters(
        topics=topics,
        partitions=partitions,
        offsets=offsets,
        reasons=[h.get("reason") for h in batch.headers],
        raw=batch.values,
        keys=batch.keys,
        received_ms=batch.timestamps_ms,
    )


def not_of_type_rows(batch: TopicBatch, refused: RecordsNotOfType) -> pl.DataFrame:
    """dead_letters rows of the records of an output's `batch` that are not of its type: the
    output topic, partition and offset they were read at, why, their bytes and Kafka time
    (their keys are not read from output topics, so `key` is null)."""
    rows = refused.rows
    return _dead_letters(
        topics=[batch.topic] * len(rows),
        partitions=[batch.partitions[i] for i in rows],
        offsets=[batch.offsets[i] for i in rows],
        reasons=[f"not {refused.event_type}: {reason}" for reason in refused.reasons],
        raw=[batch.values[i] for i in rows],
        keys=[None] * len(rows),
        received_ms=[batch.timestamps_ms[i] for i in rows],
    )


def _dead_letters(
    *,
    topics: Sequence[str | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    reasons: Sequence[str | None],
    raw: Sequence[bytes],
    keys: Sequence[bytes | None],
    received_ms: Sequence[int],
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "topic": topics,
            "partition": partitions,
            "offset": offsets,
            "reason": reasons,
            "raw": raw,
            "key": keys,
            "received_at": received_ms,
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


def raw_records_name(table: str) -> str:
    """The name a batch's raw records for `table` are registered under while DuckDB parses
    them (one per table, so every table of a batch is registered before its transaction)."""
    return f"landing_records_{table}"


PARSE_CHUNK_ROWS = 2048
"""Rows per Arrow chunk handed to DuckDB, which parses a chunk on one thread: small chunks
let every thread parse a caught-up landing's small batches (one vector of rows each). Each
chunk's text is joined on its own: a whole batch's text in one buffer (tens of megabytes in
a backlog) was freshly mapped memory every time, and the kernel zeroing its pages cost the
preparing thread more than copying the records, while the allocator reuses chunk-sized
buffers from one batch to the next."""
RAW_RECORDS_SCHEMA = pa.schema(
    [("value", pa.string()), ("produced_ms", pa.int64()), ("pos", pa.int64())]
)


_DUCKDB_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}


def _json_structure(kind: pa.DataType) -> object:
    """The `json_transform` structure that reads JSON values as `kind`."""
    if pa.types.is_struct(kind):
        return {field.name: _json_structure(field.type) for field in kind}
    if pa.types.is_list(kind):
        return [_json_structure(kind.value_type)]
    return _DUCKDB_TYPES[json_kind(kind)]


def parsed_select(output: Output) -> str:
    """SQL building an output's table rows from its raw records (registered under
    `raw_records_name`: `value` text, `produced_ms`, `pos`), the same rows `output_rows`
    builds, plus `pos`.

    The parse is strict where DuckDB can be: a missing field, a date-time not in the form
    the flow writes, or a value it cannot convert to the field's type fails the statement
    instead of becoming null, and so does a record breaking a value rule of the schema
    (`sinks.value_rules`). A value it can convert (`"12"` into an integer) it does not
    refuse: `sinks.parse_screen` keeps the records holding one from it.
    """
    schema = load_schema(output.event_type)
    fields = schema.document["properties"]["data"]["properties"]
    envelope_kinds = {f.name: f.type for f in schema.arrow_schema}
    read = ["time", *(n for n in output.table.envelope if n != "event_time"), "data"]
    read += [name for name in ruled_properties(schema.document) if name not in read]
    structure = {name: _json_structure(envelope_kinds[name]) for name in read}
    columns = []
    time = f"j.{identifier('time')}"
    times = {time} if "event_time" in output.table.envelope else set()
    for name, node in fields.items():
        value = f"j.{identifier('data')}.{identifier(name)}"
        if node.get("format") == "date-time":
            times.add(value)
            value = own_time(value)
        columns.append(f"{value} AS {identifier(name)}")
    for name in output.table.envelope:
        value = own_time(time) if name == "event_time" else f"j.{identifier(name)}"
        columns.append(f"{value} AS {identifier(name)}")
    columns.append("make_timestamptz(produced_ms * 1000) AS produced_at")
    text = literal(json.dumps(structure, separators=(",", ":")))
    return (
        f"SELECT {', '.join(columns)}, pos FROM "
        f"(SELECT json_transform_strict(value, {text}) AS j, produced_ms, pos "
        f"FROM {identifier(raw_records_name(output.table.name))}) "
        f"WHERE {refusal_filter(schema.document, 'j', frozenset(times))}"
    )


def raw_records(batch: TopicBatch) -> pa.Table | None:
    """A batch's records as DuckDB parses them (`value` text, `produced_ms`, `pos`, in chunks
    of `PARSE_CHUNK_ROWS`), or None when a value is not UTF-8 text."""
    chunks = []
    for start in range(0, len(batch.values), PARSE_CHUNK_ROWS):
        values = _utf8_text(batch.values[start : start + PARSE_CHUNK_ROWS])
        if values is None:
            return None
        positions = np.arange(start, start + len(values), dtype=np.int64)
        produced_ms = pa.array(batch.timestamps_ms[start : start + len(values)], pa.int64())
        chunks.append(
            pa.RecordBatch.from_arrays(
                [values, produced_ms, pa.array(positions)], schema=RAW_RECORDS_SCHEMA
            )
        )
    return pa.Table.from_batches(chunks, schema=RAW_RECORDS_SCHEMA)


def _utf8_text(values: list[bytes]) -> pa.StringArray | None:
    """`values` as one Arrow text array, or None when one is not UTF-8 (or they are too
    large together for 32-bit offsets)."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if lengths.sum() >= 2**31:
        return None
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    text = pa.StringArray.from_buffers(
        len(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(values))
    )
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return text


@dataclass(frozen=True)
class LandingTable:
    """A warehouse table fed by one topic: how rows are built and which columns key them.

    `near` is a column that is equal on every copy of a row and follows the order in
    which rows land (event time, window start, offset): a stored row is a copy when its
    key and `near` are equal to a batch row's, and matching on `near` lets DuckDB skip
    every row group outside the batch's range of it (`landed_copies`).
    `parsed`, for an output's table, is the SQL that builds the rows inside DuckDB
    (`parsed_select`); `rows` builds the same rows in Python. `screen` picks the batches
    DuckDB is given to parse (`sinks.parse_screen`); without one, it is given every batch.
    `compression` names the compression of text columns, fixed when the table is
    created (`text_compression`).
    """

    name: str
    rows: Callable[[TopicBatch], pl.DataFrame]
    key: tuple[str, ...]
    near: str
    parsed: str | None = None
    compression: Mapping[str, str] = field(default_factory=dict)
    screen: ParseScreen | None = None


DEAD_LETTERS = LandingTable(
    "dead_letters", dead_letter_rows, ("topic", "partition", "offset"), near="offset"
)
"""The table every flow's dead-letter topic lands in, with the records of output topics
that are not of their output's type."""


Prepared: TypeAlias = pl.DataFrame | pa.Table | None
"""A batch of one topic made ready off the writer: its rows, or its raw records for DuckDB;
None leaves building its rows to the writer."""


def prepare(table: LandingTable, batch: TopicBatch) -> Prepared:
    """What the writer lands: for an output, the raw records DuckDB parses, unless the
    table's screen finds one DuckDB might read differently from the exact decode; else the
    rows. None when some records are not of the output's type: the writer sets them aside
    (`land_batches`)."""
    if table.parsed is not None:
        raw = raw_records(batch)
        if raw is not None:
            if table.screen is None or table.screen.passes(raw.column("value")):
                return raw
            log.debug("%s: a record may not be of its type; parsing in Python", table.name)
    try:
        return table.rows(batch)
    except RecordsNotOfType:
        return None


@contextlib.contextmanager
def raw_records_registered(
    con: duckdb.DuckDBPyConnection, batches: list[tuple[LandingTable, Prepared]]
) -> Iterator[None]:
    """The raw records among `batches` registered under their tables' `raw_records_name`
    for the block. Call it outside a transaction: dropping a registration inside one that
    is then rolled back would undo the drop."""
    names = []
    try:
        for table, prepared in batches:
            if isinstance(prepared, pa.Table):
                con.register(raw_records_name(table.name), prepared)
                names.append(raw_records_name(table.name))
        yield
    finally:
        for name in names:
            con.unregister(name)


class RecordsRefused(Exception):
    """DuckDB's strict parse refused a record of `table`'s batch; the transaction it ran in
    is aborted and must be rolled back."""

    def __init__(self, table: str, reason: str) -> None:
        super().__init__(f"{table}: {reason}")
        self.table = table


STRAGGLER_ROWS = 48
"""Rows of a batch with the lowest `near` that are looked up on their own (see
`landed_copies`): DuckDB filters a scan by the values themselves when a join's build side has
at most `dynamic_or_filter_threshold` (50) rows, by their range beyond."""


def landed_copies(table: LandingTable, batch: str) -> str:
    """SQL selecting the key of every row of `table` that the relation `batch` holds again:
    a landed row is the same row when its key and its `near` are equal.

    Written as a semi join of the table with the batch, so DuckDB builds its hash table
    on the batch and passes the batch's range of `near` to the table's scan, which skips
    the row groups outside it. Filtering the table by that range in the query instead
    led the planner to build on the stored rows in range: a backlog's batches span most
    of what is landed (see the README's "Scaling out"), so that hashed most of the table
    for every batch.

    The batch's `STRAGGLER_ROWS` rows of lowest `near` are looked up in a semi join of
    their own, which DuckDB filters by their values, the rest by their range. A live
    batch holds a few events that arrived minutes late (kept, not dropped): in one range
    with the others, they made every write scan the minutes of rows since, so a write's
    cost grew with the table's (`python -m bench.late_lookups`).
    """
    columns = ", ".join(identifier(c) for c in dict.fromkeys((*table.key, table.near)))
    keys = ", ".join(identifier(c) for c in table.key)
    near, name = identifier(table.near), identifier(table.name)
    cut = f"(SELECT {near} FROM {batch} ORDER BY {near} LIMIT 1 OFFSET {STRAGGLER_ROWS})"
    stragglers = f"(SELECT {columns} FROM {batch} WHERE {near} < {cut})"
    rest = f"(SELECT {columns} FROM {batch} WHERE {near} >= {cut} OR {cut} IS NULL)"
    return (
        f"SELECT {keys} FROM {name} SEMI JOIN {stragglers} USING ({columns}) UNION ALL "
        f"SELECT {keys} FROM {name} SEMI JOIN {rest} USING ({columns})"
    )


def insert_parsed(con: duckdb.DuckDBPyConnection, table: LandingTable) -> int:
    """Parse `table`'s raw records (registered under `raw_records_name`) inside DuckDB and
    insert the rows whose key is new, in one statement; return how many were inserted.

    As `insert_new`: the first copy of a key in the batch is kept, a key the table already
    holds with the same `near` is dropped (`landed_copies`). The parsed rows are held
    once, in memory, for the statement (writing them to a staging table and inserting
    from it in a second statement took about a third longer). Raises RecordsRefused when
    the parse refuses a record: the caller's transaction is then aborted, and
    `land_batches` builds the rows in Python instead (`rows_setting_aside`).
    """
    assert table.parsed is not None  # `prepare` hands over raw records only for these
    keys, name = ", ".join(identifier(c) for c in table.key), identifier(table.name)
    # The new rows are picked by position from the keys and positions alone: anti-joined
    # as whole rows, the planner built its hash table on the batch's wide rows instead.
    try:
        inserted = con.execute(
            f"WITH parsed AS MATERIALIZED ({table.parsed}) "
            f"INSERT INTO {name} BY NAME SELECT * EXCLUDE (pos) FROM parsed WHERE pos IN "
            f"(SELECT min(pos) FROM parsed ANTI JOIN ({landed_copies(table, 'parsed')}) "
            f"USING ({keys}) GROUP BY {keys})"
        ).fetchone()
    except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
        raise RecordsRefused(table.name, str(exc).splitlines()[0]) from exc
    return int(inserted[0]) if inserted else 0


def land_batches(
    con: duckdb.DuckDBPyConnection,
    batches: list[tuple[LandingTable, TopicBatch, Prepared]],
    also: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    """Insert the new rows of each table's batch, then run `also`, in one transaction;
    return the rows inserted, by table name.

    A table whose records DuckDB's parse refuses rolls the transaction back, and it is
    run again with that table's rows built in Python (`table.rows`). Records that are not
    of the table's type (another writer sent them to its topic) are landed in
    `dead_letters` instead, in the same transaction: the topic, partition and offset they
    were read at, why they are not, their bytes and Kafka time. The rest of the batch
    lands, and nothing read is lost; a replay lands them once. Refusals are rare: records
    another writer sent, or sent before the schema gained a field.
    """
    in_python: set[str] = set()
    while True:
        set_aside: list[RecordsNotOfType] = []
        try:
            inserted = _land_once(con, batches, also, in_python, set_aside)
        except RecordsRefused as refused:
            log.debug("%s; parsing in Python", refused)
            in_python.add(refused.table)
            continue
        for records in set_aside:
            log.warning("%s; kept in dead_letters", records)
        return inserted


def rows_setting_aside(
    table: LandingTable, batch: TopicBatch
) -> tuple[pl.DataFrame, RecordsNotOfType | None]:
    """`table`'s rows of `batch` built in Python, leaving out its records that are not of the
    table's type, and the refusal naming those (None when there are none)."""
    try:
        return table.rows(batch), None
    except RecordsNotOfType as refused:
        return table.rows(batch.without(refused.rows)), refused


def _land_once(
    con: duckdb.DuckDBPyConnection,
    batches: list[tuple[LandingTable, TopicBatch, Prepared]],
    also: Callable[[], None],
    in_python: set[str],
    set_aside: list[RecordsNotOfType],
) -> dict[str, int]:
    parsed = [
        (table, ready)
        for table, _, ready in batches
        if isinstance(ready, pa.Table) and table.name not in in_python
    ]
    with raw_records_registered(con, parsed):
        con.execute("BEGIN TRANSACTION")
        inserted: dict[str, int] = {}
        try:
            for table, batch, ready in batches:
                if isinstance(ready, pl.DataFrame):
                    rows = insert_new(con, table, ready)
                elif isinstance(ready, pa.Table) and table.name not in in_python:
                    rows = insert_parsed(con, table)
                else:
                    built, refused = rows_setting_aside(table, batch)
                    rows = insert_new(con, table, built)
                    if refused is not None:
                        set_aside.append(refused)
                        dead_rows = insert_new(con, DEAD_LETTERS, not_of_type_rows(batch, refused))
                        inserted[DEAD_LETTERS.name] = inserted.get(DEAD_LETTERS.name, 0) + dead_rows
                inserted[table.name] = inserted.get(table.name, 0) + rows
            also()
            con.execute("COMMIT")
            return inserted
        except Exception:
            # A failed commit may already have ended the transaction.
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise


def insert_new(con: duckdb.DuckDBPyConnection, table: LandingTable, rows: pl.DataFrame) -> int:
    """Insert the rows whose key is not in the table yet; return how many were inserted.

    Outputs are deterministic from the input, so a row landed again (a replayed topic, a
    flow that re-emits after a restart) equals the stored one: the first copy is kept and
    later ones are dropped, within the batch and against the table. Stored copies are
    found by key and `table.near` (`landed_copies`) in a scan that skips the row groups
    outside the batch's range of `near`, cheaper than maintaining a unique index on every
    write.
    """
    if rows.is_empty():
        return 0
    rows = rows.unique(subset=list(table.key), keep="first", maintain_order=True)
    con.register("landing_batch", rows.to_arrow())
    try:
        columns = ", ".join(identifier(c) for c in rows.columns)
        keys = ", ".join(identifier(c) for c in table.key)
        inserted = con.execute(
            f"INSERT INTO {identifier(table.name)} ({columns}) SELECT {columns} FROM landing_batch "
            f"ANTI JOIN ({landed_copies(table, 'landing_batch')}) USING ({keys})"
        ).fetchone()
    finally:
        con.unregister("landing_batch")
    return int(inserted[0]) if inserted else 0


def _no_records(topic: str) -> TopicBatch:
    return TopicBatch(topic, [], [], [], [], [], [])


def text_compression(flow: Flow, output: Output) -> dict[str, str]:
    """The compression of each text column of an output's table, by column name.

    Unpinned, DuckDB tries both of its text compressions on every column at every
    checkpoint and keeps the smaller, and the trying costs a quarter to a third of a live
    checkpoint, during which writes to the table wait. So each text column is pinned,
    when its table is created, to the one DuckDB would keep. Text the event carries (its
    id, its trace context, the flow's key, a field lifted by `columns` or computed by
    `derive`) is mostly distinct, and is compressed with FSST. Text from a small set
    is compressed with a dictionary: a field whose values one of the flow's schemas
    lists (`enum`, in the input's or any output's data), and every field the event
    does not carry (reference attributes a lookup adds, a window set's name).
    A wrong guess costs space (a dictionary of distinct values is about twice FSST's
    size), never a value.
    """
    carried = {"event_id", flow.key, *flow.columns, *flow.derive}
    carried |= {name for windows in flow.windows for name in windows.derive}
    enumerated = {
        name
        for event_type in {flow.input_type, *(o.event_type for o in flow.outputs())}
        for name, node in load_schema(event_type)
        .document["properties"]["data"]["properties"]
        .items()
        if "enum" in node
    }
    schema = load_schema(output.event_type)
    kinds = {f.name: f.type for f in schema.arrow_schema}
    data_kind = kinds["data"]
    fields = schema.document["properties"]["data"]["properties"]
    compression = {
        name: "dictionary" if name in enumerated or name not in carried else "fsst"
        for name, node in fields.items()
        if node.get("format") != "date-time" and pa.types.is_string(data_kind.field(name).type)
    }
    for name in output.table.envelope:
        if name in kinds and pa.types.is_string(kinds[name]):
            compression[name] = "fsst"
    return compression


def flow_tables(flow: Flow) -> dict[str, LandingTable]:
    """The landing of every topic a flow writes, by topic: its outputs and its dead letters."""
    tables = {
        o.topic: LandingTable(
            o.table.name,
            partial(output_rows, o),
            o.table.key,
            o.table.near,
            parsed_select(o),
            text_compression(flow, o),
            ParseScreen.of(load_schema(o.event_type).arrow_schema),
        )
        for o in flow.outputs()
    }
    tables[flow.dead_letter_topic] = DEAD_LETTERS
    return tables


def create_tables(con: duckdb.DuckDBPyConnection, tables: dict[str, LandingTable]) -> None:
    """Create each landing table from its rows' types; add columns an older file lacks.

    A new field in an output's schema (an additive change) becomes a new nullable column
    of an existing table; rows landed before it read NULL there. Text columns take the
    table's `compression` when they are created; a table created without it keeps
    DuckDB's choice per checkpoint, since a column's compression cannot be changed.
    """
    con.execute(TABLES_DDL)
    for topic, table in tables.items():
        if table.name == "dead_letters":
            continue
        con.register("new_rows", table.rows(_no_records(topic)).to_arrow())
        try:
            columns = {
                name: _column_definition(name, kind, table.compression)
                for name, kind, *_ in con.execute("DESCRIBE new_rows").fetchall()
            }
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {identifier(table.name)} "
                f"({', '.join(columns.values())})"
            )
            have = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table.name]
                ).fetchall()
            }
            for name, definition in columns.items():
                if name not in have:
                    con.execute(f"ALTER TABLE {identifier(table.name)} ADD COLUMN {definition}")
        finally:
            con.unregister("new_rows")


def _column_definition(name: str, kind: str, compression: Mapping[str, str]) -> str:
    pinned = compression.get(name) if kind == "VARCHAR" else None
    using = f" USING COMPRESSION {pinned}" if pinned else ""
    return f"{identifier(name)} {kind}{using}"
