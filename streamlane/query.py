"""`streamlane query`: SQL against the warehouse, through its owner process when it runs."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from streamlane.errors import UserError
from streamlane.sqlquote import identifier


def endpoint_file(warehouse: Path) -> Path:
    """Where a running warehouse process announces its query endpoint."""
    return warehouse.with_name(warehouse.name + ".endpoint.json")


def _via_endpoint(url: str, sql: str, timeout_s: float) -> pa.Table:
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return pa.ipc.open_stream(response.read()).read_all()
    except urllib.error.HTTPError as exc:
        message = json.loads(exc.read() or b"{}").get("error", str(exc))
        raise UserError(f"query failed: {message}") from None


_AS_TEXT = re.compile(r"\b(INTERVAL|BIT|BIGNUM|VARINT|UNION)\b")
"""DuckDB types a result's frame cannot hold (polars cannot import Arrow's intervals, unions
or DuckDB's big numbers, and a bit string arrives as its raw bytes), also nested in others."""


def result_table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run `sql` and return its last statement's rows (none when it returns no rows: a
    setting, or only a comment). Columns of a type in `_AS_TEXT` come as DuckDB's text
    for them (`1 day 02:00:00` for an interval), every other column as it is."""
    relation = con.sql(sql)
    if relation is None:
        return pa.table({})
    types = [str(t) for t in relation.types]
    if any(_AS_TEXT.search(t) for t in types):
        relation = relation.project(
            ", ".join(
                f"{identifier(name)}::VARCHAR AS {identifier(name)}"
                if _AS_TEXT.search(kind)
                else identifier(name)
                for name, kind in zip(relation.columns, types, strict=True)
            )
        )
    return relation.to_arrow_table()


def run_sql(warehouse: Path, sql: str, timeout_s: float = 60.0) -> pl.DataFrame:
    """Run `sql` on the warehouse and return the result.

    When a warehouse process owns the file, the query goes through it (a
    consistent snapshot, no lock conflict with the running landing); otherwise
    the file is opened read-only. Bad SQL raises UserError with DuckDB's message.
    """
    if not sql.strip():
        raise UserError('no SQL given (for example: streamlane query "SELECT 1")')
    announce = endpoint_file(warehouse)
    if announce.exists():
        url = json.loads(announce.read_text())["url"]
        try:
            return pl.DataFrame(pl.from_arrow(_via_endpoint(url, sql, timeout_s)))
        except urllib.error.URLError:
            pass  # the owner is gone (stale endpoint file): read the file directly
    if not warehouse.exists():
        raise UserError(f"no warehouse at {warehouse} (start one with `streamlane run`)")
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.IOException as exc:
        raise UserError(f"cannot open {warehouse}: {str(exc).splitlines()[0]}") from None
    try:
        return pl.DataFrame(pl.from_arrow(result_table(con, sql)))
    except duckdb.Error as exc:
        raise UserError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns (lists, structs) as JSON text, for CSV."""
    nested = [c for c, t in frame.schema.items() if t.is_nested()]
    if not nested:
        return frame
    encoded = {
        c: pl.Series(c, [json.dumps(v, default=str) for v in frame[c].to_list()], dtype=pl.String)
        for c in nested
    }
    return frame.with_columns(**encoded)


def _bytes_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Byte columns (BLOB) as text, for CSV and JSON, which have no bytes: UTF-8 as it is,
    any other byte escaped as `\\xNN`."""
    binary = [c for c, t in frame.schema.items() if t == pl.Binary]
    if not binary:
        return frame
    return frame.with_columns(
        pl.Series(
            c,
            [None if v is None else v.decode("utf-8", "backslashreplace") for v in frame[c]],
            dtype=pl.String,
        )
        for c in binary
    )


def print_result(frame: pl.DataFrame, fmt: str) -> None:
    """Print a result as `table`, `csv` (header row, then rows) or `json` (one object per row)."""
    if fmt == "csv":
        sys.stdout.write(_flat(_bytes_as_text(frame)).write_csv())
    elif fmt == "json":
        sys.stdout.write(_bytes_as_text(frame).write_json() + "\n")
    else:
        with pl.Config(
            tbl_rows=200, tbl_cols=-1, fmt_str_lengths=60, tbl_hide_dataframe_shape=True
        ):
            print(frame)
        print(f"({frame.height} row{'s' if frame.height != 1 else ''})")
