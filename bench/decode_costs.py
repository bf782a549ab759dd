"""What decoding, encoding and the Kafka clients cost per record, in one process.

    python -m bench.decode_costs --records 50000

Times, on one batch of generated orders (1% malformed): Arrow parsing the valid input
records alone (what the ceiling does), the orders flow's decode (screening, parsing,
validation, upcasting), its enrichment and JSON encoding of the enriched events, their
split by state shard (with what each shard's step needs computed ahead), the flow
worker's steps of every state shard (dedupe, windows, and the encoding of the windows the
watermark closes) on a stream of ten such batches, the state kept from one batch to the
next as a running flow keeps it, Arrow parsing those enriched records alone, and the
landing's parse of them into table rows: inside DuckDB (what it does, its parse screen
included, which is also timed alone) and in Python (its fallback). Then, against an
embedded broker, what the Kafka clients cost on top: the flow's partition readers taking
the input records (one client per partition, as the flow reads them), its sink producing
the enriched records until every one is delivered, and the landing's one client taking
them back; the broker's own CPU is given beside.
A batch's size is `--records`: a flow's batches in a backlog hold up to 20,000
records, and about 4,000 at a steady 20,000 a second, where a batch's fixed costs count.
Wall and CPU microseconds per record, with the machine's core count: the CPU column is
what bounds a stage when every core is busy.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json
from confluent_kafka import Consumer, Message, TopicPartition

from flows import orders
from sinks.duckdb import (
    LandingTable,
    TopicBatch,
    create_tables,
    flow_tables,
    output_rows,
    prepare,
    raw_records,
    raw_records_registered,
)
from sinks.kafka import KafkaFrameSink
from sinks.warehouse import MAX_BATCH
from streamlane.broker import EmbeddedBroker
from streamlane.collector import collect_rarely
from streamlane.dataflow import (
    closed_window_records,
    decoder,
    enrich_batch,
    late_event_records,
    lookups,
    shard_split,
    window_spec,
)
from streamlane.generator import GeneratedRecord, GeneratorSettings, OrderGenerator
from streamlane.kafka import (
    LANDING_READER_CONFIG,
    PARTITION_READER_CONFIG,
    consumer_config,
    ensure_topics,
)
from streamlane.paths import REFERENCE_DIR
from streamlane.procmem import cpu_seconds
from streamlane.publish import publish
from streamlane.reference import TopicTable
from streamlane.settings import FlowSettings
from streamlane.shards import ShardRows, ShardState, WindowSpec, route
from streamlane.source import DEAD_LETTER_SCHEMA, PartitionBatch
from streamlane.windows import PartitionProgress


def per_record(work: Callable[[], Any], records: int, repeat: int = 3) -> tuple[float, float]:
    """(wall, CPU) microseconds per record of `work`, best of `repeat` runs after a warm-up."""
    work()
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        run = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, run)
    return best[0] / records * 1e6, best[1] / records * 1e6


def arrow_parse(values: list[bytes]) -> Callable[[], pa.Table]:
    buffer = pa.py_buffer(b"\n".join(values))
    return lambda: pa_json.read_json(buffer)


def parse_in_duckdb(con: duckdb.DuckDBPyConnection, table: LandingTable, batch: TopicBatch) -> None:
    """The landing's DuckDB parse of a batch alone: its rows built into a temporary table."""
    with raw_records_registered(con, [(table, prepare(table, batch))]):
        con.execute(f"CREATE OR REPLACE TEMP TABLE parsed AS {table.parsed}")


STREAM_BATCHES = 10
"""Batches of the stream the worker's steps are timed on: a running flow's state holds the
ids and open windows of the batches before, which a batch's steps work against."""


def worker_steps(
    spec: WindowSpec, stream: list[tuple[dict[int, ShardRows], PartitionProgress]]
) -> Callable[[], None]:
    """The flow worker's share of a stream of batches, in order, on state kept from one batch
    to the next as a running flow keeps it (fresh at each run): every state shard's step
    (dedupe against the ids of the batches before, windows, closing those the batch's
    watermark passes) and the encoding of the closed windows and late events."""

    def run() -> None:
        states = [ShardState(spec) for _ in range(spec.shards)]
        for shards, progress in stream:
            outputs = [
                states[int(shard)].process(item) for shard, item in route(spec, shards, (progress,))
            ]
            for windows in orders.FLOW.windows:
                closed_window_records(orders.FLOW, windows, outputs)
                late_event_records(orders.FLOW, windows, outputs)

    return run


