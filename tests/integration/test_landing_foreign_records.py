"""Records another writer sent to an output topic do not stop the warehouse: they are kept
in dead_letters with their reason, and the valid records around them land. Nor do records
in a dead-letter topic with headers the flow does not write."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from tests.helpers import Processes, wait_until
from tests.integration.test_landing_parse import enriched_values
from tests.pipeline import count, start_warehouse


@dataclass(frozen=True)
class Warehouse:
    brokers: str
    path: Path
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def warehouse(fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path) -> Warehouse:
    """A running `serve` landing the orders flow's topics (created, empty) of its own broker."""
    ensure_topics(fresh_broker.bootstrap, orders.FLOW.topics, 1)
    path = tmp_path / "warehouse.duckdb"
    process = start_warehouse(processes, fresh_broker.bootstrap, path)
    return Warehouse(fresh_broker.bootstrap, path, process, processes.log_dir / "warehouse.log")


def still_running_without_a_traceback(warehouse: Warehouse) -> str:
    """The warehouse's log, once checked that it still runs and logged no traceback."""
    log = warehouse.log.read_text(errors="replace")
    assert warehouse.process.poll() is None, log[-2000:]
    assert "Traceback" not in log
    return log


def test_foreign_records_in_an_output_topic_are_kept_as_dead_letters(warehouse: Warehouse) -> None:
    valid = enriched_values(2)
    records = [valid[0], b"not an event", b"\xff\xfe", valid[1]]
    publish(warehouse.brokers, orders.FLOW.enriched.topic, [(b"1", v) for v in records])
    wait_until(
        lambda: count(warehouse.path, "dead_letters") == 2, 60, "the foreign records to be kept"
    )
    wait_until(
        lambda: count(warehouse.path, "orders_enriched") == 2, 60, "the valid records to land"
    )
    log = still_running_without_a_traceback(warehouse)
    told = re.findall(r"(\d+) record\(s\) are not pizza\.order\.enriched\.v1", log)
    assert sum(map(int, told)) == 2, log[-2000:]  # one line per batch that held some


def test_dead_letters_with_foreign_headers_are_kept(warehouse: Warehouse) -> None:
    producer = Producer({"bootstrap.servers": warehouse.brokers})
    topic = orders.FLOW.dead_letter_topic
    producer.produce(topic, b"no value in a header", headers=[("reason", None)])
    producer.produce(topic, b"no origin", headers=[("partition", b"not a number")])
    producer.produce(topic, b"no headers")
    assert producer.flush(30) == 0
    wait_until(lambda: count(warehouse.path, "dead_letters") == 3, 60, "the dead letters to land")
    still_running_without_a_traceback(warehouse)
