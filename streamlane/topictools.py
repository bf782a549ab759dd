"""Human-readable topic tooling: tail a topic as decoded events, produce events from JSONL.

Paths name a part of an event the way jq does: `.data.items[0].sku` (the leading dot is
optional). `tail` filters by CloudEvents `type` and by `PATH=VALUE` conditions (VALUE is
compared as JSON when it parses as JSON, else as text) and can print just one path of
each event. `produce` validates every line of the file against the schema of its `type`
before sending anything: one bad line and nothing is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from streamlane.decode import decode_record
from streamlane.errors import UserError
from streamlane.kafka import consumer_config, partitions_of
from streamlane.publish import publish
from streamlane.schemas import EventSchema, load_schema

_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()


def parse_path(path: str) -> list[str | int]:
    """`.data.items[0].sku` as steps `['data', 'items', 0, 'sku']`; UserError if malformed."""
    steps: list[str | int] = []
    at = 0
    text = path.strip()
    if text in ("", "."):
        return steps
    while at < len(text):
        match = _STEP.match(text, at)
        if match is None or match.end() == at:
            raise UserError(f"cannot read path {path!r} at {text[at:]!r} (e.g. .data.items[0].sku)")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        at = match.end()
    return steps


def get_path(value: Any, steps: list[str | int]) -> Any:
    """The part of `value` at `steps`, or a sentinel (`missing(...)` is True) when absent."""
    for step in steps:
        if isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
            continue
        if isinstance(value, dict) and isinstance(step, str) and step in value:
            value = value[step]
            continue
        return _MISSING
    return value


def missing(value: Any) -> bool:
    """Whether `value` is `get_path`'s sentinel for an absent path (unlike a JSON null)."""
    return value is _MISSING


def condition(text: str) -> Callable[[Any], bool]:
    """A `PATH=VALUE` filter as a predicate on decoded events."""
    path, sep, raw = text.partition("=")
    if not sep:
        raise UserError(f"--where needs PATH=VALUE (e.g. data.channel=web), not {text!r}")
    steps = parse_path(path)
    try:
        wanted: Any = json.loads(raw)
    except ValueError:
        wanted = raw

    def matches(event: Any) -> bool:
        found = get_path(event, steps)
        return not missing(found) and (found == wanted or str(found) == raw)

    return matches


@dataclass(frozen=True)
class TailedRecord:
    """One record of a tailed topic: where it is, its key, and the decoded event (or None)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event: Any


def tail(
    brokers: str, topic: str, from_beginning: bool = False, poll_s: float = 0.5
) -> Iterator[TailedRecord]:
    """Records of every partition of `topic` as they arrive, from now on (or from the start),
    until the caller stops iterating. Records that are not JSON have `event` None."""
    indexes = partitions_of({"bootstrap.servers": brokers}, topic)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer = Consumer(consumer_config(brokers))
    try:
        consumer.assign([TopicPartition(topic, i, start) for i in indexes])
        while True:
            for m in consumer.consume(1000, poll_s):
                if m.error() is not None:
                    continue
                value = m.value() or b""
                try:
                    event: Any = json.loads(value)
                except ValueError:
                    event = None
                key = m.key()
                yield TailedRecord(
                    int(m.partition() or 0),
                    int(m.offset() or 0),
                    key.encode() if isinstance(key, str) else key,
                    value,
                    event,
                )
    finally:
        consumer.close()


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


def _schema_for(event_type: Any, cache: dict[str, EventSchema | None]) -> EventSchema | None:
    if not isinstance(event_type, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", event_type):
        return None
    if event_type not in cache:
        try:
            cache[event_type] = load_schema(event_type)
        except FileNotFoundError:
            cache[event_type] = None
    return cache[event_type]


def _not_an_event(line: bytes) -> str | None:
    """Why a line cannot be matched to a schema (not UTF-8, not JSON, not an object, no
    `type`), or None when it names a type."""
    try:
        event = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start})"
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(event, dict):
        return f"not a JSON object (got {type(event).__name__})"
    if "type" not in event:
        return "no `type`: a CloudEvent names its event type there"
    return None


def validate_file(path: Path) -> tuple[list[bytes], list[Rejected]]:
    """Each non-blank line of a JSONL file checked against the schema its `type` names.

    Returns the records (as given, byte for byte) and the rejected lines with reasons.
    """
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    records: list[bytes] = []
    rejected: list[Rejected] = []
    schemas: dict[str, EventSchema | None] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        unreadable = _not_an_event(line)
        if unreadable:
            rejected.append(Rejected(number, unreadable))
            continue
        event_type = json.loads(line)["type"]
        schema = _schema_for(event_type, schemas)
        if schema is None:
            rejected.append(Rejected(number, f"no schema for type {event_type!r}"))
            continue
        _event, reason = decode_record(line, schema)
        if reason is not None:
            rejected.append(Rejected(number, reason))
        else:
            records.append(line)
    return records, rejected


def produce_file(brokers: str, topic: str, records: list[bytes], key_path: str) -> int:
    """Send validated records to `topic`, keyed by the value at `key_path` (no key when
    absent); return how many were delivered."""
    steps = parse_path(key_path)

    def keyed(raw: bytes) -> tuple[bytes | None, bytes]:
        found = get_path(json.loads(raw), steps) if steps else _MISSING
        return (None if missing(found) else str(found).encode()), raw

    return publish(brokers, topic, (keyed(r) for r in records))
