"""The Kafka source's `prepare` step: it runs on the decode threads, off the worker, and
the batches the dataflow receives are the prepared ones, every record once."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import polars as pl
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from flows import orders
from streamlane import shutdown
from streamlane.broker import EmbeddedBroker
from streamlane.dataflow import decoder
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.publish import publish
from streamlane.source import EventSource, PartitionBatch

EVENTS = 3000


def test_prepare_runs_on_the_decode_threads_and_its_batches_are_emitted(
    fresh_broker: EmbeddedBroker,
) -> None:
    topic = "test.source.orders"
    ensure_topics(fresh_broker.bootstrap, [topic], 4)
    settings = GeneratorSettings(
        seed=7, count=EVENTS, start=datetime(2026, 11, 2, 11, 0, tzinfo=UTC), duplicates=0.0,
        malformed=0.0, stores_csv=REFERENCE_DIR / "stores.csv",
    )  # fmt: skip
    publish(fresh_broker.bootstrap, topic, ((r.key, r.value) for r in OrderGenerator(settings)))

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
