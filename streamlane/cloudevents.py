"""CloudEvents 1.0 (JSON structured mode) envelopes built column-wise with polars."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

_EPOCH_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
_TIME_FIELD = b'"time":"'


def rfc3339(micros: pl.Expr) -> pl.Expr:
    """UTC microseconds since the epoch as an RFC 3339 string with a `Z` offset."""
    return pl.from_epoch(micros, time_unit="us").dt.strftime(_EPOCH_FORMAT)


def derived_traceparent(seed: pl.Expr) -> pl.Expr:
    """A W3C traceparent derived deterministically from `seed` (for events that arrived without one)."""
    trace = pl.format(
        "{}{}",
        seed.hash(seed=1).cast(pl.String).str.zfill(20),
        (seed.hash(seed=2) % 10**12).cast(pl.String).str.zfill(12),
    )
    span = (seed.hash(seed=3) % 10**16).cast(pl.String).str.zfill(16)
    return pl.format("00-{}-{}-01", trace, span)


def envelope_json(
    *,
    event_type: str,
    source: str,
    event_id: pl.Expr,
    time_us: pl.Expr,
    subject: pl.Expr,
    traceparent: pl.Expr,
    data: pl.Expr,
) -> pl.Expr:
    """One CloudEvent JSON document per row; `data` is a struct expression."""
    return pl.struct(
        specversion=pl.lit("1.0"),
        id=event_id,
        source=pl.lit(source),
        type=pl.lit(event_type),
        time=rfc3339(time_us),
        subject=subject.cast(pl.String),
        datacontenttype=pl.lit("application/json"),
        dataschema=pl.lit(f"schemas/{event_type}.json"),
        traceparent=traceparent,
        data=data,
    ).struct.json_encode()


def envelope_time_s(document: bytes) -> float | None:
    """The `time` of a CloudEvent document as `envelope_json` writes it, in seconds since the
    epoch, read without parsing the document: `envelope_json` puts the envelope's fields
    before `data`, so the first `"time"` field is the envelope's. A time without an offset is
    taken as UTC. None when the document has none or it is not an ISO 8601 time (a record
    some other writer sent, say)."""
    start = document.find(_TIME_FIELD)
    if start < 0:
        return None
    start += len(_TIME_FIELD)
    end = document.find(b'"', start)
    try:
        parsed = datetime.fromisoformat(document[start:end].decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
