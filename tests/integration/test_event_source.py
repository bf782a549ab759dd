"""The Kafka source: its `prepare` step runs on the decode threads, off the worker; a
backlog is read there too; caught-up partitions are cut together. Whatever the batches,
the dataflow receives every record once, in offset order per partition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from prometheus_client import REGISTRY

from flows import orders
from streamlane import shutdown
from streamlane import source as source_module
from streamlane.broker import EmbeddedBroker
from streamlane.brokerwatch import watched
from streamlane.dataflow import decoder
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.publish import publish
from streamlane.source import EventSource, PartitionBatch
from tests.unequal_partitions import orders_over_an_hour, produce_to_partitions

EVENTS = 3000


def publish_orders(broker: EmbeddedBroker, topic: str, partitions: int, seed: int) -> None:
    """`EVENTS` valid orders, none repeated, into a new topic of `partitions` partitions."""
    ensure_topics(broker.bootstrap, [topic], partitions)
    settings = GeneratorSettings(
        seed=seed, count=EVENTS, start=datetime(2026, 11, 2, 11, 0, tzinfo=UTC),
        duplicates=0.0, malformed=0.0, stores_csv=REFERENCE_DIR / "stores.csv",
    )  # fmt: skip
    publish(broker.bootstrap, topic, ((r.key, r.value) for r in OrderGenerator(settings)))


def partitions_with_rows(batch: PartitionBatch) -> set[str]:
    """The input partitions whose records a batch holds."""
    return {batch.progress[part].partition for part in batch.events["part"].unique()}


def rows_of(batches: list[PartitionBatch], partition: str) -> pl.DataFrame:
    """One input partition's events over `batches`, in the order emitted."""
    return pl.concat(
        [
            batch.events.filter(pl.col("part") == part)
            for batch in batches
            for part, progress in enumerate(batch.progress)
            if progress.partition == partition
        ]
    )


def run_source(source: EventSource, on_batch: Callable[[PartitionBatch], None]) -> None:
    """Run `source` alone in a dataflow, handing each batch it emits to `on_batch` on the
    worker, until `on_batch` asks the partitions to end (`shutdown.request_stop`)."""
    flow = Dataflow("test_event_source")
    op.inspect("on_batch", op.input("read", flow, source), lambda _step, b: on_batch(b))
    try:
        run_main(flow)
    finally:
        shutdown.forget_stop_request()


def test_a_source_given_its_partitions_does_not_ask_kafka_for_them() -> None:
    """A flow lists its input's partitions once, before bytewax builds it; asked again while
    building, a Kafka that had stopped answering made bytewax panic."""
    unreachable = "127.0.0.1:9"  # nothing listens: asking would fail
    source = EventSource(unreachable, "test.source.given", decoder(orders.FLOW), partitions=[0, 2])
    assert source.list_parts() == ["0", "2"]


def test_prepare_runs_on_the_decode_threads_and_its_batches_are_emitted(
    fresh_broker: EmbeddedBroker,
) -> None:
    topic = "test.source.orders"
    publish_orders(fresh_broker, topic, partitions=4, seed=7)

    prepared_on: list[str] = []
    emitted: list[PartitionBatch] = []

    def prepare(batch: PartitionBatch) -> PartitionBatch:
        prepared_on.append(threading.current_thread().name)
        return replace(batch, events=batch.events.with_columns(prepared=pl.lit(True)))

    def stop_when_all_read(batch: PartitionBatch) -> None:
        # On the worker: once every record is in, the partitions are asked to end.
        emitted.append(batch)
        if sum(b.events.height for b in emitted) >= EVENTS:
            shutdown.request_stop()

    source = EventSource(
        fresh_broker.bootstrap, topic, decoder(orders.FLOW), prepare=prepare, batch_size=500
    )
    worker = threading.current_thread().name
    run_source(source, stop_when_all_read)
    assert fresh_broker.bootstrap not in watched(), "a closed partition kept its broker watch"

    with_events = [b for b in emitted if b.events.height]
    assert with_events, "no batch with events was emitted"
    assert all(b.events["prepared"].all() for b in with_events)
    ids = pl.concat([b.events.select("id") for b in with_events])["id"]
    assert ids.len() == EVENTS and ids.n_unique() == EVENTS
    assert set().union(*(partitions_with_rows(b) for b in with_events)) == {
        f"{topic}/{i}" for i in range(4)
    }
    assert len(prepared_on) == len(with_events)
    assert worker not in prepared_on
    assert all(name.startswith(f"decode-{topic}") for name in prepared_on)


