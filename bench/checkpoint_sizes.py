"""What a live checkpoint costs by the rows it writes, and why the landing counts them.

    python -m bench.checkpoint_sizes --rows 983040 --every 30720 61440 98304 122880

A landing that keeps up with a live stream checkpoints as it goes, and every write waits
while a checkpoint runs. This lands generated enriched orders into a fresh warehouse once
per `--every` value, through the landing's own writer (`land_batches`, no Kafka), in writes
of `--write` records (a live batch), and checkpoints after the write that brings the rows
since the last checkpoint to that value. Printed per value, with the machine's core count:
checkpoints, their mean and longest wall seconds (what writes waited for), their seconds per
100,000 rows, the file's size and its row groups. Checkpoints of less than three quarters of
a row group (`ROW_GROUP_ROWS`) leave row groups that DuckDB rewrites together at a later
checkpoint, so their cost per row is several times higher (see `LIVE_CHECKPOINT_ROWS`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.landing_growth import batches, enriched_values
from flows import orders
from sinks.duckdb import flow_tables, land_batches
from sinks.warehouse import ROW_GROUP_ROWS, open_warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=983_040, help="orders landed per value")
    parser.add_argument(
        "--every",
        type=int,
        nargs="+",
        default=[30_720, 61_440, 98_304, ROW_GROUP_ROWS],
        help="rows between checkpoints",
    )
    parser.add_argument("--write", type=int, default=3_840, help="records per write")
    args = parser.parse_args()
    table = flow_tables(orders.FLOW)[orders.FLOW.enriched.topic]
    with TemporaryDirectory(prefix="streamlane-checkpoints-") as tmp:
        work = Path(tmp)
        print(f"generating {args.rows:,} enriched orders…", flush=True)
        values = enriched_values(args.rows, work)
        print(f"cores: {os.cpu_count()}, rows: {len(values):,}, writes of {args.write:,}")
        print(f"{'rows between':>12} {'checkpoints':>11} {'mean s':>7} {'max s':>6} "
              f"{'s/100k rows':>11} {'file MB':>8} {'row groups':>10}")  # fmt: skip
        for every in args.every:
            path = work / f"every-{every}.duckdb"
            seconds: list[float] = []
            with open_warehouse(path) as con:
                con.execute("CHECKPOINT")  # the tables' creation is not what is measured
                since = 0
                for item in batches(table, values, args.write):
                    since += land_batches(con, [item])[table.name]
                    if since >= every:
                        started = time.perf_counter()
                        con.execute("CHECKPOINT")
                        seconds.append(time.perf_counter() - started)
                        since = 0
                groups = con.execute(
                    "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info(?)",
                    [table.name],
                ).fetchone()
            size_mb = path.stat().st_size / 1e6
            path.unlink()
            Path(f"{path}.wal").unlink(missing_ok=True)
            if not seconds:
                print(f"{every:>12,} {'none':>11} (fewer rows than that: use more --rows)")
                continue
            per_100k = sum(seconds) / (len(seconds) * every) * 1e5
            print(
                f"{every:>12,} {len(seconds):>11} {sum(seconds) / len(seconds):>7.3f} "
                f"{max(seconds):>6.3f} {per_100k:>11.3f} {size_mb:>8.0f} "
                f"{groups[0] if groups else 0:>10}"
            )


if __name__ == "__main__":
    main()