def stream_of_batches(
    spec: WindowSpec, events: pl.DataFrame, size: int, progress: PartitionProgress
) -> list[tuple[dict[int, ShardRows], PartitionProgress]]:
    """Enriched `events` cut into batches of `size` in order, each split by state shard, with
    its partition's progress after it (its newest event time so far)."""
    stream = []
    newest: int | None = None
    for start in range(0, events.height, size):
        batch = events.slice(start, size)
        batch_newest = int(batch["event_time_us"].max())  # type: ignore[arg-type]
        newest = batch_newest if newest is None else max(newest, batch_newest)
        stream.append((shard_split(orders.FLOW, spec, batch), replace(progress, newest_us=newest)))
    return stream


KAFKA_PARTITIONS = 8
"""Partitions of the Kafka stages' topics: as many as the benchmark's input topic has."""
READ_TIMEOUT_S = 60.0
"""A read stage that has not taken its records by then fails, rather than wait for ever."""
KAFKA_REPEAT = 5
"""Timed runs of a Kafka stage, which varies more from run to run than the others."""


def kafka_reads(
    readers: list[tuple[Consumer, list[TopicPartition]]], records: int, poll: int
) -> Callable[[], None]:
    """Taking all `records` records of some partitions from Kafka through `readers` (each
    client with the partitions it reads, read from their start at every run) in polls of at
    most `poll`, their values, keys and offsets read out as the flow's reader reads them (the
    landing reads as many fields of each record: values, partitions, offsets and times). A
    client is not polled again once it has taken what it took in the first run: a poll of
    a client with nothing left would only wait."""
    expected: list[int] = []

    def run() -> None:
        for consumer, partitions in readers:
            consumer.assign(partitions)
        taken, deadline = [0] * len(readers), time.monotonic() + READ_TIMEOUT_S
        while sum(taken) < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"took {sum(taken):,} of {records:,} in {READ_TIMEOUT_S} s")
            for i, (consumer, _) in enumerate(readers):
                if expected and taken[i] >= expected[i]:
                    continue
                messages = consumer.consume(poll, 0.01)
                # Read out as the flow's reader does; only their number is kept here.
                values = list(map(Message.value, messages))
                list(map(Message.key, messages))
                np.fromiter(map(Message.offset, messages), dtype=np.int64, count=len(messages))
                taken[i] += len(values)
        expected[:] = taken

    return run


def kafka_writes(sink: KafkaFrameSink, records: pl.DataFrame) -> Callable[[], None]:
    """Producing `records` (`key`, `value`) through one partition of the flow's sink, as the
    flow's worker writes a batch, until every one is delivered (as before a snapshot)."""
    # Listed first, as a worker does, so the partition built is one this thread owns.
    part = sink.build_part("bench", sink.list_parts()[0], None)

    def run() -> None:
        part.write_batch([records])
        part.snapshot()

    return run