def test_a_backlog_is_read_on_the_decode_threads_every_record_once_and_in_order(
    fresh_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partitions behind by a batch or more have their records taken from the client on the
    decode threads; every record still arrives once, in offset order, and a partition read
    to its end that way turns idle."""
    topic = "test.source.backlog"
    partitions = 2
    publish_orders(fresh_broker, topic, partitions, seed=11)

    read_on: list[str] = []
    read_and_decode = source_module._read_and_decode

    def recorded(*args: Any) -> Any:
        read_on.append(threading.current_thread().name)
        return read_and_decode(*args)

    monkeypatch.setattr(source_module, "_read_and_decode", recorded)
    # The lag is measured every few seconds; this whole backlog is read in less.
    monkeypatch.setattr(source_module, "LAG_REPORT_S", 0.05)
    emitted: list[PartitionBatch] = []
    idle: set[str] = set()

    def stop_when_read_and_idle(batch: PartitionBatch) -> None:
        emitted.append(batch)
        idle.update(p.partition for p in batch.progress if p.idle)
        if sum(b.events.height for b in emitted) >= EVENTS and len(idle) == partitions:
            shutdown.request_stop()

    source = EventSource(
        fresh_broker.bootstrap, topic, decoder(orders.FLOW), batch_size=100, idle_timeout_s=0.5
    )
    run_source(source, stop_when_read_and_idle)

    assert read_on, "no batch was read on a decode thread"
    assert all(name.startswith(f"decode-{topic}") for name in read_on)
    with_events = [b for b in emitted if b.events.height]
    assert all(b.events.height <= 100 for b in with_events)
    ids = pl.concat([b.events.select("id") for b in with_events])["id"]
    assert ids.len() == EVENTS and ids.n_unique() == EVENTS
    for partition in idle:
        offsets = rows_of(with_events, partition)["offset"].to_list()
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_caught_up_partitions_are_cut_together_each_partition_whole_and_in_order(
    fresh_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once caught up, a worker's partitions are decoded and emitted as one batch: it holds
    the progress of each partition in it, and every record arrives once, in offset order,
    with the newest event time its own partition had delivered before it."""
    topic = "test.source.caught_up"
    partitions = 4
    publish_orders(fresh_broker, topic, partitions, seed=13)
    # A partition is caught up once its lag is measured, every few seconds; this whole
    # test takes less.
    monkeypatch.setattr(source_module, "LAG_REPORT_S", 0.05)
    emitted: list[PartitionBatch] = []
    second_round: list[threading.Thread] = []

    def publish_again_then_stop(batch: PartitionBatch) -> None:
        # On the worker. The first round read, every partition is caught up; the second
        # round reaches them within one linger of each other.
        emitted.append(batch)
        read = sum(b.events.height for b in emitted)
        if read >= EVENTS and not second_round:
            args = (fresh_broker, topic, partitions, 17)
            second_round.append(threading.Thread(target=publish_orders, args=args))
            second_round[0].start()
        if read >= 2 * EVENTS:
            shutdown.request_stop()

    source = EventSource(fresh_broker.bootstrap, topic, decoder(orders.FLOW), batch_size=5000)
    try:
        run_source(source, publish_again_then_stop)
    finally:
        for thread in second_round:
            thread.join()

    with_events = [b for b in emitted if b.events.height]
    together = [b for b in with_events if len(partitions_with_rows(b)) > 1]
    assert together, "no batch held the records of more than one partition"
    for batch in together:
        assert len(batch.progress) == len({p.partition for p in batch.progress})
        assert partitions_with_rows(batch) <= {p.partition for p in batch.progress}
    ids = pl.concat([b.events.select("id") for b in with_events])["id"]
    assert ids.len() == 2 * EVENTS and ids.n_unique() == 2 * EVENTS
    for index in range(partitions):
        partition = f"{topic}/{index}"
        rows = rows_of(with_events, partition)
        offsets = rows["offset"].to_list()
        assert offsets == list(range(len(offsets))), f"{partition} skipped or repeated records"
        newest_before = rows["event_time_us"].cum_max().shift(1)
        assert rows["own_newest_before_us"].to_list() == newest_before.to_list()


def test_partitions_behind_are_read_aligned_in_event_time(fresh_broker: EmbeddedBroker) -> None:
    """Two partitions cover the same hour of event time, one with four times the records of
    the other. Read at the same pace, the smaller would race hours ahead; aligned, neither
    starts a batch while its newest event is more than the drift ahead of the other's
    (which is then still behind), and every record still arrives once."""
    topic = "test.source.aligned"
    ensure_topics(fresh_broker.bootstrap, [topic], 2)
    dense, sparse = orders_over_an_hour(19, (EVENTS * 4 // 5, EVENTS - EVENTS * 4 // 5))
    produce_to_partitions(fresh_broker.bootstrap, topic, [dense, sparse])

    emitted: list[PartitionBatch] = []

    def stop_when_all_read(batch: PartitionBatch) -> None:
        emitted.append(batch)
        if sum(b.events.height for b in emitted) >= EVENTS:
            shutdown.request_stop()

    drift_s, batch_size = 60.0, 100
    source = EventSource(
        fresh_broker.bootstrap, topic, decoder(orders.FLOW), batch_size=batch_size,
        max_drift_s=drift_s,
    )  # fmt: skip
    run_source(source, stop_when_all_read)

    names = [f"{topic}/0", f"{topic}/1"]
    sizes = {names[0]: len(dense), names[1]: len(sparse)}
    newest: dict[str, int] = {}
    read = dict.fromkeys(names, 0)
    checked = 0
    for batch in emitted:
        for part, progress in enumerate(batch.progress):
            rows = batch.events.filter(pl.col("part") == part) if batch.events.height else None
            if rows is not None and rows.height:
                (other,) = set(names) - {progress.partition}
                ahead = rows["own_newest_before_us"][0]
                # The other partition's newest as of this batch's emission is at least what
                # it was when this batch was started; with a batch or more left now, it was
                # behind then too (a partition within a batch of its end is caught up).
                still_behind = sizes[other] - read[other] >= batch_size
                if ahead is not None and other in newest and still_behind:
                    assert ahead <= newest[other] + drift_s * 1e6, (
                        f"{progress.partition} started a batch "
                        f"{(ahead - newest[other]) / 1e6:.0f} s ahead of {other}"
                    )
                    checked += 1
                read[progress.partition] += rows.height
            if progress.newest_us is not None:
                newest[progress.partition] = progress.newest_us
    assert checked > 10, "too few batches started while both partitions were behind"
    ids = pl.concat([b.events.select("id") for b in emitted if b.events.height])["id"]
    assert ids.len() == EVENTS and ids.n_unique() == EVENTS


def waits_behind(topic: str, index: int, batch_size: int) -> bool:
    """Whether input partition `index` is behind by a batch or more and waits for slower
    ones (its lag and aligning gauges)."""
    labels = {"topic": topic, "partition": str(index)}
    lag = REGISTRY.get_sample_value("streamlane_consumer_lag", labels)
    aligning = REGISTRY.get_sample_value("streamlane_partition_aligning", labels)
    return lag is not None and lag >= batch_size and aligning == 1


def test_a_free_decode_slot_goes_to_a_partition_the_worker_does_not_poll(
    fresh_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read aligned, a partition that emits a batch is usually ahead by more than the drift
    and waits. Its decode slot then goes at once to a partition behind that may read, while
    the worker processes the batch, not when the worker next polls that one: here the
    worker (the test) polls only the first partition, and the second still reads on."""
    topic = "test.source.hand_on"
    ensure_topics(fresh_broker.bootstrap, [topic], 2)
    produce_to_partitions(fresh_broker.bootstrap, topic, orders_over_an_hour(23, (1500, 1500)))
    monkeypatch.setattr(source_module, "LAG_REPORT_S", 0.05)
    reads: list[str] = []
    read_started = threading.Condition()
    read_and_decode = source_module._read_and_decode

    def recorded(consumer: Any, partition: str, *args: Any) -> Any:
        with read_started:
            reads.append(partition)
            read_started.notify_all()
        return read_and_decode(consumer, partition, *args)

    monkeypatch.setattr(source_module, "_read_and_decode", recorded)
    source = EventSource(
        fresh_broker.bootstrap, topic, decoder(orders.FLOW), batch_size=100, max_drift_s=1.0
    )
    first, second = (source.build_part("read", str(i), None) for i in range(2))
    deadline = time.monotonic() + 60

    def poll_until(reader: Any, done: Callable[[list[PartitionBatch]], bool]) -> None:
        while not done(reader.next_batch()):
            assert time.monotonic() < deadline, "the partitions did not get there in time"
            time.sleep(0.002)  # a worker polls a partition with a batch decoding as often

    try:
        # The second is left waiting for the first: ahead by more than the drift, nothing in
        # flight, its lag known (so its next batch is read on a decode thread).
        poll_until(first, lambda batches: any(b.events.height for b in batches))
        poll_until(second, lambda _: waits_behind(topic, 1, batch_size=100))
        # From here the worker polls only the first partition.
        with read_started:
            second_reads = reads.count(f"{topic}/1")
        poll_until(first, lambda batches: any(b.events.height for b in batches))
        with read_started:
            assert read_started.wait_for(lambda: reads.count(f"{topic}/1") > second_reads, 10), (
                "the second partition did not read while only the first was polled"
            )
    finally:
        first.close()
        second.close()


def test_the_lag_counts_records_that_arrive_while_the_reader_holds_earlier_ones(
    fresh_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lag comes from the high watermark of the client's last fetch. A partition read in
    small polls holds the first round's records in its client for a long while; records
    published meanwhile must count in its lag long before those are used up, as they do
    during a burst."""
    topic = "test.source.lag"
    publish_orders(fresh_broker, topic, partitions=1, seed=29)
    monkeypatch.setattr(source_module, "LAG_REPORT_S", 0.05)
    source = EventSource(fresh_broker.bootstrap, topic, decoder(orders.FLOW), batch_size=10)
    reader = source.build_part("read", "0", None)
    deadline = time.monotonic() + 60
    read = 0

    def poll() -> float:
        nonlocal read
        assert time.monotonic() < deadline, "the partition did not read in time"
        read += sum(batch.events.height for batch in reader.next_batch())
        time.sleep(0.002)
        return (
            REGISTRY.get_sample_value("streamlane_consumer_lag", {"topic": topic, "partition": "0"})
            or 0.0
        )

    try:
        while read == 0:
            poll()
        publish_orders(fresh_broker, topic, partitions=1, seed=31)
        # Every report is of a position at or before `read`: lag + read reaches the end of
        # both rounds only once a fetch after the second round was answered.
        while poll() + read < 2 * EVENTS:
            # The client took the whole first round in its first fetch: refetching only once
            # its queue is empty, it would not fetch again before all of it was read.
            assert read < EVENTS - 500, (
                f"{read:,} of the first round's {EVENTS:,} records read, "
                "and the lag still misses the second round"
            )
    finally:
        reader.close()
