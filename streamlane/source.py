"""Kafka input for bytewax that yields decoded polars batches of a topic's partitions.

Each Kafka partition is one bytewax source partition (the unit of parallelism). A
partition behind by a batch or more cuts its own batches of up to `batch_size` records
(collected for at most `linger_s`). Once caught up, a worker's partitions are cut
together: every `linger_s` (longer when the process runs many workers: see
`CAUGHT_UP_BATCHES_PER_S`) the records each of them collected become ONE batch, so a
worker reading many partitions pays a batch's fixed cost once per cut instead of once
per partition, and no partition's records wait longer than one linger. A batch is ONE
item: the records decoded by the flow's `decode` function, their dead letters, and the
progress (newest event time, idleness) of each partition in it, which drives the
watermark. When a partition has nothing to deliver it still emits an empty batch every
`heartbeat_s`, so idleness reaches the window state. Offsets and the newest event time
are each partition's recovery snapshot: a restarted flow resumes after the last
snapshotted batch.

Batches are decoded on decode threads shared by the process's partitions, one batch
per partition at a time and at most `DECODE_AHEAD` in all, while the worker processes
what was emitted before; the flow's `prepare` step (its enrichment, and the split of the
events over the state shards) runs there too, right after decoding. A batch counts as
read (and is snapshotted) once emitted. A partition takes records from its Kafka client
only when they can be decoded next, so a backlog waits in Kafka and in the client's
bounded prefetch, not in the flow; a partition behind by a batch or more has them taken
on the decode thread too, off the worker. When the worker emits a batch, a decode slot left
free goes at once to another of its partitions behind, rather than when the worker next
polls that one, after processing the batch.

Partitions behind are read aligned in event time (with `max_drift_s`): one whose newest
event is more than the drift ahead of the slowest partition behind in the process waits,
its records left in Kafka, until that one catches up. Read at the same pace, partitions of
unequal size would drift apart without bound in a backlog: the watermark follows the
slowest, so the faster ones' windows would all stay open, and the dedupe state, whose
horizon ends at the slowest partition's newest event, would hold the ids of the whole
drift.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from streamlane import metrics, shutdown
from streamlane.brokerwatch import DEFAULT_OUTAGE_LIMIT_S, watch
from streamlane.decode import Decoded
from streamlane.kafka import (
    PARTITION_READER_CONFIG,
    admin_config,
    consumer_config,
    partitions_of,
)
from streamlane.settings import FlowSettings
from streamlane.shards import ShardRows
from streamlane.threadname import name_this_thread
from streamlane.windows import NEVER, PartitionProgress

log = logging.getLogger(__name__)

Decoder = Callable[[list[bytes]], Decoded]
SourceState = tuple[int, int | None]
"""(next offset to read, newest event time seen in microseconds)."""


@dataclass(frozen=True)
class PartitionBatch:
    """One batch of input: valid events, dead letters and the progress of the partitions read.

    A batch holds the records of one partition, or of several when a worker's caught-up
    partitions are cut together (see `EventSource`). `progress` holds the progress of each
    of them (of the one partition, for an empty heartbeat batch).
    `events` holds the decoded columns plus `row` (the record's position in the batch),
    `part` (its partition, as a position in `progress`), `offset`, `event_time_us` and
    `own_newest_before_us` (newest event time on the row's partition before it). `keys` and
    `values` are the records' original bytes by position, for dead letters found after
    decoding (a flow's `prepare` step empties them once nothing after it can find more). A
    flow's `prepare` step may also split the events by state shard ahead of the worker
    (`shards`, see `streamlane.shards.split`), leaving `events` empty.
    `dead_letters` holds `key`, `value` (original bytes), `reason`, `topic`,
    `partition`, `offset`.
    """

    events: pl.DataFrame
    dead_letters: pl.DataFrame
    progress: tuple[PartitionProgress, ...]
    records: int
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    shards: dict[int, ShardRows] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        """The input topic the batch was read from."""
        return self.progress[0].partition.rsplit("/", 1)[0]

    def kafka_partitions(self, parts: pl.Series) -> np.ndarray:
        """The Kafka partition index of each of `parts` (positions in `progress`)."""
        indexes = np.array([int(p.partition.rsplit("/", 1)[1]) for p in self.progress])
        return indexes[parts.to_numpy()]


DEAD_LETTER_SCHEMA = {
    "key": pl.Binary,
    "value": pl.Binary,
    "reason": pl.String,
    "topic": pl.String,
    "partition": pl.Int32,
    "offset": pl.Int64,
}


def dead_letter_frame(
    topic: str,
    partitions: np.ndarray,
    keys: list[bytes | None],
    values: list[bytes],
    rows: pl.Series,
    reasons: pl.Series,
    offsets: pl.Series | np.ndarray,
) -> pl.DataFrame:
    """Dead letters (DEAD_LETTER_SCHEMA) of the records at positions `rows` of a batch: their
    original key and bytes, why they were refused, and where they were read (`partitions`
    and `offsets`, one per row)."""
    positions = rows.to_list()
    return pl.DataFrame(
        {
            "key": [keys[r] for r in positions],
            "value": [values[r] for r in positions],
            "reason": reasons,
            "topic": [topic] * len(positions),
            "partition": partitions,
            "offset": offsets,
        },
        schema=DEAD_LETTER_SCHEMA,
    )


CAUGHT_UP_BATCHES_PER_S = 10.0
"""How many batches a process's caught-up partitions cut per second in all, at most (when
their linger alone would cut more): a batch costs tens of milliseconds of fixed work (its
validation and one step in each state shard), so many workers each cutting every
`linger_s` would spend the cores on that overhead instead of on the events."""
LAG_REPORT_S = 2.0
"""How often a partition's lag is recomputed. Reading the client's cached offsets waits on
the partition's lock while holding the interpreter lock, so it stalls every thread of the
flow while a large fetch is being unpacked: in a backlog's profile each read took
milliseconds, and reading every half second cost the worker a twentieth of its time."""
DECODE_AHEAD = 2
"""Batches a process's partitions may have decoding (and preparing) or decoded ahead of the
worker, each on its own decode thread. Much of decoding and enriching a batch runs on one
core at a time (screening, joins, small columnar steps), so with one batch in flight the
flow left part of the cores idle in a backlog (`flow_cores_busy` in the benchmark); two
keep more of them busy. Each holds its own working set, so more would raise the peak
memory of a backlog further."""


Prepare = Callable[[PartitionBatch], PartitionBatch]
"""What a flow does to each decoded batch before it is emitted, on the decode thread: the
batch's `progress` there is as of its decoding (the emitted batch carries the progress as
of emitting)."""


@dataclass(frozen=True)
class _PartRecords:
    """One partition's records for a batch, and the newest event time it delivered before them."""

    records: list[Any]
    newest_us: int | None


@dataclass(frozen=True)
class _PartEnd:
    """Where a partition stands after its records in a batch."""

    next_offset: int
    newest_us: int | None
    records: int


@dataclass(frozen=True)
class _DecodedRecords:
    """A decoded batch, and where each of its partitions stands after it (in `part` order)."""

    batch: PartitionBatch
    ends: list[_PartEnd]


def _decode_records(
    decode: Decoder, prepare: Prepare | None, parts: list[_PartRecords]
) -> _DecodedRecords:
    """Decode (and prepare) the records of one or more partitions of a topic as one batch:
    one decode's fixed cost for all of them."""
    records = parts[0].records if len(parts) == 1 else [m for p in parts for m in p.records]
    topic = records[0].topic()
    indexes = np.array([part.records[0].partition() for part in parts], dtype=np.int32)
    sizes = np.array([len(part.records) for part in parts], dtype=np.int64)
    part_of = np.repeat(np.arange(len(parts), dtype=np.int32), sizes)
    # Mapped over the unbound accessors, no Python frame per record: the decode threads
    # hold the interpreter lock for these loops.
    values = cast("list[bytes]", list(map(Message.value, records)))
    if not all(values):  # a record without a value (a tombstone) decodes as an empty one
        values = [v or b"" for v in values]
    keys = list(map(Message.key, records))
    offsets = np.fromiter(map(Message.offset, records), dtype=np.int64, count=len(records))
    decoded = decode(values)
    rows = decoded.valid["row"].to_numpy()
    if "type" in decoded.valid.columns:
        # Per type and version, so a retiring version can be seen going quiet.
        for event_type, n in decoded.valid["type"].value_counts().iter_rows():
            metrics.EVENTS_BY_TYPE.labels(direction="in", type=event_type).inc(n)
    row_parts = part_of[rows]
    running_newest = pl.col("event_time_us").cum_max().shift(1)
    if len(parts) > 1:
        running_newest = running_newest.over("part")
    newest_before = pl.Series([part.newest_us for part in parts], dtype=pl.Int64)
    events = decoded.valid.with_columns(
        part=pl.Series(row_parts),
        offset=pl.Series(offsets[rows]),
        event_time_us=pl.col("event_time").dt.epoch("us"),
    ).with_columns(
        own_newest_before_us=pl.max_horizontal(running_newest, newest_before.gather(row_parts))
    )
    times = events["event_time_us"].to_numpy()
    last_rows = np.cumsum(sizes) - 1
    ends = []
    for i, part in enumerate(parts):
        newest_us = part.newest_us
        own = times[row_parts == i]
        if own.size and (newest_us is None or int(own.max()) > newest_us):
            newest_us = int(own.max())
        ends.append(_PartEnd(int(offsets[last_rows[i]]) + 1, newest_us, len(part.records)))
    rejects = decoded.rejects
    reject_rows = rejects["row"].to_numpy()
    dead = dead_letter_frame(
        topic,
        indexes[part_of[reject_rows]],
        keys,
        values,
        rejects["row"],
        rejects["reason"],
        offsets[reject_rows],
    )
    progress = tuple(
        PartitionProgress(partition_name(topic, index), end.newest_us, idle=False, idle_for_us=0)
        for index, end in zip(indexes, ends, strict=True)
    )
    batch = PartitionBatch(events, dead, progress, len(records), keys, values)
    return _DecodedRecords(prepare(batch) if prepare else batch, ends)


def _usable(messages: list[Any], partition: str) -> list[Any]:
    """The records among `messages`; a fatal client error raises, others are logged."""
    if not any(map(Message.error, messages)):  # the common case: no Python frame per record
        return messages
    records = []
    for m in messages:
        err = m.error()
        if err is None:
            records.append(m)
        elif err.code() != KafkaError._PARTITION_EOF:
            if err.fatal():
                raise RuntimeError(f"Kafka consumer for {partition} failed: {err}")
            log.warning("Kafka consumer for %s: %s", partition, err)
    return records


def _read_and_decode(
    consumer: Consumer,
    partition: str,
    wanted: int,
    wait_s: float,
    decode: Decoder,
    prepare: Prepare | None,
    newest_us: int | None,
) -> _DecodedRecords | None:
    """Up to `wanted` records of a partition's client (waiting at most `wait_s` for them),
    decoded and prepared; None when none came."""
    records = _usable(consumer.consume(wanted, wait_s), partition)
    return _decode_records(decode, prepare, [_PartRecords(records, newest_us)]) if records else None


@dataclass
class _InFlight:
    """A batch being decoded, and the partitions whose records it holds (in `part` order):
    none of them cuts another batch before this one is emitted."""

    future: Future[_DecodedRecords | None]
    readers: list[_PartitionReader]


class _PartitionReader(StatefulSourcePartition[PartitionBatch, SourceState]):
    def __init__(
        self,
        source: EventSource,
        topic: str,
        index: int,
        resume: SourceState | None,
    ) -> None:
        self._source = source
        self._topic = topic
        self._index = index
        self._name = partition_name(topic, index)
        self._next_offset, self._newest_us = (
            resume if resume is not None else (OFFSET_BEGINNING, None)
        )
        self._consumer = Consumer(
            consumer_config(source.brokers, {**PARTITION_READER_CONFIG, **source.client_config})
        )
        self._consumer.assign([TopicPartition(topic, index, self._next_offset)])
        now = time.monotonic()
        self._last_delivery = now
        self._last_emit = 0.0
        self._wake_at: datetime | None = None
        self._pending: list[Any] = []
        self._pending_since = 0.0
        self._decoding: _InFlight | None = None
        self._waiting_for_slot = False
        self._closed = False
        self._worker: list[_PartitionReader] | None = None
        self._lag: int | None = None
        self._lag_reported = -LAG_REPORT_S
        self._aligning = False
        self._labels = {"topic": topic, "partition": str(index)}
        self._broker = watch(source.brokers, source.broker_timeout_s)

    def _progress(self, now: float) -> PartitionProgress:
        # Silence during a Kafka outage is not idleness: time without an answer does not
        # count towards the idle timeout, so an outage never makes later events late.
        if self._broker.down_for_s is not None:
            idle_for = 0.0
        else:
            idle_for = now - max(self._last_delivery, self._broker.up_since)
        return PartitionProgress(
            partition=self._name,
            newest_us=self._newest_us,
            idle=idle_for >= self._source.idle_timeout_s,
            idle_for_us=int(idle_for * 1e6),
        )

    def _report_lag(self) -> None:
        # The high watermark from fetch responses is correct on every broker we support;
        # a ListOffsets request is not (see DESIGN.md).
        _low, high = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, self._index), cached=True
        )
        if high >= 0 and self._next_offset >= 0:
            self._lag = max(0, high - self._next_offset)
            metrics.CONSUMER_LAG.labels(**self._labels).set(self._lag)

    def _reads_ahead(self) -> bool:
        """Behind by a batch or more (as last measured) with nothing held: the next batch is
        read from the client on a decode thread, not by the worker."""
        return self._lag is not None and self._lag >= self._source.batch_size and not self._pending

    def _behind(self) -> bool:
        """Behind by a batch or more, or not known yet (before the first batch is emitted)."""
        return self._lag is None or self._lag >= self._source.batch_size

    def _ahead_by_more_than_the_drift(self) -> bool:
        """Behind, but with events newer than the slowest partition behind by more than the
        source's `max_drift_s`: it waits for that one (see `EventSource.aligned_until_us`).
        A partition yet to read an event never waits; a caught-up one neither waits nor
        holds others back, its newest event being as new as it gets."""
        return self._ahead_of(self._source.aligned_until_us())

    def _ahead_of(self, until: int | None) -> bool:
        """`_ahead_by_more_than_the_drift`, given the source's `aligned_until_us`."""
        return (
            until is not None
            and self._newest_us is not None
            and self._behind()
            and self._newest_us > until
        )

    def next_batch(self) -> list[PartitionBatch]:
        source = self._source
        if self._worker is None:
            # Found on the worker's own thread: `build_part` need not run there.
            self._worker = source.worker_partitions(self)
        self._broker.check_or_exit()
        if shutdown.stop_requested():
            # EOF: bytewax closes the epoch, snapshotting this partition's position (a
            # batch still being decoded was not emitted, so it is read again on restart).
            raise StopIteration
        # A partition behind takes records from the client only when they can be decoded
        # next: while its last batch is decoding, while it waits for a decode slot, or
        # while it holds none and every slot is taken, they stay in the client's bounded
        # prefetch queue instead of piling up in the flow's memory as one Python object
        # each (taken when no slot was free, every partition of a backlog held a batch
        # that way). A caught-up partition takes what arrives, also while its last batch
        # is decoding: its batches are small, and the linger of a record runs from when it
        # was taken (left in the client, it waited for the decoding and then a linger).
        behind = self._behind()
        aligning = self._decoding is None and self._ahead_by_more_than_the_drift()
        # A partition waiting for slower ones leaves its records in Kafka, as one held back.
        may_take = (
            (self._decoding is None or not behind) and not self._waiting_for_slot and not aligning
        )
        held_back = may_take and behind and not self._pending and not source.decode_slot_free()
        wanted = source.batch_size - len(self._pending)
        messages = (
            self._consumer.consume(wanted, 0)
            if may_take and wanted > 0 and not held_back and not self._reads_ahead()
            else []
        )
        now = time.monotonic()
        if not self._pending:
            self._pending_since = now
        self._pending.extend(_usable(messages, self._name))
        if (
            messages
            or self._decoding is not None
            or self._waiting_for_slot
            or held_back
            or aligning
        ):
            # A partition holding records back, or leaving them in Kafka, is not idle.
            self._last_delivery = now
        emitted = []
        if self._decoding is not None and self._decoding.future.done():
            emitted += self._emit_decoded(now)
        # A partition behind by a batch or more cuts batches as soon as its linger allows:
        # it is catching up, and waiting longer would only make its batches bigger. Caught
        # up, the worker's partitions are cut together (see `EventSource`).
        behind = self._behind()  # the emit may have updated the lag
        if emitted:  # and moved this partition on in event time
            aligning = self._ahead_by_more_than_the_drift()
        if aligning != self._aligning:
            self._aligning = aligning
            metrics.PARTITION_ALIGNING.labels(**self._labels).set(int(aligning))
        if behind:
            linger_left = source.linger_s - (now - self._last_emit)
        else:
            linger_left = self._caught_up_linger_left(now)
        ready = bool(self._pending) and (
            linger_left <= 0 or len(self._pending) >= source.batch_size
        )
        self._waiting_for_slot = False
        if self._decoding is None and not aligning and (ready or self._reads_ahead()):
            if source.take_decode_slot():
                # Decoded on one of the source's decode threads while this worker processes
                # what was emitted before; one batch per partition in flight keeps batches
                # in order. A partition in a backlog has its records read there too: taking
                # a batch from the client costs the worker about as much as a shard's step.
                if ready:
                    self._cut([self] if behind else self._caught_up_holding(), now)
                else:
                    self._read_ahead()
                self._last_emit = now
            else:
                self._waiting_for_slot = True
        if emitted:
            self._hand_on_free_slots(now)
            self._wake_at = None
        elif self._decoding is not None or self._waiting_for_slot or held_back:
            self._wake_at = datetime.now(UTC) + timedelta(seconds=0.002)
        elif self._pending and not aligning:
            # A caught-up partition collects records for a moment: every batch costs a fixed
            # amount of work per state shard, so many tiny batches would cost more than
            # the records themselves.
            self._wake_at = datetime.now(UTC) + timedelta(seconds=linger_left)
        else:
            self._wake_at = datetime.now(UTC) + timedelta(seconds=0.02)
            if now - self._last_emit >= source.heartbeat_s:
                self._last_emit = now
                progress = (self._advance(None, now),)
                empty = pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
                emitted.append(PartitionBatch(pl.DataFrame(), empty, progress, 0))
        return emitted

    def _read_ahead(self) -> None:
        """Read this partition's next batch from its client on a decode thread (a slot taken)."""
        source = self._source
        future = source.decode_pool().submit(
            _read_and_decode, self._consumer, self._name, source.batch_size,
            source.linger_s, source.decode, source.prepare, self._newest_us,
        )  # fmt: skip
        self._start(future, [self])

    def _hand_on_free_slots(self, now: float) -> None:
        """Start the next batch of this worker's other partitions that read ahead, while
        decode slots are free: the worker is about to process what it emitted, and until it
        polls them again (tens of milliseconds, a batch's processing) the decode threads
        would sit idle. In a backlog read aligned, a partition that emitted a batch is
        usually ahead of the drift and waits, so its slot is left for another partition.
        The partitions after this one are offered the slots first, so none is always last."""
        assert self._worker is not None
        if not self._source.decode_slot_free():
            return
        # Starting a read moves no partition in event time: the bound holds for the loop.
        until = self._source.aligned_until_us()
        at = self._worker.index(self)
        for reader in self._worker[at + 1 :] + self._worker[:at]:
            if (
                reader._closed
                or reader._decoding is not None
                or not reader._reads_ahead()
                or reader._ahead_of(until)
                or not self._source.take_decode_slot()
            ):
                continue
            reader._read_ahead()
            reader._last_emit = now
            reader._waiting_for_slot = False

    @staticmethod
    def _start(future: Future[_DecodedRecords | None], readers: list[_PartitionReader]) -> None:
        """Mark `readers` as waiting on `future`, the one batch that holds their records."""
        flight = _InFlight(future, readers)
        for reader in readers:
            reader._decoding = flight

    def _cut(self, readers: list[_PartitionReader], now: float) -> None:
        """Decode the records `readers` hold as one batch: this partition's alone when it is
        behind, else those of every caught-up partition of this worker that holds some and
        has no batch in flight (this one among them).

        Recovery stays whole: a worker polls its partitions one after another and ends each
        one's epoch right after its poll, so every partition's new position is snapshotted
        with the epoch that carries the batch or with the next one. At worst a restart reads
        a partition's records in the batch again, and the dedupe drops them."""
        parts = []
        for reader in readers:
            parts.append(_PartRecords(reader._pending, reader._newest_us))
            reader._pending = []
            reader._last_emit = now
            reader._waiting_for_slot = False
        source = self._source
        self._start(
            source.decode_pool().submit(_decode_records, source.decode, source.prepare, parts),
            readers,
        )

    def _caught_up_holding(self) -> list[_PartitionReader]:
        """This worker's caught-up partitions that hold records and have no batch in flight."""
        assert self._worker is not None
        return [
            r
            for r in self._worker
            if r._pending and r._decoding is None and not r._behind() and not r._closed
        ]

    def _caught_up_linger_left(self, now: float) -> float:
        """How long until this worker's caught-up partitions are cut: one linger after the
        first of the records they hold arrived."""
        since = min((r._pending_since for r in self._caught_up_holding()), default=now)
        return since + self._source.caught_up_linger_s() - now

    def _emit_decoded(self, now: float) -> list[PartitionBatch]:
        """The decoded batch in flight (none if a read ahead found no records), every partition
        in it moved past its records."""
        assert self._decoding is not None
        flight = self._decoding
        for reader in flight.readers:
            reader._decoding = None
        self._source.give_back_decode_slot()
        decoded = flight.future.result()
        if decoded is None:
            # Read ahead on a lag measured before the client had caught up: measured
            # again, or a partition at its end would keep reading ahead instead of
            # turning idle.
            self._report_lag()
            return []
        progress = tuple(
            reader._advance(end, now)
            for reader, end in zip(flight.readers, decoded.ends, strict=True)
        )
        return [replace(decoded.batch, progress=progress)]

    def _advance(self, end: _PartEnd | None, now: float) -> PartitionProgress:
        """Move this partition past its records in an emitted batch (None: an empty heartbeat);
        its progress as of now."""
        if end is not None:
            self._next_offset = end.next_offset
            if end.newest_us is not None and end.newest_us != self._newest_us:
                self._newest_us = end.newest_us
                metrics.PARTITION_EVENT_TIME.labels(**self._labels).set(end.newest_us / 1e6)
            metrics.EVENTS_IN.labels(**self._labels).inc(end.records)
        if now - self._lag_reported >= LAG_REPORT_S:
            self._lag_reported = now
            self._report_lag()
        return self._progress(now)

    def next_awake(self) -> datetime | None:
        return self._wake_at

    def snapshot(self) -> SourceState:
        return (self._next_offset, self._newest_us)

    def close(self) -> None:
        self._closed = True
        flight = self._decoding
        if flight is not None and all(r._closed for r in flight.readers):
            if not flight.future.cancel():
                # A decode thread may be reading from the client: closed only after it.
                wait([flight.future])
            self._source.give_back_decode_slot()
        self._consumer.close()
        self._broker.release()


