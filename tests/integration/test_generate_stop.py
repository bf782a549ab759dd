"""Stopping a live generator (Ctrl-C, SIGTERM): it ends the stream, delivers every event it
produced, says how many, and exits 0 without a traceback. Real broker, the real
`streamlane generate` process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.plainprogress import PLAIN_PROGRESS_S
from streamlane.ports import free_port
from streamlane.topicread import read_to_end
from tests.helpers import Processes, metric_values, the_error_line, wait_until

TOPIC = orders.FLOW.input_topic


def produced(port: int) -> float:
    return sum(value for _, value in metric_values(port, "streamlane_events_out_total"))


def _producing(
    processes: Processes, brokers: str, name: str, seed: str, rate: str, events: int, *extra: str
) -> subprocess.Popen[bytes]:
    """A live generator started as `name` on `brokers`, once it has produced `events`."""
    ensure_topics(brokers, [TOPIC], 4)
    port = free_port()
    generator = processes.start(
        name,
        *("generate", "--brokers", brokers, "--seed", seed, "--rate", rate),
        *("--metrics-port", str(port), *extra),
    )
    wait_until(lambda: produced(port) >= events, 60, f"{events} events produced")
    return generator


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_live_generator_delivers_what_it_produced(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path, stop: signal.Signals
) -> None:
    brokers = fresh_broker.bootstrap
    generator = _producing(processes, brokers, "generate", "3", "2000", 2_000)
    generator.send_signal(stop)
    assert generator.wait(30) == 0
    log = processes.log("generate")
    assert "Traceback" not in log, log
    said = re.search(rf"(\d+) events produced to {re.escape(TOPIC)}", log)
    assert said, log
    assert int(said[1]) >= 2_000
    assert len(read_to_end(brokers, TOPIC)) == int(said[1]), "every event produced was delivered"


def test_a_live_generator_off_a_terminal_writes_a_progress_line_every_so_often(
    fresh_broker: EmbeddedBroker, processes: Processes
) -> None:
    """Its output in a file (as in a container's log): a line every `PLAIN_PROGRESS_S` with
    how many events it produced so far, where a progress bar showed nothing until the end."""
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, [TOPIC], 4)
    generator = processes.start(
        "generate-lines", "generate", "--brokers", brokers, "--seed", "4", "--rate", "500"
    )
    lines = re.compile(rf"^(\d+) events produced to {re.escape(TOPIC)}$", re.MULTILINE)
    wait_until(
        lambda: len(lines.findall(processes.log("generate-lines"))) >= 2,
        3 * PLAIN_PROGRESS_S + 30,
        "two progress lines",
    )
    generator.send_signal(signal.SIGTERM)
    assert generator.wait(30) == 0
    counts = [int(n) for n in lines.findall(processes.log("generate-lines"))]
    assert len(counts) >= 3, counts  # two while it ran, the last when it stopped
    assert counts == sorted(counts) and counts[0] > 0, counts
    assert len(read_to_end(brokers, TOPIC)) == counts[-1]


@pytest.mark.timeout(120)
def test_a_generator_whose_kafka_is_gone_says_so_and_gives_up_in_one_line(
    fresh_broker: EmbeddedBroker, processes: Processes
) -> None:
    """Kafka killed under a live generator: it says once that it waits, and once Kafka has
    taken no record for --broker-timeout it stops with one line (status 2), no traceback."""
    brokers = fresh_broker.bootstrap
    generator = _producing(
        processes, brokers, "generate-gone", "5", "50000", 10_000, "--broker-timeout", "8"
    )
    os.kill(fresh_broker.pid, signal.SIGKILL)
    assert generator.wait(60) == 2, processes.log("generate-gone")[-2000:]
    log = processes.log("generate-gone")
    assert "Traceback" not in log, log
    assert log.count("takes no records; waiting up to 8 s for it") == 1, log
    assert the_error_line(log).startswith(
        f"streamlane: error: Kafka at {brokers} has taken no record for {TOPIC} for "
    ), log
