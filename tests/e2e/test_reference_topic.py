"""Reference data from a compacted topic: a store's region changed (and a store added) through
`pizza.stores` mid-stream applies to the orders enriched from then on, the orders enriched
before keep what they had, each names the store version it got, and a restarted flow still
knows the change."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from enrichers.stores import STORES, STORES_CSV
from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratedRecord, GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.e2e.orders_run import start_flow
from tests.helpers import Processes, metric_values, wait_until
from tests.pipeline import count, event_id, start_warehouse

NEW_STORE = 9999


def reference_updates(port: int) -> float:
    samples = metric_values(port, "streamlane_reference_updates_total", table="stores")
    return sum(value for _, value in samples)


def order_for(store: int, template: GeneratedRecord, suffix: str) -> GeneratedRecord:
    event = json.loads(template.value)
    event["id"] = f"{event['id']}-{suffix}"
    event["data"]["store_id"] = store
    value = json.dumps(event, separators=(",", ":")).encode()
    return GeneratedRecord(str(store).encode(), value, "valid", None)


def enriched_by_id(warehouse: Path) -> dict[str, tuple[int, str, str]]:
    rows = run_sql(
        warehouse, "SELECT event_id, store_id, region, store_version FROM orders_enriched"
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows.iter_rows()}


@pytest.mark.timeout(300)
def test_a_store_changed_mid_stream_applies_from_then_on(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, orders.FLOW.topics, 2, compacted=orders.FLOW.reference_topics)
    settings = GeneratorSettings(seed=11, count=3000, malformed=0, duplicates=0, too_late=0)
    stream = list(OrderGenerator(settings))
    busiest = pl.Series([json.loads(r.value)["data"]["store_id"] for r in stream]).mode()[0]
    stores = pl.read_csv(STORES_CSV)
    old = stores.filter(pl.col("store_id") == busiest).row(0, named=True)
    before, after, later = stream[:1000], stream[1000:2000], stream[2000:]
    before.append(order_for(NEW_STORE, stream[0], "before"))
    after.append(order_for(NEW_STORE, stream[1], "after"))

    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in before])
    start_warehouse(processes, brokers, warehouse)
    port = free_port()
    recovery = tmp_path / "recovery"
    flow = start_flow(processes, brokers, recovery, "--metrics-port", str(port))
    wait_until(lambda: count(warehouse, "orders_enriched") >= 1000, 120, "the first orders")
    wait_until(lambda: count(warehouse, "dead_letters") >= 1, 60, "the unknown store's order")

    moved = {k: old[k] for k in STORES.columns} | {"region": "Test-Region"}
    opened = {**moved, "store_id": NEW_STORE, "name": "Streamlane Pizza Test", "region": "Test"}
    publish(
        brokers,
        STORES.topic,
        [(str(busiest).encode(), json.dumps(moved).encode()),
         (str(NEW_STORE).encode(), json.dumps(opened).encode())],
    )  # fmt: skip
    wait_until(lambda: reference_updates(port) >= 2, 60, "the flow to apply the store changes")
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in after])
    wait_until(lambda: count(warehouse, "orders_enriched") >= 2001, 120, "the later orders")

    # A restarted flow reads the reference topic again: the change is still there.
    processes.stop(flow)
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in later])
    start_flow(processes, brokers, recovery, name="flow-again")
    wait_until(lambda: count(warehouse, "orders_enriched") >= 3001, 120, "orders after a restart")

    enriched = enriched_by_id(warehouse)
    for records, region, version in (
        (before, old["region"], "stores.csv"),
        (after, "Test-Region", "pizza.stores/"),
        (later, "Test-Region", "pizza.stores/"),
    ):
        mine = [enriched[event_id(r)] for r in records if event_id(r) in enriched]
        busy = [(reg, ver) for store, reg, ver in mine if store == busiest]
        assert busy, "the busiest store has orders in every part"
        assert {reg for reg, _ in busy} == {region}
        assert all(ver.startswith(version) for _, ver in busy), busy[:3]
        others = [reg for store, reg, _ in mine if store not in (busiest, NEW_STORE)]
        assert "Test-Region" not in others
    assert enriched[event_id(after[-1])][1:] == ("Test", enriched[event_id(after[-1])][2])
    assert event_id(before[-1]) not in enriched
    dead = run_sql(warehouse, "SELECT reason FROM dead_letters")["reason"].to_list()
    assert dead == [f"unknown store_id {NEW_STORE}"]
