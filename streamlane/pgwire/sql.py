"""What the PostgreSQL endpoint does with SQL before DuckDB sees it.

PostgreSQL clients send session and catalog statements DuckDB does not know
(`SET extra_float_digits`, `SHOW server_version_num`, `current_setting(...)`,
`pg_extension`, `quote_ident`, `OPERATOR(pg_catalog.~)`). Session statements are
answered here; catalog functions are rewritten or provided as temporary macros
per session. Everything else is DuckDB SQL, checked against the read-only policy
by DuckDB's own parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb

import streamlane
from streamlane.sqlquote import literal

PG_VERSION = "15.0"
SERVER_VERSION = (
    f"PostgreSQL {PG_VERSION} (streamlane {streamlane.__version__}, DuckDB {duckdb.__version__})"
)

# Reported to clients at startup (ParameterStatus) and answered by SHOW / current_setting.
STARTUP_PARAMETERS = {
    "server_version": PG_VERSION,
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "is_superuser": "off",
    "application_name": "",
    "default_transaction_read_only": "on",
}
OTHER_SETTINGS = {
    "server_version_num": "150000",
    "search_path": "main",
    "transaction_isolation": "read committed",
    "transaction_read_only": "on",
    "max_identifier_length": "63",
    "extra_float_digits": "1",
    "lc_collate": "C",
    "lc_ctype": "C",
    "statement_timeout": "0",
}

SESSION_SETUP = [
    """CREATE OR REPLACE TEMP MACRO quote_ident(s) AS
        CASE WHEN regexp_full_match(s, '[a-z_][a-z0-9_$]*') THEN s
             ELSE '"' || replace(s, '"', '""') || '"' END""",
    """CREATE OR REPLACE TEMP MACRO parse_ident(s) AS
        list_transform(string_split(s, '.'), x -> replace(trim(x, '"'), '""', '"'))""",
    "CREATE OR REPLACE TEMP MACRO pg_get_userbyid(id) AS 'streamlane'",
    # psql passes a third "pretty" argument that DuckDB's two-argument macro lacks.
    "CREATE OR REPLACE TEMP MACRO pg_get_expr(e, r) AS e, (e, r, pretty) AS e",
    "CREATE OR REPLACE TEMP MACRO pg_get_statisticsobjdef_columns(id) AS NULL::VARCHAR",
    "CREATE OR REPLACE TEMP MACRO pg_get_triggerdef(id, pretty) AS NULL::VARCHAR",
    # PostgreSQL's spelling ("... USING method (columns)"), which psql cuts after USING.
    """CREATE OR REPLACE TEMP MACRO pg_get_indexdef(id, col := 0, pretty := false) AS
        (SELECT 'CREATE ' || CASE WHEN is_unique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                || index_name || ' ON ' || schema_name || '.' || table_name || ' USING art ('
                || regexp_extract(sql, '\\((.*)\\)\\s*;?\\s*$', 1) || ')'
         FROM duckdb_indexes() WHERE index_oid = id)""",
    "CREATE OR REPLACE TEMP MACRO pg_table_size(id) AS NULL::BIGINT",
    "CREATE OR REPLACE TEMP MACRO pg_relation_size(id) AS NULL::BIGINT",
    "CREATE OR REPLACE TEMP MACRO pg_total_relation_size(id) AS NULL::BIGINT",
    "CREATE OR REPLACE TEMP MACRO pg_encoding_to_char(id) AS 'UTF8'",
    "CREATE OR REPLACE TEMP MACRO pg_get_partkeydef(id) AS NULL::VARCHAR",
    "CREATE OR REPLACE TEMP MACRO pg_relation_is_publishable(id) AS false",
    "CREATE OR REPLACE TEMP MACRO array_lower(l, d) AS CASE WHEN len(l) > 0 THEN 1 END",
    "CREATE OR REPLACE TEMP MACRO array_upper(l, d) AS CASE WHEN len(l) > 0 THEN len(l) END",
    # Built-in types live in namespace pg_catalog (oid 11), as in PostgreSQL; DuckDB's own
    # pg_type points them at a namespace its pg_namespace does not always list.
    """CREATE OR REPLACE TEMP VIEW pg_namespace AS
        SELECT 11::BIGINT AS oid, 'pg_catalog' AS nspname, 10 AS nspowner, NULL::INTEGER AS nspacl
        UNION ALL
        SELECT * FROM pg_catalog.pg_namespace WHERE nspname <> 'pg_catalog'""",
    """CREATE OR REPLACE TEMP VIEW pg_type AS
        SELECT * REPLACE (CASE WHEN oid < 16384 THEN 11 ELSE typnamespace END AS typnamespace)
        FROM pg_catalog.pg_type""",
    # psql's \\d reads these catalogs; DuckDB has no row security, inheritance, policies,
    # extended statistics, publications or triggers, so they are present and empty.
    """CREATE OR REPLACE TEMP VIEW pg_class AS
        SELECT * REPLACE (NULL::VARCHAR[] AS reloptions, NULL::BIGINT AS relam, 'd' AS relreplident),
               false AS relforcerowsecurity
        FROM pg_catalog.pg_class""",
    """CREATE OR REPLACE TEMP VIEW pg_attribute AS
        SELECT * REPLACE (CASE WHEN attlen = -1 THEN 'x' ELSE 'p' END AS attstorage)
        FROM pg_catalog.pg_attribute""",
    """CREATE OR REPLACE TEMP VIEW pg_index AS
        SELECT *, false AS indnullsnotdistinct FROM pg_catalog.pg_index""",
    """CREATE OR REPLACE TEMP VIEW pg_database AS
        SELECT *, 10 AS datdba, 6 AS encoding, 'C' AS datcollate, 'C' AS datctype,
               NULL::VARCHAR AS daticulocale, 'c' AS datlocprovider, NULL::VARCHAR[] AS datacl
        FROM pg_catalog.pg_database""",
    """CREATE OR REPLACE TEMP VIEW pg_roles AS
        SELECT 10::BIGINT AS oid, 'streamlane' AS rolname, false AS rolsuper""",
    """CREATE OR REPLACE TEMP VIEW pg_inherits AS
        SELECT NULL::BIGINT AS inhrelid, NULL::BIGINT AS inhparent, NULL::INTEGER AS inhseqno,
               NULL::BOOLEAN AS inhdetachpending
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_policy AS
        SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS polname, NULL::BIGINT AS polrelid,
               NULL::VARCHAR AS polcmd, NULL::BOOLEAN AS polpermissive,
               NULL::VARCHAR AS polroles, NULL::VARCHAR AS polqual,
               NULL::VARCHAR AS polwithcheck
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_statistic_ext AS
        SELECT NULL::BIGINT AS oid, NULL::BIGINT AS stxrelid, NULL::VARCHAR AS stxname,
               NULL::BIGINT AS stxnamespace, NULL::BIGINT AS stxowner,
               NULL::INTEGER AS stxstattarget, NULL::SMALLINT[] AS stxkeys,
               NULL::VARCHAR[] AS stxkind, NULL::VARCHAR AS stxexprs
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_publication AS
        SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS pubname, NULL::BIGINT AS pubowner,
               NULL::BOOLEAN AS puballtables, NULL::BOOLEAN AS pubinsert,
               NULL::BOOLEAN AS pubupdate, NULL::BOOLEAN AS pubdelete,
               NULL::BOOLEAN AS pubtruncate, NULL::BOOLEAN AS pubviaroot
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_publication_rel AS
        SELECT NULL::BIGINT AS oid, NULL::BIGINT AS prpubid, NULL::BIGINT AS prrelid,
               NULL::VARCHAR AS prqual, NULL::SMALLINT[] AS prattrs
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_publication_namespace AS
        SELECT NULL::BIGINT AS oid, NULL::BIGINT AS pnpubid, NULL::BIGINT AS pnnspid
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_trigger AS
        SELECT NULL::BIGINT AS oid, NULL::BIGINT AS tgrelid, NULL::BIGINT AS tgparentid,
               NULL::VARCHAR AS tgname, NULL::BIGINT AS tgfoid, NULL::SMALLINT AS tgtype,
               NULL::VARCHAR AS tgenabled, NULL::BOOLEAN AS tgisinternal
        WHERE false""",
    """CREATE OR REPLACE TEMP VIEW pg_extension AS
        SELECT NULL::INTEGER AS oid, NULL::VARCHAR AS extname, NULL::INTEGER AS extowner,
               NULL::INTEGER AS extnamespace, NULL::BOOLEAN AS extrelocatable,
               NULL::VARCHAR AS extversion
        WHERE false""",
]

READ_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
NO_OP_TAGS = {
    "BEGIN": "BEGIN",
    "START": "START TRANSACTION",
    "COMMIT": "COMMIT",
    "END": "COMMIT",
    "ROLLBACK": "ROLLBACK",
    "ABORT": "ROLLBACK",
    "DISCARD": "DISCARD ALL",
    "DEALLOCATE": "DEALLOCATE",
    "LISTEN": "LISTEN",
    "UNLISTEN": "UNLISTEN",
}


class ReadOnlyViolation(Exception):
    """A read-only client sent a statement that would change something."""


@dataclass(frozen=True)
class Command:
    """One statement, classified: `tag` for answered-here commands, else `sql` for DuckDB."""

    keyword: str
    sql: str
    tag: str | None = None
    setting: tuple[str, str | None] | None = None  # SET name = value (None: RESET)
    show: str | None = None
    copy_format: str | None = None  # COPY (query) TO STDOUT: "text", "csv" or "binary"


_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)+", re.S)
_SET = re.compile(
    r"^SET\s+(?:SESSION\s+|LOCAL\s+)?(TIME\s+ZONE|[\w.]+)\s*(?:=|\s+TO\s+|\s)\s*(.*?)\s*$",
    re.I | re.S,
)
_RESET = re.compile(r"^RESET\s+([\w.]+|ALL)\s*$", re.I)
_COPY_OUT = re.compile(r"^COPY\s*\((.*)\)\s*TO\s+STDOUT\b(.*)$", re.I | re.S)
_SHOW = re.compile(r"^SHOW\s+(TIME\s+ZONE|[\w.]+)\s*$", re.I)


def split_statements(sql: str) -> list[str]:
    """Split on `;` outside quotes, identifiers, comments and dollar-quoted strings."""
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:
                end = sql.find(c, end + 2)
            i = n if end == -1 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif c == "$" and (m := re.match(r"\$(\w*)\$", sql[i:])):
            end = sql.find(m.group(0), i + len(m.group(0)))
            i = n if end == -1 else end + len(m.group(0))
        elif c == ";":
            out.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return [s for s in (_LEADING_NOISE.sub("", s).strip() for s in out) if s]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace(value[0] * 2, value[0])
    return value


def classify(statement: str) -> Command:
    """Decide whether a statement is answered here (session commands) or run by DuckDB."""
    keyword = (statement.split(None, 1) or [""])[0].upper().rstrip(";")
    if keyword in NO_OP_TAGS:
        return Command(keyword, statement, tag=NO_OP_TAGS[keyword])
    if keyword in ("SET", "RESET") and re.match(r"^\w+\s+GLOBAL\b", statement, re.I):
        return Command(keyword, statement)  # a server setting: DuckDB decides (it refuses)
    if keyword == "SET":
        if re.match(r"^SET\s+(SESSION\s+CHARACTERISTICS|TRANSACTION)\b", statement, re.I):
            return Command(keyword, statement, tag="SET")
        if m := _SET.match(statement):
            name = "TimeZone" if m.group(1).upper().replace(" ", "") == "TIMEZONE" else m.group(1)
            return Command(keyword, statement, tag="SET", setting=(name, _unquote(m.group(2))))
    if keyword == "COPY" and (m := _COPY_OUT.match(statement)):
        # COPY (query) TO STDOUT streams a query's rows to the client: a read (drivers such as
        # the one behind polars.read_database_uri fetch results this way).
        options = m.group(2).upper()
        kind = "binary" if "BINARY" in options else "csv" if "CSV" in options else "text"
        return Command(keyword, m.group(1).strip(), copy_format=kind)
    if keyword == "RESET" and (m := _RESET.match(statement)):
        return Command(keyword, statement, tag="RESET", setting=(m.group(1), None))
    if keyword == "SHOW" and (m := _SHOW.match(statement)):
        name = m.group(1)
        if name.upper() not in ("TABLES", "DATABASES", "ALL"):
            return Command(keyword, statement, show="TimeZone" if " " in name else name)
    return Command(keyword, statement)


# "The schemas on the search path", as Grafana's SQL editor asks for them: it takes a scalar
# function in FROM, which DuckDB has no counterpart for; answered with the list itself.
_SEARCH_PATH_SCHEMAS = re.compile(
    r"SELECT\s+CASE\s+WHEN\s+trim\(s\[i\]\)\s*=\s*'\"\$user\"'\s+THEN\s+user\s+ELSE\s+trim\(s\[i\]\)\s+END"
    r"\s+FROM\s+generate_series\(.*?\)\s+as\s+i\s*,"
    r"\s*string_to_array\(current_setting\('search_path'\)\s*,\s*','\)\s+s",
    re.I | re.S,
)


def _search_path_schemas(settings: dict[str, str]) -> str:
    path = lookup(settings, "search_path") or "main"
    names = [n.strip().strip('"') for n in path.split(",") if n.strip() and n.strip() != '"$user"']
    quoted = ", ".join(literal(n) for n in names) or "'main'"
    return f"SELECT unnest([{quoted}])"


def rewrite(sql: str, settings: dict[str, str]) -> str:
    """PostgreSQL spellings DuckDB lacks, turned into ones it has."""
    sql = _SEARCH_PATH_SCHEMAS.sub(lambda _: _search_path_schemas(settings), sql)

    def setting(m: re.Match[str]) -> str:
        value = lookup(settings, m.group(1))
        return "NULL" if value is None else literal(value)

    sql = re.sub(
        r"(?:pg_catalog\.)?current_setting\(\s*'([^']+)'\s*(?:,\s*\w+\s*)?\)",
        setting,
        sql,
        flags=re.I,
    )
    sql = re.sub(
        r"(?<![\w.])(?:pg_catalog\.)?version\(\s*\)",
        "'" + SERVER_VERSION + "'",
        sql,
        flags=re.I,
    )
    sql = re.sub(r"OPERATOR\(\s*pg_catalog\.([^\s)]+)\s*\)", r"\1", sql, flags=re.I)
    sql = re.sub(r"\s+COLLATE\s+pg_catalog\.\w+", "", sql, flags=re.I)
    # Types spelled with their schema, and the reg* object-name types DuckDB does not have.
    sql = re.sub(r"::\s*pg_catalog\.(\w+)", r"::\1", sql, flags=re.I)
    # psql's policy listing matches role oids inside a correlated array, which DuckDB cannot
    # bind; there are no policies, so no role ever matches.
    sql = re.sub(r"\boid\s*=\s*any\s*\(\s*pol\.polroles\s*\)", "false", sql, flags=re.I)
    # In PostgreSQL the alias of a one-column set-returning function also names its column.
    sql = re.sub(
        r"\bgenerate_series(\((?:[^()]|\([^()]*\))*\))\s+(?:AS\s+)?(\w+)(?=\s*,)",
        r"generate_series\1 AS \2(\2)",
        sql,
        flags=re.I,
    )
    # Functions spelled with their schema: DuckDB keeps some of them outside pg_catalog.
    sql = re.sub(r"\bpg_catalog\.(\w+)(?=\s*\()", r"\1", sql, flags=re.I)
    sql = re.sub(r"::\s*(regtype|regclass|regproc|regnamespace)\b", "::VARCHAR", sql, flags=re.I)
    sql = re.sub(
        r"\bpg_catalog\.(pg_extension|pg_type|pg_namespace|pg_class|pg_attribute|pg_database|pg_index|pg_inherits|pg_policy"
        r"|pg_statistic_ext|pg_publication|pg_publication_rel|pg_publication_namespace|pg_trigger"
        r"|quote_ident|parse_ident|pg_get_userbyid|pg_get_expr|pg_roles)\b",
        r"\1",
        sql,
        flags=re.I,
    )
    return sql


def lookup(settings: dict[str, str], name: str) -> str | None:
    """A session setting by case-insensitive name."""
    lowered = name.lower()
    for key, value in settings.items():
        if key.lower() == lowered:
            return value
    return None


def check_read_only(cursor: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise ReadOnlyViolation unless every statement only reads."""
    for statement in cursor.extract_statements(sql):
        if statement.type not in READ_TYPES:
            kind = statement.type.name.replace("_", " ")
            raise ReadOnlyViolation(f"cannot execute {kind} in a read-only transaction")
