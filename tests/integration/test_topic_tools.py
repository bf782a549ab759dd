"""`streamlane topics produce` validates a JSONL file before sending any of it; `topics tail`
prints the events decoded, filtered by type or PATH=VALUE, or cut down to one path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamlane.broker import EmbeddedBroker
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.publish import publish
from streamlane.topicread import read_to_end


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlane", *args], capture_output=True, text=True, timeout=60
    )


def orders_file(path: Path, count: int) -> list[dict]:  # type: ignore[type-arg]
    settings = GeneratorSettings(seed=3, count=count * 2, duplicates=0, malformed=0, too_late=0)
    events = [json.loads(r.value) for r in OrderGenerator(settings) if r.kind == "valid"][:count]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return events


def test_produce_validates_first_and_tail_filters(broker: EmbeddedBroker, tmp_path: Path) -> None:
    topic = "tools.orders"
    ensure_topics(broker.bootstrap, [topic], 2)
    good = tmp_path / "good.jsonl"
    events = orders_file(good, 5)

    bad = tmp_path / "bad.jsonl"
    broken = dict(events[1], data=dict(events[1]["data"], total="12"))
    untyped = {k: v for k, v in events[2].items() if k != "type"}
    bad.write_bytes(
        (json.dumps(events[0]) + "\n" + json.dumps(broken) + "\nnot json\n[1]\n").encode()
        + (json.dumps(untyped) + "\n" + json.dumps(dict(events[3], type="x.y.v9"))).encode()
        + b"\n\xff{}\n"
    )
    refused = cli("topics", "produce", topic, "--brokers", broker.bootstrap, "--file", str(bad))
    assert refused.returncode == 2, refused.stderr
    assert f"{bad}:2: data.total" in refused.stderr
    assert f"{bad}:3: not valid JSON: Expecting value (column 1)" in refused.stderr
    assert f"{bad}:4: not a JSON object (got list)" in refused.stderr
    assert f"{bad}:5: no `type`: a CloudEvent names its event type there" in refused.stderr
    assert f"{bad}:6: no schema for type 'x.y.v9'" in refused.stderr
    assert f"{bad}:7: not UTF-8 (byte 0)" in refused.stderr
    assert "6 invalid line(s)" in refused.stderr and "Traceback" not in refused.stderr
    assert read_to_end(broker.bootstrap, topic) == [], "nothing is sent from a bad file"

    sent = cli("topics", "produce", topic, "--brokers", broker.bootstrap, "--file", str(good))
    assert sent.returncode == 0, sent.stderr
    assert "5 events sent" in sent.stdout
    records = read_to_end(broker.bootstrap, topic)
    assert sorted(m.value() for m in records) == sorted(good.read_bytes().splitlines())
    assert {m.key() for m in records} == {str(e["data"]["store_id"]).encode() for e in events}

    publish(broker.bootstrap, topic, [(b"x", b"\xffgarbage")])
    base = (
        "topics",
        "tail",
        topic,
        "--brokers",
        broker.bootstrap,
        "--from-beginning",
        "--no-color",
    )
    everything = cli(*base, "--limit", "6")
    assert everything.returncode == 0, everything.stderr
    headers = [line for line in everything.stdout.splitlines() if line.startswith(f"{topic}/")]
    assert sum("pizza.order.confirmed.v1" in h for h in headers) == 5
    assert "not JSON: \\xffgarbage" in everything.stdout
    assert f'"order_id": "{events[0]["data"]["order_id"]}"' in everything.stdout

    store = events[2]["data"]["store_id"]
    wanted = sum(1 for e in events if e["data"]["store_id"] == store)
    filtered = cli(
        *base, "--type", "pizza.order.confirmed.v1", "--where", f"data.store_id={store}",
        "--path", ".data.items[0].sku", "--limit", str(wanted),
    )  # fmt: skip
    assert filtered.returncode == 0, filtered.stderr
    skus = [
        line.strip().strip('"') for line in filtered.stdout.splitlines() if line.startswith('"')
    ]
    assert skus == [e["data"]["items"][0]["sku"] for e in events if e["data"]["store_id"] == store]
    bad_path = cli(*base, "--path", ".data[", "--limit", "1")
    assert bad_path.returncode == 2 and "cannot read path" in bad_path.stderr
