"""`streamlane new flow NAME`: a working flow to start from, in the project's own layout.

Writes `flows/NAME.py` (the declaration), its event schemas in `schemas/`, a
generator in `generators/NAME.py` and an end-to-end test in `tests/e2e/`. The
flow validates and dedupes `NAME.event.v1` events keyed by `account_id`, emits
them, and sums amounts per account and minute; every part is meant to be edited.
Nothing is overwritten: an existing file is an error, before anything is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Any

from streamlane.errors import UserError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")

_FLOW = Template('''"""$Title: validate, dedupe, and one-minute totals per account.

$name.events ─► decode + validate ─────────────► $name.events.dlq
                 │ key by account id; dedupe by event id
                 ├─────────────────────────────► $name.events.enriched
                 ▼ 1-minute tumbling windows
                 ├─────────────────────────────► $name.totals.1m
                 └── late ─────────────────────► $name.events.late
"""

from __future__ import annotations

import polars as pl

from streamlane import aggregates as agg
from streamlane.flow import (
    Flow,
    Output,
    Windows,
    data,
    events_table,
    late_table,
    minutes,
    windows_table,
)
from streamlane.windows import Tumbling

FLOW = Flow(
    name="$name",
    input_topic="$name.events",
    input_type="$name.event.v1",
    dead_letter_topic="$name.events.dlq",
    key="account_id",
    columns={
        "account_id": data("account_id"),
        "category": data("category"),
        "amount": data("amount"),
    },
    # Lookups from reference data go here, e.g. enrich=(shop_enricher,): see enrichers/.
    enriched=Output(
        topic="$name.events.enriched",
        event_type="$name.event.enriched.v1",
        data=("event_id", "account_id", "category", "amount"),
        table=events_table("${name}_events"),
    ),
    windows=(
        Windows(
            name="totals_1m",
            kind=Tumbling(minutes(1)),
            aggregates=(
                agg.count("events"),
                agg.total("amount", pl.col("amount")),
                agg.maximum("max_amount", pl.col("amount")),
                agg.percentiles("amount", pl.col("amount"), (0.5, 0.95, 0.99)),
            ),
            output=Output(
                topic="$name.totals.1m",
                event_type="$name.totals.1m.v1",
                data=(
                    *("account_id", "window_start", "window_end", "events", "amount"),
                    *("max_amount", "amount_p50", "amount_p95", "amount_p99"),
                ),
                table=windows_table("${name}_totals_1m", "account_id"),
            ),
            late=Output(
                topic="$name.events.late",
                event_type="$name.event.late.v1",
                data=(
                    *("event_id", "account_id", "amount"),
                    *("window", "window_start", "window_end", "watermark"),
                ),
                table=late_table("${name}_late_events"),
            ),
        ),
    ),
)
''')

_GENERATOR = Template('''"""Events for the $name flow (`streamlane generate --flow $name`): edit to taste."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from streamlane.generator import EventGenerator, format_time

ACCOUNTS = 50
CATEGORIES = ("a", "b", "c")


class Generator(EventGenerator):
    """`$name.event.v1` events for a few accounts; malformed ones are cut short or mistyped."""

    def event(self, event_time: datetime) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        account = f"acct-{rng.randint(1, ACCOUNTS)}"
        self.n += 1
        event = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "source": "generators/$name",
            "type": "$name.event.v1",
            "time": format_time(event_time, rng),
            "data": {
                "account_id": account,
                "category": rng.choice(CATEGORIES),
                "amount": round(rng.uniform(1, 500), 2),
            },
        }
        return account.encode(), event

    def malform(self, event: dict[str, Any]) -> bytes:
        if self.rng.random() < 0.5:
            return json.dumps(event).encode()[: self.rng.randint(5, 60)]
        event["data"]["amount"] = "twelve"
        return json.dumps(event).encode()
