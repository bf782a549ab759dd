"""Records another writer sent to an output topic, with a field of another JSON type than
the schema's (or a number JSON has no room for, or a value breaking a rule of the schema),
land exactly as the exact decode lands them, whichever decode the landing takes, and land
only when the schema says they are valid: DuckDB's parse converts such values (a fraction
into an integer, a number into text) where the exact decode refuses them, so the parse
screen keeps them from it, and its statement refuses a record breaking a value rule. The
flow's own records pass the screen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import jsonschema
import polars as pl
import pyarrow as pa
import pytest

from sinks.duckdb import LandingTable, create_tables, land_batches, prepare, rows_setting_aside
from sinks.parse_screen import ParseScreen
from streamlane.decode import decode_record
from streamlane.schemas import load_schema
from tests.hostile import _finite
from tests.integration.test_landing_parse import (
    FLOW,
    TABLES,
    batch_of,
    enriched_values,
    table_rows,
    window_values,
)

HOSTILE = [
    "1.5", "12.0", "1e2", "-0", "7", '"12"', '"x"', '""', "true", "false", "null", "{}",
    '{"a": 1}', "[]", "[1]", '[{"a": 1}]', "NaN", "nan", "-Infinity", "1e400", "9" * 120,
    str(2**64), '"2026-11-02T11:00:00Z"', '"0000-01-01T00:00:00.000000Z"', "-1", "[null]",
    '"1.0"', '"pizza.order.enriched.v1"', '"pizza.store.revenue.1m.v1"', '"web"', '"EUR"',
]  # fmt: skip
"""JSON texts (and a few that JSON has no room for) put in place of each field's value: of
other types, and of the field's type breaking a rule (an empty text, a year 0, a negative
count, a null item) or keeping it (the constants and names the schemas list)."""
SCHEMAS = {o.topic: load_schema(o.event_type) for o in FLOW.outputs()}
VALIDATORS = {
    topic: jsonschema.Draft202012Validator(
        schema.document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for topic, schema in SCHEMAS.items()
}


def valid(record: bytes, topic: str) -> bool:
    """The oracle: whether the output's JSON Schema, its date-times checked by a standard
    RFC 3339 validator, accepts the record, every number fits a 64-bit float, and its time
    is within the years 1-9999."""
    event, _ = decode_record(record, SCHEMAS[topic])
    if event is None or not VALIDATORS[topic].is_valid(event):
        return False
    return _finite(event) and not event["time"].startswith("0000")


PLACEHOLDER = "\x00hostile\x00"


def fields(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every field of a decoded record, the first item of each list included."""
    if isinstance(value, dict):
        for name, child in value.items():
            yield (*path, name)
            yield from fields(child, (*path, name))
    elif isinstance(value, list) and value:
        yield from fields(value[0], (*path, 0))


def with_value(record: dict[str, Any], path: tuple[str | int, ...], text: str) -> bytes:
    """`record` serialized with the field at `path` written as `text`, verbatim."""
    event = json.loads(json.dumps(record))
    parent = event
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = PLACEHOLDER
    return json.dumps(event).replace(json.dumps(PLACEHOLDER), text).encode()


def variants(record: bytes) -> list[bytes]:
    """Each field of `record` with each hostile value, and the shapes of JSON that DuckDB
    reads and the exact decode does not, or that hide a field's name from a plain match."""
    event = json.loads(record)
    out = [with_value(event, path, text) for path in fields(event) for text in HOSTILE]
    text = record.decode()
    store = '"store_id": ' if '"store_id": ' in text else '"store_id":'
    shapes = [
        text[:-1] + ",}",  # a comma before the closing brace
        text.replace(store, '"store\\u005fid": 1.5, "x": ', 1),  # a key spelt with an escape
        text.replace(store, '"store_id" :\n 1.5, "x": ', 1),  # space around the colon
        text.replace(store, '"note": "a\\",\\"store_id\\":1.5", ' + store, 1),  # in a string
    ]
    return out + [shape.encode() for shape in shapes]


def landed(con: duckdb.DuckDBPyConnection, table: LandingTable) -> tuple[pl.DataFrame, ...]:
    """What a landing left: the table's rows and the dead letters, then both emptied."""
    rows = table_rows(con, table.name), table_rows(con, "dead_letters")
    con.execute(f"DELETE FROM {table.name}")
    con.execute("DELETE FROM dead_letters")
    return rows


