"""Publishing records to a topic in bulk, with a bounded producer queue.

When Kafka takes no record for a while (it is down, or does not answer), publishing says
so once, waits, and gives up with one line once that has lasted the outage limit; a record
Kafka refuses stops it with one line naming the reason. Records handed to the producer
before then may or may not have reached the topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import Producer

from streamlane.brokerwatch import DEFAULT_OUTAGE_LIMIT_S
from streamlane.errors import UserError
from streamlane.kafka import WAIT_STEP_S, flush_within, producer_config

log = logging.getLogger(__name__)

_CHUNK = 5_000
_LINGER_S = 0.1
_QUEUE_LIMIT = 100_000
_DELIVERY_TIMEOUT_S = 60.0
STALL_TOLD_AFTER_S = 5.0
"""How long Kafka takes no record before publishing says it is waiting for it."""


def _reason(error: Any) -> str:
    return str(error.str()) if hasattr(error, "str") else str(error)


class _Sender:
    """One producer for a topic: hands it lists of records, waiting while its queue is full."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        on_progress: Callable[[int], None] | None,
        outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S,
    ) -> None:
        self.producer = Producer(producer_config(brokers))
        self.brokers = brokers
        self.topic = topic
        self.on_progress = on_progress
        self.outage_limit_s = outage_limit_s
        self.errors: list[object] = []
        self.sent = 0
        self._begin_wait()

    def _begin_wait(self) -> None:
        """Start timing a wait for deliveries from now and the records queued now."""
        self._waiting_since = time.monotonic()
        self._waiting_for = len(self.producer)
        self._told = False

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.errors.append(err)

    def _check_delivered(self) -> None:
        """UserError when Kafka refused a record, or has taken none for the outage limit."""
        if self.errors:
            raise UserError(
                f"Kafka refused records for {self.topic}: {_reason(self.errors[0])} "
                f"({len(self.errors)} in all)"
            )
        waiting, now = len(self.producer), time.monotonic()
        if waiting < self._waiting_for:
            if self._told:
                log.warning("Kafka at %s takes records again; continuing", self.brokers)
            self._begin_wait()
            return
        stalled_s = now - self._waiting_since
        if stalled_s > self.outage_limit_s:
            raise UserError(
                f"Kafka at {self.brokers} has taken no record for {self.topic} for "
                f"{stalled_s:.0f} s ({waiting} waiting; limit {self.outage_limit_s:.0f} s)"
            )
        if stalled_s > STALL_TOLD_AFTER_S and not self._told:
            self._told = True
            log.warning(
                "Kafka at %s takes no records; waiting up to %.0f s for it",
                self.brokers,
                self.outage_limit_s,
            )

    def send(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        for start in range(0, len(records), _CHUNK):
            chunk = [{"key": k, "value": v} for k, v in records[start : start + _CHUNK]]
            self._begin_wait()
            while len(self.producer) + len(chunk) > _QUEUE_LIMIT:
                self.producer.poll(0.05)
                self._check_delivered()
            queued = self.producer.produce_batch(self.topic, chunk, on_delivery=self._delivered)
            if queued < len(chunk):
                failed = next(m for m in chunk if "_error" in m)
                raise UserError(
                    f"Kafka client refused records for {self.topic}: {_reason(failed['_error'])}"
                )
            self.sent += len(chunk)
            self.producer.poll(0)
            if self.on_progress:
                self.on_progress(self.sent)

    def finish(self) -> int:
        """Wait until every record is delivered: up to the outage limit while Kafka takes
        none, and up to `_DELIVERY_TIMEOUT_S` in all."""
        deadline = time.monotonic() + max(_DELIVERY_TIMEOUT_S, self.outage_limit_s)
        self._begin_wait()
        remaining = len(self.producer)
        while remaining and time.monotonic() < deadline:
            remaining = flush_within(self.producer, WAIT_STEP_S)
            self._check_delivered()
        self._check_delivered()
        if remaining:
            raise UserError(
                f"{remaining} records for {self.topic} not delivered to Kafka at {self.brokers}"
            )
        return self.sent


def publish(
    brokers: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    on_progress: Callable[[int], None] | None = None,
    outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S,
) -> int:
    """Send (key, value) records to `topic` in order per key; return how many were delivered.

    Records are handed to the producer in chunks, a chunk once it is full or once its first
    record has waited `_LINGER_S` (checked as the next record arrives), so a slow stream is
    not held back for long. Blocks when the producer queue is full (back pressure). Raises
    UserError when Kafka refuses a record, or takes none for `outage_limit_s` (see the
    module docstring).
    """
    sender = _Sender(brokers, topic, on_progress, outage_limit_s)
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
    outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S,
) -> int:
    """As `publish`, for a stream made in blocks: each block is handed to the producer as
    soon as it is made, so no record waits in this process for the next block."""
    sender = _Sender(brokers, topic, on_progress, outage_limit_s)
    for block in blocks:
        sender.send(block)
    return sender.finish()
