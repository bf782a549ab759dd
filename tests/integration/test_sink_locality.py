"""Each worker of a flow writes the records it made to Kafka itself, not through another."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from bytewax.testing import TestingSource

from sinks import kafka as kafka_sink
from sinks.kafka import KafkaFrameSink
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.localparts import WorkerLayout
from streamlane.topicread import read_to_end


def test_two_workers_each_write_what_they_made_to_their_own_sink_partitions(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = "sink-locality"
    ensure_topics(broker.bootstrap, [topic], 4)
    sink = KafkaFrameSink(broker.bootstrap, topic, layout=WorkerLayout(0, 1, 2))
    written: list[tuple[int, list[str]]] = []
    write_batch = kafka_sink._FramePartition.write_batch

    def spied_write_batch(self: Any, values: list[pl.DataFrame]) -> None:
        written.append((threading.get_ident(), [v for f in values for v in f["value"]]))
        write_batch(self, values)

    monkeypatch.setattr(kafka_sink._FramePartition, "write_batch", spied_write_batch)

    # Each record says which thread made it.
    _numbers_to_sink(sink, "sink_locality", 400, 2, lambda n: f"{n}:{threading.get_ident()}")

    values = [v for _, batch in written for v in batch]
    assert sorted(int(v.split(":")[0]) for v in values) == list(range(400))
    makers = {int(v.split(":")[1]) for v in values}
    assert len(makers) == 2, "the items were not spread over both workers"
    for writer, batch in written:
        assert {int(v.split(":")[1]) for v in batch} == {writer}
    landed = read_to_end(broker.bootstrap, topic)
    assert sorted(int(m.value().split(b":")[0]) for m in landed) == list(range(400))


def test_a_recovery_store_resumes_under_another_layout_of_workers(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Each worker lists only its share of the sink partitions, and the share changes with
    the layout; every partition the store holds must still be listed by some worker, or the
    runtime cannot resume it."""
    topic = "sink-layouts"
    ensure_topics(broker.bootstrap, [topic], 4)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 2)
    total = 0
    for workers in (1, 2, 1):
        total += 200
        sink = KafkaFrameSink(broker.bootstrap, topic, layout=WorkerLayout(0, 1, workers))
        # The source resumes where the last run ended: each run reads 200 more numbers.
        _numbers_to_sink(sink, "sink_layouts", total, workers, str, RecoveryConfig(recovery))
        held = _sink_partitions_held(recovery, "sink_layouts.out")
        assert len(held) > 2, f"too few sink partitions in the store to tell: {held}"
    landed = read_to_end(broker.bootstrap, topic)
    assert sorted(int(m.value()) for m in landed) == list(range(total))


def _numbers_to_sink(
    sink: KafkaFrameSink,
    name: str,
    total: int,
    workers: int,
    value_of: Callable[[int], str],
    recovery: RecoveryConfig | None = None,
) -> None:
    """Runs a dataflow `name` of `workers` threads that spreads the numbers below `total`
    over its workers, each of which writes one record per number (`value_of` it) to `sink`,
    keyed by a store as a shard's records are."""

    def made_here(n: int) -> tuple[str, pl.DataFrame]:
        return sink.key_for(f"store-{n % 7}"), pl.DataFrame(
            {"key": [str(n)], "value": [value_of(n)]}
        )

    flow = Dataflow(name)
    numbers = op.redistribute("spread", op.input("in", flow, TestingSource(range(total), 10)))
    op.output("out", op.map("made_here", numbers, made_here), sink)
    cli_main(
        flow,
        workers_per_process=workers,
        epoch_interval=timedelta(seconds=0.05),
        recovery_config=recovery,
    )


def _sink_partitions_held(recovery: Path, step: str) -> set[str]:
    held: set[str] = set()
    for store in recovery.glob("*.sqlite3"):
        with closing(sqlite3.connect(store)) as con:
            rows = con.execute("SELECT state_key FROM snaps WHERE step_id = ?", (step,))
            held |= {key for (key,) in rows}
    return held
