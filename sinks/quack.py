"""DuckDB's Quack protocol served by the warehouse process, read-only for clients.

Quack exposes the whole SQL surface of the database to any holder of the token, so
the server installs an authorization callback that admits only statements that
parse as SELECT (checked on the parsed statement, not the text), and file access
is disabled for the whole database (see `lock_down`).
"""

from __future__ import annotations

import duckdb

from streamlane.extensions import load_extensions

READ_ONLY_MACRO = "streamlane_quack_read_only"


def serve_quack(con: duckdb.DuckDBPyConnection, host: str, port: int, token: str) -> str:
    """Start the Quack server on host:port; return its URI. Call before the configuration is locked."""
    load_extensions(con, "httpfs", "quack")
    # json_serialize_sql serializes SELECT statements only; anything else comes back as an error.
    con.execute(
        f"""CREATE OR REPLACE MACRO {READ_ONLY_MACRO}(sid, query) AS
            coalesce(NOT CAST(json_extract_string(
                json_serialize_sql(CAST(query AS VARCHAR)), '$.error') AS BOOLEAN), false)"""
    )
    con.execute(f"SET GLOBAL quack_authorization_function = '{READ_ONLY_MACRO}'")
    uri = f"quack:{host}:{port}"
    local = host in ("127.0.0.1", "localhost", "::1")
    con.execute(
        "CALL quack_serve(?, token => ?, allow_other_hostname => ?, disable_ssl => true)",
        [uri, token, not local],
    )
    return uri
