"""Schema evolution end to end: a stream mixing v1 and v2 orders (total with its currency) gives
the warehouse the very windows, events and dead letters of the same stream all in v1, and the
flow counts each version it read."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from enrichers.stores import STORES_CSV
from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratedRecord, order_as_v2
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.publish import publish
from tests.e2e.orders_run import finish_and_check, order_stream, start_flow
from tests.helpers import Processes, metric_values
from tests.pipeline import start_warehouse

DECODED = ("valid", "out_of_order", "duplicate")


def in_v2(record: GeneratedRecord) -> GeneratedRecord:
    value = json.dumps(order_as_v2(json.loads(record.value)), separators=(",", ":")).encode()
    return GeneratedRecord(record.key, value, record.kind, record.event_time)


def events_read_by_type(port: int) -> dict[str, float]:
    samples = metric_values(port, "streamlane_events_by_type_total", direction="in")
    return {labels["type"]: value for labels, value in samples}


def _for_unknown_store(record: GeneratedRecord) -> bool:
    known = set(pl.read_csv(STORES_CSV)["store_id"].to_list())
    try:
        store = json.loads(record.value)["data"]["store_id"]
    except (ValueError, KeyError):
        return False
    return isinstance(store, int) and store not in known


@pytest.mark.timeout(420)
def test_mixed_versions_give_the_all_v1_warehouse(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, orders.FLOW.topics, 4)
    main, too_late = order_stream()
    mixed = [in_v2(r) if r.kind in DECODED and i % 2 else r for i, r in enumerate(main)]
    sent_v2 = sum(1 for i, r in enumerate(main) if r.kind in DECODED and i % 2)
    assert 0 < sent_v2 < len(main)
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in mixed])
    start_warehouse(processes, brokers, warehouse)
    port = free_port()
    start_flow(
        processes, brokers, tmp_path / "recovery", "--idle-timeout", "4",
        "--metrics-port", str(port),
    )  # fmt: skip

    # The oracle is computed from the all-v1 stream; the too-late orders are sent as v1.
    finish_and_check(brokers, warehouse, main, too_late)

    read = events_read_by_type(port)
    assert read["pizza.order.confirmed.v2"] == sent_v2
    # Orders for unknown stores decode fine and become dead letters at enrichment.
    unknown_store = sum(1 for r in main if r.kind == "malformed" and _for_unknown_store(r))
    assert unknown_store
    v1_sent = sum(1 for r in main if r.kind in DECODED) - sent_v2 + len(too_late) + unknown_store
    assert read["pizza.order.confirmed.v1"] == v1_sent
