"""Hostile records for the order schema, and the oracle that says which of them are valid.

The oracle restates the input contract independently of the decoder: UTF-8 JSON with no
duplicate keys, no NaN/Infinity and no unpaired UTF-16 surrogates, nested at most
MAX_DEPTH levels, valid against the JSON Schema with its formats checked by a standard
RFC 3339 validator, numbers that fit a 64-bit float, and a time within the years 1-9999
in UTC and at most a day ahead of the clock.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema

from streamlane.decode import MAX_AHEAD_S, MAX_DEPTH
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.schemas import load_schema

SCHEMA = load_schema("pizza.order.confirmed.v1")
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA.document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
_BASE = [
    json.loads(r.value)
    for r in OrderGenerator(GeneratorSettings(seed=5, count=600, malformed=0, duplicates=0))
    if r.kind == "valid"
]

ODD_NUMBERS = [
    "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "-0", "1E5", "0.1e-400", "12.0",
    "123456789012345678901234567890", "9223372036854775807", "9223372036854775808",
    "-9223372036854775809", "1.7976931348623157e308", "5e-324", "00", "01", "+1", ".5", "1.",
]  # fmt: skip
ODD_TIMES = [
    "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-01:00", "2026-06-30T23:59:60Z", "2026-02-30T10:00:00Z",
    "2024-02-29T10:00:00Z", "2026-01-01t10:00:00z", "2026-01-01T10:00:00", "2026-01-01",
    "2026-01-01 10:00:00Z", "2026-01-01T10:00:00.123456789+05:30", "2026-01-01T24:00:00Z",
    "2026-01-01T10:00:00+24:00", "2026-01-01T10:00:00-00:00", "0000-01-01T00:00:00Z", "",
    "2026-13-01T00:00:00Z", "２０２６-01-01T00:00:00Z", "2026-01-01T10:00:00.Z",
]  # fmt: skip
FIELDS = [
    ("specversion",), ("id",), ("source",), ("type",), ("time",), ("data",), ("data", "order_id"),
    ("data", "customer_id"), ("data", "store_id"), ("data", "channel"), ("data", "items"),
    ("data", "total"), ("data", "currency"), ("data", "items", 0), ("data", "items", 0, "qty"),
    ("data", "items", 0, "sku"), ("data", "items", 0, "unit_price"), ("subject",), ("traceparent",),
]  # fmt: skip


def base_event(index: int, now: datetime | None = None) -> dict[str, Any]:
    """A valid order event (a fresh copy), its time moved to `now` (the clock's, by default)
    less up to 49 minutes, so it is not too far ahead."""
    event = json.loads(json.dumps(_BASE[index % len(_BASE)]))
    event["time"] = ((now or datetime.now(UTC)) - timedelta(minutes=index % 50)).isoformat()
    return event


def _set(event: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    node: Any = event
    for step in path[:-1]:
        in_dict = isinstance(node, dict) and isinstance(step, str) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if in_dict or in_list:
            node = node[step]
        else:
            return
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if delete:
            node.pop(last)
        else:
            node[last] = value


def dumps(event: Any) -> bytes:
    return json.dumps(event, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def mutate(rng: random.Random, index: int, now: datetime | None = None) -> bytes:
    """One hostile (or, about a third of the time, still valid) record, chosen by `rng`, its
    time counted back from `now` as `base_event`'s."""
    event = base_event(index, now)
    kind = rng.randrange(12)
    if kind == 0:
        return dumps(event)
    if kind == 1:  # a field of the wrong type or value
        _set(event, rng.choice(FIELDS), rng.choice(_ODD_VALUES))
    elif kind == 2:  # a field missing
        _set(event, rng.choice(FIELDS), None, delete=True)
    elif kind == 3:  # unknown fields anywhere: tolerated
        event["x-extra"] = {"nested": [1, "two", None]}
        event["data"]["note"] = "ünïcödé ✓ " * rng.randrange(1, 5)
    elif kind == 4:
        text = dumps(event).decode("utf-8", "surrogatepass")
        number = json.dumps(event["data"]["total"])
        return text.replace(f'"total": {number}', f'"total": {rng.choice(ODD_NUMBERS)}', 1).encode()
    elif kind == 5:
        event["time"] = rng.choice(ODD_TIMES)
    elif kind == 6:  # a duplicate key, top level or in data
        text = dumps(event).decode("utf-8", "surrogatepass")
        if rng.random() < 0.5:
            return text.replace("{", '{"id": "dup", ', 1).encode()
        return text.replace('"data": {', '"data": {"total": 1.0, ', 1).encode()
    elif kind == 7:  # deep nesting in an unknown or a known field
        depth = rng.choice([MAX_DEPTH - 2, MAX_DEPTH + 1, 2_000, 20_000])
        field = rng.choice(['"deep"', '"channel"'])
        text = dumps(event).decode("utf-8", "surrogatepass")
        nested = "[" * depth + "]" * depth
        return text.replace('"data": {', f'"data": {{{field}: {nested}, ', 1).encode()
    elif kind == 8:  # many line items, sometimes one bad
        # Validating a large order in the oracle is slow: the largest are rare.
        count = rng.choices([2, 50, 300, 10_000], weights=[60, 30, 9.9, 0.1])[0]
        items = [{"sku": f"s{i}", "qty": 1, "unit_price": 1.5} for i in range(count)]
        if rng.random() < 0.5:
            items[rng.randrange(len(items))]["qty"] = 0
        event["data"]["items"] = items
    elif kind == 9:  # bytes changed, inserted, removed or cut
        raw = bytearray(dumps(event))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(raw))
            op = rng.randrange(4)
            if op == 0:
                raw[at] = rng.randrange(256)
            elif op == 1:
                raw.insert(at, rng.choice(b'{}[]",:\\\n\r\t 0e.-\x00\xff\xc3'))
            elif op == 2:
                del raw[at]
            else:
                del raw[at:]
                break
        return bytes(raw)
    elif kind == 10:  # arbitrary bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    else:  # strings with escapes, lone surrogates, control and non-UTF-8 bytes
        odd = rng.choice(["\\ud800", "\\u0000", "\\n", "\\\\", '\\"', "\\u00e9", "\\x41"])
        text = dumps(event).decode("utf-8", "surrogatepass")
        text = text.replace('"customer_id": "', f'"customer_id": "{odd}', 1)
        if rng.random() < 0.2:
            return text.encode()[:-10] + b"\xc3\x28" + text.encode()[-10:]
        return text.encode()
    return dumps(event)


_ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**30, "", "x", "1.0", [], [1], {}, {"a": 1},
    float("inf"), "web", "USD", "pizza.order.confirmed.v2", 12.0, 9.999e307,
]  # fmt: skip


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(name)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _finite(value: Any) -> bool:
    """Every number fits a 64-bit float (integers too: JSON does not tell them apart)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= 1.7976931348623157e308
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def expected_of(raws: list[bytes], now: datetime) -> list[dict[str, Any] | None]:
    """`expected` of each record, in order (a unit of work another process can take)."""
    return [expected(raw, now) for raw in raws]


def expected(raw: bytes, now: datetime) -> dict[str, Any] | None:
    """The event the contract accepts `raw` as, or None when it is a dead letter."""
    try:
        text = raw.decode("utf-8")
        event = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except (ValueError, RecursionError):
        return None
    try:
        if not isinstance(event, dict) or _depth(event) > MAX_DEPTH:
            return None
        # Unpaired surrogates (`"\ud800"`) are valid JSON syntax but no Unicode text.
        json.dumps(event, ensure_ascii=False).encode("utf-8")
    except (RecursionError, UnicodeEncodeError):
        return None
    if not VALIDATOR.is_valid(event) or not _finite(event["data"]):
        return None
    when = datetime.fromisoformat(event["time"].upper().replace("Z", "+00:00"))
    try:
        when = when.astimezone(UTC)
    except OverflowError:
        return None
    if when > now + timedelta(seconds=MAX_AHEAD_S):
        return None
    return event
