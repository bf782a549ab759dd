"""Batch decoding: raw Kafka values to a typed polars frame plus dead letters with reasons.

The columnar parser (Arrow's JSON reader with the schema's explicit Arrow types)
is strict: a wrong JSON type, invalid JSON, a non-object or a duplicate key makes
it fail and name the row. We then parse the rows before it columnar, hand that one
record to the per-record path (`json` + the schema's `jsonschema` validator, the
authority on the rare records that are valid JSON Schema but not plain Arrow, such
as `12.0` for an integer), and continue after it. Valid rows from both paths then
go through the schema's vectorized checks (enums, ranges, RFC 3339 time, ...).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from streamlane.engine import BATCH_ENGINE
from streamlane.schemas import ESCAPED_KEY, EventSchema, parse_rfc3339, value_type

MAX_DEPTH = 256
"""Records nested deeper (objects and arrays, counted in any field) are dead letters: the
exact per-record path could not parse them without exhausting the stack."""
MAX_AHEAD_S = 86_400.0
"""Events stamped further ahead of the wall clock are dead letters: one such event would move
its partition's watermark past every real event to come, making them all late."""
_FIRST_TIME = datetime(1, 1, 1, tzinfo=UTC)
_LAST_TIME = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')

# Parse calls are kept inside one Arrow block so a reported row number is absolute.
_BLOCK_BYTES = 1 << 21
_CHUNK_BYTES = 1 << 20
_PARALLEL_BLOCK_BYTES = 1 << 20
_ROW_IN_ERROR = re.compile(r"in row (\d+)")
_RAW_LINE_BREAK = r"[\r\n][\s\S]"
_ESCAPED_KEY = re.compile(ESCAPED_KEY.encode())
"""A raw line feed or carriage return with anything after it, in a row of the joined batch
(a record and the line feed after it): a break inside the record. One at a record's very
end leaves a last byte other than `}`, which the screen flags anyway. Outside strings such
a break is insignificant whitespace, inside strings invalid JSON: only the exact path can
tell, so those records take it, overwritten in the joined batch like every flagged record
(the parser reads one record per line). Looked for in the screen's one query, beside its
other scans."""


@dataclass(frozen=True)
class Decoded:
    """A decoded batch: `valid` rows (schema columns + `event_time` + `row`), `rejects` (`row`, `reason`)."""

    valid: pl.DataFrame
    rejects: pl.DataFrame


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_INT64 = range(-(2**63), 2**63)


def _conform(node: dict[str, Any], value: Any) -> Any:
    """Keep only declared fields, turn integral floats into ints where the schema says
    integer, and integers beyond 64 bits into floats where it says number (Arrow builds a
    float column from 64-bit integers only; one too large for a float is left for
    `_too_large` to refuse)."""
    kind = value_type(node)
    if kind == "object" and isinstance(value, dict):
        props = node.get("properties", {})
        return {k: _conform(props[k], v) for k, v in value.items() if k in props}
    if kind == "array" and isinstance(value, list):
        return [_conform(node.get("items", {}), v) for v in value]
    if kind == "integer" and isinstance(value, float):
        return int(value)
    if kind == "number" and type(value) is int and value not in _INT64:
        with contextlib.suppress(OverflowError):
            return float(value)
    return value


def _too_large(node: dict[str, Any], value: Any, path: str) -> str | None:
    """Why a conformed value holds a number its 64-bit column cannot (None when none does).

    The columnar frame holds integers as 64-bit integers and other numbers as 64-bit floats:
    a schema without a `maximum` would let a larger one through validation, and building
    the frame would then fail for the batch.
    """
    kind = value_type(node)
    if kind in ("integer", "number") and isinstance(value, int) and value not in _INT64:
        digits = str(value)
        shown = digits if len(digits) <= 40 else f"{digits[:37]}..."
        if kind == "integer":
            return f"{path}: {shown} does not fit a 64-bit integer"
        try:
            float(value)
        except OverflowError:
            return f"{path}: {shown} does not fit a 64-bit float"
    if kind == "object" and isinstance(value, dict):
        props = node.get("properties", {})
        for name, child in value.items():
            reason = _too_large(props[name], child, f"{path}.{name}" if path else name)
            if reason is not None:
                return reason
    if kind == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            reason = _too_large(node.get("items", {}), item, f"{path}.{i}")
            if reason is not None:
                return reason
    return None


