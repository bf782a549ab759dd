"""Orders over input partitions of unequal size, each covering the same hour of event time:
read at the same pace, the smaller partitions run ahead in event time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import producer_config
from streamlane.paths import REFERENCE_DIR

START = datetime(2026, 11, 2, 11, 0, tzinfo=UTC)


def orders_over_an_hour(seed: int, sizes: tuple[int, ...]) -> list[list[bytes]]:
    """Generated valid orders, none repeated, in parts of `sizes` records; each part's event
    times spread evenly over the hour from `START`."""
    settings = GeneratorSettings(
        seed=seed, count=sum(sizes), start=START, duplicates=0.0, malformed=0.0,
        out_of_order=0.0, too_late=0.0, stores_csv=REFERENCE_DIR / "stores.csv",
    )  # fmt: skip
    made = [json.loads(r.value) for r in OrderGenerator(settings)]
    parts = []
    for size in sizes:
        events, made = made[:size], made[size:]
        step = timedelta(hours=1) / size
        for i, event in enumerate(events):
            event["time"] = (START + i * step).isoformat(timespec="milliseconds")[:-6] + "Z"
        parts.append([json.dumps(event).encode() for event in events])
    return parts


def produce_to_partitions(brokers: str, topic: str, parts: list[list[bytes]]) -> int:
    """Each part's records, in order, into the partition of its index; how many there were."""
    producer = Producer(producer_config(brokers))
    for partition, records in enumerate(parts):
        for record in records:
            producer.produce(topic, record, partition=partition)
    assert producer.flush(30) == 0
    return sum(len(records) for records in parts)