def partition_indexes(
    brokers: str, topic: str, client_config: dict[str, Any] | None = None
) -> list[int]:
    """The partition indexes of `topic`, an existing topic (UserError otherwise, or when
    Kafka does not answer)."""
    return partitions_of(admin_config(brokers, client_config), topic)


def partition_name(topic: str, index: int) -> str:
    """`topic/index`: how an `EventSource` names partition `index` of `topic` in its
    batches' progress (and the watermark expects it)."""
    return f"{topic}/{index}"


def partition_names(topic: str, indexes: Iterable[int]) -> list[str]:
    """`partition_name` of each of the partition `indexes` of `topic`."""
    return [partition_name(topic, i) for i in indexes]


class EventSource(FixedPartitionedSource[PartitionBatch, SourceState]):
    """All partitions of one Kafka topic, read from the earliest offset on a first start.

    Records are decoded by `decode` and, when given, each decoded batch is handed to
    `prepare` on the same decode thread before it is emitted. While Kafka does not answer,
    readers wait (the client retries) and partitions do not turn idle; an outage longer
    than `broker_timeout_s` ends the process (one line, status 2).
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        decode: Decoder,
        *,
        prepare: Prepare | None = None,
        batch_size: int = FlowSettings.batch_size,
        idle_timeout_s: float = FlowSettings.idle_timeout_s,
        heartbeat_s: float = 0.25,
        linger_s: float = 0.2,
        broker_timeout_s: float = DEFAULT_OUTAGE_LIMIT_S,
        client_config: dict[str, Any] | None = None,
        max_drift_s: float | None = FlowSettings.max_drift_s,
        partitions: Sequence[int] | None = None,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        # Listed by the caller, the partitions are not asked for again while bytewax builds
        # the dataflow, where a Kafka that stopped answering meanwhile made bytewax panic
        # (its own backtrace before the error's line).
        self.partitions = list(partitions) if partitions is not None else None
        self.decode = decode
        self.prepare = prepare
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self.heartbeat_s = heartbeat_s
        self.linger_s = linger_s
        self.broker_timeout_s = broker_timeout_s
        self.client_config = client_config or {}
        self.max_drift_s = max_drift_s
        self._pool: ThreadPoolExecutor | None = None
        # Batches read but not yet emitted, over all partitions: a backlog stays in Kafka
        # instead of as decoded batches queued for the decode threads.
        self._decode_slots = DECODE_AHEAD
        self._lock = threading.Lock()
        self._workers: dict[int, list[_PartitionReader]] = {}

    def caught_up_linger_s(self) -> float:
        """How long a worker's caught-up partitions (each behind by less than a batch) collect
        records before they are cut, together, into one batch: `linger_s`, or longer when
        this process runs so many workers that they would cut more than
        `CAUGHT_UP_BATCHES_PER_S` batches a second in all. A partition further behind cuts
        its own batches every `linger_s`."""
        return max(self.linger_s, len(self._workers) / CAUGHT_UP_BATCHES_PER_S)

    def aligned_until_us(self) -> int | None:
        """The newest event time a partition behind may have read and still take more records:
        the slowest partition behind in this process (by its newest event) plus `max_drift_s`.
        None when reading is not aligned, or no partition behind has read an event yet.

        A partition behind that has yet to read an event, and is not idle, holds every
        other back (`NEVER`) until it reads one, as it holds the watermark back: one whose
        client was slow to start would otherwise let the others run through their whole
        backlog. A partition behind reads a batch at a time, so partitions stay within the
        drift plus one batch's span of event time. Alignment is per process: in a cluster,
        each process aligns the partitions it reads."""
        if self.max_drift_s is None:
            return None
        with self._lock:
            readers = [r for worker in self._workers.values() for r in worker]
        now = time.monotonic()
        newest = []
        for reader in readers:
            if reader._closed or not reader._behind():
                continue
            if reader._newest_us is not None:
                newest.append(reader._newest_us)
            elif not reader._progress(now).idle:
                return NEVER
        return min(newest) + int(self.max_drift_s * 1e6) if newest else None

    def worker_partitions(self, reader: _PartitionReader) -> list[_PartitionReader]:
        """The partitions read by the calling worker (its thread), `reader` now among them."""
        with self._lock:
            worker = self._workers.setdefault(threading.get_ident(), [])
            worker.append(reader)
            return worker

    def take_decode_slot(self) -> bool:
        """Whether a batch may start decoding now (a slot is then taken until it is emitted)."""
        with self._lock:
            if self._decode_slots == 0:
                return False
            self._decode_slots -= 1
            return True

    def give_back_decode_slot(self) -> None:
        """A batch was emitted, or dropped at shutdown: its slot is free again."""
        with self._lock:
            self._decode_slots += 1

    def decode_slot_free(self) -> bool:
        """Whether a batch could start decoding now (another worker may take the slot first)."""
        return self._decode_slots > 0

    def decode_pool(self) -> ThreadPoolExecutor:
        """The threads decoding (and preparing) this source's batches, shared by the
        process's workers: one per batch that may be in flight (`DECODE_AHEAD`)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    DECODE_AHEAD,
                    thread_name_prefix=f"decode-{self.topic}",
                    initializer=name_this_thread,
                    initargs=("decode",),
                )
            return self._pool

    def list_parts(self) -> list[str]:
        if self.partitions is None:
            self.partitions = partition_indexes(self.brokers, self.topic, self.client_config)
        return [str(i) for i in self.partitions]

    def build_part(
        self, step_id: str, for_part: str, resume_state: SourceState | None
    ) -> _PartitionReader:
        return _PartitionReader(self, self.topic, int(for_part), resume_state)
