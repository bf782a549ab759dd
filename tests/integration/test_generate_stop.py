"""Stopping a live generator (Ctrl-C, SIGTERM): it ends the stream, delivers every event it
produced, says how many, and exits 0 without a traceback. Real broker, the real
`streamlane generate` process."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker, free_port
from streamlane.kafka import ensure_topics
from streamlane.topicread import read_to_end
from tests.helpers import Processes, metric_values, wait_until

TOPIC = orders.FLOW.input_topic


def produced(port: int) -> float:
    return sum(value for _, value in metric_values(port, "streamlane_events_out_total"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_live_generator_delivers_what_it_produced(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path, stop: signal.Signals
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, [TOPIC], 4)
    port = free_port()
    generator = processes.start(
        "generate",
        *("generate", "--brokers", brokers, "--seed", "3", "--rate", "2000"),
        *("--metrics-port", str(port)),
    )
    wait_until(lambda: produced(port) >= 2_000, 60, "a second of events")
    generator.send_signal(stop)
    assert generator.wait(30) == 0
    log = processes.log("generate")
    assert "Traceback" not in log, log
    said = re.search(rf"(\d+) events produced to {re.escape(TOPIC)}", log)
    assert said, log
    assert int(said[1]) >= 2_000
    assert len(read_to_end(brokers, TOPIC)) == int(said[1]), "every event produced was delivered"
