"""Publishing records to a topic in bulk, with a bounded producer queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import KafkaException, Producer

from streamlane.kafka import flush_within, producer_config

_CHUNK = 5_000
_LINGER_S = 0.1
_QUEUE_LIMIT = 100_000
_DELIVERY_TIMEOUT_S = 60.0


class _Sender:
    """One producer for a topic: hands it lists of records, waiting while its queue is full."""

    def __init__(self, brokers: str, topic: str, on_progress: Callable[[int], None] | None) -> None:
        self.producer = Producer(producer_config(brokers))
        self.topic = topic
        self.on_progress = on_progress
        self.errors: list[object] = []
        self.sent = 0

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.errors.append(err)

    def send(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        for start in range(0, len(records), _CHUNK):
            chunk = [{"key": k, "value": v} for k, v in records[start : start + _CHUNK]]
            while len(self.producer) + len(chunk) > _QUEUE_LIMIT:
                self.producer.poll(0.05)
            queued = self.producer.produce_batch(self.topic, chunk, on_delivery=self._delivered)
            if queued < len(chunk):
                failed = next(m for m in chunk if "_error" in m)
                raise KafkaException(failed["_error"])
            self.sent += len(chunk)
            self.producer.poll(0)
            if self.on_progress:
                self.on_progress(self.sent)

    def finish(self) -> int:
        remaining = flush_within(self.producer, _DELIVERY_TIMEOUT_S)
        if self.errors or remaining:
            raise KafkaException(
                self.errors[0] if self.errors else f"{remaining} records not delivered"
            )
        return self.sent


def publish(
    brokers: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send (key, value) records to `topic` in order per key; return how many were delivered.

    Records are handed to the producer in chunks, a chunk once it is full or once its first
    record has waited `_LINGER_S` (checked as the next record arrives), so a slow stream is
    not held back for long. Blocks when the producer queue is full (back pressure) and
    raises KafkaException if any record could not be delivered.
    """
    sender = _Sender(brokers, topic, on_progress)
    chunk: list[tuple[bytes | None, bytes | None]] = []
    chunk_started = time.monotonic()
    for record in records:
        if not chunk:
            chunk_started = time.monotonic()
        chunk.append(record)
        if len(chunk) >= _CHUNK or time.monotonic() - chunk_started > _LINGER_S:
            sender.send(chunk)
            chunk = []
    if chunk:
        sender.send(chunk)
    return sender.finish()


def publish_blocks(
    brokers: str,
    topic: str,
    blocks: Iterable[Sequence[tuple[bytes | None, bytes | None]]],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """As `publish`, for a stream made in blocks: each block is handed to the producer as
    soon as it is made, so no record waits in this process for the next block."""
    sender = _Sender(brokers, topic, on_progress)
    for block in blocks:
        sender.send(block)
    return sender.finish()
