"""Records another writer sent to an output topic do not stop the warehouse: they are kept
in dead_letters with their reason, and the valid records around them land. Nor do records
in a dead-letter topic with headers the flow does not write."""

from __future__ import annotations

import re
from pathlib import Path

from confluent_kafka import Producer

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from tests.helpers import Processes, wait_until
from tests.integration.test_landing_parse import enriched_values
from tests.pipeline import count, start_warehouse


def test_foreign_records_in_an_output_topic_are_kept_as_dead_letters(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 1)
    warehouse_path = tmp_path / "warehouse.duckdb"
    warehouse = start_warehouse(processes, brokers, warehouse_path)
    valid = enriched_values(2)
    records = [valid[0], b"not an event", b"\xff\xfe", valid[1]]
    publish(brokers, orders.FLOW.enriched.topic, [(b"1", value) for value in records])
    wait_until(
        lambda: count(warehouse_path, "dead_letters") == 2, 60, "the foreign records to be kept"
    )
    wait_until(
        lambda: count(warehouse_path, "orders_enriched") == 2, 60, "the valid records to land"
    )
    assert warehouse.poll() is None, processes.log("warehouse")[-2000:]
    log = processes.log("warehouse")
    assert "Traceback" not in log
    told = re.findall(r"(\d+) record\(s\) are not pizza\.order\.enriched\.v1", log)
    assert sum(map(int, told)) == 2, log[-2000:]  # one line per batch that held some


def test_dead_letters_with_foreign_headers_are_kept(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 1)
    warehouse_path = tmp_path / "warehouse.duckdb"
    warehouse = start_warehouse(processes, brokers, warehouse_path)
    producer = Producer({"bootstrap.servers": brokers})
    topic = orders.FLOW.dead_letter_topic
    producer.produce(topic, b"no value in a header", headers=[("reason", None)])
    producer.produce(topic, b"no origin", headers=[("partition", b"not a number")])
    producer.produce(topic, b"no headers")
    assert producer.flush(30) == 0
    wait_until(lambda: count(warehouse_path, "dead_letters") == 3, 60, "the dead letters to land")
    assert warehouse.poll() is None, processes.log("warehouse")[-2000:]
    assert "Traceback" not in processes.log("warehouse")
