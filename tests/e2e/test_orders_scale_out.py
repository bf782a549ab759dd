"""Scale-out: the same input through 1, 2 and 4 worker threads and through a two-process
cluster gives the same warehouse contents, equal to the oracle, with the keyed state shards
spread over every worker."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows import orders
from sinks.kafka import BUILT_ELSEWHERE
from streamlane import shutdown
from streamlane.broker import EmbeddedBroker
from streamlane.flowrun import CLUSTER_EXIT_AFTER_S
from streamlane.kafka import ensure_topics
from streamlane.ports import cluster_port, free_port
from streamlane.progresslines import scrape
from streamlane.publish import publish
from streamlane.settings import FlowSettings
from tests.e2e.orders_run import finish_and_check, order_stream, start_flow
from tests.helpers import Processes, metric_values, wait_until
from tests.pipeline import start_warehouse

PARTITIONS = 8


@pytest.mark.timeout(420)
@pytest.mark.parametrize("layout", ["1 worker", "2 workers", "4 workers", "2 processes"])
def test_every_layout_lands_the_oracle(
    layout: str, fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    warehouse = tmp_path / "warehouse.duckdb"
    ensure_topics(brokers, orders.FLOW.topics, PARTITIONS)
    main, too_late = order_stream()
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main])
    start_warehouse(processes, brokers, warehouse)
    recovery = tmp_path / "recovery"
    count, unit = layout.split()
    ports = [free_port() for _ in range(int(count) if unit.startswith("process") else 1)]
    if unit.startswith("worker"):
        start_flow(
            processes, brokers, recovery, "--idle-timeout", "4", "--workers", count,
            "--metrics-port", str(ports[0]),
        )  # fmt: skip
    else:
        addresses = ";".join(f"127.0.0.1:{cluster_port()}" for _ in range(int(count)))
        for index in range(int(count)):
            start_flow(
                processes, brokers, recovery, "--idle-timeout", "4",
                "--process-id", str(index), "--addresses", addresses,
                "--metrics-port", str(ports[index]), name=f"flow-{index}",
            )  # fmt: skip
    finish_and_check(brokers, warehouse, main, too_late)
    for name in [f"flow-{i}" for i in range(len(ports))] if len(ports) > 1 else ["flow"]:
        # Every sink partition is written by the worker that listed it, so records stay put.
        assert BUILT_ELSEWHERE not in processes.log(name), processes.log(name)
    placement = shards_by_worker(ports)
    assert sum(placement.values()) == FlowSettings(brokers="").shards, placement
    assert len(placement) == int(count), f"state shards not spread over every worker: {placement}"


def shards_by_worker(ports: list[int]) -> dict[str, float]:
    """State shards each worker of the flow holds, from the flows' metrics."""
    held: dict[str, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "streamlane_state_shards" and sample.value > 0:
                    held[sample.labels["worker"]] = sample.value
    return held


@pytest.mark.timeout(240)
def test_a_cluster_stopped_while_kafka_does_not_answer_says_that_is_why(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    """A cluster's final snapshot waits for Kafka to take the records produced since the
    last one. When `streamlane run` is killed, its broker goes away as the flows stop: the
    processes exit on their own after the grace period, saying that Kafka is why, not a
    process of the cluster that is still running."""
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, PARTITIONS)
    main, _ = order_stream(60_000)
    publish(brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in main])
    ports = [free_port(), free_port()]
    addresses = ";".join(f"127.0.0.1:{cluster_port()}" for _ in ports)
    flows = [
        start_flow(
            processes,
            brokers,
            tmp_path / "recovery",
            "--process-id",
            str(index),
            "--addresses",
            addresses,
            "--metrics-port",
            str(port),
            name=f"flow-{index}",
        )  # fmt: skip
        for index, port in enumerate(ports)
    ]
    wait_until(
        lambda: all(scrape(port).get("streamlane_events_out_total", 0) > 0 for port in ports),
        120,
        "both processes of the cluster producing",
    )
    os.kill(fresh_broker.pid, signal.SIGSTOP)  # records in flight stay undelivered
    try:
        for flow in flows:
            flow.send_signal(signal.SIGTERM)
        statuses = [flow.wait(shutdown.GRACE_S + CLUSTER_EXIT_AFTER_S + 30) for flow in flows]
    finally:
        os.kill(fresh_broker.pid, signal.SIGCONT)
    last_lines = [processes.log(f"flow-{index}").splitlines()[-1] for index in range(2)]
    assert statuses == [shutdown.EXIT_STATUS] * 2, last_lines
    # The first to exit says why; the other may see it go first.
    why = (
        f"flow orders stopped without a final snapshot: Kafka at {brokers} does not answer; "
        "the next start resumes from the last snapshot"
    )
    assert any(line.endswith(why) for line in last_lines), last_lines
    for line in last_lines:
        assert line.endswith(why) or line.endswith("another process of the cluster went away")


def test_uneven_worker_count_is_refused(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    ensure_topics(fresh_broker.bootstrap, orders.FLOW.topics, PARTITIONS)
    flow = start_flow(processes, fresh_broker.bootstrap, tmp_path / "recovery", "--workers", "3")
    assert flow.wait(60) == 2
    log = processes.log("flow").strip().splitlines()
    assert log[-1].startswith("streamlane: error: 3 workers cannot share the 8 partitions")


def test_a_cluster_process_stopped_alone_exits_on_its_own(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    """A process of a cluster cannot take its final snapshot while another one runs: stopped
    alone, it exits on its own once the grace period is over, saying why in one line, and
    the other process stops on losing it."""
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, PARTITIONS)
    ports = [free_port(), free_port()]
    addresses = ";".join(f"127.0.0.1:{cluster_port()}" for _ in ports)
    flows = []
    for index, port in enumerate(ports):
        flows.append(start_flow(
            processes, brokers, tmp_path / "recovery", "--process-id", str(index),
            "--addresses", addresses, "--metrics-port", str(port), name=f"flow-{index}",
        ))  # fmt: skip
    wait_until(
        lambda: all(metric_values(port, "streamlane_state_shards") for port in ports),
        120,
        "both processes of the cluster running",
    )
    flows[1].send_signal(signal.SIGINT)
    assert flows[1].wait(shutdown.GRACE_S + CLUSTER_EXIT_AFTER_S + 30) == shutdown.EXIT_STATUS
    log = processes.log("flow-1")
    assert "Traceback" not in log, log[-3000:]
    assert log.splitlines()[-1].endswith(
        "flow orders stopped without a final snapshot: another process of the cluster is "
        "still running; the next start resumes from the last snapshot"
    ), log[-3000:]
    assert flows[0].wait(60) == 1
    assert "another process of the cluster went away" in processes.log("flow-0")
