"""Query-side benchmark: dashboard query latency and landing throughput under concurrent readers.

    python -m bench.queries --rows 10000000 --landing-events 300000

1. Builds a warehouse with `--rows` synthetic orders_enriched rows (24 hours ending now)
   and their one-minute windows, then times every dashboard query (macros expanded over
   the last hour, all regions) in-process and through the PostgreSQL endpoint: p50/p95.
2. Generates `--landing-events` orders into the embedded broker, runs the flow, then lands
   its output topics twice into fresh warehouses: with no readers, and with 8 PostgreSQL
   clients running dashboard queries continuously. Prints rows/s for both and the drop.
Results print as a table and go to bench/results/queries-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg

from bench.run import child, save_result, settled, steady_rate, utc_stamp, wait_metric
from dashboards.generate import DASHBOARDS
from dashboards.macros import expand
from enrichers.stores import STORES_CSV
from flows import orders
from sinks.duckdb import create_tables
from sinks.warehouse import landed_tables
from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from streamlane.query import endpoint_file

PASSWORD = "bench"
REPEATS = 15


ORDERS_DASHBOARDS = ("pizza-orders.json", "pipeline-health.json")
"""The dashboards over the orders warehouse this benchmark builds (the clickstream's read
tables of its own)."""


def dashboard_queries() -> dict[str, str]:
    """Every panel's SQL of the orders dashboards over the last hour, all regions, as
    Grafana sends it."""
    now = datetime.now(UTC)
    regions = [
        r[0] for r in duckdb.sql(f"SELECT DISTINCT region FROM read_csv('{STORES_CSV}')").fetchall()
    ]
    out = {}
    for name in ORDERS_DASHBOARDS:
        board = DASHBOARDS[name]()
        for panel in board.panels or []:
            for target in getattr(panel, "targets", None) or []:
                sql = target.to_json()["rawSql"]
                out[f"{board.title} / {panel.title}"] = expand(
                    str(sql), now - timedelta(hours=1), now, {"region": regions}
                )
    return out


def build_warehouse(path: Path, rows: int) -> None:
    """Synthetic but realistically shaped tables: orders over 24 h, windows derived from them."""
    con = duckdb.connect(str(path))
    create_tables(con, landed_tables())
    con.execute(f"CREATE OR REPLACE TABLE stores AS SELECT * FROM read_csv('{STORES_CSV}')")
    con.execute(
        f"""
        INSERT INTO orders_enriched BY NAME
        SELECT 'e-' || i AS event_id, 'o-' || i AS order_id, 'c-' || (i % 50000) AS customer_id,
               s.store_id, ['web', 'app', 'phone'][1 + i % 3] AS channel, t AS event_time,
               total, s.currency, total * 1.1 AS total_usd, s.name AS store_name, s.city,
               s.region, s.latitude, s.longitude, 1.1 AS usd_rate,
               t + INTERVAL 1 SECOND AS produced_at
        FROM (
            SELECT i, now() - to_microseconds((i * 86400000000 // {rows})::BIGINT) AS t,
                   1 + (hash(i) % 308)::INTEGER AS sid, 5 + (hash(i * 7) % 6000) / 100.0 AS total
            FROM range({rows}) r(i)
        ) o JOIN stores s ON s.store_id = o.sid
        """
    )
    con.execute(
        """
        INSERT INTO store_revenue_1m BY NAME
        SELECT store_id, time_bucket(INTERVAL 1 MINUTE, event_time) AS window_start,
               window_start + INTERVAL 1 MINUTE AS window_end, count(*) AS orders,
               count(*) * 2 AS items, sum(total_usd) AS revenue_usd,
               avg(total_usd) AS avg_order_usd, max(total_usd) AS max_order_usd,
               max(produced_at) AS produced_at
        FROM orders_enriched GROUP BY ALL
        """
    )
    con.execute(
        "INSERT INTO landing_batches SELECT now() - to_seconds(i), 5000, 0.05, 0 FROM range(3600) r(i)"
    )
    con.close()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def time_queries(run, queries: dict[str, str]) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    out = {}
    for name, sql in queries.items():
        run(sql)  # warm
        samples = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            run(sql)
            samples.append((time.perf_counter() - started) * 1000)
        out[name] = percentiles(samples)
    return out


def landing_rate(
    brokers: str, work: Path, expected: float, readers: int, queries: list[str]
) -> float:
    """Rows/s landing the output topics into a fresh warehouse, with `readers` busy PG clients."""
    warehouse = work / f"landing-{readers}.duckdb"
    proc, port = child(
        ["serve", "--brokers", brokers, "--warehouse", str(warehouse), "--pg-port", "0",
         "--quack-port", "0"],
        work / f"landing-{readers}.log",
    )  # fmt: skip
    stop = threading.Event()
    threads = []
    try:
        deadline = time.monotonic() + 60
        while not endpoint_file(warehouse).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pg_port = json.loads(endpoint_file(warehouse).read_text())["pg_port"]
        dsn = f"host=127.0.0.1 port={pg_port} user=streamlane password={PASSWORD} dbname=w"

        def read() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                i = 0
                while not stop.is_set():
                    conn.execute(queries[i % len(queries)]).fetchall()
                    i += 1

        for _ in range(readers):
            threads.append(threading.Thread(target=read, daemon=True))
            threads[-1].start()
        return steady_rate(
            [port], "streamlane_landed_rows_total", expected, 900, {"landing": [proc.pid]}
        )[0]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--landing-events", type=int, default=300_000)
    args = parser.parse_args()
    os.environ["STREAMLANE_PG_PASSWORD"] = PASSWORD
    work = Path(tempfile.mkdtemp(prefix="streamlane-bench-queries-"))
    queries = dashboard_queries()

    print(f"building a warehouse with {args.rows:,} orders…", flush=True)
    warehouse = work / "big.duckdb"
    started = time.perf_counter()
    build_warehouse(warehouse, args.rows)
    build_s = time.perf_counter() - started
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("SET integer_division = true")  # as the endpoint does
    in_process = time_queries(lambda sql: con.execute(sql).fetchall(), queries)
    con.close()

    proc, _ = child(["serve", "--warehouse", str(warehouse), "--pg-port", "0", "--quack-port", "0"],
                    work / "serve.log")  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not endpoint_file(warehouse).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pg_port = json.loads(endpoint_file(warehouse).read_text())["pg_port"]
        with psycopg.connect(
            f"host=127.0.0.1 port={pg_port} user=streamlane password={PASSWORD} dbname=w",
            autocommit=True,
        ) as conn:
            via_pg = time_queries(lambda sql: conn.execute(sql).fetchall(), queries)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)

    print(f"landing {args.landing_events:,} events' output with 0 and 8 readers…", flush=True)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        ensure_topics(broker.bootstrap, orders.FLOW.topics, 8)
        settings = GeneratorSettings(
            seed=3, count=args.landing_events, start=datetime.now(UTC) - timedelta(hours=2)
        )
        publish(
            broker.bootstrap,
            orders.FLOW.input_topic,
            ((r.key, r.value) for r in OrderGenerator(settings)),
        )
        flow, flow_port = child(
            [
                "flow",
                "run",
                "orders",
                "--brokers",
                broker.bootstrap,
                "--recovery-dir",
                str(work / "rec"),
            ],
            work / "flow.log",
        )
        wait_metric([flow_port], "streamlane_events_in_total", args.landing_events, 900)
        # Outputs in flight when the last input was read are counted once they settle.
        outputs = settled([flow_port], "streamlane_events_out_total")
        flow.send_signal(signal.SIGINT)
        flow.wait(60)
        reader_queries = [q for q in queries.values()]
        alone = landing_rate(broker.bootstrap, work, outputs, 0, reader_queries)
        busy = landing_rate(broker.bootstrap, work, outputs, 8, reader_queries)

    result = {
        "cores": os.cpu_count(),
        "orders_enriched_rows": args.rows,
        "build_seconds": round(build_s, 1),
        "queries_ms": {
            name: {
                "in_process_p50": round(in_process[name][0], 1),
                "in_process_p95": round(in_process[name][1], 1),
                "postgres_p50": round(via_pg[name][0], 1),
                "postgres_p95": round(via_pg[name][1], 1),
            }
            for name in queries
        },
        "landing_rows": int(outputs),
        "landing_rows_per_s_no_readers": round(alone),
        "landing_rows_per_s_8_readers": round(busy),
        "landing_drop_with_8_readers": round(1 - busy / alone, 3),
    }
    out = save_result(result, f"queries-{utc_stamp()}")
    width = max(len(n) for n in queries)
    print(f"{'query':<{width}}  in-process p50/p95 ms   postgres p50/p95 ms")
    for name, row in result["queries_ms"].items():  # type: ignore[union-attr]
        print(
            f"{name:<{width}}  {row['in_process_p50']:>8} / {row['in_process_p95']:<8}"
            f"  {row['postgres_p50']:>8} / {row['postgres_p95']:<8}"
        )
    for key in ("cores", "landing_rows", "landing_rows_per_s_no_readers", "landing_rows_per_s_8_readers",
                "landing_drop_with_8_readers"):  # fmt: skip
        print(f"{key}: {result[key]}")
    print(f"(written to {out})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
