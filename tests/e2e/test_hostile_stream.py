"""Hostile input through a running flow: garbage, huge and deeply nested records, a 10,000-item
order and re-sent events. The flow keeps running with bounded memory, and every record is
accounted for as enriched, duplicate or dead letter, exactly as the oracle counts them."""

from __future__ import annotations

import json
import random
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from streamlane.publish import publish
from tests.e2e.orders_run import start_flow
from tests.helpers import Processes, memory_mib, wait_until
from tests.hostile import base_event, dumps, expected, mutate

RECORDS = 3_000


def hostile_records() -> list[bytes]:
    rng = random.Random(20261201)
    records = [mutate(rng, rng.randrange(10_000)) for _ in range(RECORDS)]
    big = base_event(7)
    big["data"]["items"] = [{"sku": f"s{i}", "qty": 1, "unit_price": 0.5} for i in range(10_000)]
    huge = base_event(8)
    huge["data"]["note"] = "x" * 900_000  # near the producer's 1 MB message limit
    deep = dumps(base_event(9)).replace(
        b'"data": {', b'"data": {"d": ' + b"[" * 50_000 + b"]" * 50_000 + b", "
    )
    return records + [dumps(big), dumps(huge), deep, bytes(range(256)), b""]


def _key(raw: bytes) -> bytes:
    try:
        return str(json.loads(raw)["data"]["store_id"]).encode()
    except Exception:
        return b"garbage"


def oracle_counts(records: list[bytes]) -> dict[str, int]:
    """Enriched (unique valid events of known stores and currencies), duplicates, dead letters."""
    now = datetime.now(UTC)
    stores = set(pl.read_csv(REFERENCE_DIR / "stores.csv")["store_id"].to_list())
    currencies = set(pl.read_csv(REFERENCE_DIR / "fx_rates.csv")["currency"].to_list())
    seen: set[tuple[int, str]] = set()
    counts = {"enriched": 0, "duplicates": 0, "dead": 0, "accepted": 0}
    for raw in records:
        event = expected(raw, now)
        counts["accepted"] += event is not None
        known = event is not None and event["data"]["store_id"] in stores
        if not known or event["data"]["currency"] not in currencies:  # type: ignore[index]
            counts["dead"] += 1
        elif (event["data"]["store_id"], event["id"]) in seen:
            counts["duplicates"] += 1
        else:
            seen.add((event["data"]["store_id"], event["id"]))
            counts["enriched"] += 1
    return counts


def by_type_counts(port: int) -> dict[tuple[str, str], float]:
    """`streamlane_events_by_type_total` by (direction, type), from the flow's endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.labels["direction"], sample.labels["type"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "streamlane_events_by_type_total"
    }


@pytest.mark.timeout(300)
def test_flow_accounts_for_every_hostile_record(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)
    records = hostile_records()
    want = oracle_counts(records)
    assert min(want.values()) > 100, want
    publish(brokers, orders.FLOW.input_topic, [(_key(r), r) for r in records])

    port = free_port()
    flow = start_flow(processes, brokers, tmp_path / "recovery", "--metrics-port", str(port))

    def settled() -> dict[str, float] | None:
        m = scrape(port)
        got = {
            "enriched": m.get(f"streamlane_events_out_total|{orders.FLOW.enriched.topic}", 0),
            "duplicates": m.get("streamlane_duplicates_dropped_total", 0),
            "dead": m.get(f"streamlane_events_out_total|{orders.FLOW.dead_letter_topic}", 0),
        }
        read = m.get("streamlane_events_in_total", 0)
        return got if read == len(records) and sum(got.values()) >= len(records) else None

    got = wait_until(settled, 180, "every hostile record to be accounted for", every_s=0.5)
    accepted = want.pop("accepted")
    assert got == {k: float(v) for k, v in want.items()}
    by_type = by_type_counts(port)
    assert by_type[("in", "pizza.order.confirmed.v1")] == accepted
    assert by_type[("out", "pizza.order.enriched.v1")] == want["enriched"]
    assert flow.poll() is None, "the flow keeps running"
    assert memory_mib(flow.pid, "VmHWM") < 1024
    assert "Traceback" not in processes.log("flow")
