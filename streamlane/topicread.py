"""Reading a whole topic, from its first record to where it ends now (for tools and checks)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streamlane.errors import UserError
from streamlane.kafka import consumer_config, partitions_of

READ_TIMEOUT_S = 30.0


def read_to_end(brokers: str, topic: str, timeout_s: float = READ_TIMEOUT_S) -> list[Any]:
    """Every record of `topic` (confluent-kafka messages), sorted by partition and offset.

    The end is where each partition's fetch reports its high watermark, so records
    produced while reading may or may not be included. UserError when the topic does not
    exist or cannot be read to its end within `timeout_s`.
    """
    indexes = partitions_of({"bootstrap.servers": brokers}, topic)
    consumer = Consumer(consumer_config(brokers, {"enable.partition.eof": True}))
    try:
        consumer.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in indexes])
        at_end: set[int] = set()
        records = []
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(indexes):
            if time.monotonic() > deadline:
                raise UserError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for m in consumer.consume(10_000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(int(m.partition() or 0))
                    elif err.fatal():
                        raise UserError(f"reading {topic}: {err.str()}")
                    continue
                records.append(m)
    finally:
        consumer.close()
    records.sort(key=lambda m: (m.partition(), m.offset()))
    return records
