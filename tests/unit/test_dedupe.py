"""Dedupe state: first occurrence wins, within a batch and across batches, within the horizon."""

import copy
import os
import pickle
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamlane.dedupe import (
    RETIRED_FILE_SNAPSHOTS,
    SeenIds,
    hash_ids,
    keep_runs_in,
    run_files,
)
from streamlane.errors import UserError
from streamlane.shards import ShardInput, ShardState, WindowSpec, shard_step
from streamlane.windows import PartitionProgress

MINUTE = 60_000_000


def test_first_occurrence_wins_within_and_across_batches() -> None:
    seen = SeenIds(horizon_us=60 * MINUTE)
    ids = hash_ids(pl.Series(["a", "b", "a", "c"]))
    times = np.array([1, 2, 3, 4]) * MINUTE
    assert seen.first_seen(ids, times).tolist() == [True, True, False, True]
    again = hash_ids(pl.Series(["c", "d"]))
    assert seen.first_seen(again, np.array([5, 6]) * MINUTE).tolist() == [False, True]


def test_first_seen_agrees_with_a_set_of_ids_over_many_runs() -> None:
    # Ids repeat within and across batches in every order, over enough batches that each
    # bucket holds several runs: the lookups (in sorted order) must find every one.
    rng = np.random.default_rng(3)
    seen = SeenIds(horizon_us=600 * MINUTE)
    remembered: set[int] = set()
    for batch in range(40):
        ids = rng.integers(0, 3_000, 500).astype(np.uint64)
        times = np.full(len(ids), batch * MINUTE)
        expected = []
        for one in ids.tolist():
            expected.append(one not in remembered)
            remembered.add(one)
        assert seen.first_seen(ids, times).tolist() == expected


def test_ids_older_than_the_horizon_are_forgotten() -> None:
    seen = SeenIds(horizon_us=10 * MINUTE)
    seen.first_seen(hash_ids(pl.Series(["old"])), np.array([0]))
    seen.first_seen(hash_ids(pl.Series(["new"])), np.array([60 * MINUTE]))
    assert seen.first_seen(hash_ids(pl.Series(["old"])), np.array([0])).tolist() == [True]


def test_ids_are_kept_while_the_slowest_partition_is_within_the_horizon_of_them() -> None:
    """A partition running an hour ahead does not make the others' ids forgotten: the
    horizon ends at the slowest partition's newest event when that is older."""
    seen = SeenIds(horizon_us=10 * MINUTE)
    seen.first_seen(hash_ids(pl.Series(["slow"])), np.array([0]), slowest_us=0)
    seen.first_seen(hash_ids(pl.Series(["fast"])), np.array([60 * MINUTE]), slowest_us=5 * MINUTE)
    again = seen.first_seen(hash_ids(pl.Series(["slow"])), np.array([0]), slowest_us=5 * MINUTE)
    assert again.tolist() == [False]
    # Once the slowest partition is past the horizon too, the id is forgotten.
    seen.first_seen(hash_ids(pl.Series(["on"])), np.array([30 * MINUTE]), slowest_us=30 * MINUTE)
    assert seen.first_seen(hash_ids(pl.Series(["slow"])), np.array([0])).tolist() == [True]


def test_state_stays_compact() -> None:
    seen = SeenIds(horizon_us=60 * MINUTE)
    for batch in range(20):
        ids = hash_ids(pl.Series([f"id-{batch}-{i}" for i in range(1000)]))
        seen.first_seen(ids, np.full(1000, batch * MINUTE))
    assert len(seen) == 20_000
    assert all(len(runs) <= 16 for runs in seen.buckets.values())


def test_a_snapshot_copy_shares_the_ids_but_not_what_comes_after() -> None:
    seen = SeenIds(horizon_us=60 * MINUTE)
    seen.first_seen(hash_ids(pl.Series([f"id-{i}" for i in range(1000)])), np.full(1000, MINUTE))
    snapshot = copy.deepcopy(seen)
    shared = {id(run) for runs in seen.buckets.values() for run in runs}
    assert {id(run) for runs in snapshot.buckets.values() for run in runs} == shared
    later = hash_ids(pl.Series(["later"]))
    assert seen.first_seen(later, np.array([2 * MINUTE])).tolist() == [True]
    assert snapshot.first_seen(later, np.array([2 * MINUTE])).tolist() == [True]
    assert len(seen) == len(snapshot) == 1001
    restored = pickle.loads(pickle.dumps(snapshot))
    assert restored.first_seen(later, np.array([3 * MINUTE])).tolist() == [False]


@pytest.fixture
def run_root(tmp_path: Path) -> Iterator[Path]:
    """This process's run folder for the test, unset afterwards."""
    root = tmp_path / "runs"
    keep_runs_in(root)
    try:
        yield root
    finally:
        keep_runs_in(None)


def _batch(seen: SeenIds, batch: int, size: int = 1000, apart_us: int = MINUTE) -> np.ndarray:
    ids = hash_ids(pl.Series([f"id-{batch}-{i}" for i in range(size)]))
    seen.first_seen(ids, np.full(size, batch * apart_us))
    return ids


