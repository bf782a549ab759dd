"""The orders flow running live with a full dedupe horizon: its memory, and whether it keeps up.

    python -m bench.full_horizon --rate 10000 --seconds 60

A full horizon (one hour at 10k events/s: 36M ids) would take an hour of events to fill
through a flow. This fills it through the flow's recovery store instead:

1. the flow runs live for `--seed-seconds` against a fresh embedded broker, snapshotting
   every second, so every state shard holds ids and the run files its snapshots name
   (`<recovery>/dedupe-runs/<shard>/`, runs of sorted 64-bit hashes); the generator
   stops, the flow snapshots a few more times (run files it let go of are deleted) and
   stops;
2. every run the shards' last snapshots name gets random 64-bit hashes added (what
   hashing makes of distinct ids), kept sorted, until the shards hold `--rate` x
   `--horizon` ids in all;
3. the flow starts again from that store, restoring the full horizon, and runs live at
   `--rate` for `--seconds` (snapshotting at its default interval).

With `--stores N` the events spread over N stores (as in `bench.run`), so the window state
holds up to N open windows per minute besides the ids.

It reports the ids the restarted flow holds (its `streamlane_dedupe_ids`), how long the
restore took, the flow's peak RSS and the cores it used, the events it read against those
produced, and the run files' MiB. Figures print with the machine's core count and go to
bench/results/horizon-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import (
    child,
    many_stores,
    print_figures,
    save_result,
    settled,
    stop,
    utc_stamp,
    wait_metric,
    wait_ready,
    with_children_stopped,
    work_directory,
)
from flows import orders
from streamlane import procmem
from streamlane.broker import EmbeddedBroker
from streamlane.dataflow import SHARD_STEP
from streamlane.dedupe import RunFiles, keep_runs_in
from streamlane.flowrun import DEDUPE_RUNS
from streamlane.kafka import ensure_topics
from streamlane.progresslines import scrape
from streamlane.settings import FlowSettings

MIB = 2**20
IDS = "streamlane_dedupe_ids"
EVENTS_IN = "streamlane_events_in_total"


def named_runs(recovery: Path) -> dict[Path, set[int]]:
    """The runs of each run file that the latest snapshot of each state shard names, as
    the flow restores them: a run file can also hold runs its state has since let go of.
    Read from the recovery store's snapshots of the shards' step (the bench's one look
    inside the runtime's store)."""
    latest: dict[str, tuple[int, bytes]] = {}
    for part in sorted(recovery.glob("part-*.sqlite3")):
        with contextlib.closing(sqlite3.connect(part)) as store:
            rows = store.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id LIKE ?",
                (f"{orders.FLOW.name}.{SHARD_STEP}.%",),
            ).fetchall()
        for key, epoch, change in rows:
            if key not in latest or epoch > latest[key][0]:
                latest[key] = (epoch, change)
    keep_runs_in(recovery / DEDUPE_RUNS)
    named: dict[Path, set[int]] = {}
    try:
        for key, (_, change) in latest.items():
            if change is None:
                continue
            state = pickle.loads(change)
            for runs in state.seen.buckets.values():
                for run in runs:
                    if run.file is None or run.index is None:
                        raise SystemExit(f"benchmark: shard {key}'s snapshot holds a run itself")
                    path = recovery / DEDUPE_RUNS / key / run.file
                    named.setdefault(path, set()).add(run.index)
    finally:
        keep_runs_in(None)
    return named


