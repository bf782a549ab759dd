"""The orders job written the usual way on bytewax: one Python object per event, end to end.

    python -m bench.baselines.per_event --brokers HOST:PORT --events N --report FILE

Reads `pizza.orders` with bytewax's Kafka source, decodes each record with `json.loads`,
checks the fields the job uses, dead-letters the rest, drops repeated ids per store,
adds store and FX data from the reference CSVs, writes enriched events, and counts
one-minute revenue windows per store with bytewax's own event-time windows, writing
them out too. It is a baseline to measure against, not a second implementation of the
product: it keeps bytewax's windowing semantics (which drop events as late while a
backlog is read) and has no recovery.

When it has read `--events` records it writes the seconds from the first to the last
to `--report`; the benchmark then stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators import windowing as win
from bytewax.run import cli_main

from flows import orders
from streamlane.kafka import PARTITION_READER_CONFIG
from streamlane.paths import REFERENCE_DIR


def _reference() -> tuple[dict[int, dict[str, Any]], dict[str, float]]:
    with open(REFERENCE_DIR / "stores.csv") as f:
        stores = {int(row["store_id"]): row for row in csv.DictReader(f)}
    with open(REFERENCE_DIR / "fx_rates.csv") as f:
        fx = {row["currency"]: float(row["usd_rate"]) for row in csv.DictReader(f)}
    return stores, fx


class Progress:
    """Counts records read; writes the elapsed seconds once `total` have been read."""

    def __init__(self, total: int, report: Path) -> None:
        self.total, self.report = total, report
        self.seen = 0
        self.started = 0.0

    def __call__(self, msg: Any) -> Any:
        if self.seen == 0:
            self.started = time.perf_counter()
        self.seen += 1
        if self.seen == self.total:
            self.report.write_text(f"{time.perf_counter() - self.started}\n")
        return msg


ORDER_V1 = "pizza.order.confirmed.v1"


def build(brokers: str, total: int, report: Path) -> Dataflow:
    """The per-event dataflow (see the module docstring)."""
    stores, fx = _reference()

    def decode(msg: Any) -> tuple[str, Any]:
        try:
            event = json.loads(msg.value)
            data = event["data"]
            # The benchmark's stream is all v1, the version the generator sends by default.
            if event["type"] != ORDER_V1 or not isinstance(data["store_id"], int):
                raise ValueError("wrong type")
            store = stores[data["store_id"]]
            rate = fx[data["currency"]]
            time_ = datetime.fromisoformat(event["time"]).astimezone(UTC)
            return "ok", (str(data["store_id"]), (event, data, store, rate, time_))
        except (ValueError, KeyError, TypeError) as exc:
            return "dead", KafkaSinkMessage(
                msg.key, msg.value, headers=[("reason", str(exc).encode())]
            )

    def first_seen(seen: set[str] | None, item: Any) -> tuple[set[str], Any]:
        seen = seen or set()
        event_id = item[0]["id"]
        if event_id in seen:
            return seen, None
        seen.add(event_id)
        return seen, item

    def enriched(key_item: tuple[str, Any]) -> KafkaSinkMessage[str, bytes]:
        key, (event, data, store, rate, _t) = key_item
        out = {**data, "event_id": event["id"], "store_name": store["name"], "city": store["city"],
               "region": store["region"], "usd_rate": rate, "total_usd": data["total"] * rate}  # fmt: skip
        envelope = {"specversion": "1.0", "id": f"{event['id']}/enriched",
                    "type": orders.FLOW.enriched.event_type, "time": event["time"], "data": out}  # fmt: skip
        return KafkaSinkMessage(key, json.dumps(envelope).encode())

    flow = Dataflow("orders_per_event")
    # Polls as large as streamlane's, and the same prefetch per partition, so the
    # comparison is about processing, not about reading.
    source = KafkaSource(
        [brokers],
        [orders.FLOW.input_topic],
        tail=True,
        batch_size=50_000,
        add_config={k: str(v) for k, v in PARTITION_READER_CONFIG.items()},
    )
    raw = op.input("read", flow, source)
    raw = op.map("count", raw, Progress(total, report))
    decoded = op.map("decode", raw, decode)
    dead = op.filter_map("dead", decoded, lambda d: d[1] if d[0] == "dead" else None)
    # The stages' item types are not spelled out, so the sinks' message type cannot be checked.
    dlq = KafkaSink([brokers], orders.FLOW.dead_letter_topic)
    op.output("to_dlq", dead, dlq)  # type: ignore[misc]
    valid = op.filter_map("valid", decoded, lambda d: d[1] if d[0] == "ok" else None)
    unique = op.stateful_map("dedupe", valid, first_seen)
    unique = op.filter_map("unique", unique, lambda kv: kv if kv[1] is not None else None)
    op.output(  # type: ignore[misc]
        "to_enriched",
        op.map("enrich", unique, enriched),
        KafkaSink([brokers], orders.FLOW.enriched.topic),
    )

    clock: win.EventClock[Any] = win.EventClock(
        lambda item: item[4], wait_for_system_duration=timedelta(seconds=30)
    )
    windower = win.TumblingWindower(timedelta(minutes=1), datetime(2020, 1, 1, tzinfo=UTC))

    def fold(acc: tuple[int, float, float], item: Any) -> tuple[int, float, float]:
        usd = item[1]["total"] * item[3]
        return acc[0] + 1, acc[1] + usd, max(acc[2], usd)

    def merge(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
        return a[0] + b[0], a[1] + b[1], max(a[2], b[2])

    revenue = win.fold_window(
        "revenue", unique, clock, windower, lambda: (0, 0.0, 0.0), fold, merge
    )
    out = op.map(
        "revenue_events", revenue.down,
        lambda kv: KafkaSinkMessage(kv[0], json.dumps({"window": kv[1][0], "orders": kv[1][1][0],
                                                      "revenue_usd": kv[1][1][1]}).encode()),
    )  # fmt: skip
    revenue_sink = KafkaSink([brokers], orders.FLOW.windows[0].output.topic)
    op.output("to_revenue", out, revenue_sink)  # type: ignore[misc]
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        cli_main(build(args.brokers, args.events, args.report))


if __name__ == "__main__":
    main()