def nesting_depth(raw: bytes) -> int:
    """How deeply objects and arrays nest in a JSON text (brackets inside strings do not count)."""
    structure = np.frombuffer(_STRING.sub(b"", raw), dtype=np.uint8)
    steps = (np.isin(structure, (ord("{"), ord("["))).astype(np.int64)) - np.isin(
        structure, (ord("}"), ord("]"))
    )
    return int(np.cumsum(steps).max(initial=0))


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a string no UTF-8 can carry (an unpaired `\\ud800`)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def decode_record(raw: bytes, schema: EventSchema) -> tuple[dict[str, Any] | None, str | None]:
    """Decode and validate one record the slow, exact way: (conformed event, None) or (None, reason)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte {exc.start})"
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        return None, f"not accepted: JSON nested deeper than {MAX_DEPTH} levels"
    try:
        event = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except _DuplicateKey as exc:
        return None, f"not valid JSON: {exc}"
    except (ValueError, RecursionError) as exc:
        return None, f"not valid JSON: {str(exc)[:120]}"
    if "\\u" in text and _has_lone_surrogate(event):
        return None, "not valid JSON: a string holds an unpaired UTF-16 surrogate"
    if not isinstance(event, dict):
        return None, f"not a JSON object (got {type(event).__name__})"
    if event.get("specversion") != "1.0":
        return None, "not a CloudEvent: specversion must be '1.0'"
    for attr in ("id", "source", "type", "time"):
        if attr not in event:
            return None, f"not a CloudEvent: {attr} is required"
    if event["type"] != schema.event_type:
        return None, f"unknown event type {str(event['type'])[:80]!r}"
    # The first error in the validator's (deterministic) order: collecting every error of a
    # large record would cost far more than finding one.
    error = next(iter(schema.validator.iter_errors(event)), None)
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "event"
        return None, f"{where}: {error.message[:160]}"
    conformed = _conform(schema.document, event)
    too_large = _too_large(schema.document, conformed, "")
    if too_large is not None:
        return None, too_large
    return conformed, None


def _line_starts(values: list[bytes]) -> np.ndarray:
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values)) + 1
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths)])


def _suspects(lines: list[bytes], joined: bytes, starts: np.ndarray, pattern: str) -> np.ndarray:
    """Rows the columnar parser would likely refuse, or could not be handed as they are:
    not an object, not UTF-8, nested too deeply, a declared field starting like the wrong
    JSON type, or a raw line break inside (`_RAW_LINE_BREAK`). Also rows the parser would
    accept but only the exact path can judge: a `null` where the schema allows none, and
    a key written with an escape (`ESCAPED_KEY`), which the schema's pattern cannot see.

    Each refusal costs the columnar parser a failed call and a re-parse (and every call
    starts a thread), so a batch with a few hundred bad records would spend most of its
    time failing. Flagged rows go straight to the exact per-record path; a bad row the
    screen misses is still caught by the parser, only more slowly.
    """
    n = len(lines)
    if not joined:
        return np.ones(n, dtype=bool)
    raw = np.frombuffer(joined, dtype=np.uint8)
    # An empty record is flagged by its length; its first/last-byte reads are its neighbours'.
    empty = np.diff(starts) == 1
    first = raw[np.minimum(starts[:-1], len(raw) - 1)]
    last = raw[np.maximum(starts[1:] - 2, 0)]
    flagged = empty | (first != ord("{")) | (last != ord("}"))
    text: bytes | bytearray = joined
    if not joined.isascii():
        wide = np.flatnonzero(raw >= 0x80)
        wide_rows = np.unique(np.searchsorted(starts, wide, side="right") - 1).tolist()
        blanked: bytearray | None = None
        for row in wide_rows:
            try:
                lines[row].decode("utf-8")
            except UnicodeDecodeError:
                flagged[row] = True
                blanked = blanked if blanked is not None else bytearray(joined)
                blanked[starts[row] : starts[row + 1] - 1] = b" " * len(lines[row])
        text = blanked if blanked is not None else joined
    # Zero-copy string view of the batch: row i is its line plus the separator.
    offsets = starts.copy()
    offsets[-1] = len(text)
    column = pl.from_arrow(
        pa.Array.from_buffers(
            pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)]
        )
    )
    assert isinstance(column, pl.Series)
    # One lazy query runs both scans in parallel. A record cannot
    # nest deeper than it has opening brackets: only those with many are measured exactly.
    line = pl.col("line")
    screened = (
        pl.DataFrame({"line": column})
        .lazy()
        .select(
            wrong_type=line.str.contains(pattern).fill_null(True),
            # A scan of its own: as one more alternative of the pattern above, it made
            # that scan slower than the two side by side.
            broken=line.str.contains(_RAW_LINE_BREAK),
            # Few records hold a backslash: only those are searched for an escaped key.
            escaped=line.str.contains("\\", literal=True),
            many_brackets=line.str.count_matches(r"[\[{]") > MAX_DEPTH,
        )
        .collect(engine=BATCH_ENGINE)
    )
    flagged |= screened["wrong_type"].to_numpy() | screened["broken"].to_numpy()
    for row in np.flatnonzero(screened["escaped"].to_numpy()).tolist():
        if _ESCAPED_KEY.search(lines[row]):
            flagged[row] = True
    for row in np.flatnonzero(screened["many_brackets"].to_numpy()).tolist():
        if nesting_depth(lines[row]) > MAX_DEPTH:
            flagged[row] = True
    return flagged


def _parse_columnar(
    values: list[bytes], schema: EventSchema
) -> tuple[list[pa.Table], list[np.ndarray], list[int], np.ndarray | None]:
    """Parse what Arrow accepts; return the tables, their row numbers, the rows it refused,
    and which table rows (concatenated) are placeholders to drop (None when there are none).
    A record the screen flags is overwritten in the joined batch (or left out of it), so
    the parser sees one record per line."""
    joined = b"\n".join(values)
    starts = _line_starts(values)
    suspects = _suspects(values, joined, starts, schema.suspect_pattern)
    if not suspects.any():
        tables, rows, refused = _parse_lines(values, joined, starts, schema)
        return tables, rows, refused, None
    suspect_rows = np.flatnonzero(suspects)
    if (np.diff(starts)[suspect_rows] > 2).all():
        # Overwrite each suspect in place with an empty object padded to its length, so the
        # batch is parsed without being joined again and row numbers stay absolute; the
        # placeholders are dropped with the invalid rows, in one filter.
        blanked = bytearray(joined)
        for row in suspect_rows.tolist():
            lo, hi = int(starts[row]), int(starts[row + 1]) - 1
            blanked[lo:hi] = b"{}" + b" " * (hi - lo - 2)
        tables, rows, refused = _parse_lines(values, blanked, starts, schema)
        placeholders = suspects[np.concatenate(rows)] if rows else np.zeros(0, dtype=bool)
        # The parser can name the row after the one it refused (after `{}/{}`, say), which may
        # be a placeholder: each row is refused once, whichever way it was found.
        return tables, rows, sorted(set(refused) | set(suspect_rows.tolist())), placeholders
    kept = np.flatnonzero(~suspects)
    kept_lines = [values[i] for i in kept]
    tables, rows, refused = (
        _parse_lines(kept_lines, b"\n".join(kept_lines), _line_starts(kept_lines), schema)
        if len(kept)
        else ([], [], [])
    )
    refused_rows = sorted([int(kept[i]) for i in refused] + suspect_rows.tolist())
    return tables, [kept[r] for r in rows], refused_rows, None


def _parse_lines(
    lines: list[bytes], joined: bytes | bytearray, starts: np.ndarray, schema: EventSchema
) -> tuple[list[pa.Table], list[np.ndarray], list[int]]:
    """Parse one-line records with the columnar parser, isolating the ones it refuses."""
    parse = pa_json.ParseOptions(
        explicit_schema=schema.arrow_schema, unexpected_field_behavior="ignore"
    )
    if lines:
        # The common case, every record accepted: one call, its blocks parsed on all cores.
        whole = pa_json.ReadOptions(use_threads=True, block_size=_PARALLEL_BLOCK_BYTES)
        try:
            table = pa_json.read_json(pa.py_buffer(joined), read_options=whole, parse_options=parse)
            if table.num_rows == len(lines):
                return [table], [np.arange(len(lines))], []
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # isolate the refused records below, one block at a time
    read = pa_json.ReadOptions(use_threads=False, block_size=_BLOCK_BYTES)
    buf = memoryview(joined)
    n = len(lines)
    tables: list[pa.Table] = []
    rows: list[np.ndarray] = []
    refused: list[int] = []

    def parse_range(lo: int, hi: int) -> pa.Table:
        chunk = buf[starts[lo] : starts[hi] - 1]
        table = pa_json.read_json(pa.py_buffer(chunk), read_options=read, parse_options=parse)
        if table.num_rows != hi - lo:
            # A line that is not one record (blank, or two objects): refused like bad JSON.
            raise pa.ArrowInvalid("record count differs from line count")
        return table

    def first_refused(lo: int, hi: int) -> int:
        # The error names no row (a number Arrow cannot convert): bisect for it.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                parse_range(lo, mid)
                lo = mid
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                hi = mid
        return lo

    def take(lo: int, hi: int) -> None:
        while lo < hi:
            try:
                tables.append(parse_range(lo, hi))
                rows.append(np.arange(lo, hi))
                return
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                found = _ROW_IN_ERROR.search(str(exc))
                bad = lo + int(found.group(1)) if found else -1
                if not lo <= bad < hi:
                    # No row named, or one past the range (a line holding two values, say).
                    bad = first_refused(lo, hi)
                # Rows before `bad` may still hold a conversion error Arrow reports later.
                take(lo, bad)
                refused.append(bad)
                lo = bad + 1

    lo = 0
    while lo < n:
        hi = lo + 1
        while hi < n and starts[hi + 1] - starts[lo] <= _CHUNK_BYTES:
            hi += 1
        if starts[hi] - starts[lo] > _CHUNK_BYTES:  # a single record larger than a chunk
            refused.append(lo)
        else:
            take(lo, hi)
        lo = hi
    return tables, rows, refused


def _event_time_reason(max_ahead_s: float | None) -> pl.Expr:
    """Why an otherwise valid event's time is not accepted (null when it is).

    The clock is read to the second (rounded up): building the expression costs about as
    much as checking a small batch with it, so it is built once a second, not per batch.
    """
    return _event_time_reason_until(max_ahead_s, math.ceil(time.time()))


@functools.lru_cache(maxsize=4)
def _event_time_reason_until(max_ahead_s: float | None, now_s: int) -> pl.Expr:
    t = pl.col("event_time")
    outside = pl.when((t < _FIRST_TIME) | (t > _LAST_TIME)).then(
        pl.lit("time is outside the years 0001-9999 in UTC")
    )
    if max_ahead_s is None:
        return outside.otherwise(None)
    limit = datetime.fromtimestamp(now_s, UTC) + timedelta(seconds=max_ahead_s)
    ahead = f"time is more than {max_ahead_s / 3600:g} h ahead of the clock"
    return outside.when(t > limit).then(pl.lit(ahead)).otherwise(None)


def decode_batch(
    values: list[bytes], schema: EventSchema, max_ahead_s: float | None = MAX_AHEAD_S
) -> Decoded:
    """Decode a batch of raw records against one event schema, loss-free.

    Every input row ends up in exactly one of `valid` or `rejects`, identified by
    its position `row` in `values`; `valid` is in input order. Unknown extra
    attributes and data fields are ignored (tolerant reader); a wrong type is a
    reject, never coerced. `event_time` is the event's `time` in UTC microseconds.
    Besides the schema's rules, a record is rejected when it nests deeper than
    MAX_DEPTH, when a number does not fit a 64-bit float or integer, when its time is
    outside the years 1-9999 in UTC, or (unless `max_ahead_s` is None) when its time is
    more than `max_ahead_s` ahead of the wall clock.
    """
    tables, row_ids, refused, placeholders = _parse_columnar(values, schema)
    reject_rows: list[int] = []
    reject_reasons: list[str] = []
    slow_events: list[dict[str, Any]] = []
    slow_rows: list[int] = []
    for row in refused:
        event, reason = decode_record(values[row], schema)
        if event is None:
            reject_rows.append(row)
            reject_reasons.append(reason or "invalid")
        else:
            slow_events.append(event)
            slow_rows.append(row)
    if slow_events:
        tables.append(pa.Table.from_pylist(slow_events, schema=schema.arrow_schema))
        row_ids.append(np.asarray(slow_rows, dtype=np.int64))
    if tables:
        table = pa.concat_tables(tables)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(row=pl.Series(np.concatenate(row_ids), dtype=pl.Int64))
    else:
        frame = pl.from_arrow(schema.arrow_schema.empty_table())  # type: ignore[assignment]
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(row=pl.Series([], dtype=pl.Int64))
    # event_time and the schema's checks are built in one context, where the time parse the
    # format check needs is shared with event_time (in two, the time was parsed twice); the
    # time limits then read the parsed column.
    checked = (
        frame.lazy()
        .with_columns(event_time=parse_rfc3339(pl.col("time")), __broken=schema.violation)
        .with_columns(__broken=pl.col("__broken") | _event_time_reason(max_ahead_s).is_not_null())
        .collect(engine=BATCH_ENGINE)
    )
    is_bad = checked["__broken"]
    if placeholders is not None:  # blanked suspects, decoded by the per-record path instead
        drop = np.zeros(checked.height, dtype=bool)
        drop[: len(placeholders)] = placeholders
        is_bad = is_bad & ~pl.Series(drop)
        is_valid = ~(checked["__broken"] | pl.Series(drop))
    else:
        is_valid = ~is_bad
    checked = checked.drop("__broken")
    # Reasons are worked out only for the rows that break a rule (and never on no rows,
    # where some list expressions fail inside polars, as they do on a filtered frame that
    # is not rechunked).
    bad = pl.DataFrame(schema={"row": pl.Int64, "reason": pl.String})
    if is_bad.any():
        first_reason = pl.coalesce(schema.reason_expr(), _event_time_reason(max_ahead_s))
        broken = checked.filter(is_bad).rechunk()
        bad = broken.lazy().select("row", reason=first_reason).collect(engine=BATCH_ENGINE)
    valid = checked if is_valid.all() else checked.filter(is_valid)
    if slow_events:  # rows from the per-record path were appended after the columnar ones
        valid = valid.sort("row")
    rejects = pl.concat(
        [
            bad,
            pl.DataFrame(
                {"row": reject_rows, "reason": reject_reasons},
                schema={"row": pl.Int64, "reason": pl.String},
            ),
        ]
    ).sort("row")
    return Decoded(valid=valid, rejects=rejects)
