"""DuckDB extensions loaded from their `duckdb-extension-<name>` wheels: nothing is downloaded."""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb

from streamlane.errors import UserError


def extension_file(name: str) -> Path:
    """The signed `<name>.duckdb_extension` file shipped in the `duckdb-extension-<name>` wheel."""
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise UserError(
            f"DuckDB extension {name!r} is not installed (duckdb-extension-{name})"
        ) from None
    found = sorted(Path(package.__file__ or "").parent.rglob(f"{name}.duckdb_extension"))
    if not found:
        raise UserError(f"duckdb-extension-{name} holds no {name}.duckdb_extension file")
    return found[0]


def load_extensions(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """LOAD each extension from its wheel file into `con`."""
    for name in names:
        con.execute(f"LOAD '{extension_file(name)}'")
