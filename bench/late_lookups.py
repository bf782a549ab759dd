"""What one live write costs the landing as its table grows, with and without late events.

    python -m bench.late_lookups --stored 2400000 12000000

Before inserting a batch, the landing looks up which of its rows the table holds already
(`landed_copies`). At a live rate a batch's events are seconds old, apart from a few that
arrived minutes late, which the flow keeps. This fills a fresh warehouse with `--stored`
enriched orders whose event times are spread over the 15 minutes before the batch, then
times one write (parse, lookup, insert; rolled back so every run sees the same table) of
`--batch` enriched orders from the last 10 seconds, and of the same batch with
`--late` of them from 10 to 15 minutes before (as `streamlane generate` makes them, 0.2%).
Printed per size, with the machine's core count: the fastest of three writes of each, in
milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import duckdb

from bench.landing_growth import batches, enriched_values
from flows import orders
from sinks.duckdb import LandingTable, flow_tables, insert_parsed, prepare, raw_records_registered
from sinks.warehouse import open_warehouse

NEWEST = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
STORED_SPAN_S = 900


def retimed(value: bytes, at: datetime) -> bytes:
    """An enriched order with its event time set to `at`."""
    stated = json.loads(value)["time"]
    return value.replace(stated.encode(), at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode(), 1)


def fill(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    """`rows` stored orders (random event ids) spread evenly over `STORED_SPAN_S` before
    `NEWEST`, in event-time order, checkpointed."""
    con.execute(
        "INSERT INTO orders_enriched (event_id, event_time, store_id, order_id) "
        "SELECT gen_random_uuid()::VARCHAR, "
        "$newest - to_microseconds((($rows - range) * $span_us // $rows)::BIGINT), "
        "range % 300, 'o-' || range FROM range($rows)",
        {"newest": NEWEST, "rows": rows, "span_us": STORED_SPAN_S * 1_000_000},
    )
    con.execute("CHECKPOINT")


def write_ms(con: duckdb.DuckDBPyConnection, table: LandingTable, values: list[bytes]) -> float:
    """The fastest of three writes of `values`, each rolled back, in milliseconds."""
    (_, batch, _), *_ = batches(table, values, len(values))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with raw_records_registered(con, [(table, prepare(table, batch))]):
            con.execute("BEGIN TRANSACTION")
            insert_parsed(con, table)
            con.execute("ROLLBACK")
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[2_400_000, 12_000_000])
    parser.add_argument("--batch", type=int, default=4_000, help="records in the live write")
    parser.add_argument("--late", type=int, default=8, help="of them, minutes late")
    args = parser.parse_args()
    table = flow_tables(orders.FLOW)[orders.FLOW.enriched.topic]
    with TemporaryDirectory(prefix="streamlane-late-lookups-") as tmp:
        work = Path(tmp)
        generated = enriched_values(args.batch, work)
        step = 10.0 / args.batch
        live = [retimed(v, NEWEST - timedelta(seconds=step * i)) for i, v in enumerate(generated)]
        every = max(1, args.batch // max(1, args.late))
        with_late = [
            retimed(v, NEWEST - timedelta(seconds=600 + 300 * i / args.batch))
            if i % every == 0 and i // every < args.late
            else v
            for i, v in enumerate(live)
        ]
        print(f"cores: {os.cpu_count()}, batch: {args.batch:,} records, late: {args.late}")
        print(f"{'stored rows':>12} {'live ms':>8} {'with late ms':>13}")
        for stored in args.stored:
            path = work / f"stored-{stored}.duckdb"
            with open_warehouse(path) as con:
                fill(con, stored)
                live_ms, late_ms = write_ms(con, table, live), write_ms(con, table, with_late)
            path.unlink()
            Path(f"{path}.wal").unlink(missing_ok=True)
            print(f"{stored:>12,} {live_ms:>8.0f} {late_ms:>13.0f}")


if __name__ == "__main__":
    main()