def _snapshot(seen: SeenIds) -> bytes:
    """What bytewax does each epoch: copy the state, then pickle the copy."""
    return pickle.dumps(copy.deepcopy(seen))


def _files(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (root / "3").iterdir()}


def _ids_in(names: Iterable[str]) -> int:
    """How many ids the run files `names` of shard 3 hold, read as a restore reads them."""
    files = run_files("3")
    assert files is not None
    held = 0
    for name in names:
        runs = files.runs(name)
        assert runs is not None, f"run file {name} is whole"
        held += sum(len(ids) for ids in runs)
    return held


def test_a_snapshot_with_run_files_writes_only_the_runs_built_since_the_last(
    run_root: Path,
) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    for batch in range(10):
        _batch(seen, batch)
    first = _snapshot(seen)
    assert len(first) < 2_000, "the snapshot names the runs instead of holding 10,000 ids"
    assert _ids_in(_files(run_root)) == 10_000
    before = _files(run_root)
    _batch(seen, 10)
    _snapshot(seen)
    written = [name for name in _files(run_root) if name not in before]
    assert _ids_in(written) == 1_000, "only the new batch's run was written"


def test_a_restored_state_remembers_every_id_and_drops_left_over_files(run_root: Path) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    kept = [_batch(seen, batch) for batch in range(5)]
    snapshot = _snapshot(seen)
    _batch(seen, 5)
    _snapshot(seen)  # a later snapshot the resume point does not reach
    left_over = set(_files(run_root))
    restored = pickle.loads(snapshot)
    assert len(restored) == 5_000
    for batch, ids in enumerate(kept):
        assert not restored.first_seen(ids, np.full(len(ids), batch * MINUTE)).any()
    named = {run.file for runs in restored.buckets.values() for run in runs}
    assert set(_files(run_root)) == named < left_over


def _named_by_recent(snapshots: list[bytes], run_root: Path, copy_root: Path) -> set[str | None]:
    """The run files the last `RETIRED_FILE_SNAPSHOTS` snapshots name, each snapshot restored
    (whole, or the test fails) from a copy of the run folder, which restoring may prune."""
    named: set[str | None] = set()
    for older in snapshots[-RETIRED_FILE_SNAPSHOTS:]:
        shutil.copytree(run_root, copy_root)
        keep_runs_in(copy_root)
        try:
            restored = pickle.loads(older)
            restored.check()
            named |= {run.file for runs in restored.buckets.values() for run in runs}
        finally:
            keep_runs_in(run_root)
            shutil.rmtree(copy_root)
    return named


