"""Publishing records to a topic in bulk, with a bounded producer queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException, Producer

from streamlane.kafka import producer_config

_CHUNK = 5_000
_LINGER_S = 0.1
_QUEUE_LIMIT = 100_000


def publish(
    brokers: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send (key, value) records to `topic` in order per key; return how many were delivered.

    Blocks when the producer queue is full (back pressure) and raises
    KafkaException if any record could not be delivered.
    """
    producer = Producer(producer_config(brokers))
    errors: list[object] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    sent = 0
    chunk: list[dict[str, bytes | None]] = []

    def flush_chunk() -> None:
        nonlocal sent
        while len(producer) + len(chunk) > _QUEUE_LIMIT:
            producer.poll(0.05)
        queued = producer.produce_batch(topic, chunk, on_delivery=delivered)
        if queued < len(chunk):
            failed = next(m for m in chunk if "_error" in m)
            raise KafkaException(failed["_error"])
        sent += len(chunk)
        chunk.clear()
        producer.poll(0)
        if on_progress:
            on_progress(sent)

    chunk_started = time.monotonic()
    for key, value in records:
        if not chunk:
            chunk_started = time.monotonic()
        chunk.append({"key": key, "value": value})
        # Flush on size, or after a short linger so a slow (paced) stream is not held back.
        if len(chunk) >= _CHUNK or time.monotonic() - chunk_started > _LINGER_S:
            flush_chunk()
    if chunk:
        flush_chunk()
    remaining = producer.flush(60)
    if errors or remaining:
        raise KafkaException(errors[0] if errors else f"{remaining} records not delivered")
    return sent
