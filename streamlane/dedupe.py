"""Compact memory of event ids seen within a horizon, for dropping re-sent events.

Ids are hashed to 64 bits (polars' fixed-seed hash) and kept in sorted numpy runs,
bucketed by event time so a whole bucket is dropped once it falls behind the
horizon. Lookups are vectorized binary searches; runs of similar size are merged
so a bucket holds O(log n) runs. Two different ids colliding on 64 bits is
treated as a duplicate (about 1 in 10^10 at ten million ids).

Runs are read-only once built (a merge builds a new one), so a copy of the state shares
them: the recovery snapshot's copy of a shard, taken every epoch, does not hold a
second copy of a horizon's ids (an hour at 10k events/s is 36M ids, 275 MiB).

Snapshots are incremental when the state has `RunFiles`: the runs a snapshot holds for
the first time are written together to one new file, and the snapshot names each run by
its file and place in it. A snapshot of a full horizon then writes only the runs built
since the last one, instead of every id again each epoch, and one file a shard: a file
per run made a shard's snapshot create, sync and later delete dozens of small files (each
batch adds a run to the buckets it touches), and the flow's worker waited for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from streamlane.errors import UserError

log = logging.getLogger(__name__)

ID_HASH_SEED = 0x5EED57AE

RETIRED_FILE_SNAPSHOTS = 3
"""A run file the state let go of (merged or expired) is deleted once this many snapshots
were taken without it: by then the recovery store's resume point no longer names it."""


def hash_ids(ids: pl.Series) -> np.ndarray:
    """64-bit hashes of event ids, stable for a given polars version."""
    return ids.hash(seed=ID_HASH_SEED).to_numpy()


