"""bytewax sinks that write polars frames to Kafka topics, delivered before each snapshot.

A frame has a `key` and a `value` column (strings or bytes); each row is one record.
Producing is asynchronous, so a recovery snapshot must not be taken while records of
its epoch are still queued: a crash right after it would resume past records that
never reached Kafka. The sink is therefore partitioned (bytewax calls a partitioned
sink's `snapshot()` at the end of every epoch, after its last write of the epoch),
and its snapshot waits until every queued record is delivered. Between snapshots
records stream out in the background.

One idempotent producer per process and broker list serves every sink partition.
Its queue is bounded: when full, a write waits for deliveries (back pressure), during
a Kafka outage up to the outage limit. A delivery failure stops the flow rather than
losing records.

Each worker lists only its own share of the partitions, and the flow keys what a worker
makes to one of them (`key_for`, see `streamlane.localparts`): records are produced by
the worker that made them, never first sent to another worker or process.

Records are handed to the producer one call each, with the arguments in place and the
delivery callback set once in its configuration: in a backlog the flow's worker spends
a good part of its time here, and a batch call needs a dictionary built per record,
which cost more than the calls it saves. A write polls the producer (which frees the
delivered records' reports, even those nobody is called back for) only once
`_SERVE_AFTER` records await it, not after every write: each poll lets go of the
interpreter lock, and taking it back from the decode threads cost the worker more than
the poll itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaException, Producer

from streamlane import metrics
from streamlane.brokerwatch import DEFAULT_OUTAGE_LIMIT_S, BrokerWatch, watch
from streamlane.kafka import WAIT_STEP_S, flush_within, producer_config
from streamlane.localparts import LocalParts, WorkerLayout

log = logging.getLogger(__name__)

_CHUNK = 10_000
_QUEUE_LIMIT = 100_000
"""Records queued in the producer at most; a write waits for deliveries beyond it."""
_SERVE_AFTER = 20_000
"""Records in the producer (queued, in flight, or delivered and not yet served) above
which a write polls it."""
SINK_PARTITIONS = 16
"""Fixed in the recovery store with the flow; as many as the flow's state shards."""
BUILT_ELSEWHERE = "is built on a worker that did not list it"
"""Logged when the runtime gives a sink partition to another worker than the one that
listed it, whose records then cross to it (see `streamlane.localparts`)."""


class _SharedProducer:
    """The process's producer for one broker list, and the first delivery error it saw."""

    def __init__(self, brokers: str, broker: BrokerWatch) -> None:
        # Only failed deliveries call back into Python: one callback per record would cost
        # as much as producing it.
        self.producer = Producer(
            producer_config(
                brokers,
                {
                    "delivery.report.only.error": True,
                    "on_delivery": self.on_delivery,
                    "queue.buffering.max.messages": _QUEUE_LIMIT,
                },
            )
        )
        self.broker = broker
        self.error: Any = None
        self.open_partitions = 0
        self._partitions_lock = threading.Lock()

    def on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None and self.error is None:
            self.error = err

    def check(self) -> None:
        """Raise on a failed delivery, or when an outage has outlasted its limit."""
        if self.error is not None:
            raise KafkaException(self.error)
        self.broker.check_or_exit()

    def opened(self) -> None:
        """A sink partition of this producer was built."""
        with self._partitions_lock:
            self.open_partitions += 1

    def closed(self) -> None:
        """A sink partition of this producer was closed. The last one to close waits for
        what the producer still holds (not at all while Kafka is down) and says once how
        many records were left: they are counted for the producer, which every sink
        partition shares, so each partition telling the count told of the same records
        over and over (sixteen lines in one stopped flow), each under its own topic."""
        with self._partitions_lock:
            self.open_partitions -= 1
            if self.open_partitions:
                return
        # A flow run again in this process gets a producer of its own.
        key = (self.broker.brokers, self.broker.limit_s)
        with _producers_lock:
            if _producers.get(key) is self:
                del _producers[key]
        # Raising here would abort the process mid-shutdown; the snapshot before the end
        # of the dataflow has already waited for every delivery.
        remaining = flush_within(self.producer, 0 if self.broker.down_for_s else 10)
        self.broker.release()
        if remaining:
            log.error(
                "%d records not delivered at shutdown; the next start produces them again "
                "(they came after the last snapshot)",
                remaining,
            )

    def deliver_all(self) -> None:
        """Wait until every queued record is delivered (an outage is waited out, up to its limit)."""
        while flush_within(self.producer, WAIT_STEP_S) > 0:
            self.check()
        self.check()


_producers: dict[tuple[str, float], _SharedProducer] = {}
_producers_lock = threading.Lock()


def _shared(brokers: str, broker_timeout_s: float) -> _SharedProducer:
    with _producers_lock:
        found = _producers.get((brokers, broker_timeout_s))
        if found is None:
            found = _SharedProducer(brokers, watch(brokers, broker_timeout_s))
            _producers[(brokers, broker_timeout_s)] = found
        return found