''')

_TEST = Template('''"""End to end: generated $name events through the broker, the flow and the warehouse,
checked against plain SQL over the raw events."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from flows.$name import FLOW
from generators.$name import Generator
from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratorSettings
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.helpers import Processes, wait_until
from tests.pipeline import assert_outputs_follow_their_schemas, count, event_id, start_warehouse

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_${name}_flow_matches_sql(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, FLOW.topics, 2)
    settings = GeneratorSettings(seed=7, count=3000, start=START, too_late=0)
    records = list(Generator(settings))
    # One event per account long after the stream, so every window of the stream closes.
    later = (START + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    closing = [
        json.dumps({"specversion": "1.0", "id": f"closing-{i}", "source": "tests",
                    "type": "$name.event.v1", "time": later,
                    "data": {"account_id": f"acct-{i}", "category": "a", "amount": 1.0}})
        for i in range(1, 51)
    ]  # fmt: skip
    publish(
        brokers,
        FLOW.input_topic,
        [(r.key, r.value) for r in records]
        + [(f"acct-{i}".encode(), c.encode()) for i, c in enumerate(closing, 1)],
    )
    warehouse = tmp_path / "warehouse.duckdb"
    start_warehouse(processes, brokers, warehouse)
    processes.start(
        "flow", "flow", "run", "$name", "--brokers", brokers,
        "--recovery-dir", str(tmp_path / "recovery"), "--idle-timeout", "4",
    )  # fmt: skip

    raw = pl.DataFrame({"value": [r.value.decode("utf-8", "replace") for r in records],
                        "kind": [r.kind for r in records]})  # fmt: skip
    con = duckdb.connect()
    con.register("raw", raw.to_arrow())
    expected = con.execute("""
        WITH events AS (
            SELECT DISTINCT ON (value->>'id') value->'data'->>'account_id' AS account_id,
                   CAST(value->>'time' AS TIMESTAMPTZ) AS t,
                   CAST(value->'data'->>'amount' AS DOUBLE) AS amount
            FROM raw WHERE kind IN ('valid', 'out_of_order')
        )
        SELECT account_id, to_timestamp(floor(epoch(t) / 60) * 60) AS window_start,
               count(*) AS events, sum(amount) AS amount, max(amount) AS max_amount
        FROM events GROUP BY ALL ORDER BY account_id, window_start
    """).pl()  # fmt: skip
    unique = {event_id(r) for r in records if r.kind in ("valid", "out_of_order")}
    malformed = [r for r in records if r.kind == "malformed"]
    wait_until(lambda: count(warehouse, "${name}_totals_1m") >= expected.height, 180, "windows")
    wait_until(lambda: count(warehouse, "dead_letters") >= len(malformed), 60, "dead letters")
    wait_until(
        lambda: count(warehouse, "${name}_events") >= len(unique) + len(closing), 60, "events"
    )

    events = run_sql(warehouse, "SELECT event_id FROM ${name}_events")
    assert set(events["event_id"]) == unique | {f"closing-{i}" for i in range(1, 51)}
    got = run_sql(
        warehouse,
        "SELECT account_id, window_start, events, amount, max_amount "
        "FROM ${name}_totals_1m ORDER BY account_id, window_start",
    )
    assert got["account_id"].to_list() == expected["account_id"].to_list()
    assert got["events"].to_list() == expected["events"].to_list()
    assert got["max_amount"].to_list() == expected["max_amount"].to_list()
    for a, e in zip(got["amount"], expected["amount"], strict=True):
        assert math.isclose(a, e, rel_tol=1e-9)
    # Every record the flow wrote is valid against its output's schema (no event is late).
    late = frozenset(w.late.topic for w in FLOW.windows)
    assert_outputs_follow_their_schemas(brokers, FLOW, may_be_empty=late)
''')


def _schema(event_type: str, title: str, description: str, data: dict[str, Any]) -> str:
    properties = {
        "specversion": {"const": "1.0", "description": "CloudEvents version."},
        "id": {
            "type": "string",
            "minLength": 1,
            "description": "Unique per source; a re-sent event keeps its id.",
        },  # fmt: skip
        "source": {"type": "string", "minLength": 1},
        "type": {"const": event_type},
        "time": {"type": "string", "format": "date-time", "description": "RFC 3339 event time."},
        "subject": {"type": "string"},
        "datacontenttype": {"type": "string"},
        "dataschema": {"type": "string"},
        "traceparent": {"type": "string"},
        "data": {"type": "object", "required": list(data), "properties": data},
    }
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": event_type,
        "title": title,
        "description": description + " CloudEvents 1.0, JSON structured mode.",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": properties,
    }
    return json.dumps(document, indent=2) + "\n"


def _schemas(name: str) -> dict[str, str]:
    account = {"type": "string", "minLength": 1, "description": "The account; the record key."}
    amount = {"type": "number", "minimum": 0}
    time = {"type": "string", "format": "date-time"}
    number = {"type": "number"}
    fields = {"account_id": account, "category": {"enum": ["a", "b", "c"]}, "amount": amount}
    event_id = {"type": "string", "description": "Id of the input event."}
    return {
        f"{name}.event.v1": _schema(
            f"{name}.event.v1", f"{name} event (v1)", "What happened on an account.", fields
        ),
        f"{name}.event.enriched.v1": _schema(
            f"{name}.event.enriched.v1",
            f"{name} event, validated (v1)",
            f"Emitted by flows/{name}.py: each first-seen event.",
            {"event_id": event_id, **fields},
        ),
        f"{name}.totals.1m.v1": _schema(
            f"{name}.totals.1m.v1",
            f"{name} totals per account and minute (v1)",
            f"Emitted by flows/{name}.py once the watermark passes the minute's end.",
            {
                "account_id": account,
                "window_start": time,
                "window_end": time,
                "events": {"type": "integer", "minimum": 0},
                "amount": number,
                "max_amount": number,
                "amount_p50": number,
                "amount_p95": number,
                "amount_p99": number,
            },
        ),
        f"{name}.event.late.v1": _schema(
            f"{name}.event.late.v1",
            f"{name} event that missed its window (v1)",
            f"Emitted by flows/{name}.py for an event that arrived after its window closed.",
            {
                "event_id": event_id,
                "account_id": account,
                "amount": amount,
                "window": {"type": "string"},
                "window_start": time,
                "window_end": time,
                "watermark": time,
            },
        ),
    }


def new_flow(name: str, root: Path) -> list[Path]:
    """Write the scaffold of flow `name` under the project `root`; return the files written.

    Raises UserError for a name that is not a lower-case identifier, or when any of
    the files exists already (then nothing is written).
    """
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"flow name {name!r} must be a lower-case identifier (letters, digits, _), "
            "starting with a letter"
        )
    substitutions = {"name": name, "Title": name.replace("_", " ").capitalize()}
    files = {
        root / "flows" / f"{name}.py": _FLOW.substitute(substitutions),
        root / "generators" / f"{name}.py": _GENERATOR.substitute(substitutions),
        root / "tests" / "e2e" / f"test_{name}_flow.py": _TEST.substitute(substitutions),
    }
    files |= {root / "schemas" / f"{t}.json": text for t, text in _schemas(name).items()}
    existing = [str(p.relative_to(root)) for p in files if p.exists()]
    if existing:
        raise UserError(f"not overwriting {', '.join(existing)}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
