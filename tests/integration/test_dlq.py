"""`streamlane dlq list|show|replay`: dead letters of a running flow are listed with their
reasons, shown in full, and, once the reference data is fixed, replayed with their ids."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.dlq import read_dead_letters
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from streamlane.publish import publish
from streamlane.topicread import read_to_end
from tests.e2e.orders_run import start_flow
from tests.helpers import Processes, wait_until

NEW_STORE = 99_999


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlane", *args], capture_output=True, text=True, timeout=120
    )


def enriched_ids(brokers: str) -> set[str]:
    return {
        json.loads(m.value())["data"]["event_id"]
        for m in read_to_end(brokers, orders.FLOW.enriched.topic)
    }


@pytest.mark.timeout(240)
def test_dead_letters_are_listed_shown_and_replayed_after_a_fix(
    fresh_broker: EmbeddedBroker,
    processes: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)
    reference = tmp_path / "reference"
    shutil.copytree(REFERENCE_DIR, reference)
    monkeypatch.setenv("STREAMLANE_REFERENCE_DIR", str(reference))

    settings = GeneratorSettings(seed=7, count=40, duplicates=0, malformed=0, too_late=0)
    valid = [r for r in OrderGenerator(settings) if r.kind == "valid"][:20]
    moved = []
    for record in valid[:2]:
        event = json.loads(record.value)
        event["data"]["store_id"] = NEW_STORE
        moved.append((str(NEW_STORE).encode(), json.dumps(event).encode()))
    moved_ids = {json.loads(v)["id"] for _, v in moved}
    garbage = (b"1", b"\xff\xfe not json")
    publish(
        brokers, orders.FLOW.input_topic, [(r.key, r.value) for r in valid[2:]] + moved + [garbage]
    )

    port = free_port()
    recovery = tmp_path / "recovery"
    flow = start_flow(processes, brokers, recovery, "--metrics-port", str(port))
    wait_until(
        lambda: (
            scrape(port).get(f"streamlane_events_out_total|{orders.FLOW.dead_letter_topic}") == 3
        ),
        90,
        "three dead letters",
    )

    listed = cli("dlq", "list", "--brokers", brokers, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 3
    reasons = sorted(r["reason"] for r in rows)
    assert reasons[-2:] == [f"unknown store_id {NEW_STORE}"] * 2
    assert all(r["origin_topic"] == orders.FLOW.input_topic for r in rows)
    table = cli("dlq", "list", "--brokers", brokers)
    assert table.returncode == 0 and "3 dead letters" in table.stdout, table.stdout
    assert "unknown store_id N" in table.stdout

    store_letter = next(r for r in rows if r["reason"].startswith("unknown store_id"))
    shown = cli("dlq", "show", store_letter["ref"], "--brokers", brokers)
    assert shown.returncode == 0, shown.stderr
    assert f'"store_id": {NEW_STORE}' in shown.stdout
    assert f"offset {store_letter['origin_offset']}" in shown.stdout
    missing = cli("dlq", "show", "7:12345", "--brokers", brokers)
    assert missing.returncode == 2 and "no dead letter at 7:12345" in missing.stderr
    assert "Traceback" not in missing.stderr
    nothing = cli("dlq", "replay", "--brokers", brokers)
    assert nothing.returncode == 2 and "choose dead letters" in nothing.stderr

    # The fix: the store is added to the reference data, and the flow restarted to load it.
    assert processes.stop(flow) == 0
    stores = reference / "stores.csv"
    stores.write_text(
        stores.read_text() + f"{NEW_STORE},Streamlane Pizza Test,Testville,EU-West,1.0,2.0,EUR\n"
    )
    port = free_port()
    start_flow(processes, brokers, recovery, "--metrics-port", str(port), name="flow-fixed")
    assert not moved_ids & enriched_ids(brokers)

    dry = cli("dlq", "replay", "--brokers", brokers, "--reason", "unknown store", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would replay") == 2, dry.stdout
    replayed = cli("dlq", "replay", "--brokers", brokers, "--reason", "unknown store")
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 2 dead letters to {orders.FLOW.input_topic}" in replayed.stdout
    # Same ids: the replayed events are enriched under the ids they were sent with.
    wait_until(lambda: moved_ids <= enriched_ids(brokers), 90, "the replayed events enriched")
    assert len(list(read_dead_letters(brokers, orders.FLOW.dead_letter_topic, ""))) == 3
