"""The ceiling: a bare confluent-kafka consumer that only decodes each poll into Arrow columns.

Nothing a real job needs (validation, dedupe, enrichment, windows, outputs) is done,
so no pipeline reading the same messages through the same client can be faster.
"""

from __future__ import annotations

import contextlib
import time

import pyarrow as pa
import pyarrow.json as pa_json
from confluent_kafka import Consumer, TopicPartition

from streamlane.kafka import consumer_config

# The fastest settings measured for one consumer of every partition on the embedded broker.
FAST_FETCH = {"fetch.max.bytes": 64 * 1024 * 1024, "queued.max.messages.kbytes": 64 * 1024}


def consume_and_decode(brokers: str, topic: str, partitions: int, total: int) -> float:
    """Events/s of reading `total` records from `topic` and decoding each poll with Arrow."""
    consumer = Consumer(consumer_config(brokers, FAST_FETCH))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    started = time.perf_counter()
    seen = 0
    try:
        while seen < total:
            batch = [m.value() for m in consumer.consume(20_000, 1.0) if m.error() is None]
            if batch:
                # Malformed records fail the decode: the ceiling still counts the attempt.
                with contextlib.suppress(pa.ArrowInvalid):
                    pa_json.read_json(pa.py_buffer(b"\n".join(v or b"" for v in batch)))
                seen += len(batch)
        return total / (time.perf_counter() - started)
    finally:
        consumer.close()
