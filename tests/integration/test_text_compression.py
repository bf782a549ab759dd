"""A landing table's text columns keep the compression chosen when they were created, what
the rows that land in them are like: FSST for text the event carries, a dictionary for
reference attributes. Real DuckDB file; the rows are built to make DuckDB's own choice
the other one, so a column left unpinned fails."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from flows import orders
from sinks.duckdb import create_tables, flow_tables

TABLES = flow_tables(orders.FLOW)
ROWS = 20_000


def compressions(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, set[str]]:
    """The compressions of each column's stored segments (validity masks aside)."""
    found: dict[str, set[str]] = {}
    for column, compression in con.execute(
        "SELECT column_name, compression FROM pragma_storage_info(?) "
        "WHERE segment_type <> 'VALIDITY'",
        [table],
    ).fetchall():
        found.setdefault(column, set()).add(compression)
    return found


@pytest.mark.parametrize("when", ["table created", "column added later"])
def test_text_columns_keep_their_compression_whatever_lands(tmp_path: Path, when: str) -> None:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        create_tables(con, TABLES)
        if when == "column added later":
            # A file from before the schema had the field: the landing adds the column.
            con.execute("ALTER TABLE orders_enriched DROP COLUMN store_version")
            create_tables(con, TABLES)
        # Order ids from a handful of values and a distinct store per row: left to itself,
        # DuckDB would store the ids as a dictionary and the reference attribute with FSST.
        con.execute(
            "INSERT INTO orders_enriched (event_id, order_id, store_name, store_version) "
            "SELECT uuid()::VARCHAR, 'order-' || (i % 5), 'store ' || uuid(), "
            "'pizza.stores/0@' || i FROM range(?) AS r(i)",
            [ROWS],
        )
        con.execute("CHECKPOINT")
        stored = compressions(con, "orders_enriched")
    finally:
        con.close()
    assert stored["event_id"] == {"FSST"}
    assert stored["order_id"] == {"FSST"}
    assert stored["store_name"] == {"Dictionary"}
    assert stored["store_version"] == {"Dictionary"}


def test_an_event_s_text_is_fsst_and_reference_attributes_a_dictionary() -> None:
    assert TABLES[orders.FLOW.enriched.topic].compression == {
        **dict.fromkeys(("event_id", "order_id", "customer_id", "traceparent"), "fsst"),
        # enumerated in the schema
        **dict.fromkeys(("channel", "currency"), "dictionary"),
        # added by the store and FX lookups
        **dict.fromkeys(("store_name", "city", "region", "store_version"), "dictionary"),
    }