@pytest.mark.parametrize(
    ("apart_us", "batches_a_snapshot"),
    [
        # Four batches per bucket (runs merge) over twice the horizon (buckets expire).
        (MINUTE // 5, 1),
        # Three batches (in different buckets) between snapshots, so a file holds several
        # runs, which merges and expiry let go of at different times.
        (MINUTE, 3),
    ],
)
def test_run_files_a_merge_or_expiry_let_go_of_are_deleted_while_recent_snapshots_stay_whole(
    run_root: Path, tmp_path: Path, apart_us: int, batches_a_snapshot: int
) -> None:
    seen = SeenIds(horizon_us=10 * MINUTE, files=run_files("3"))
    snapshots = []
    shared = False
    for batch in range(100):
        _batch(seen, batch, size=50, apart_us=apart_us)
        if batch % batches_a_snapshot:
            continue
        snapshots.append(_snapshot(seen))
        recent = _named_by_recent(snapshots, run_root, tmp_path / "copy")
        assert set(_files(run_root)) == recent, "files no recent snapshot names are deleted"
        files = [run.file for runs in seen.buckets.values() for run in runs]
        shared |= len(set(files)) < len(files)
    assert len(seen) < 100 * 50, "buckets expired"
    assert shared == (batches_a_snapshot > 1), "files held several runs of the state"


def test_a_snapshot_writes_its_new_runs_of_every_bucket_to_one_file(run_root: Path) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    kept = [_batch(seen, batch, apart_us=10 * MINUTE) for batch in range(5)]  # five buckets
    snapshot = _snapshot(seen)
    (name,) = _files(run_root)
    runs = run_files("3").runs(name)  # type: ignore[union-attr]
    assert [len(ids) for ids in runs or []] == [1_000] * 5, "one file holds the five runs"
    restored = pickle.loads(snapshot)
    assert sum(len(runs) for runs in restored.buckets.values()) == 5
    for batch, ids in enumerate(kept):
        at = np.full(len(ids), batch * 10 * MINUTE)
        assert not restored.first_seen(ids, at).any(), f"batch {batch} remembered"


def test_a_run_file_and_its_folder_are_synced_before_its_name_is_returned(
    run_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A snapshot names the file once `write` returns; the file's contents and its entry in
    # the folder (the rename, and the folder's own entry when it was just created) must
    # both be on disk by then, or a crash could leave the snapshot naming a missing file.
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.fstat(descriptor).st_ino)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    files = run_files("5")
    assert files is not None
    name = files.write([np.arange(10, dtype=np.uint64)])
    folder, file = files.directory, files.directory / name
    order = [os.stat(path).st_ino for path in (run_root, file, folder)]
    assert synced == order, "the new folder's parent, then the file, then its folder"
    synced.clear()
    files.write([np.arange(5, dtype=np.uint64)])
    assert synced[-1] == os.stat(folder).st_ino and len(synced) == 2, "an existing folder"


def test_a_snapshot_naming_whole_run_files_is_restored(run_root: Path) -> None:
    # Snapshots written before a snapshot's runs shared a file name each run's own file.
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    kept = [_batch(seen, batch, apart_us=10 * MINUTE) for batch in range(3)]
    state = copy.deepcopy(seen).__getstate__()
    state["buckets"] = {}
    for bucket, runs in seen.buckets.items():
        state["buckets"][bucket] = []
        for n, run in enumerate(runs):
            name = f"old-{bucket}-{n}.ids"
            run.ids.astype("<u8").tofile(run_root / "3" / name)
            state["buckets"][bucket].append(name)
    restored = SeenIds.__new__(SeenIds)
    restored.__setstate__(state)
    restored.check()
    for batch, ids in enumerate(kept):
        at = np.full(len(ids), batch * 10 * MINUTE)
        assert not restored.first_seen(ids, at).any(), f"batch {batch} remembered"
    _batch(restored, 3, apart_us=10 * MINUTE)
    again = pickle.loads(_snapshot(restored))
    assert len(again) == len(restored) == 4_000, "old files are named as before, new ones added"


def _header_claiming(count: int, first_length: int) -> Callable[[bytes], bytes]:
    return lambda data: np.array([count, first_length], dtype="<u8").tobytes() + data[16:]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: 8 * 1_500], id="cut short"),
        pytest.param(_header_claiming(2**62, 1_000), id="runs claimed past the file"),
        pytest.param(_header_claiming(2, 10**12), id="ids claimed past the file"),
        pytest.param(_header_claiming(2, 2**64 - 1_000), id="ids summing past 64 bits"),
    ],
)
def test_a_damaged_run_file_is_named(run_root: Path, damage: Callable[[bytes], bytes]) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    _batch(seen, 0, apart_us=10 * MINUTE)
    _batch(seen, 1, apart_us=10 * MINUTE)
    snapshot = _snapshot(seen)
    (path,) = (run_root / "3").iterdir()
    path.write_bytes(damage(path.read_bytes()))
    restored = pickle.loads(snapshot)  # restoring inside the runtime must not raise
    with pytest.raises(UserError, match=rf"dedupe run file {path} is missing \(1 in all\)"):
        restored.check()


def test_a_new_state_clears_its_shards_left_over_files(run_root: Path) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    _batch(seen, 0)
    _snapshot(seen)
    assert _files(run_root)
    SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    assert not _files(run_root)


def test_a_missing_run_file_is_named(run_root: Path) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    _batch(seen, 0)
    snapshot = _snapshot(seen)
    for path in (run_root / "3").iterdir():
        path.unlink()
    restored = pickle.loads(snapshot)  # restoring inside the runtime must not raise
    with pytest.raises(UserError, match=r"dedupe run .* is missing \(1 in all\)"):
        restored.check()


def test_a_run_file_that_cannot_be_written_travels_in_the_snapshot(
    run_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = SeenIds(horizon_us=60 * MINUTE, files=run_files("3"))
    ids = _batch(seen, 0)
    run_root.mkdir(parents=True)
    (run_root / "3").write_text("a file where the shard's folder goes")
    snapshot = _snapshot(seen)
    assert "cannot write run files" in caplog.text
    assert len(snapshot) > 8 * 1_000, "the ids are in the snapshot"
    (run_root / "3").unlink()
    restored = pickle.loads(snapshot)
    restored.check()
    assert not restored.first_seen(ids, np.zeros(len(ids), dtype=np.int64)).any()
    assert len(_snapshot(restored)) < 2_000, "the next snapshot writes the run to its file"
    assert _ids_in(_files(run_root)) == 1_000


def test_a_state_restored_from_embedded_runs_takes_run_files_on(run_root: Path) -> None:
    spec = WindowSpec(("t/0",), "store_id", (), lateness_us=0, dedupe_horizon_us=60 * MINUTE)
    keep_runs_in(None)
    embedded = ShardState(spec)
    _batch(embedded.seen, 0)
    old_snapshot = pickle.dumps(copy.deepcopy(embedded))
    keep_runs_in(run_root)
    restored = pickle.loads(old_snapshot)
    assert restored.seen.files is None
    progress = PartitionProgress("t/0", None, False, 0)
    restored, _ = shard_step(spec)(restored, ShardInput("3", None, (progress,)))
    assert len(_snapshot(restored.seen)) < 2_000, "the runs are in files from now on"
    assert _ids_in(_files(run_root)) == 1_000