@pytest.mark.parametrize(
    ("topic", "values"),
    [(FLOW.enriched.topic, enriched_values(3)), (FLOW.windows[0].output.topic, window_values(3))],
    ids=["enriched", "windows"],
)
def test_each_decode_lands_a_field_of_another_type_alike(topic: str, values: list[bytes]) -> None:
    table = TABLES[topic]
    assert table.screen is not None and table.screen.passes(pa.array([v.decode() for v in values]))
    screened, exact = duckdb.connect(), duckdb.connect()
    create_tables(screened, TABLES)
    create_tables(exact, TABLES)
    hostile = variants(values[1])
    # The exact decode, as the landing decodes a batch DuckDB is not given or refuses: it
    # decides each record alone, so one batch of every variant is decided as each would be.
    _, refused = rows_setting_aside(table, batch_of(topic, hostile))
    set_aside = set() if refused is None else set(refused.rows)
    assert [i in set_aside for i in range(len(hostile))] == [
        not valid(variant, topic) for variant in hostile
    ]
    given = 0
    for variant in hostile:
        batch = batch_of(topic, [values[0], variant, values[2]])
        prepared = prepare(table, batch)
        if not isinstance(prepared, pa.Table):
            continue  # kept from DuckDB: the landing decodes it the exact way
        given += 1
        land_batches(screened, [(table, batch, prepared)])
        land_batches(exact, [(table, batch, None)])
        got, want = landed(screened, table), landed(exact, table)
        assert got[0].equals(want[0]), variant
        assert got[1].equals(want[1]), variant
    # DuckDB was given some (an integer in a number field, a text that is not a date-time,
    # which it refuses, a value breaking a rule), and kept from others; some are valid.
    assert 0 < given < len(hostile)
    assert 0 < len(set_aside) < len(hostile)


@pytest.mark.parametrize(
    ("path", "text", "reason"),
    [
        (("data", "items", 0, "qty"), "1.5", "data.items.0.qty: 1.5 is not of type 'integer'"),
        (("data", "city"), "5", "data.city: 5 is not of type 'string'"),
        (("data", "total"), "NaN", "not valid JSON: NaN is not valid JSON"),
        (("data", "total"), "1e400", "data.total must be a finite number"),
    ],
    ids=["fraction-for-integer", "number-for-text", "nan", "too-large"],
)
def test_a_value_duckdb_would_convert_is_a_dead_letter(
    path: tuple[str | int, ...], text: str, reason: str
) -> None:
    """Not landed converted (1.5 rounded to 2, 5 as '5', NaN): kept with why."""
    table = TABLES[FLOW.enriched.topic]
    values = enriched_values(2)
    con = duckdb.connect()
    create_tables(con, TABLES)
    batch = batch_of(
        FLOW.enriched.topic, [values[0], with_value(json.loads(values[1]), path, text)]
    )
    land_batches(con, [(table, batch, prepare(table, batch))])
    rows, dead = landed(con, table)
    assert rows["event_id"].to_list() == [json.loads(values[0])["data"]["event_id"]]
    assert dead["offset"].to_list() == [1]
    assert dead["reason"].to_list() == [f"not pizza.order.enriched.v1: {reason}"]


def test_a_null_passes_the_screen_only_where_the_schema_allows_it() -> None:
    """The clickstream writes `null` for a page view's product and amount, which its schema
    allows; a null anywhere else DuckDB would land as NULL where the exact decode refuses."""
    schema = load_schema("shop.click.enriched.v1")
    screen = ParseScreen.of(schema.arrow_schema)
    example = schema.document["examples"][0]

    def with_null(name: str) -> str:
        event = json.loads(json.dumps(example))
        event["data"][name] = None
        return json.dumps(event)

    assert screen.passes(pa.array([with_null("product_id"), with_null("amount")]))
    for name in ("visitor_id", "shop_id", "shop_name"):
        assert not screen.passes(pa.array([with_null(name)])), name


@pytest.mark.parametrize("by_duckdb", [True, False], ids=["duckdb", "python"])
def test_a_value_breaking_a_rule_is_a_dead_letter_whichever_decode_takes_its_batch(
    by_duckdb: bool,
) -> None:
    """A channel outside the schema's enum: DuckDB's statement refuses it, and the exact
    decode keeps it with the rule it breaks, alone or beside a record that sends the batch
    to the exact decode from the start."""
    table = TABLES[FLOW.enriched.topic]
    values = enriched_values(2)
    neighbour = values[0]
    if not by_duckdb:
        neighbour = with_value(json.loads(values[0]), ("data", "items", 0, "qty"), "1.5")
    fax = with_value(json.loads(values[1]), ("data", "channel"), '"fax"')
    batch = batch_of(FLOW.enriched.topic, [neighbour, fax])
    prepared = prepare(table, batch)
    assert isinstance(prepared, pa.Table) == by_duckdb
    con = duckdb.connect()
    create_tables(con, TABLES)
    land_batches(con, [(table, batch, prepared)])
    rows, dead = landed(con, table)
    own = json.loads(values[0])["data"]["event_id"]
    assert rows["event_id"].to_list() == ([own] if by_duckdb else [])
    assert dead["offset"].to_list() == ([1] if by_duckdb else [0, 1])
    assert dead["reason"][-1] == (
        "not pizza.order.enriched.v1: data.channel must be one of ['web', 'app', 'phone']"
    )
