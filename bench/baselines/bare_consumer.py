"""The ceiling: a bare confluent-kafka consumer that only decodes each poll into Arrow columns.

Nothing a real job needs (validation, dedupe, enrichment, windows, outputs) is done,
so no pipeline reading the same messages through the same client can be faster.

The decoder is told in advance which records it could not parse (the malformed ones,
known from the generator), so it spends nothing finding them and parses every other
record in one call per poll. Handing Arrow the whole poll instead would not measure a
decode: Arrow stops at the first record it refuses, a few rows into the poll, and the
rest of the poll is never decoded.
"""

from __future__ import annotations

import time

import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json
from confluent_kafka import Consumer, TopicPartition

from streamlane.kafka import QUICK_REFETCH_CONFIG, consumer_config


def consume_and_decode(
    brokers: str, topic: str, partitions: int, total: int, unparsable: frozenset[bytes]
) -> float:
    """Events/s of reading `total` records from `topic` and decoding each poll with Arrow into
    polars; records in `unparsable` are counted as read but not handed to the decoder."""
    consumer = Consumer(consumer_config(brokers, QUICK_REFETCH_CONFIG))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    started = time.perf_counter()
    seen = handed = decoded = 0
    try:
        while seen < total:
            polled = [m.value() or b"" for m in consumer.consume(20_000, 1.0) if m.error() is None]
            seen += len(polled)
            batch = [v for v in polled if v not in unparsable]
            handed += len(batch)
            if batch:
                table = pa_json.read_json(pa.py_buffer(b"\n".join(batch)))
                decoded += pl.from_arrow(table).height  # type: ignore[union-attr]
        elapsed = time.perf_counter() - started
        if decoded != handed:
            raise RuntimeError(f"the ceiling decoded {decoded:,} rows of {handed:,} records")
        return total / elapsed
    finally:
        consumer.close()
