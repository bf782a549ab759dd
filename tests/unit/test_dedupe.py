"""Dedupe state: first occurrence wins, within a batch and across batches, within the horizon."""

import copy
import pickle

import numpy as np
import polars as pl

from streamlane.dedupe import SeenIds, hash_ids

MINUTE = 60_000_000


def test_first_occurrence_wins_within_and_across_batches() -> None:
    seen = SeenIds(horizon_us=60 * MINUTE)
    ids = hash_ids(pl.Series(["a", "b", "a", "c"]))
    times = np.array([1, 2, 3, 4]) * MINUTE
    assert seen.first_seen(ids, times).tolist() == [True, True, False, True]
    again = hash_ids(pl.Series(["c", "d"]))
    assert seen.first_seen(again, np.array([5, 6]) * MINUTE).tolist() == [False, True]


def test_ids_older_than_the_horizon_are_forgotten() -> None:
    seen = SeenIds(horizon_us=10 * MINUTE)
    seen.first_seen(hash_ids(pl.Series(["old"])), np.array([0]))
    seen.first_seen(hash_ids(pl.Series(["new"])), np.array([60 * MINUTE]))
    assert seen.first_seen(hash_ids(pl.Series(["old"])), np.array([0])).tolist() == [True]


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
