"""The dedupe state of a full horizon: its size, its lookup cost and its snapshot cost.

    python -m bench.dedupe_horizon --rate 10000

A flow holds the 64-bit hash of every event id of the last `dedupe_horizon_s` (one hour
by default), split over its state shards. Filling that through a flow takes as many
events as the horizon holds (36M at 10k events/s), so this fills the shards' dedupe
state directly: batches of `--batch` events, `--rate` events per second of event time,
ids as uniformly random 64-bit hashes (what hashing makes of distinct ids), spread over
the default number of shards by their hash. It then measures:

- ids held and the bytes of their sorted runs, and the process's RSS growth;
- what checking and remembering one batch costs once the horizon is full;
- a recovery snapshot of every shard: the copy bytewax takes of each state (which
  shares the runs) and the pickled bytes written to the recovery store, with the
  RSS each adds, first with every run embedded in the snapshot (a state without run
  files), then incrementally as a flow snapshots (run files in a temporary folder):
  the first snapshot writes every run, and each later one, `--snapshots` epochs of
  `--epoch` seconds of events each, writes only the runs built since the last.

Figures print with the machine's core count and go to
bench/results/dedupe-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from bench.run import print_figures, save_result, utc_stamp
from streamlane.dedupe import RunFiles, SeenIds
from streamlane.settings import FlowSettings

MIB = 2**20


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def measure(
    rate: int, batch: int, horizon_s: float, shards: int, epoch_s: float, snapshots: int
) -> dict[str, object]:
    rng = np.random.default_rng(7)
    state = [SeenIds(int(horizon_s * 1e6)) for _ in range(shards)]
    batch_us = int(batch / rate * 1e6)
    batches = int(horizon_s * 1e6) // batch_us
    started_rss = rss_mib()
    step_s: list[float] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("filling the horizon", total=batches)
        for b in range(batches):
            hashes = rng.integers(0, 2**63, batch, dtype=np.int64).astype(np.uint64)
            times = b * batch_us + np.sort(rng.integers(0, batch_us, batch))
            shard_of = hashes % shards
            began = time.perf_counter()
            for s in range(shards):
                mine = shard_of == s
                state[s].first_seen(hashes[mine], times[mine])
            step_s.append(time.perf_counter() - began)
            progress.advance(task)
    held = sum(len(s) for s in state)
    run_bytes = sum(run.ids.nbytes for s in state for runs in s.buckets.values() for run in runs)
    filled_rss = rss_mib()
    full = step_s[-max(1, batches // 20) :]  # the last 5%: the horizon is full
    began = time.perf_counter()
    copies = [copy.deepcopy(s) for s in state]
    copy_s = time.perf_counter() - began
    copied_rss = rss_mib()
    began = time.perf_counter()
    pickled = [pickle.dumps(c) for c in copies]
    pickle_s = time.perf_counter() - began
    pickled_rss = rss_mib()
    pickled_mib = sum(map(len, pickled)) / MIB
    del copies, pickled
    with tempfile.TemporaryDirectory(prefix="streamlane-dedupe-runs-") as runs:
        incremental = incremental_snapshots(
            state, Path(runs), rng, rate, epoch_s, snapshots, batches * batch_us
        )
    return {
        "cores": os.cpu_count(),
        "rate_events_per_s": rate,
        "horizon_s": horizon_s,
        "shards": shards,
        "batch_events": batch,
        "ids_held": held,
        "ids_mib": round(run_bytes / MIB, 1),
        "rss_growth_mib": round(filled_rss - started_rss, 1),
        "full_horizon_us_per_event": round(float(np.mean(full)) / batch * 1e6, 2),
        "snapshot_copy_s": round(copy_s, 3),
        "snapshot_copy_rss_mib": round(copied_rss - filled_rss, 1),
        "snapshot_pickle_s": round(pickle_s, 3),
        "snapshot_pickled_mib": round(pickled_mib, 1),
        "snapshot_pickle_rss_mib": round(pickled_rss - copied_rss, 1),
    } | incremental


def incremental_snapshots(
    state: list[SeenIds],
    folder: Path,
    rng: np.random.Generator,
    rate: int,
    epoch_s: float,
    snapshots: int,
    now_us: int,
) -> dict[str, object]:
    """Snapshots of the filled shards with run files: the first, then one per epoch of events."""

    def snapshot() -> tuple[float, int, int]:
        written_before = _bytes_in(folder)
        began = time.perf_counter()
        pickled = sum(len(pickle.dumps(copy.deepcopy(s))) for s in state)
        return time.perf_counter() - began, pickled, _bytes_in(folder) - written_before

    for shard, seen in enumerate(state):
        seen.files = RunFiles(folder, str(shard))
    first_s, first_pickled, first_written = snapshot()
    epoch_events = int(rate * epoch_s)
    epoch_us = int(epoch_s * 1e6)
    times_s: list[float] = []
    written: list[int] = []
    pickled: list[int] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("incremental snapshots", total=snapshots)
        for n in range(snapshots):
            hashes = rng.integers(0, 2**63, epoch_events, dtype=np.int64).astype(np.uint64)
            times = now_us + n * epoch_us + np.sort(rng.integers(0, epoch_us, epoch_events))
            shard_of = hashes % len(state)
            for s, seen in enumerate(state):
                mine = shard_of == s
                seen.first_seen(hashes[mine], times[mine])
            took, size, wrote = snapshot()
            times_s.append(took)
            pickled.append(size)
            written.append(wrote)
            progress.advance(task)
    return {
        "first_incremental_snapshot_s": round(first_s, 3),
        "first_incremental_written_mib": round(first_written / MIB, 1),
        "epoch_s": epoch_s,
        "epoch_events": epoch_events,
        "incremental_snapshots": snapshots,
        "incremental_snapshot_s_mean": round(float(np.mean(times_s)), 4),
        "incremental_snapshot_s_max": round(max(times_s), 4),
        "incremental_written_mib_mean": round(float(np.mean(written)) / MIB, 2),
        "incremental_written_mib_max": round(max(written) / MIB, 2),
        "incremental_pickled_kib_mean": round(float(np.mean(pickled)) / 1024, 1),
        "run_files_mib": round(_bytes_in(folder) / MIB, 1),
    }


def _bytes_in(folder: Path) -> int:
    """Bytes of the run files under `folder` (what is there now, so deletions count)."""
    return sum(p.stat().st_size for p in folder.rglob("*.ids"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = FlowSettings(brokers="")
    parser.add_argument("--rate", type=int, default=10_000, help="events per second")
    parser.add_argument("--batch", type=int, default=50_000, help="events per batch")
    parser.add_argument("--horizon", type=float, default=defaults.dedupe_horizon_s)
    parser.add_argument(
        "--epoch", type=float, default=5.0, help="seconds between snapshots (the flow's default)"
    )
    parser.add_argument("--snapshots", type=int, default=20, help="incremental snapshots timed")
    args = parser.parse_args()
    result = measure(
        args.rate, args.batch, args.horizon, defaults.shards, args.epoch, args.snapshots
    )
    out = save_result(result, f"dedupe-{utc_stamp()}")
    print_figures(result)
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
