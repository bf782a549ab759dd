"""What decoding and encoding cost per record, in one process, without Kafka in the way.

    python -m bench.decode_costs --records 50000

Times, on one batch of generated orders (1% malformed): Arrow parsing the valid input
records alone (what the ceiling does), the orders flow's decode (screening, parsing,
validation, upcasting), its enrichment and JSON encoding of the enriched events, their
split by state shard (with what each shard's step needs computed ahead), the flow
worker's steps of every state shard on that batch (dedupe, windows, and the encoding of
the windows its watermark closes), Arrow parsing those enriched records alone, and the
landing's parse of them into table rows: inside DuckDB (what it does) and in Python (its
fallback). A batch's size is `--records`: a flow's batches in a backlog hold up to 20,000
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

from flows import orders
from sinks.duckdb import (
    LandingTable,
    TopicBatch,
    create_tables,
    flow_tables,
    output_rows,
    prepare,
    raw_records_registered,
)
from streamlane.broker import EmbeddedBroker
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
from streamlane.paths import REFERENCE_DIR
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


def worker_steps(
    spec: WindowSpec, shards: dict[int, ShardRows], progress: PartitionProgress
) -> Callable[[], None]:
    """The flow worker's share of one batch: every state shard's step (dedupe, windows,
    closing the windows the batch's watermark passes) from fresh state, so each run sees
    every id for the first time, and the encoding of the closed windows and late events."""

    def run() -> None:
        outputs = [ShardState(spec).process(item) for _, item in route(spec, shards, (progress,))]
        for windows in orders.FLOW.windows:
            closed_window_records(orders.FLOW, windows, outputs)
            late_event_records(orders.FLOW, windows, outputs)

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
        spec = window_spec(orders.FLOW, FlowSettings(broker.bootstrap), (progress.partition,))
        # The partition's progress after the batch: its watermark closes the windows before it.
        newest = replace(progress, newest_us=int(batch.events["event_time_us"].to_numpy().max()))
        output = [v.encode() for v in enriched.events["value"].to_list()]
        landed = TopicBatch(
            orders.FLOW.enriched.topic, output, [], [0] * len(output), list(range(len(output))),
            [0] * len(output), [],
        )  # fmt: skip
        tables = flow_tables(orders.FLOW)
        table = tables[orders.FLOW.enriched.topic]
        warehouse = duckdb.connect()
        create_tables(warehouse, tables)
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
            f"flow worker's steps ({spec.shards} shards)": (
                worker_steps(spec, shard_split(orders.FLOW, spec, enriched.events), newest),
                len(values),
            ),
            "arrow parse of the enriched output": (arrow_parse(output), len(output)),
            "landing parse into table rows (DuckDB)": (
                lambda: parse_in_duckdb(warehouse, table, landed),
                len(output),
            ),
            "landing parse into table rows (Python)": (
                lambda: output_rows(orders.FLOW.enriched, landed),
                len(output),
            ),
        }
        print(f"cores: {os.cpu_count()}, records: {len(values):,}")
        print(f"input {np.mean([len(v) for v in values]):.0f} bytes/record, "
              f"enriched {np.mean([len(v) for v in output]):.0f}")  # fmt: skip
        print(f"{'stage':<40} {'wall µs':>8} {'CPU µs':>8}  (per record)")
        for name, (work, records) in stages.items():
            wall, cpu = per_record(work, records)
            print(f"{name:<40} {wall:>8.2f} {cpu:>8.2f}")
        # The reference tables' readers would otherwise outlive the broker, retrying it.
        for lookup in lookups(orders.FLOW, broker.bootstrap):
            if isinstance(lookup, TopicTable):
                lookup.close()


if __name__ == "__main__":
    main()
