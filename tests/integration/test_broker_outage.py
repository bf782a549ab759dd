"""A Kafka outage longer than --broker-timeout stops the flow and the warehouse with one line
each and exit status 2, and the flow's state is still there for the next start; a shorter one
is waited out, also by the landing while it looks for topics that do not exist yet."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from flows import clickstream, orders
from streamlane.broker import EmbeddedBroker
from streamlane.clientlog import line_kind
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from streamlane.publish import publish
from streamlane.runner import Child, Pipeline, RunSettings
from streamlane.settings import FlowSettings
from tests.e2e.orders_run import order_stream, start_flow
from tests.helpers import Processes, the_error_line, wait_until
from tests.pipeline import count, start_warehouse


def wait_until_reading(brokers: str, port: int) -> None:
    """Publish orders and wait until the flow serving metrics on `port` has read some:
    it is built and its partitions are read (its broker watch runs from before that)."""
    main, _ = order_stream()
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main])
    wait_until(
        lambda: scrape(port).get("streamlane_events_in_total", 0) > 0,
        60,
        "the flow to read its input",
    )


@pytest.mark.timeout(180)
def test_outage_past_the_limit_stops_with_one_line(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 4)
    wh_port, port = free_port(), free_port()
    warehouse = start_warehouse(
        processes, brokers, tmp_path / "warehouse.duckdb", "--broker-timeout", "5",
        "--metrics-port", str(wh_port),
    )  # fmt: skip
    flow = start_flow(
        processes, brokers, tmp_path / "recovery", "--broker-timeout", "5",
        "--metrics-port", str(port),
    )  # fmt: skip
    # The progress display of `streamlane run`, fed by these two processes.
    display = Pipeline(RunSettings(FlowSettings(brokers), tmp_path / "w", tmp_path))
    display.children = [
        Child("flow", flow, tmp_path / "flow.log", port, flow="orders"),
        Child("warehouse", warehouse, tmp_path / "warehouse.log", wh_port),
    ]
    wait_until_reading(brokers, port)
    broker_pid = fresh_broker.pid
    assert "Kafka not answering" not in str(display._progress().title)
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: "Kafka not answering" in str(display._progress().title),
            5,
            "the progress display to report the outage",
        )
        wait_until(lambda: flow.poll() is not None, 60, "the flow to give up on Kafka")
        wait_until(lambda: warehouse.poll() is not None, 60, "the warehouse to give up on Kafka")
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    for proc, name in ((flow, "flow"), (warehouse, "warehouse")):
        assert proc.returncode == 2, processes.log(name)[-2000:]
        log = processes.log(name)
        assert f"Kafka at {brokers} has not answered for" in the_error_line(log)
        assert log.count("does not answer; waiting up to 5 s") == 1, "the outage is told once"
    assert (tmp_path / "recovery" / "broker.json").exists(), "the flow's state is kept"


@pytest.mark.timeout(180)
def test_a_broker_gone_is_told_once_per_kind_of_client_line(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    """With the broker gone, every Kafka client of the flow and the warehouse fails to
    connect several times a second; each kind of line it logs about that is written once
    (repeats within a minute are held back), and none is written around the log."""
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 4)
    port = free_port()
    start_warehouse(processes, brokers, tmp_path / "warehouse.duckdb", "--broker-timeout", "8")
    flow = start_flow(
        processes, brokers, tmp_path / "recovery", "--broker-timeout", "8",
        "--metrics-port", str(port),
    )  # fmt: skip
    wait_until_reading(brokers, port)
    os.kill(fresh_broker.pid, signal.SIGKILL)
    for name in ("flow", "warehouse"):
        wait_until(
            lambda n=name: "has not answered for" in processes.log(n), 60, f"the {name} to give up"
        )
        log = processes.log(name)
        client_lines = [line.split(" streamlane.kafka: ", 1)[1] for line in log.splitlines()
                        if " streamlane.kafka: " in line]  # fmt: skip
        assert any("Connection refused" in line for line in client_lines), log[-2000:]
        kinds = Counter(line_kind(line) for line in client_lines)
        assert max(kinds.values()) == 1, kinds.most_common(3)
        assert "%3|" not in log, "a client logged around the process's log"
    assert flow.wait(30) == 2


@pytest.mark.timeout(180)
def test_the_landing_waits_out_an_outage_while_a_topic_is_missing(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)  # the clickstream flow's are not there yet
    missing = clickstream.FLOW.dead_letter_topic
    warehouse_path = tmp_path / "warehouse.duckdb"
    warehouse = start_warehouse(processes, brokers, warehouse_path, "--broker-timeout", "60")
    wait_until(
        lambda: f"once topic {missing} is created" in processes.log("warehouse"),
        30,
        "the warehouse to wait for the missing topic",
    )
    os.kill(fresh_broker.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: (
                "again once Kafka answers" in processes.log("warehouse")
                or warehouse.poll() is not None
            ),
            60,
            "the landing to look for the missing topic during the outage",
        )
    finally:
        os.kill(fresh_broker.pid, signal.SIGCONT)
    assert warehouse.poll() is None, processes.log("warehouse")[-2000:]
    wait_until(lambda: "answers again" in processes.log("warehouse"), 30, "Kafka to answer again")
    # The topic created after the outage is found and landed.
    ensure_topics(brokers, [missing], 2)
    publish(brokers, missing, [(None, b"not an event")])
    wait_until(
        lambda: count(warehouse_path, "dead_letters") == 1, 60, "the new topic's record to land"
    )
    assert "Traceback" not in processes.log("warehouse")


@pytest.mark.timeout(180)
def test_records_a_stopped_flow_could_not_deliver_are_told_once(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    """Every sink partition of a flow shares one producer: each partition telling how many
    records were left undelivered at shutdown told of the same records over and over."""
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 4)
    main, _ = order_stream(60_000)
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main])
    port = free_port()
    flow = start_flow(processes, brokers, tmp_path / "recovery", "--metrics-port", str(port))
    wait_until(
        lambda: scrape(port).get("streamlane_events_out_total", 0) > 0, 60, "the flow to produce"
    )
    os.kill(fresh_broker.pid, signal.SIGSTOP)
    try:
        # Records written after the freeze stay undelivered; those written before it may all
        # have been delivered already, and then there is nothing to tell.
        frozen_at = scrape(port).get("streamlane_events_out_total", 0)
        wait_until(
            lambda: scrape(port).get("streamlane_events_out_total", 0) > frozen_at,
            60,
            "the flow to write records Kafka cannot take",
        )
        flow.send_signal(signal.SIGTERM)
        flow.wait(60)
    finally:
        os.kill(fresh_broker.pid, signal.SIGCONT)
    log = processes.log("flow")
    told = [line for line in log.splitlines() if "not delivered at shutdown" in line]
    assert len(told) == 1, told
    assert "the next start produces them again" in told[0]