def fill_run_files(recovery: Path, total_ids: int, rng: np.random.Generator) -> int:
    """Add random hashes to every run the latest snapshots name (spread evenly, each run
    kept sorted) until they hold `total_ids` in all; returns the ids they hold. A file is
    rewritten under its own name with its runs in place, so the snapshots still name them."""
    named = named_runs(recovery)
    folder = recovery / DEDUPE_RUNS
    shard_files = {path: RunFiles(folder, path.parent.name) for path in named}
    runs: dict[Path, list[np.ndarray]] = {}
    for path, files in shard_files.items():
        held_runs = files.runs(path.name)
        if held_runs is None:
            raise SystemExit(f"benchmark: run file {path} is damaged")
        runs[path] = held_runs
    count = sum(len(indexes) for indexes in named.values())
    if not count:
        raise SystemExit(f"benchmark: the seeding run left no run files in {folder}")
    held = sum(len(runs[path][i]) for path, indexes in named.items() for i in indexes)
    extra = max(0, total_ids - held)
    n = 0
    for path, indexes in named.items():
        grown = []
        for index, ids in enumerate(runs[path]):
            if index in indexes:
                added = rng.integers(0, 2**63, extra // count + int(n < extra % count))
                ids = np.sort(np.concatenate([ids, added.astype(np.uint64)]))
                n += 1
            grown.append(ids)
        written = shard_files[path].write(grown)
        os.replace(path.parent / written, path)
    return held + extra


def generator(brokers: str, rate: float, log: Path, seed: int) -> tuple[Any, int]:
    """A live generator at `rate` (in order, none too late) and its metrics port."""
    proc, port = child(
        ["generate", "--brokers", brokers, "--rate", str(rate), "--seed", str(seed),
         "--out-of-order", "0", "--too-late", "0"], log,
    )  # fmt: skip
    wait_ready(port, 120)
    return proc, port


def measure(args: argparse.Namespace, work: Path) -> dict[str, object]:
    recovery = work / "recovery"
    runs = recovery / DEDUPE_RUNS
    target_ids = int(args.rate * args.horizon)
    if args.stores:
        stores_csv = many_stores(work / "reference", args.stores)
        os.environ["STREAMLANE_REFERENCE_DIR"] = str(stores_csv.parent)  # read by the children
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        brokers = broker.bootstrap
        ensure_topics(brokers, orders.FLOW.topics, args.partitions)
        flow_args = ["flow", "run", "orders", "--brokers", brokers, "--recovery-dir",
                     str(recovery), "--dedupe-horizon", str(args.horizon)]  # fmt: skip

        print(f"seeding: the flow live for {args.seed_seconds:g} s…", file=sys.stderr)
        seed_flow, seed_port = child([*flow_args, "--snapshot-interval", "1"], work / "seed.log")
        wait_ready(seed_port, 120)
        seed_gen, seed_gen_port = generator(brokers, args.rate, work / "generate-seed.log", 1)
        time.sleep(args.seed_seconds)
        produced_seed = scrape(seed_gen_port).get("streamlane_events_out_total", 0)
        stop(seed_gen)
        wait_metric([seed_port], EVENTS_IN, produced_seed, 120)
        time.sleep(6)  # a few more snapshots: run files the state let go of are deleted
        stop(seed_flow)

        print(f"filling the run files to {target_ids:,} ids…", file=sys.stderr)
        filled = fill_run_files(recovery, target_ids, np.random.default_rng(7))

        print(f"the flow live with a full horizon for {args.seconds:g} s…", file=sys.stderr)
        started = time.monotonic()
        flow, port = child(flow_args, work / "flow.log")
        wait_ready(port, 300)
        gen, gen_port = generator(brokers, args.rate, work / "generate.log", 2)
        wait_metric([port], IDS, filled, 300)
        restore_s = time.monotonic() - started
        read_from = scrape(port).get(EVENTS_IN, 0)
        produced_from = scrape(gen_port).get("streamlane_events_out_total", 0)
        cpu_from, at = procmem.cpu_seconds(flow.pid) or 0.0, time.monotonic()
        time.sleep(args.seconds)
        cpu_to, seconds = procmem.cpu_seconds(flow.pid) or 0.0, time.monotonic() - at
        produced = scrape(gen_port).get("streamlane_events_out_total", 0) - produced_from
        read = scrape(port).get(EVENTS_IN, 0) - read_from
        ids_held = scrape(port).get(IDS, 0)
        stop(gen)
        settled([port], EVENTS_IN)
        flow_rss = stop(flow)
        run_bytes = sum(path.stat().st_size for path in runs.rglob("*.ids"))
    return {
        "cores": os.cpu_count(),
        "rate_events_per_s": args.rate,
        "horizon_s": args.horizon,
        "stores": args.stores or "shipped list",
        "seconds": args.seconds,
        "ids_seeded": filled,
        "ids_held": int(ids_held),
        "restore_s": round(restore_s, 1),
        "produced_events_per_s": round(produced / seconds),
        "read_events_per_s": round(read / seconds),
        "flow_cores": round((cpu_to - cpu_from) / seconds, 2),
        "flow_peak_rss_mib": flow_rss,
        "run_files_mib": round(run_bytes / MIB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = FlowSettings(brokers="")
    parser.add_argument("--rate", type=float, default=10_000, help="events per second")
    parser.add_argument("--seconds", type=float, default=60, help="measured live run")
    parser.add_argument("--seed-seconds", type=float, default=10, help="seeding live run")
    parser.add_argument("--horizon", type=float, default=defaults.dedupe_horizon_s)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--stores", type=int, default=0, help="distinct stores (default: the shipped list)"
    )
    args = parser.parse_args()
    with work_directory("streamlane-horizon-") as work:
        result = with_children_stopped(lambda: measure(args, work))
    out = save_result(result, f"horizon-{utc_stamp()}")
    print_figures(result)
    print(f"(written to {out}; logs in {work})")


if __name__ == "__main__":
    main()