def _sync_directory(directory: Path) -> None:
    """Make the entries of `directory` (files created, renamed or removed in it) durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sealed(ids: np.ndarray) -> np.ndarray:
    ids.flags.writeable = False
    return ids


@dataclass(eq=False, slots=True)
class Run:
    """A sorted, read-only array of id hashes; once a snapshot wrote it, `file` names the run
    file holding it as its run number `index` (None: a file of its ids alone)."""

    ids: np.ndarray
    file: str | None = None
    index: int | None = None


class RunFiles:
    """The folder holding one dedupe state's run files, each the runs one snapshot wrote.

    A file is little-endian uint64 throughout: how many runs it holds, each one's length,
    then their ids, one run after another. (Files written before a snapshot's runs shared
    one hold a single run's ids alone; snapshots of that time name them by name alone.)

    Files are written once, complete (written aside, then renamed), and never changed;
    `shard` is the folder's name under the process's run folder (see `keep_runs_in`).
    """

    def __init__(self, root: Path, shard: str) -> None:
        self.shard = shard
        self.directory = root / shard

    def write(self, runs: list[np.ndarray]) -> str:
        """Write runs to a new file, durable before the name is returned; the file's name."""
        name = f"{uuid.uuid4().hex}.ids"
        aside = self.directory / f".{name}"
        header = np.array([len(runs), *(len(ids) for ids in runs)], dtype="<u8")
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(parents=True, exist_ok=True)
                # The folder's own entry, so a crash cannot lose the folder the file is in.
                _sync_directory(self.directory.parent)
            with open(aside, "wb") as out:
                out.write(header.tobytes())
                for ids in runs:
                    out.write(ids.astype("<u8", copy=False).tobytes())
                out.flush()
                os.fsync(out.fileno())
            os.replace(aside, self.directory / name)
            # A rename is durable only once its folder is synced: without it, a crash after the
            # snapshot naming the file was committed could leave the file missing.
            _sync_directory(self.directory)
        except OSError:
            with contextlib.suppress(OSError):
                aside.unlink(missing_ok=True)
            raise
        return name

    def read(self, name: str) -> np.ndarray | None:
        """The ids of file `name` written as one run's ids alone (before a snapshot's runs
        shared a file), or None when the file is missing (a damaged store)."""
        try:
            ids = np.fromfile(self.directory / name, dtype="<u8")
        except FileNotFoundError:
            return None
        return _sealed(ids.astype(np.uint64, copy=False))

    def runs(self, name: str) -> list[np.ndarray] | None:
        """Every run of file `name`, in order, each its own array, or None when the file is
        missing or does not hold them whole (a damaged store)."""
        try:
            with open(self.directory / name, "rb") as source:
                lengths = _header(source)
                if lengths is None:
                    return None
                runs = [np.fromfile(source, dtype="<u8", count=int(n)) for n in lengths]
        except FileNotFoundError:
            return None
        if any(len(ids) != n for ids, n in zip(runs, lengths, strict=True)):
            return None
        return [_sealed(ids.astype(np.uint64, copy=False)) for ids in runs]

    def delete(self, names: list[str]) -> None:
        """Delete the named run files; one already gone is no error."""
        for name in names:
            (self.directory / name).unlink(missing_ok=True)

    def keep_only(self, names: set[str]) -> None:
        """Delete every run file (and half-written one) not in `names`."""
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name not in names:
                    path.unlink(missing_ok=True)


def _header(source: BinaryIO) -> np.ndarray | None:
    """The run lengths a run file starts with (read from `source`, left after them), or None
    when the file cannot hold them and their runs (cut short, or not a run file)."""
    size = os.fstat(source.fileno()).st_size
    first = np.frombuffer(source.read(8), dtype="<u8")
    # Checked against the file's size before reading on: a damaged count must not make
    # the restore allocate what it claims.
    if len(first) != 1 or 8 * (1 + int(first[0])) > size:
        return None
    lengths = np.frombuffer(source.read(8 * int(first[0])), dtype="<u8")
    # Summed as Python integers, which do not wrap around as 64-bit lengths would.
    if len(lengths) != int(first[0]) or 8 * (1 + len(lengths) + sum(map(int, lengths))) > size:
        return None
    return lengths


def _named(run: Run) -> np.ndarray | str | tuple[str, int]:
    """How a snapshot holds `run`: its ids (no file holds it), its file's name (a file of
    its ids alone), or its file's name and its place there."""
    if run.file is None:
        return run.ids
    return run.file if run.index is None else (run.file, run.index)


_RUN_ROOT: Path | None = None


def keep_runs_in(root: Path | None) -> None:
    """Make this process's dedupe states snapshot incrementally, their runs in `root`
    (inside the flow's recovery store); None embeds every run in every snapshot."""
    global _RUN_ROOT
    _RUN_ROOT = root


def run_files(shard: str) -> RunFiles | None:
    """The run files of shard `shard` in this process's run folder, or None when there is none."""
    return None if _RUN_ROOT is None else RunFiles(_RUN_ROOT, shard)


class _Ledger:
    """Shared by a state and its snapshot copies: how many copies were taken, how many of
    the state's runs each run file holds, and the files whose every run the state let go
    of, each with the number of copies taken until then."""

    def __init__(self) -> None:
        self.copies = 0
        self.live: dict[str, int] = {}
        self.retired: list[tuple[str, int]] = []


class SeenIds:
    """Ids seen in the last `horizon_us` of event time, relative to the newest event time seen
    (or, when `first_seen` is told, to the slowest input partition's newest event, if older).

    With `files`, snapshots (pickles) write new runs to files and name them; a new state
    starts by deleting any run files its shard left behind (from an attempt that never
    completed a snapshot).
    """

    def __init__(
        self, horizon_us: int, buckets_per_horizon: int = 6, files: RunFiles | None = None
    ) -> None:
        self.horizon_us = horizon_us
        # An id outlives the horizon by at most a bucket. Every lookup searches each run of
        # every bucket and every snapshot writes each new run, so fewer buckets cost less:
        # with 12 instead of 6 the benchmark's flow used about a twentieth more CPU.
        self.bucket_us = max(1, horizon_us // buckets_per_horizon)
        self.buckets: dict[int, list[Run]] = {}
        self.newest_us: int | None = None
        self.files = files
        self.damaged: str | None = None
        self._ledger = _Ledger()
        self._copy = 0
        if files is not None:
            files.keep_only(set())

    def __deepcopy__(self, memo: dict[int, Any]) -> SeenIds:
        copy = SeenIds.__new__(SeenIds)
        copy.horizon_us = self.horizon_us
        copy.bucket_us = self.bucket_us
        copy.buckets = {bucket: list(runs) for bucket, runs in self.buckets.items()}
        copy.newest_us = self.newest_us
        copy.files = self.files
        copy.damaged = self.damaged
        self._ledger.copies += 1
        copy._ledger = self._ledger
        copy._copy = self._ledger.copies
        return copy

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {"horizon_us": self.horizon_us, "bucket_us": self.bucket_us}
        state["newest_us"] = self.newest_us
        if self.files is None:
            state["buckets"] = {b: [run.ids for run in runs] for b, runs in self.buckets.items()}
            return state
        fresh = [run for runs in self.buckets.values() for run in runs if run.file is None]
        if fresh:
            self._write(fresh)
        # This copy's number: at least that many copies were taken since a retirement at 0.
        taken = self._copy
        ledger = self._ledger
        due = [(name, at) for name, at in ledger.retired if taken - at >= RETIRED_FILE_SNAPSHOTS]
        ledger.retired = [entry for entry in ledger.retired if entry not in due]
        self.files.delete([name for name, _ in due])
        state["shard"] = self.files.shard
        # A run whose file could not be written travels in the snapshot itself.
        state["buckets"] = {b: [_named(run) for run in runs] for b, runs in self.buckets.items()}
        return state

    def _write(self, runs: list[Run]) -> None:
        assert self.files is not None
        try:
            name = self.files.write([run.ids for run in runs])
        except OSError as exc:
            # Raising here would fail the snapshot inside the runtime; the snapshot holds the
            # run instead, and the next one tries the file again.
            log.warning(
                "dedupe snapshot: cannot write run files in %s (%s); this snapshot holds "
                "the ids itself",
                self.files.directory,
                exc.strerror or exc,
            )
            return
        for index, run in enumerate(runs):
            run.file, run.index = name, index
        self._ledger.live[name] = len(runs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.horizon_us = state["horizon_us"]
        self.bucket_us = state["bucket_us"]
        self.newest_us = state["newest_us"]
        self._ledger = _Ledger()
        self._copy = 0
        self.damaged = None
        shard = state.get("shard")
        files = None if shard is None else run_files(shard)
        if shard is not None and files is None:
            raise RuntimeError("a dedupe snapshot names run files, but no run folder is set")
        self.files = files
        self.buckets = {}
        missing: dict[str, None] = {}
        # A file is read once, however many of its runs the snapshot names.
        in_files: dict[str, list[np.ndarray] | None] = {}

        def held(name: str, index: int | None) -> np.ndarray | None:
            if files is None:
                return None
            if index is None:
                return files.read(name)
            if name not in in_files:
                in_files[name] = files.runs(name)
            file_runs = in_files[name]
            return file_runs[index] if file_runs is not None and index < len(file_runs) else None

        for bucket, runs in state["buckets"].items():
            restored = self.buckets.setdefault(bucket, [])
            for run in runs:
                if isinstance(run, np.ndarray):  # embedded
                    restored.append(Run(_sealed(run)))
                    continue
                # (file, index); a name alone is a file holding one run's ids alone.
                name, index = (run, None) if isinstance(run, str) else run
                ids = held(name, index)
                if ids is None:
                    missing[name] = None
                    continue
                restored.append(Run(ids, name, index))
                self._ledger.live[name] = self._ledger.live.get(name, 0) + 1
        if files is not None:
            if missing:
                # Reported by the shard's first step (`check`): an error raised while the
                # runtime restores state would end the process with its own traceback.
                self.damaged = (
                    f"the recovery store's dedupe run file {files.directory / next(iter(missing))} "
                    f"is missing ({len(missing)} in all): the store is damaged; delete the "
                    "recovery folder to start the flow afresh"
                )
            else:
                # Restored at a resume: files no snapshot from here on names are left-overs.
                files.keep_only(set(self._ledger.live))

    def check(self) -> None:
        """Raise UserError when the state was restored from a damaged recovery store."""
        if self.damaged is not None:
            raise UserError(self.damaged)

    def __len__(self) -> int:
        return sum(len(run.ids) for runs in self.buckets.values() for run in runs)

    def _contains(self, hashes: np.ndarray) -> np.ndarray:
        seen = np.zeros(len(hashes), dtype=bool)
        for runs in self.buckets.values():
            for run in runs:
                ids = run.ids
                pos = np.searchsorted(ids, hashes)
                pos[pos == len(ids)] = 0
                seen |= ids[pos] == hashes
        return seen

    def _retire(self, run: Run) -> None:
        """Let go of `run`; its file is deleted once it holds no other run of the state's
        and `RETIRED_FILE_SNAPSHOTS` snapshots were taken since."""
        if run.file is None:
            return
        ledger = self._ledger
        left = ledger.live.get(run.file, 1) - 1
        if left > 0:
            ledger.live[run.file] = left
            return
        ledger.live.pop(run.file, None)
        ledger.retired.append((run.file, ledger.copies))

    def _add(self, hashes: np.ndarray, times_us: np.ndarray, now_us: int | None) -> None:
        bucket_of = times_us // self.bucket_us
        oldest_kept = None if now_us is None else (now_us - self.horizon_us) // self.bucket_us
        for bucket in np.unique(bucket_of):
            if oldest_kept is not None and bucket < oldest_kept:
                continue  # already beyond the horizon: nothing would ever match it
            runs = self.buckets.setdefault(int(bucket), [])
            runs.append(Run(_sealed(np.sort(hashes[bucket_of == bucket]))))
            # Keep run sizes geometric so lookups stay O(log n) runs per bucket.
            while len(runs) > 1 and len(runs[-2].ids) <= 2 * len(runs[-1].ids):
                last, before = runs.pop(), runs[-1]
                merged = np.sort(np.concatenate([before.ids, last.ids]), kind="stable")
                runs[-1] = Run(_sealed(merged))
                self._retire(before)
                self._retire(last)

    def _expire(self, now_us: int | None) -> None:
        if now_us is None:
            return
        oldest_kept = (now_us - self.horizon_us) // self.bucket_us
        for bucket in [b for b in self.buckets if b < oldest_kept]:
            for run in self.buckets.pop(bucket):
                self._retire(run)

    def first_seen(
        self, hashes: np.ndarray, times_us: np.ndarray, slowest_us: int | None = None
    ) -> np.ndarray:
        """Mask of events seen for the first time; remembers them.

        Within the batch the first occurrence (in order) wins; an id already
        remembered is a duplicate. Ids whose event time is older than the
        horizon are still checked but not remembered. The horizon ends at the newest
        event time seen, or at `slowest_us` when that is older: the newest event of the
        slowest input partition, whose events (and their repeats) are still to come, so
        a partition that runs ahead in event time does not make the others' ids forgotten.
        """
        if len(hashes) == 0:
            return np.zeros(0, dtype=bool)
        # Looked up in sorted order: each binary search then starts where the last one
        # ended, which made the lookups four times faster than in arrival order.
        distinct, first_index = np.unique(hashes, return_index=True)
        new = np.zeros(len(hashes), dtype=bool)
        new[first_index[~self._contains(distinct)]] = True
        batch_newest = int(times_us.max())
        if self.newest_us is None or batch_newest > self.newest_us:
            self.newest_us = batch_newest
        now_us = self.newest_us if slowest_us is None else min(self.newest_us, slowest_us)
        self._add(hashes[new], times_us[new], now_us)
        self._expire(now_us)
        return new
