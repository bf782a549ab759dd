"""Prometheus metrics of the flow and landing processes (scraped by `streamlane run` for progress)."""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from streamlane.errors import UserError
from streamlane.sqlquote import literal

EVENTS_IN = Counter(
    "streamlane_events_in", "Records read from the input topic", ["topic", "partition"]
)
CONSUMER_LAG = Gauge(
    "streamlane_consumer_lag",
    "Records behind the partition's high watermark",
    ["topic", "partition"],
)
EVENTS_BY_TYPE = Counter(
    "streamlane_events_by_type",
    "Events accepted (in) and emitted (out) per CloudEvents type, version included",
    ["direction", "type"],
)
EVENTS_OUT = Counter("streamlane_events_out", "Records written to an output topic", ["topic"])
DEAD_LETTERS = Counter(
    "streamlane_dead_letters", "Records sent to a dead-letter topic", ["topic", "reason"]
)
DUPLICATES = Counter("streamlane_duplicates_dropped", "Events dropped as duplicates")
DEDUPE_IDS = Gauge(
    "streamlane_dedupe_ids",
    "Event ids the dedupe state holds (those within the horizon), by state shard",
    ["shard"],
)
LATE_EVENTS = Counter("streamlane_late_events", "Events that arrived after their window closed")
WINDOWS = Counter("streamlane_windows_emitted", "Window results emitted")
REFERENCE_UPDATES = Counter(
    "streamlane_reference_updates",
    "Reference rows changed or deleted by records of their topic",
    ["table"],
)
REFERENCE_SKIPPED = Counter(
    "streamlane_reference_skipped", "Reference topic records skipped as malformed", ["table"]
)
STATE_SHARDS = Gauge(
    "streamlane_state_shards",
    "Keyed state shards (dedupe and windows) held, by worker (process id and thread)",
    ["worker"],
)
WATERMARK = Gauge("streamlane_watermark_seconds", "Flow watermark (event time, Unix seconds)")
PARTITION_EVENT_TIME = Gauge(
    "streamlane_partition_newest_event_seconds",
    "Newest event time read from an input partition (its watermark plus the lateness)",
    ["topic", "partition"],
)
PARTITION_ALIGNING = Gauge(
    "streamlane_partition_aligning",
    "1 while an input partition waits for slower ones to catch up in event time (--max-drift)",
    ["topic", "partition"],
)
BROKER_UP = Gauge("streamlane_broker_up", "1 while Kafka answers metadata requests, else 0")
LANDED_ROWS = Counter("streamlane_landed_rows", "Rows written to the warehouse", ["table"])
LANDING_BATCH_SECONDS = Gauge(
    "streamlane_landing_batch_seconds", "Duration of the last landing batch"
)
LANDING_PAUSED = Gauge(
    "streamlane_landing_paused", "1 while the warehouse file cannot be written (disk full)"
)
LANDING_BATCH_ROWS = Gauge("streamlane_landing_batch_records", "Records in the last landing batch")
LANDING_CHECKPOINT_SECONDS = Gauge(
    "streamlane_landing_checkpoint_seconds",
    "Duration of the landing's last checkpoint (writes wait while it runs)",
)
LANDING_BUSY_SHARE = Gauge(
    "streamlane_landing_busy_share",
    "Share of its time the landing's writer spends writing rows (moving average); above "
    "its limit (LIVE_CHECKPOINT_BUSY_SHARE) it leaves checkpoints of history for later "
    "(live rows, within LIVE_EVENT_AGE_S of the clock, are checkpointed regardless)",
)
LANDING_CHECKPOINTS = Histogram(
    "streamlane_landing_checkpoint_duration_seconds",
    "The landing's checkpoints by duration: how often writes waited on one, and for how long",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PG_QUERIES = Counter("streamlane_pg_queries", "Queries run on the PostgreSQL endpoint")
PG_QUERY_SECONDS = Histogram(
    "streamlane_pg_query_seconds",
    "Query latency on the PostgreSQL endpoint",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LANDING_LAG = Gauge(
    "streamlane_landing_lag", "Records the landing is behind", ["topic", "partition"]
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose this process's metrics on http://host:port/metrics (0 disables); UserError
    when the port cannot be listened on (taken by another process, say)."""
    if port:
        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            raise UserError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None


REASON_KIND_STEPS = (
    (r"""(?s)'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|['"].*""", "N"),
    (r"([A-Z]{2,}[ -])([0-9]+)", r"\1<\2>"),
    (r"(^|[^<0-9])[0-9]+", r"\1N"),
    (r"<([0-9]+)>", r"\1"),
)
"""The replacements that make a reason's kind, in order, written so that Python's `re` and
DuckDB's regular expressions read them alike (no look-behind: a standard's number is set
off in angle brackets, kept from the replacement of numbers, then released). A quoted
value is either quote's pair with escapes inside, as a value's repr has them, or a quote
left open to the end, where the colon cut a value off."""
REASON_KIND_LENGTH = 60


def reason_kind(reason: str) -> str:
    """A dead-letter reason without its values, so it can label a metric without unbounded
    cardinality: the text before its first colon, each quoted value and each number in it
    replaced by N (`unknown store_id 1308` -> `unknown store_id N`, `unknown event type
    "it's"` -> `unknown event type N`), cut to 60 characters. The number of a standard
    named in capitals stays (`not UTF-8`, `not an RFC 3339 date-time`). `reason_kind_sql`
    makes the same kind in SQL, for dashboards."""
    kind = reason.split(":", 1)[0]
    for pattern, replacement in REASON_KIND_STEPS:
        kind = re.sub(pattern, replacement, kind)
    return kind[:REASON_KIND_LENGTH]


def reason_kind_sql(column: str) -> str:
    """A DuckDB expression for `reason_kind` of the text in `column` (an identifier or an
    expression), so that a dashboard groups dead letters as the metrics label them."""
    kind = f"split_part({column}, ':', 1)"
    for pattern, replacement in REASON_KIND_STEPS:
        kind = f"regexp_replace({kind}, {literal(pattern)}, {literal(replacement)}, 'g')"
    return f"left({kind}, {REASON_KIND_LENGTH})"
