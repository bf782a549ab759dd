"""A PostgreSQL wire-protocol (v3) server answering from a DuckDB connection.

Covers what PostgreSQL clients and BI tools use: startup (SSL and GSS
encryption requests are declined so clients fall back to plain TCP), password
authentication (SCRAM-SHA-256 or md5), the simple and the extended query
protocol (named statements and portals, text and binary formats, row limits),
cancel requests and errors with SQLSTATE codes. Each client gets its own thread
and DuckDB cursor, so every query reads a consistent snapshot and a slow or
stuck client holds up nobody else. A malformed message ends that connection
with an error and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from streamlane import metrics
from streamlane.pgwire import sql as pgsql
from streamlane.pgwire.auth import AuthFailed, Credentials, ScramExchange
from streamlane.pgwire.types import TEXT, ColumnType, decode_parameter, result_type

log = logging.getLogger(__name__)

PROTOCOL_3 = 196608
SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
MAX_MESSAGE = 64 * 1024 * 1024
BATCH_ROWS = 4096


class ProtocolViolation(Exception):
    """The client broke the protocol; the connection is closed after telling it."""


class ClientGone(Exception):
    """The client closed the connection."""


class QueryError(Exception):
    """An error reported to the client as an ErrorResponse."""

    def __init__(self, sqlstate: str, message: str, severity: str = "ERROR") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.severity = severity


def _sqlstate(exc: duckdb.Error) -> str:
    checks: list[tuple[type[Exception], str]] = [
        (duckdb.ParserException, "42601"),
        (duckdb.CatalogException, "42P01"),
        (duckdb.BinderException, "42703"),
        (duckdb.ConversionException, "22P02"),
        (duckdb.PermissionException, "42501"),
        (duckdb.InterruptException, "57014"),
        (duckdb.OutOfRangeException, "22003"),
        (duckdb.InvalidInputException, "22023"),
        (duckdb.ConstraintException, "23000"),
    ]
    for kind, code in checks:
        if isinstance(exc, kind):
            return code
    return "XX000"


# -- framing --------------------------------------------------------------------------------


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def _fields(row: tuple[Any, ...], encoders: list[Any]) -> bytes:
    """A row's values as length-prefixed fields (-1 for NULL), as DataRow and binary COPY
    both carry them."""
    parts = []
    for value, encode in zip(row, encoders, strict=True):
        if value is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            raw = encode(value)
            parts.append(struct.pack("!i", len(raw)) + raw)
    return b"".join(parts)


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


class Reader:
    """Parses fields out of one message body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.body):
            raise ProtocolViolation("message shorter than its fields")
        out = self.body[self.pos : self.pos + n]
        self.pos += n
        return out

    def int16(self) -> int:
        return int(struct.unpack("!h", self._take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!i", self._take(4))[0])

    def cstr(self) -> str:
        end = self.body.find(b"\x00", self.pos)
        if end == -1:
            raise ProtocolViolation("unterminated string")
        text = self.body[self.pos : end].decode("utf-8", "replace")
        self.pos = end + 1
        return text

    def bytes_or_null(self) -> bytes | None:
        n = self.int32()
        return None if n == -1 else self._take(n)

    def byte(self) -> bytes:
        return self._take(1)

    def rest(self) -> bytes:
        return self._take(len(self.body) - self.pos)


# -- statements and portals ------------------------------------------------------------------


@dataclass
class Prepared:
    """A parsed statement: its text and the parameter types the client declared (0: unknown)."""

    sql: str
    param_oids: list[int]

    def parameter_count(self) -> int:
        numbers = [int(n) for n in re.findall(r"\$(\d+)", self.sql)]
        return max(numbers + [len(self.param_oids)])


@dataclass
class Result:
    """A statement's outcome: rows to stream, or just a command tag."""

    columns: list[tuple[str, ColumnType]] | None
    batches: Iterator[pa.RecordBatch] | None
    tag: str
    pending: list[tuple[Any, ...]] = field(default_factory=list)
    sent: int = 0
    done: bool = False
    copy_format: str | None = None


@dataclass
class Portal:
    prepared: Prepared
    params: list[Any]
    result_formats: list[int]
    result: Result | None = None


class Session:
    """One client connection."""

    def __init__(self, sock: socket.socket, server: PgServer) -> None:
        self.sock = sock
        self.server = server
        self.out: list[bytes] = []
        self.buffered = 0
        self.settings = dict(pgsql.STARTUP_PARAMETERS) | dict(pgsql.OTHER_SETTINGS)
        self.in_transaction = False
        self.failed_transaction = False
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.key = (server.next_pid(), secrets.randbits(31))

    # io
    def _recv(self, n: int) -> bytes:
        chunks, remaining = [], n
        while remaining:
            chunk = self.sock.recv(min(remaining, 1 << 20))
            if not chunk:
                raise ClientGone()
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_message(self) -> tuple[bytes, bytes]:
        header = self._recv(5)
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        if length < 4 or length > MAX_MESSAGE:
            raise ProtocolViolation(f"invalid message length {length}")
        return kind, self._recv(length - 4)

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        message = _message(kind, payload)
        self.out.append(message)
        self.buffered += len(message)
        if self.buffered > 256 * 1024:
            self.flush()

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(b"".join(self.out))
            self.out.clear()
            self.buffered = 0

    def error(self, exc: QueryError) -> None:
        fields = (
            b"S" + _cstr(exc.severity) + b"V" + _cstr(exc.severity) + b"C" + _cstr(exc.sqlstate)
            + b"M" + _cstr(exc.message) + b"\x00"
        )  # fmt: skip
        self.send(b"E", fields)
        if self.in_transaction:
            self.failed_transaction = True

    def ready(self) -> None:
        status = b"E" if self.failed_transaction else (b"T" if self.in_transaction else b"I")
        self.send(b"Z", status)
        self.flush()

    # lifecycle
    def run(self) -> None:
        try:
            if not self._startup():
                return
            self._authenticate()
            self._welcome()
            self._serve()
        except ProtocolViolation as exc:
            self._close_with(QueryError("08P01", f"protocol violation: {exc}", "FATAL"))
        except AuthFailed:
            user = self.server.credentials.user
            self._close_with(
                QueryError("28P01", f'password authentication failed for user "{user}"', "FATAL")
            )
        except (ClientGone, ConnectionError, TimeoutError, OSError):
            pass
        except Exception:
            # A bug of ours must not take the server down: report it and end this session only.
            log.exception("PostgreSQL session failed")
            self._close_with(
                QueryError("XX000", "internal error in the streamlane endpoint", "FATAL")
            )
        finally:
            self.server.sessions.pop(self.key, None)
            if self.cursor is not None:
                self.cursor.close()

    def _close_with(self, exc: QueryError) -> None:
        try:
            self.out.clear()
            self.error(exc)
            self.flush()
        except OSError:
            pass

    def _startup(self) -> bool:
        while True:
            length = struct.unpack("!i", self._recv(4))[0]
            if length < 8 or length > 10_000:
                raise ProtocolViolation("invalid startup packet length")
            body = Reader(self._recv(length - 4))
            code = body.int32()
            if code in (SSL_REQUEST, GSS_REQUEST):
                self.sock.sendall(b"N")
                continue
            if code == CANCEL_REQUEST:
                self.server.cancel(body.int32(), body.int32())
                return False
            if code != PROTOCOL_3:
                raise ProtocolViolation(
                    f"unsupported protocol version {code >> 16}.{code & 0xFFFF}"
                )
            params: dict[str, str] = {}
            while (name := body.cstr()) != "":
                params[name] = body.cstr()
            self.user = params.get("user", "")
            self.database = params.get("database", self.user)
            if "application_name" in params:
                self.settings["application_name"] = params["application_name"]
            return True

    def _password_message(self) -> bytes:
        kind, body = self._read_message()
        if kind != b"p":
            raise ProtocolViolation("expected a password message")
        return body

    def _authenticate(self) -> None:
        credentials = self.server.credentials
        if self.server.auth_method == "md5":
            salt = secrets.token_bytes(4)
            self.send(b"R", struct.pack("!i", 5) + salt)
            self.flush()
            response = Reader(self._password_message()).cstr()
            if self.user != credentials.user:
                raise AuthFailed()
            credentials.check_md5(salt, response)
        else:
            self.send(b"R", struct.pack("!i", 10) + _cstr("SCRAM-SHA-256") + b"\x00")
            self.flush()
            initial = Reader(self._password_message())
            if initial.cstr() != "SCRAM-SHA-256":
                raise AuthFailed()
            first = initial.bytes_or_null() or b""
            exchange = ScramExchange(credentials)
            server_first = exchange.first(first.decode("utf-8", "replace"))
            self.send(b"R", struct.pack("!i", 11) + server_first.encode())
            self.flush()
            final = self._password_message().decode("utf-8", "replace")
            server_final = exchange.final(final)
            if self.user != credentials.user:
                raise AuthFailed()
            self.send(b"R", struct.pack("!i", 12) + server_final.encode())
        self.send(b"R", struct.pack("!i", 0))

    def _welcome(self) -> None:
        self.cursor = self.server.connection.cursor()
        for statement in pgsql.SESSION_SETUP:
            self.cursor.execute(statement)
        for name in pgsql.STARTUP_PARAMETERS:
            self.send(b"S", _cstr(name) + _cstr(self.settings[name]))
        self.send(b"K", struct.pack("!ii", *self.key))
        self.server.sessions[self.key] = self
        self.ready()

    def _serve(self) -> None:
        skip_until_sync = False
        while True:
            kind, body = self._read_message()
            if kind == b"X":
                return
            if kind == b"S":
                skip_until_sync = False
                self.portals.pop("", None)
                self.ready()
                continue
            if kind == b"H":
                self.flush()
                continue
            if skip_until_sync and kind in b"PBDEC":
                continue
            try:
                if kind == b"Q":
                    self._simple_query(Reader(body).cstr())
                elif kind == b"P":
                    self._parse(Reader(body))
                elif kind == b"B":
                    self._bind(Reader(body))
                elif kind == b"D":
                    self._describe(Reader(body))
                elif kind == b"E":
                    self._execute(Reader(body))
                elif kind == b"C":
                    self._close(Reader(body))
                else:
                    raise ProtocolViolation(f"unexpected message type {kind!r}")
            except QueryError as exc:
                self.error(exc)
                if kind == b"Q":
                    self.ready()
                else:
                    skip_until_sync = True

    # running SQL
    def _run(self, command: pgsql.Command, params: list[Any]) -> Result:
        if command.tag is not None:
            if command.keyword in ("BEGIN", "START"):
                self.in_transaction = True
            elif command.keyword in ("COMMIT", "END", "ROLLBACK", "ABORT"):
                self.in_transaction = self.failed_transaction = False
            if command.setting is not None:
                name, value = command.setting
                default = pgsql.STARTUP_PARAMETERS.get(name, pgsql.OTHER_SETTINGS.get(name, ""))
                self.settings[name] = default if value is None else value
            return Result(None, None, command.tag)
        if self.failed_transaction:
            raise QueryError(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )
        if command.show is not None:
            value = pgsql.lookup(self.settings, command.show)
            if value is None:
                raise QueryError("42704", f'unrecognized configuration parameter "{command.show}"')
            batch = pa.record_batch({command.show.lower(): pa.array([value])})
            return Result(
                [(command.show.lower(), result_type(pa.string(), "VARCHAR"))], iter([batch]), "SHOW"
            )
        assert self.cursor is not None
        sql = pgsql.rewrite(command.sql, self.settings)
        started = time.perf_counter()
        try:
            if not self.server.allow_writes:
                pgsql.check_read_only(self.cursor, sql)
            with self.server.query_slots:
                relation = self.cursor.execute(sql, params or None)
        except pgsql.ReadOnlyViolation as exc:
            raise QueryError("25006", str(exc)) from None
        except duckdb.Error as exc:
            log.debug("query failed: %s -- %s", sql, exc)
            raise QueryError(_sqlstate(exc), str(exc).splitlines()[0]) from None
        finally:
            metrics.PG_QUERIES.inc()
            metrics.PG_QUERY_SECONDS.observe(time.perf_counter() - started)
        if relation.description is None:
            return Result(None, None, command.keyword)
        reader = _Throttled(relation.fetch_record_batch(BATCH_ROWS), self.server.query_slots)
        columns = [
            (d[0], result_type(reader.schema.field(i).type, str(d[1])))
            for i, d in enumerate(relation.description)
        ]
        tag = {"EXPLAIN": "EXPLAIN", "COPY": "COPY"}.get(command.keyword, "SELECT")
        return Result(columns, iter(reader), tag, copy_format=command.copy_format)

    def _row_description(self, result: Result, formats: list[int]) -> None:
        assert result.columns is not None
        fields = [struct.pack("!h", len(result.columns))]
        for i, (name, ctype) in enumerate(result.columns):
            fmt = formats[i] if i < len(formats) else 0
            fields.append(
                _cstr(name) + struct.pack("!ihihih", 0, 0, ctype.oid, ctype.size, -1, fmt)
            )
        self.send(b"T", b"".join(fields))

    def _send_rows(self, result: Result, formats: list[int], limit: int = 0) -> bool:
        """Send up to `limit` rows (0: all); return True when the result is exhausted."""
        assert result.columns is not None and result.batches is not None
        encoders = [
            ctype.binary if (formats[i] if i < len(formats) else 0) == 1 else ctype.text
            for i, (_, ctype) in enumerate(result.columns)
        ]
        count = struct.pack("!h", len(encoders))
        sent_now = 0
        while not limit or sent_now < limit:
            if not result.pending:
                batch = next(result.batches, None)
                if batch is None:
                    result.done = True
                    return True
                result.pending = list(zip(*(c.to_pylist() for c in batch.columns), strict=True))
                result.pending.reverse()
                continue
            row = result.pending.pop()
            self.send(b"D", count + _fields(row, encoders))
            sent_now += 1
            result.sent += 1
        return False

    def _rows(self, result: Result) -> Iterator[tuple[Any, ...]]:
        assert result.batches is not None
        for batch in result.batches:
            yield from zip(*(c.to_pylist() for c in batch.columns), strict=True)

    def _copy_out(self, result: Result) -> None:
        """Stream a result as COPY data: CopyOutResponse, one CopyData per row, CopyDone.

        One row per message is what drivers parse (as PostgreSQL sends it); in binary
        format the file header travels with the first row and the trailer on its own.
        """
        assert result.columns is not None
        binary = result.copy_format == "binary"
        n = len(result.columns)
        fmt = 1 if binary else 0
        self.send(b"H", struct.pack(f"!bh{n}h", fmt, n, *([fmt] * n)))
        if binary:
            header = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
            encoders = [ctype.binary for _, ctype in result.columns]
            for row in self._rows(result):
                self.send(b"d", header + struct.pack("!h", n) + _fields(row, encoders))
                header = b""
                result.sent += 1
            if header:
                self.send(b"d", header)
            self.send(b"d", struct.pack("!h", -1))
        else:
            csv = result.copy_format == "csv"
            encoders = [ctype.text for _, ctype in result.columns]
            for row in self._rows(result):
                cells = [_copy_text(v, e, csv) for v, e in zip(row, encoders, strict=True)]
                self.send(b"d", (b"," if csv else b"\t").join(cells) + b"\n")
                result.sent += 1
        result.done = True
        self.send(b"c")

    def _complete(self, result: Result) -> None:
        tag = f"{result.tag} {result.sent}" if result.tag in ("SELECT", "COPY") else result.tag
        self.send(b"C", _cstr(tag))

    def _simple_query(self, sql: str) -> None:
        statements = pgsql.split_statements(sql)
        if not statements:
            self.send(b"I")
        for statement in statements:
            result = self._run(pgsql.classify(statement), [])
            if result.copy_format is not None:
                self._copy_out(result)
            elif result.columns is not None:
                self._row_description(result, [])
                self._send_rows(result, [])
            self._complete(result)
        self.ready()

    def _parse(self, body: Reader) -> None:
        name, sql = body.cstr(), body.cstr()
        oids = [body.int32() for _ in range(body.int16())]
        statements = pgsql.split_statements(sql)
        if len(statements) > 1:
            raise QueryError("42601", "cannot insert multiple commands into a prepared statement")
        self.statements[name] = Prepared(statements[0] if statements else "", oids)
        self.send(b"1")

    def _prepared(self, name: str) -> Prepared:
        prepared = self.statements.get(name)
        if prepared is None:
            raise QueryError("26000", f'prepared statement "{name}" does not exist')
        return prepared

    def _bind(self, body: Reader) -> None:
        portal_name, statement_name = body.cstr(), body.cstr()
        prepared = self._prepared(statement_name)
        param_formats = [body.int16() for _ in range(body.int16())]
        raw_params = [body.bytes_or_null() for _ in range(body.int16())]
        result_formats = [body.int16() for _ in range(body.int16())]
        params = []
        for i, raw in enumerate(raw_params):
            fmt = (
                param_formats[0]
                if len(param_formats) == 1
                else (param_formats[i] if param_formats else 0)
            )
            oid = prepared.param_oids[i] if i < len(prepared.param_oids) else 0
            try:
                params.append(decode_parameter(raw, oid, fmt == 1))
            except (struct.error, UnicodeDecodeError, ValueError):
                raise QueryError("22P03", f"invalid binary value for parameter ${i + 1}") from None
        if len(result_formats) == 1:
            result_formats = result_formats * 4096
        self.portals[portal_name] = Portal(prepared, params, result_formats)
        self.send(b"2")

    def _portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise QueryError("34000", f'portal "{name}" does not exist')
        return portal

    def _start(self, portal: Portal) -> Result:
        if portal.result is None:
            if not portal.prepared.sql:
                portal.result = Result(None, None, "")
            else:
                portal.result = self._run(pgsql.classify(portal.prepared.sql), portal.params)
        return portal.result

    def _describe(self, body: Reader) -> None:
        target, name = body.byte(), body.cstr()
        if target == b"S":
            prepared = self._prepared(name)
            count = prepared.parameter_count()
            declared = prepared.param_oids + [0] * count
            oids = [declared[i] or TEXT for i in range(count)]
            self.send(b"t", struct.pack("!h", count) + b"".join(struct.pack("!i", o) for o in oids))
            columns = self._describe_columns(prepared, count)
            if columns is None:
                self.send(b"n")
            else:
                self._row_description(Result(columns, None, ""), [])
        elif target == b"P":
            portal = self._portal(name)
            result = self._start(portal)
            if result.columns is None:
                self.send(b"n")
            else:
                self._row_description(result, portal.result_formats)
        else:
            raise ProtocolViolation("Describe must name a statement or a portal")

    def _describe_columns(
        self, prepared: Prepared, count: int
    ) -> list[tuple[str, ColumnType]] | None:
        command = pgsql.classify(prepared.sql) if prepared.sql else None
        if command is None or command.tag is not None:
            return None
        if command.show is not None:
            return [(command.show.lower(), result_type(pa.string(), "VARCHAR"))]
        if command.keyword not in (
            "SELECT",
            "WITH",
            "VALUES",
            "TABLE",
            "FROM",
            "SHOW",
            "DESCRIBE",
            "EXPLAIN",
            "PRAGMA",
            "SUMMARIZE",
        ):
            return None
        result = self._run(command, [None] * count)
        if result.batches is not None:
            for _ in result.batches:  # drain: only the types are needed
                pass
        return result.columns

    def _execute(self, body: Reader) -> None:
        portal = self._portal(body.cstr())
        limit = body.int32()
        result = self._start(portal)
        if not portal.prepared.sql:
            self.send(b"I")
            return
        if result.copy_format is not None and not result.done:
            self._copy_out(result)
        more = result.columns is not None and not result.done
        if more and not self._send_rows(result, portal.result_formats, max(0, limit)):
            self.send(b"s")  # PortalSuspended: the client may Execute again for more rows
            return
        self._complete(result)

    def _close(self, body: Reader) -> None:
        target, name = body.byte(), body.cstr()
        (self.statements if target == b"S" else self.portals).pop(name, None)
        self.send(b"3")


def _copy_text(value: Any, encode: Any, csv: bool) -> bytes:
    """One field of COPY text (tab-separated, backslash escapes, \\N) or CSV (quoted, empty NULL)."""
    if value is None:
        return b"" if csv else b"\\N"
    raw: bytes = encode(value)
    if csv:
        if any(c in raw for c in (b",", b'"', b"\n", b"\r")) or raw == b"":
            return b'"' + raw.replace(b'"', b'""') + b'"'
        return raw
    return (
        raw.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


class _Throttled:
    """Batches of a result, each computed while holding a query slot.

    DuckDB does a query's work as batches are fetched; the slot is released while rows are
    encoded and sent, so a slow client never holds one.
    """

    def __init__(self, reader: pa.RecordBatchReader, slots: threading.BoundedSemaphore) -> None:
        self.reader = reader
        self.slots = slots
        self.schema = reader.schema

    def __iter__(self) -> _Throttled:
        return self

    def __next__(self) -> pa.RecordBatch:
        with self.slots:
            return self.reader.read_next_batch()


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Session(self.request, self.server.pg).run()


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    pg: PgServer


class PgServer:
    """Serves `connection` (a DuckDB connection) to PostgreSQL clients until `stop()`."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        credentials: Credentials,
        host: str = "127.0.0.1",
        port: int = 5433,
        *,
        auth_method: str = "scram-sha-256",
        allow_writes: bool = False,
        max_concurrent_queries: int = 0,
    ) -> None:
        self.connection = connection
        self.credentials = credentials
        self.auth_method = auth_method
        self.allow_writes = allow_writes
        # Queries compete with the landing for cores: leave it one (see README, "Live warehouse").
        slots = max_concurrent_queries or max(1, (os.cpu_count() or 2) - 1)
        self.query_slots = threading.BoundedSemaphore(slots)
        self.sessions: dict[tuple[int, int], Session] = {}
        self._pids = iter(range(1000, 2**31))
        self._lock = threading.Lock()
        self.tcp = _TCPServer((host, port), _Handler, bind_and_activate=True)
        self.tcp.pg = self

    @property
    def port(self) -> int:
        """The port clients connect to (the one the system chose when it was created with 0)."""
        return int(self.tcp.server_address[1])

    def next_pid(self) -> int:
        """A process id for a new session, unique in this server: with its secret, the key
        a client's cancel request names the session by."""
        with self._lock:
            return next(self._pids)

    def cancel(self, pid: int, secret: int) -> None:
        """Interrupt the query running in the session with this id and secret; a request
        naming no session does nothing, as in PostgreSQL (the client is not told)."""
        session = self.sessions.get((pid, secret))
        if session is not None and session.cursor is not None:
            session.cursor.interrupt()

    def serve_in_background(self) -> None:
        """Accept clients on a daemon thread, each session on a thread of its own, until
        `stop()`."""
        threading.Thread(target=self.tcp.serve_forever, name="pgwire", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting, interrupt running queries and close every client connection."""
        self.tcp.shutdown()
        self.tcp.server_close()
        for session in list(self.sessions.values()):
            if session.cursor is not None:
                session.cursor.interrupt()
            with contextlib.suppress(OSError):
                session.sock.shutdown(socket.SHUT_RDWR)
