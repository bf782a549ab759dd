"""Records another writer sent to an output topic, with a field of another JSON type than
the schema's (or a number JSON has no room for), land exactly as the exact decode lands
them, whichever decode the landing takes: DuckDB's parse converts such values (a fraction
into an integer, a number into text) where the exact decode refuses them, so the parse
screen keeps them from it. The flow's own records pass the screen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from sinks.duckdb import LandingTable, create_tables, land_batches, prepare
from sinks.parse_screen import ParseScreen
from streamlane.schemas import load_schema
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
    str(2**64), '"2026-11-02T11:00:00Z"',
]  # fmt: skip
"""JSON texts (and a few that JSON has no room for) put in place of each field's value."""
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
    given = 0
    for variant in variants(values[1]):
        batch = batch_of(topic, [values[0], variant, values[2]])
        prepared = prepare(table, batch)
        if not isinstance(prepared, pa.Table):
            continue  # kept from DuckDB: the landing decodes it the exact way
        given += 1
        land_batches(screened, [(table, batch, prepared)])
        # The exact decode alone, as the landing lands a batch DuckDB refused.
        land_batches(exact, [(table, batch, None)])
        got, want = landed(screened, table), landed(exact, table)
        assert got[0].equals(want[0]), variant
        assert got[1].equals(want[1]), variant
    # DuckDB was given some (a `null` in an optional field, an integer in a number field, a
    # text that is not a date-time, which it refuses), and kept from others.
    assert 0 < given < len(variants(values[1]))


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
