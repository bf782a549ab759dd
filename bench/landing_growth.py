"""How the landing's writer slows as its table grows, when each batch spans the landed event time.

    python -m bench.landing_growth --records 600000 --copies 0 4

Each landing batch is checked for rows already landed among those whose event time lies
in the batch's range. A backlog read from input partitions of unequal size gives batches
that span most of the landed event time (its partitions drift apart in event time), so
that check reads most of the table every batch.

This generates orders, enriches and encodes them as the orders flow does, and lands the
enriched records into a fresh warehouse once per `--copies` value. Before the timed
landing, that warehouse already holds that many copies of every order under other event
ids (so none of them is a duplicate, and all lie in every batch's range). The records are
then landed in batches of 100,000 taken in strided order, each spanning the whole range
as a backlog's do, through the landing's own writer (`land_batches`, no Kafka). Printed
per copies value: rows already in the table, rows/s, the writer's CPU microseconds per
row, and the first and last batch's seconds, with the machine's core count.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.decode_costs import decoded_orders
from flows import orders
from sinks.duckdb import (
    LandingTable,
    Prepared,
    TopicBatch,
    flow_tables,
    land_batches,
    prepare,
)
from sinks.warehouse import MAX_BATCH, open_warehouse
from streamlane.broker import EmbeddedBroker
from streamlane.dataflow import enrich_batch, lookups
from streamlane.reference import TopicTable
from streamlane.sqlquote import identifier

BATCH = MAX_BATCH
"""Records per landing batch: the landing's own default."""


def enriched_values(count: int, work: Path) -> list[bytes]:
    """`count` generated orders as the orders flow's enriched records (no duplicates, none
    malformed), in event-time order."""
    _, batch = decoded_orders(count, duplicates=0.0, malformed=0.0)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        enriched = enrich_batch(orders.FLOW, batch, broker.bootstrap)
        # The reference tables' readers would otherwise outlive the broker, retrying it.
        for lookup in lookups(orders.FLOW, broker.bootstrap):
            if isinstance(lookup, TopicTable):
                lookup.close()
    return [v.encode() for v in enriched.events["value"].to_list()]


def batches(
    table: LandingTable, values: list[bytes], size: int = BATCH
) -> list[tuple[LandingTable, TopicBatch, Prepared]]:
    """`values` as landing batches of `size` records, prepared as the landing prepares them."""
    topic = orders.FLOW.enriched.topic
    out = []
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        offsets = list(range(start, start + len(chunk)))
        batch = TopicBatch(topic, chunk, [], [0] * len(chunk), offsets, [0] * len(chunk), [])
        out.append((table, batch, prepare(table, batch)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000, help="orders landed per run")
    parser.add_argument(
        "--copies",
        type=int,
        nargs="+",
        default=[0, 4],
        help="copies of every order (other ids) in the table before each timed run",
    )
    args = parser.parse_args()
    table = flow_tables(orders.FLOW)[orders.FLOW.enriched.topic]
    name = identifier(table.name)
    print(f"cores: {os.cpu_count()}, records: {args.records:,}, batches of {BATCH:,}")
    with TemporaryDirectory(prefix="streamlane-landing-growth-") as tmp:
        work = Path(tmp)
        values = enriched_values(args.records, work)
        seed = work / "seed.duckdb"
        with open_warehouse(seed) as con:
            for item in batches(table, values):
                land_batches(con, [item])
        # Strided: batch i takes every k-th record from the i-th on, so each spans the range.
        k = max(1, len(values) // BATCH)
        spread = [v for i in range(k) for v in values[i::k]]
        print(f"{'rows before':>12} {'rows/s':>10} {'CPU µs/row':>11} {'first s':>8} {'last s':>8}")
        for copies in args.copies:
            path = work / f"copies-{copies}.duckdb"
            with open_warehouse(path) as con:
                if copies:
                    con.execute(f"ATTACH '{seed}' AS seed (READ_ONLY)")
                    con.execute(
                        f"INSERT INTO {name} SELECT o.* REPLACE "
                        f"(o.event_id || '/copy-' || c AS event_id) "
                        f"FROM seed.{name} o, range({copies}) AS copy(c)"
                    )
                    con.execute("DETACH seed")
                    con.execute("CHECKPOINT")
                before = con.execute(f"SELECT count(*) FROM {name}").fetchone()
                items = batches(table, spread)
                seconds = []
                wall, cpu = time.perf_counter(), time.process_time()
                for item in items:
                    started = time.perf_counter()
                    land_batches(con, [item])
                    seconds.append(time.perf_counter() - started)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            path.unlink()
            Path(f"{path}.wal").unlink(missing_ok=True)
            rows = len(spread)
            print(
                f"{before[0] if before else 0:>12,} {rows / wall:>10,.0f} "
                f"{cpu / rows * 1e6:>11.2f} {seconds[0]:>8.3f} {seconds[-1]:>8.3f}"
            )


if __name__ == "__main__":
    main()
