"""Freshness at a steady rate: how soon produced events and closed windows are queryable.

    python -m bench.freshness --rate 20000 --seconds 120

Starts a fresh embedded broker, the warehouse and the orders flow, then produces live
events at `--rate` for `--seconds`, split over `--generators` generator processes (which
compete with the pipeline for the cores: see `cores_used`). Meanwhile it
polls the warehouse and the flow's metrics every `--poll` seconds and measures:

- event freshness: for every row of `orders_enriched`, the time it was first seen in
  a query minus its event time (the generator stamps events with the wall clock as it
  produces them, so this is produce-to-visible; out-of-order and late events are not
  generated, so every event time is its produce time);
- where that time goes: `event_produce_to_output_s` is each row's `produced_at` (the
  time the flow produced its enriched record) minus its event time, the time through
  the broker and the flow; `event_output_to_visible_s` is the time it was first seen
  minus `produced_at`, the time through the landing;
- window freshness: for every closed minute, the time its first `store_revenue_1m`
  row was seen minus the time the flow's watermark metric was first seen past its end.
  The watermark passes a minute's end `--lateness` seconds after it, so a 60-second run
  sees one minute close or none, depending on the second it starts; 120 seconds see at
  least one.

Both are upper bounds by up to one poll interval. The cores each process kept busy
after the warm-up are reported too: at a live rate a pipeline's cost per event is
higher than in a backlog (every batch has fixed work, and batches are small). The rates
the generators produced and the pipeline landed are reported next to them: a run that
landed less than it produced did not keep up, and one that produced less than `--rate`
was held back by its generators.
`peak_rss_mib` is the flow's and the landing's peak resident memory over the run.
`landing_writes` summarizes the landing's own log of its writes after the warm-up (how
many a second, their median records, their write time), which shows what a caught-up
landing spends per batch. `landing_checkpoints` counts the landing's checkpoints after
the warm-up, their mean duration and the share of the time they took: writes wait while
one runs, so they set much of the tail of `event_output_to_visible_s`. The warehouse
runs as `streamlane run` runs it beside the flows, with one DuckDB thread fewer than the
cores unless `STREAMLANE_WAREHOUSE_THREADS` says otherwise (`warehouse_threads`).
Percentiles print as a table and go to bench/results/freshness-<timestamp>.json with the
machine's core count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.run import (
    CHILDREN,
    child,
    cpu_used,
    print_figures,
    save_result,
    stop,
    utc_stamp,
    wait_ready,
    with_children_stopped,
    work_directory,
)
from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.progresslines import scrape
from streamlane.query import endpoint_file, run_sql
from streamlane.runner import warehouse_thread_args, warehouse_threads_under_run

WARM_UP_S = 5.0


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    values = np.asarray(samples)
    return {f"p{p}": round(float(np.percentile(values, p)), 3) for p in (50, 95, 99)} | {
        "max": round(float(values.max()), 3),
        "samples": len(samples),
    }


def cores_used(
    start: tuple[float, dict[str, float]] | None, end: tuple[float, dict[str, float]]
) -> dict[str, float]:
    """Cores each group kept busy on average between two `cpu_used` readings (monotonic
    time first), and in all: how close the run came to the machine's cores."""
    if start is None:
        return {}
    seconds = end[0] - start[0]
    shares = {name: round((end[1][name] - start[1][name]) / seconds, 2) for name in end[1]}
    return shares | {"total": round(sum(shares.values()), 2)}