def _python_bytes(frame: pl.DataFrame, name: str) -> list[Any]:
    """A column of text or bytes as Python bytes (None stays None). Bytes are made without
    the UTF-8 check that Python strings need: the records are produced as bytes either
    way, and this conversion runs on the worker, holding the interpreter lock."""
    column = frame.get_column(name)
    return (column.cast(pl.Binary) if column.dtype == pl.String else column).to_list()


class _FramePartition(StatefulSinkPartition[pl.DataFrame, None]):
    def __init__(self, shared: _SharedProducer, topic: str, with_headers: bool) -> None:
        self._shared = shared
        shared.opened()
        self._producer = shared.producer
        self._topic = topic
        self._with_headers = with_headers

    def _queue(self, keys: list[Any], values: list[Any]) -> None:
        produce, topic = self._producer.produce, self._topic
        for key, value in zip(keys, values, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                self._produce_when_room(value=value, key=key)

    def _produce_when_room(self, **record: Any) -> None:
        """Back pressure: wait for deliveries until the producer's queue takes `record`."""
        while True:
            self._producer.poll(0.05)
            self._shared.check()
            try:
                self._producer.produce(self._topic, **record)
                return
            except BufferError:
                continue

    def _produce_with_headers(self, frame: pl.DataFrame) -> None:
        columns = [c for c in frame.columns if c.startswith("header_")]
        names = [c.removeprefix("header_") for c in columns]
        # Every header as bytes in one query, then record by record as plain lists.
        encoded = frame.select(pl.col(columns).cast(pl.String).cast(pl.Binary))
        headers = zip(*(encoded.get_column(c).to_list() for c in columns), strict=True)
        keys, values = frame.get_column("key").to_list(), frame.get_column("value").to_list()
        for key, value, row in zip(keys, values, headers, strict=True):
            record = {"value": value, "key": key, "headers": list(zip(names, row, strict=True))}
            try:
                self._producer.produce(self._topic, **record)
            except BufferError:
                self._produce_when_room(**record)

    def write_batch(self, values: list[pl.DataFrame]) -> None:
        self._shared.check()
        frames = [frame for frame in values if not frame.is_empty()]
        if not frames:
            return
        if self._with_headers:
            for frame in frames:
                self._produce_with_headers(frame)
        else:
            # Converted to Python a chunk at a time: a whole batch of records as Python
            # objects next to their copies in the producer's queue would double the memory.
            # Frame by frame, not concatenated first: that query waited for polars' threads.
            for frame in frames:
                for chunk in frame.iter_slices(_CHUNK):
                    self._queue(_python_bytes(chunk, "key"), _python_bytes(chunk, "value"))
        if len(self._producer) > _SERVE_AFTER:
            self._producer.poll(0)
        metrics.EVENTS_OUT.labels(topic=self._topic).inc(sum(f.height for f in frames))

    def snapshot(self) -> None:
        # The epoch's records are in Kafka before its snapshot can be committed.
        self._shared.deliver_all()

    def close(self) -> None:
        self._shared.closed()


class KafkaFrameSink(FixedPartitionedSink[pl.DataFrame, None]):
    """Writes each row of each `(key, frame)` item (`key`, `value` columns) as one record to
    `topic`; the item key only spreads frames over the sink's partitions.

    With `headers=True`, every `header_<name>` column becomes a record header (used for
    dead letters, whose value must stay the original bytes). Every record written in an
    epoch is delivered before that epoch's snapshot, so a restart after a crash re-emits
    (never skips) what the flow produced after its last snapshot.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        *,
        headers: bool = False,
        broker_timeout_s: float = DEFAULT_OUTAGE_LIMIT_S,
        layout: WorkerLayout | None = None,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.headers = headers
        self.broker_timeout_s = broker_timeout_s
        self.parts = LocalParts(SINK_PARTITIONS, layout or WorkerLayout())
        self._told_elsewhere: set[tuple[str, str]] = set()

    def key_for(self, spread: str) -> str:
        """The item key that has the calling worker write the item itself, to the same sink
        partition for the same `spread` (see `streamlane.localparts`)."""
        return self.parts.key_for(spread)

    def list_parts(self) -> list[str]:
        return self.parts.claim()

    def part_fn(self, item_key: str) -> int:
        return self.parts.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FramePartition:
        if not self.parts.owns(for_part) and (step_id, for_part) not in self._told_elsewhere:
            # Still correct, but the items of this partition now cross between workers.
            self._told_elsewhere.add((step_id, for_part))
            log.warning(
                "sink partition %s of %s %s; its records are sent there from the workers "
                "that made them",
                for_part,
                step_id,
                BUILT_ELSEWHERE,
            )
        return _FramePartition(
            _shared(self.brokers, self.broker_timeout_s), self.topic, self.headers
        )
