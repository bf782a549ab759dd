"""The Kafka source's `prepare` step: it runs on the decode threads, off the worker, and
the batches the dataflow receives are the prepared ones, every record once."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from flows import orders
from streamlane import shutdown
from streamlane import source as source_module
from streamlane.broker import EmbeddedBroker
from streamlane.dataflow import decoder
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.publish import publish
from streamlane.source import EventSource, PartitionBatch

EVENTS = 3000


def publish_orders(broker: EmbeddedBroker, topic: str, partitions: int, seed: int) -> None:
    """`EVENTS` valid orders, none repeated, into a new topic of `partitions` partitions."""
    ensure_topics(broker.bootstrap, [topic], partitions)
    settings = GeneratorSettings(
        seed=seed, count=EVENTS, start=datetime(2026, 11, 2, 11, 0, tzinfo=UTC),
        duplicates=0.0, malformed=0.0, stores_csv=REFERENCE_DIR / "stores.csv",
    )  # fmt: skip
    publish(broker.bootstrap, topic, ((r.key, r.value) for r in OrderGenerator(settings)))


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

    read = [0]

    def stop_when_all_read(_step: str, batch: PartitionBatch) -> None:
        # On the worker: once every record is in, the partitions are asked to end.
        read[0] += batch.events.height
        if read[0] >= EVENTS:
            shutdown.request_stop()

    source = EventSource(
        fresh_broker.bootstrap, topic, decoder(orders.FLOW), prepare=prepare, batch_size=500
    )
    flow = Dataflow("test_event_source")
    batches = op.inspect("stop_when_all_read", op.input("read", flow, source), stop_when_all_read)
    op.output("collected", batches, TestingSink(emitted))
    worker = threading.current_thread().name
    try:
        run_main(flow)
    finally:
        shutdown.forget_stop_request()

    with_events = [b for b in emitted if b.events.height]
    assert with_events, "no batch with events was emitted"
    assert all(b.events["prepared"].all() for b in with_events)
    ids = pl.concat([b.events.select("id") for b in with_events])["id"]
    assert ids.len() == EVENTS and ids.n_unique() == EVENTS
    assert {b.partition for b in with_events} == {f"{topic}/{i}" for i in range(4)}
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

    def stop_when_read_and_idle(_step: str, batch: PartitionBatch) -> None:
        emitted.append(batch)
        if batch.progress.idle:
            idle.add(batch.partition)
        if sum(b.events.height for b in emitted) >= EVENTS and len(idle) == partitions:
            shutdown.request_stop()

    source = EventSource(
        fresh_broker.bootstrap, topic, decoder(orders.FLOW), batch_size=100, idle_timeout_s=0.5
    )
    flow = Dataflow("test_event_source_backlog")
    op.inspect("stop_when_read_and_idle", op.input("read", flow, source), stop_when_read_and_idle)
    try:
        run_main(flow)
    finally:
        shutdown.forget_stop_request()

    assert read_on, "no batch was read on a decode thread"
    assert all(name.startswith(f"decode-{topic}") for name in read_on)
    with_events = [b for b in emitted if b.events.height]
    assert all(b.events.height <= 100 for b in with_events)
    ids = pl.concat([b.events.select("id") for b in with_events])["id"]
    assert ids.len() == EVENTS and ids.n_unique() == EVENTS
    for partition in idle:
        offsets = pl.concat(
            [b.events["offset"] for b in with_events if b.partition == partition]
        ).to_list()
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
