"""bytewax sinks that write polars frames to Kafka topics.

A frame has a `key` and a `value` column (strings or bytes); each row is one
record. Producers are idempotent with a bounded queue: when it is full the sink
waits for deliveries (back pressure) instead of growing memory, during a Kafka
outage up to the outage limit. A delivery failure stops the flow rather than
losing records.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer

from streamlane import metrics
from streamlane.brokerwatch import DEFAULT_OUTAGE_LIMIT_S, watch
from streamlane.kafka import producer_config

_CHUNK = 10_000
_QUEUE_LIMIT = 100_000


class _Delivery:
    def __init__(self) -> None:
        self.error: Any = None

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = err


class _FramePartition(StatelessSinkPartition[pl.DataFrame]):
    def __init__(
        self, brokers: str, topic: str, with_headers: bool, broker_timeout_s: float
    ) -> None:
        # Only failed deliveries call back into Python: one callback per record would cost
        # as much as producing it.
        self._producer = Producer(producer_config(brokers, {"delivery.report.only.error": True}))
        self._topic = topic
        self._with_headers = with_headers
        self._delivery = _Delivery()
        self._broker = watch(brokers, broker_timeout_s)

    def _check(self) -> None:
        if self._delivery.error is not None:
            raise KafkaException(self._delivery.error)
        # A full queue during an outage waits for Kafka, up to the outage limit.
        self._broker.check()

    def _queue(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), _CHUNK):
            chunk = messages[start : start + _CHUNK]
            # Back pressure: wait for deliveries until the whole chunk fits the queue.
            while len(self._producer) + len(chunk) > _QUEUE_LIMIT:
                self._producer.poll(0.05)
                self._check()
            queued = self._producer.produce_batch(self._topic, chunk, on_delivery=self._delivery)
            if queued < len(chunk):
                for message in chunk:
                    if "_error" in message:
                        raise KafkaException(message["_error"])
        self._producer.poll(0)

    def _produce_with_headers(self, frame: pl.DataFrame) -> None:
        header_cols = [c for c in frame.columns if c.startswith("header_")]
        for row in frame.iter_rows(named=True):
            headers: list[tuple[str, str | bytes | None]] = [
                (c.removeprefix("header_"), str(row[c]).encode()) for c in header_cols
            ]
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        value=row["value"],
                        key=row["key"],
                        headers=headers,
                        on_delivery=self._delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
                    self._check()
        self._producer.poll(0)

    def write_batch(self, items: list[pl.DataFrame]) -> None:
        self._check()
        frames = [frame for frame in items if not frame.is_empty()]
        if not frames:
            return
        if self._with_headers:
            for frame in frames:
                self._produce_with_headers(frame)
        else:
            # One conversion for everything bytewax handed over, not one per frame.
            both = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")
            keys = both["key"].to_list()
            values = both["value"].to_list()
            self._queue([{"key": k, "value": v} for k, v in zip(keys, values, strict=True)])
        metrics.EVENTS_OUT.labels(topic=self._topic).inc(sum(f.height for f in frames))

    def close(self) -> None:
        self._producer.flush(30)
        self._check()


class KafkaFrameSink(DynamicSink[pl.DataFrame]):
    """Writes each row of each frame (`key`, `value`) as one record to `topic`.

    With `headers=True`, every `header_<name>` column becomes a record header
    (used for dead letters, whose value must stay the original bytes).
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        *,
        headers: bool = False,
        broker_timeout_s: float = DEFAULT_OUTAGE_LIMIT_S,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.headers = headers
        self.broker_timeout_s = broker_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FramePartition:
        return _FramePartition(self.brokers, self.topic, self.headers, self.broker_timeout_s)
