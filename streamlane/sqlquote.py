"""Quoting for SQL the project writes itself (DuckDB, and the PostgreSQL dialect it speaks)."""

from __future__ import annotations


def literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (a table or column name of any spelling)."""
    return '"' + name.replace('"', '""') + '"'
