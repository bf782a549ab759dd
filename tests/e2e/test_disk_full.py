"""The warehouse's disk fills up mid-stream (a real, size-limited filesystem): the landing
pauses with one line, stops consuming, keeps serving queries, and lands everything exactly
once when space returns."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from streamlane.query import run_sql
from tests.e2e.orders_run import order_stream, start_flow
from tests.helpers import Processes, wait_until
from tests.pipeline import count, event_id, start_warehouse


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited filesystem needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem has no space left."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError:
            pass
    return filler


@pytest.mark.timeout(300)
def test_landing_pauses_on_a_full_disk_and_resumes_exactly(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path, small_disk: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)
    warehouse = small_disk / "warehouse.duckdb"
    main, _too_late = order_stream(4000)
    half = len(main) // 2
    ids = [{event_id(r) for r in part if r.kind in ("valid", "out_of_order")}
           for part in (main[:half], main)]  # fmt: skip

    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main[:half]])
    wh = start_warehouse(processes, brokers, warehouse)
    start_flow(processes, brokers, tmp_path / "recovery", "--idle-timeout", "60")
    wait_until(lambda: count(warehouse, "orders_enriched") >= len(ids[0]), 90, "the first half")

    filler = fill(small_disk)
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main[half:]])
    wait_until(lambda: "landing paused" in processes.log("warehouse"), 60, "the landing to pause")
    paused = [line for line in processes.log("warehouse").splitlines() if "landing paused" in line]
    assert len(paused) == 1 and "No space left on device" in paused[0], paused
    # Still answering queries, and not landing: the second half waits in Kafka.
    assert count(warehouse, "orders_enriched") < len(ids[1])
    assert wh.poll() is None

    filler.unlink()
    wait_until(lambda: count(warehouse, "orders_enriched") >= len(ids[1]), 90, "the second half")
    assert "landing resumed" in processes.log("warehouse")
    landed = run_sql(warehouse, "SELECT event_id FROM orders_enriched")["event_id"].to_list()
    assert sorted(landed) == sorted(ids[1]), "every event landed exactly once"
    assert wh.poll() is None