def measure(args: argparse.Namespace, work: Path) -> dict[str, object]:
    warehouse = work / "warehouse.duckdb"
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        brokers = broker.bootstrap
        ensure_topics(brokers, orders.FLOW.topics, args.partitions)
        # The warehouse shares the machine with the flow, as under `streamlane run`.
        landing, landing_port = child(
            ["serve", "--brokers", brokers, "--warehouse", str(warehouse),
             "--pg-port", "0", "--quack-port", "0", *warehouse_thread_args()],
            work / "warehouse.log",
        )  # fmt: skip
        wait_ready(landing_port, 120)
        flow, flow_port = child(
            ["flow", "run", "orders", "--brokers", brokers, "--recovery-dir",
             str(work / "recovery"), "--lateness", str(args.lateness)], work / "flow.log",
        )  # fmt: skip
        wait_ready(flow_port, 120)
        while not endpoint_file(warehouse).exists():
            time.sleep(0.1)
        per_generator = args.rate / args.generators
        generators = [
            child(
                ["generate", "--brokers", brokers, "--rate", str(per_generator),
                 "--seed", str(100 + g), "--out-of-order", "0", "--too-late", "0"],
                work / f"generate-{g}.log",
            )
            for g in range(args.generators)
        ]  # fmt: skip
        event_delays: list[float] = []
        flow_delays: list[float] = []
        landing_delays: list[float] = []
        window_delays: list[float] = []
        watermark_passed: dict[int, float] = {}
        window_seen: set[int] = set()
        last_rowid = -1
        processes = {"flow": [flow.pid], "landing": [landing.pid], "broker": [broker.pid],
                     "generators": [proc.pid for proc, _ in generators]}  # fmt: skip
        cpu_from: tuple[float, dict[str, float]] | None = None
        landing_from: dict[str, float] = {}
        started = time.time()
        produced_before = 0.0
        while time.time() - started < args.seconds:
            time.sleep(args.poll)
            now = time.time()
            rows = run_sql(
                warehouse,
                "SELECT rowid AS r, epoch_us(event_time) AS t, epoch_us(produced_at) AS p "
                f"FROM orders_enriched WHERE rowid > {last_rowid}",
            )
            if rows.height:
                last_rowid = int(rows["r"].max())  # type: ignore[arg-type]
                times = rows["t"].to_numpy() / 1e6
                # Generators start with a short catch-up to the wall clock: not steady state.
                steady = times > started + WARM_UP_S
                made = times[steady]
                output_at = rows["p"].to_numpy()[steady] / 1e6
                event_delays.extend((now - made).tolist())
                flow_delays.extend((output_at - made).tolist())
                landing_delays.extend((now - output_at).tolist())
            watermark = scrape(flow_port).get("streamlane_watermark_seconds", 0.0)
            minute = int(watermark // 60) * 60
            if minute > 0:
                first = minute if not watermark_passed else max(watermark_passed) + 60
                for passed in range(first, minute + 1, 60):
                    watermark_passed[passed] = now
            windows = run_sql(
                warehouse,
                "SELECT DISTINCT epoch(window_end)::BIGINT AS e FROM store_revenue_1m",
            )["e"].to_list()
            for end in windows:
                if end not in window_seen:
                    window_seen.add(end)
                    if end in watermark_passed:
                        window_delays.append(now - watermark_passed[end])
            produced_before = now
            if cpu_from is None and now - started >= WARM_UP_S:
                cpu_from = (time.monotonic(), cpu_used(processes))
                landing_from = scrape(landing_port)
        cpu_to = (time.monotonic(), cpu_used(processes))
        landing_to = scrape(landing_port)
        produced = sum(
            scrape(port).get("streamlane_events_out_total", 0.0) for _, port in generators
        )
        for proc, _ in generators:
            stop(proc)
        elapsed = produced_before - started
        landed = int(run_sql(warehouse, "SELECT count(*) AS n FROM orders_enriched")["n"][0])
        writes = landing_writes(warehouse, started + WARM_UP_S)
        peak_rss = {"flow": stop(flow), "landing": stop(landing)}
        for proc in list(CHILDREN):
            stop(proc)
    # The first minute's watermark may have passed before polling began: not a sample.
    return {
        "cores": os.cpu_count(),
        "rate_target_events_per_s": args.rate,
        "produced_events_per_s": round(produced / elapsed),
        "landed_events_per_s": round(landed / elapsed),
        "seconds": args.seconds,
        "lateness_s": args.lateness,
        "poll_s": args.poll,
        "warehouse_threads": warehouse_threads_under_run(),
        "event_produce_to_visible_s": percentiles(event_delays),
        "event_produce_to_output_s": percentiles(flow_delays),
        "event_output_to_visible_s": percentiles(landing_delays),
        "cores_used": cores_used(cpu_from, cpu_to),
        "window_watermark_to_visible_s": percentiles(window_delays),
        "landing_writes": writes,
        "landing_checkpoints": checkpoints(landing_from, landing_to, cpu_to[0] - cpu_from[0])
        if cpu_from
        else {},
        "peak_rss_mib": peak_rss,
    }


def landing_writes(warehouse: Path, since_s: float) -> dict[str, float]:
    """The landing's writes after the warm-up, from its own log (`landing_batches`): how
    many a second, their median records, and their write time (p50, p90, max) in
    milliseconds. At a live rate a write costs mostly per batch, not per record."""
    stats = run_sql(
        warehouse,
        "SELECT count(*) / greatest(epoch(max(landed_at) - min(landed_at)), 1) AS per_s, "
        'median("rows") AS records, median(seconds) * 1000 AS p50_ms, '
        "quantile_cont(seconds, 0.9) * 1000 AS p90_ms, max(seconds) * 1000 AS max_ms "
        f"FROM landing_batches WHERE landed_at >= to_timestamp({since_s})",
    ).row(0, named=True)
    return {name: round(float(value or 0), 1) for name, value in stats.items()}


def checkpoints(start: dict[str, float], end: dict[str, float], seconds: float) -> dict[str, float]:
    """The landing's checkpoints between two scrapes of its metrics: how many, how long
    one took on average, and the share of the time they took (writes wait while one runs,
    so this share of the rows waits longer)."""
    name = "streamlane_landing_checkpoint_duration_seconds"
    count = end.get(f"{name}_count", 0.0) - start.get(f"{name}_count", 0.0)
    total = end.get(f"{name}_sum", 0.0) - start.get(f"{name}_sum", 0.0)
    return {
        "count": int(count),
        "mean_s": round(total / count, 3) if count else 0.0,
        "share_of_time": round(total / seconds, 3) if seconds > 0 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--lateness", type=float, default=5.0)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args()
    with work_directory("streamlane-freshness-") as work:
        result = with_children_stopped(lambda: measure(args, work))
    out = save_result(result, f"freshness-{utc_stamp()}")
    print_figures(result)
    if not result["window_watermark_to_visible_s"]:
        print(
            "no minute's window closed while measuring: run longer (--seconds 120) to "
            "measure window freshness",
            file=sys.stderr,
        )
    print(f"(written to {out}; logs in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