def decoded_orders(
    count: int, duplicates: float, malformed: float
) -> tuple[list[GeneratedRecord], PartitionBatch]:
    """`count` generated orders and the orders flow's decode of them, as one batch of one
    input partition (`part` 0, offsets in generation order)."""
    settings = GeneratorSettings(
        seed=1, count=count, start=datetime(2026, 11, 2, 11, 0, tzinfo=UTC),
        duplicates=duplicates, malformed=malformed, stores_csv=REFERENCE_DIR / "stores.csv",
    )  # fmt: skip
    generated = list(OrderGenerator(settings))
    values = [r.value for r in generated]
    decoded = decoder(orders.FLOW)(values)
    events = decoded.valid.with_columns(
        part=pl.lit(0, pl.Int32),
        offset=pl.Series(np.arange(len(values))).gather(decoded.valid["row"]),
        event_time_us=pl.col("event_time").dt.epoch("us"),
    ).with_columns(own_newest_before_us=pl.col("event_time_us").cum_max().shift(1))
    progress = PartitionProgress(f"{orders.FLOW.input_topic}/0", None, False, 0)
    batch = PartitionBatch(
        events, pl.DataFrame(schema=DEAD_LETTER_SCHEMA), (progress,), len(values),
        [r.key for r in generated], values,
    )  # fmt: skip
    return generated, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    generated, batch = decoded_orders(args.records, duplicates=0.01, malformed=0.01)
    values = batch.values
    valid_input = [r.value for r in generated if r.kind != "malformed"]
    decode = decoder(orders.FLOW)
    progress = batch.progress[0]
    with TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        enriched = enrich_batch(orders.FLOW, batch, broker.bootstrap)
        settings = FlowSettings(broker.bootstrap)
        spec = window_spec(orders.FLOW, settings, (progress.partition,))
        _, longer = decoded_orders(args.records * STREAM_BATCHES, duplicates=0.01, malformed=0.01)
        stream = stream_of_batches(
            spec, enrich_batch(orders.FLOW, longer, broker.bootstrap).events, args.records, progress
        )
        output = [v.encode() for v in enriched.events["value"].to_list()]
        landed = TopicBatch(
            orders.FLOW.enriched.topic, output, [], [0] * len(output), list(range(len(output))),
            [0] * len(output), [],
        )  # fmt: skip
        tables = flow_tables(orders.FLOW)
        table = tables[orders.FLOW.enriched.topic]
        warehouse = duckdb.connect()
        create_tables(warehouse, tables)
        screen, landed_text = table.screen, raw_records(landed)
        assert screen is not None and landed_text is not None
        screen_passes, landed_text_values = screen.passes, landed_text.column("value")
        assert screen_passes(landed_text_values), "the flow's records pass the screen"
        stages = {
            "arrow parse of the input (ceiling)": (arrow_parse(valid_input), len(valid_input)),
            "flow decode (screen, parse, validate)": (lambda: decode(values), len(values)),
            "flow enrich and encode": (
                lambda: enrich_batch(orders.FLOW, batch, broker.bootstrap),
                len(values),
            ),
            "flow split by state shard": (
                lambda: shard_split(orders.FLOW, spec, enriched.events),
                len(values),
            ),
            f"flow worker's steps ({spec.shards} shards, running)": (
                worker_steps(spec, stream),
                len(longer.values),
            ),
            "arrow parse of the enriched output": (arrow_parse(output), len(output)),
            "landing parse screen (regex)": (
                lambda: screen_passes(landed_text_values),
                len(output),
            ),
            "landing parse into table rows (DuckDB)": (
                lambda: parse_in_duckdb(warehouse, table, landed),
                len(output),
            ),
            "landing parse into table rows (Python)": (
                lambda: output_rows(orders.FLOW.enriched, landed),
                len(output),
            ),
        }
        input_topic, enriched_topic = "bench-input", orders.FLOW.enriched.topic
        ensure_topics(broker.bootstrap, [input_topic, enriched_topic], KAFKA_PARTITIONS)
        publish(broker.bootstrap, input_topic, ((r.key, r.value) for r in generated))
        readers = [
            (
                Consumer(consumer_config(broker.bootstrap, PARTITION_READER_CONFIG)),
                [TopicPartition(input_topic, p, 0)],
            )
            for p in range(KAFKA_PARTITIONS)
        ]
        landing_reader = Consumer(consumer_config(broker.bootstrap, LANDING_READER_CONFIG))
        everything = [TopicPartition(enriched_topic, p, 0) for p in range(KAFKA_PARTITIONS)]
        sink = KafkaFrameSink(broker.bootstrap, enriched_topic)
        # In this order: the landing's client reads everything the sink's runs produced.
        written = (KAFKA_REPEAT + 1) * len(output)
        kafka_stages = {
            "flow read of the input (Kafka client)": (
                kafka_reads(readers, len(values), settings.batch_size),
                len(values),
            ),
            "flow write of the enriched (Kafka sink)": (
                kafka_writes(sink, enriched.events.select("key", "value")),
                len(output),
            ),
            "landing read of the enriched (Kafka)": (
                kafka_reads([(landing_reader, everything)], written, MAX_BATCH),
                written,
            ),
        }
        # As the flow and the landing collect (whose clients' records these stages time).
        collect_rarely()
        print(f"cores: {os.cpu_count()}, records: {len(values):,}")
        print(f"input {np.mean([len(v) for v in values]):.0f} bytes/record, "
              f"enriched {np.mean([len(v) for v in output]):.0f}")  # fmt: skip
        print(f"{'stage':<40} {'wall µs':>8} {'CPU µs':>8} {'broker CPU µs':>14}  (per record)")
        for name, (work, records) in stages.items():
            wall, cpu = per_record(work, records)
            print(f"{name:<40} {wall:>8.2f} {cpu:>8.2f}")
        for name, (work, records) in kafka_stages.items():
            broker_from = cpu_seconds(broker.pid) or 0.0
            wall, cpu = per_record(work, records, repeat=KAFKA_REPEAT)
            # The broker's CPU over every run, the warm-up included: too little per run to
            # be read from the clock ticks the system counts it in.
            runs = (KAFKA_REPEAT + 1) * records
            broker_cpu = ((cpu_seconds(broker.pid) or 0.0) - broker_from) / runs * 1e6
            print(f"{name:<40} {wall:>8.2f} {cpu:>8.2f} {broker_cpu:>14.2f}")
        # The clients would otherwise outlive the broker, retrying it.
        for consumer, _ in [*readers, (landing_reader, everything)]:
            consumer.close()
        for lookup in lookups(orders.FLOW, broker.bootstrap):
            if isinstance(lookup, TopicTable):
                lookup.close()


if __name__ == "__main__":
    main()
