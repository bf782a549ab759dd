"""State tied to an earlier embedded broker (whose topics died with it) is recognised and not
resumed against: the flow's recovery store and the landing's positions start over."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.flowrun import DEDUPE_RUNS
from streamlane.generator import GeneratedRecord
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from streamlane.publish import publish
from tests.e2e.orders_run import order_stream, start_flow
from tests.helpers import Processes, the_error_line, wait_until
from tests.pipeline import count, event_id, start_warehouse


@pytest.mark.timeout(240)
def test_state_of_an_earlier_broker_is_not_resumed(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    main, _ = order_stream(4000)
    first, second = main[: len(main) // 2], main[len(main) // 2 :]
    warehouse = tmp_path / "warehouse.duckdb"
    recovery = tmp_path / "recovery"

    def run_against(broker: EmbeddedBroker, records: list[GeneratedRecord], name: str) -> None:
        brokers = broker.bootstrap
        ensure_topics(brokers, orders.FLOW.topics, 2)
        publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in records])
        port = free_port()
        wh = start_warehouse(processes, brokers, warehouse, name=f"warehouse-{name}")
        flow = start_flow(
            processes, brokers, recovery, "--metrics-port", str(port), name=f"flow-{name}"
        )
        wait_until(
            lambda: scrape(port).get("streamlane_events_in_total") == len(records),
            90,
            f"the flow to read all {len(records)} records of broker {name} from its start",
        )
        unique = {event_id(r) for r in records if r.kind in ("valid", "out_of_order")}
        wait_until(lambda: count(warehouse, "orders_enriched") >= len(unique), 90, "landing")
        assert processes.stop(flow) == 0 and processes.stop(wh) == 0

    run_against(fresh_broker, first, "a")
    with EmbeddedBroker(log_path=tmp_path / "broker-b.log") as other:
        # Same recovery store and warehouse, new broker: its offsets start at 0 again.
        run_against(other, second, "b")
    assert "belongs to another broker; starting fresh" in processes.log("flow-b")
    assert "broker changed since the last landing" in processes.log("warehouse-b")
    landed = {event_id(r) for r in main if r.kind in ("valid", "out_of_order")}
    assert count(warehouse, "orders_enriched") == len(landed)


@pytest.mark.timeout(180)
def test_a_recovery_store_missing_a_dedupe_run_stops_the_flow_with_one_line(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)
    main, _ = order_stream(4000)
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main])
    recovery = tmp_path / "recovery"
    port = free_port()
    flow = start_flow(processes, brokers, recovery, "--metrics-port", str(port))
    wait_until(
        lambda: scrape(port).get("streamlane_events_in_total") == len(main), 90, "the input read"
    )
    assert processes.stop(flow) == 0
    runs = sorted((recovery / DEDUPE_RUNS).rglob("*.ids"))
    assert runs, "the final snapshot wrote the dedupe state's run files"
    runs[0].unlink()

    again = start_flow(processes, brokers, recovery, name="flow-again")
    wait_until(lambda: again.poll() is not None, 60, "the flow to refuse the damaged store")
    log = processes.log("flow-again")
    assert again.returncode == 2, log[-2000:]
    assert f"{runs[0]} is missing" in the_error_line(log), log[-2000:]


@pytest.mark.parametrize("what", ["a data folder", "a file"])
def test_a_recovery_dir_that_is_not_a_store_is_refused_and_left_alone(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path, what: str
) -> None:
    """`--recovery-dir` naming a folder that holds anything but a recovery store (a data
    folder named by mistake), or a file, stops the flow with one line and deletes nothing:
    a folder without the store's marker used to be taken for a stale store and removed."""
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)
    if what == "a file":
        named = tmp_path / "notes.txt"
        named.write_text("precious")
        expected = f"--recovery-dir {named} is not a folder"
    else:
        named = tmp_path / "data"
        (named / "logs").mkdir(parents=True)
        (named / "warehouse.duckdb").write_text("precious")
        expected = (
            f"--recovery-dir {named} is not a recovery store (it holds logs, warehouse.duckdb); "
            "give a new or empty folder"
        )
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    flow = start_flow(processes, brokers, named)
    wait_until(lambda: flow.poll() is not None, 60, "the flow to refuse the folder")
    log = processes.log("flow")
    assert flow.returncode == 2, log[-2000:]
    assert the_error_line(log) == f"streamlane: error: {expected}"
    assert sorted(str(p) for p in tmp_path.rglob("*") if p.name != "flow.log") == [
        p for p in before if not p.endswith("flow.log")
    ]
