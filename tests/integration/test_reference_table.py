"""A reference table kept from a compacted topic: bootstrap to the end before first use, then
updates, deletions and malformed records as they arrive; and the pass-through miss policy."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

import polars as pl
import pytest

from streamlane import shutdown
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import WAIT_STEP_S, ensure_topics
from streamlane.publish import publish
from streamlane.reference import TopicReference
from tests.helpers import wait_until

COLUMNS: dict[str, pl.DataType] = {"shop_id": pl.Int64(), "country": pl.String()}


def spec(topic: str) -> TopicReference:
    return TopicReference(
        name=topic, topic=topic, key="shop_id", table_key="shop_id", columns=COLUMNS,
        miss_reason="unknown shop {}", version_column="shop_version",
    )  # fmt: skip


def row(shop: int, country: str) -> tuple[bytes, bytes]:
    return str(shop).encode(), json.dumps({"shop_id": shop, "country": country}).encode()


def looked_up(table, shops: list[int], keep_misses: bool = False) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    events = pl.DataFrame({"row": list(range(len(shops))), "shop_id": shops})
    return table.apply(events, keep_misses=keep_misses)


def test_the_table_follows_its_topic(broker: EmbeddedBroker) -> None:
    topic = "test.reference.shops"
    ensure_topics(broker.bootstrap, [topic], 2, compacted=[topic])
    publish(broker.bootstrap, topic, [row(1, "DE"), row(2, "FR"), row(1, "AT")])
    table = spec(topic).start(broker.bootstrap)
    try:
        follow(broker, topic, table)
    finally:
        table.close()


def follow(broker: EmbeddedBroker, topic: str, table) -> None:  # type: ignore[no-untyped-def]
    # Read to the end before the first lookup: the newest row per key wins.
    found = looked_up(table, [1, 2, 3])
    assert found.events.select("shop_id", "country").rows() == [(1, "AT"), (2, "FR")]
    assert all(v.startswith(f"{topic}/") for v in found.events["shop_version"])
    assert found.misses.rows() == [(2, "unknown shop 3")]

    publish(
        broker.bootstrap,
        topic,
        [row(3, "NL"), (b"2", None), (b"4", b"not json"), (b"5", b'{"shop_id": "five", "country": 1}')],
    )  # fmt: skip
    wait_until(lambda: table.updates >= 5, 30, "the updates to apply")
    after = looked_up(table, [1, 2, 3, 4, 5])
    assert after.events.select("shop_id", "country").rows() == [(1, "AT"), (3, "NL")]
    assert sorted(after.misses["reason"]) == ["unknown shop 2", "unknown shop 4", "unknown shop 5"]
    # Kept misses stay in order with null reference columns.
    kept = looked_up(table, [2, 3], keep_misses=True).events
    assert kept.select("shop_id", "country").rows() == [(2, None), (3, "NL")]


def test_an_empty_topic_leaves_the_seed(broker: EmbeddedBroker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = "test.reference.seeded"
    ensure_topics(broker.bootstrap, [topic], 1, compacted=[topic])
    seed = tmp_path / "shops.csv"
    seed.write_text("shop_id,country\n7,SE\n")
    table = TopicReference(**{**spec(topic).__dict__, "seed_csv": seed}).start(broker.bootstrap)
    try:
        found = looked_up(table, [7]).events
    finally:
        table.close()
    assert found.select("country", "shop_version").rows() == [("SE", "shops.csv")]


def test_reference_put_checks_rows_then_sends_them(broker: EmbeddedBroker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from streamlane.topicread import read_to_end

    ensure_topics(broker.bootstrap, ["pizza.stores"], 1, compacted=["pizza.stores"])
    rows = tmp_path / "stores.jsonl"
    store = {"store_id": 501, "name": "Test", "city": "Oslo", "region": "EU-North",
             "latitude": 59.9, "longitude": 10.7}  # fmt: skip
    rows.write_text(json.dumps(store) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**store, "latitude": "north"}) + "\n")

    def put(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streamlane", "reference", "put", "stores",
             "--brokers", broker.bootstrap, *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused = put("--file", str(bad))
    assert refused.returncode == 2 and "not rows of stores" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = put("--file", str(tmp_path / "nowhere.csv"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"streamlane: error: cannot read {tmp_path / 'nowhere.csv'}: no such file"
    ), missing.stderr
    sent = put("--file", str(rows), "--delete", "17")
    assert sent.returncode == 0, sent.stderr
    records = [(m.key(), m.value()) for m in read_to_end(broker.bootstrap, "pizza.stores")]
    assert records == [(b"501", json.dumps(store).encode()), (b"17", None)]


def test_looking_for_a_topic_does_not_create_it(broker: EmbeddedBroker) -> None:
    from streamlane.kafka import describe_topics, existing_partitions

    assert existing_partitions({"bootstrap.servers": broker.bootstrap}, "test.not.there") is None
    assert "test.not.there" not in dict(describe_topics(broker.bootstrap))


def test_a_reference_topic_created_later_is_followed(broker: EmbeddedBroker) -> None:
    topic = "test.reference.later"
    table = spec(topic).start(broker.bootstrap)  # no topic yet: an empty table
    try:
        assert looked_up(table, [1]).events.is_empty()
        ensure_topics(broker.bootstrap, [topic], 1, compacted=[topic])
        publish(broker.bootstrap, topic, [row(1, "PL")])
        wait_until(lambda: table.updates >= 1, 30, "the new topic to be followed")
        assert looked_up(table, [1]).events["country"].to_list() == ["PL"]
    finally:
        table.close()


def test_an_outage_while_the_topic_is_missing_is_told_in_one_line(
    fresh_broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = "test.reference.outage"
    table = spec(topic).start(fresh_broker.bootstrap)  # no topic yet: looked for again and again
    try:
        with caplog.at_level(logging.WARNING, logger="streamlane.reference"):
            os.kill(fresh_broker.pid, signal.SIGSTOP)
            try:
                wait_until(
                    lambda: any(r.name == "streamlane.reference" for r in caplog.records),
                    60,
                    "the failed look for the topic to be told",
                )
            finally:
                os.kill(fresh_broker.pid, signal.SIGCONT)
            told = [r for r in caplog.records if r.name == "streamlane.reference"]
            assert told[0].exc_info is None, "no traceback"
            assert f"cannot reach Kafka at {fresh_broker.bootstrap}" in told[0].getMessage()
            # Looked for again once Kafka answers.
            ensure_topics(fresh_broker.bootstrap, [topic], 1, compacted=[topic])
            publish(fresh_broker.bootstrap, topic, [row(1, "PL")])
            wait_until(lambda: table.updates >= 1, 60, "the topic to be followed")
    finally:
        table.close()
    assert len([r for r in caplog.records if r.name == "streamlane.reference"]) == 1


def _running_in(thread: threading.Thread, function: str) -> bool:
    """Whether `thread` is inside a call of `function` now."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


@pytest.mark.timeout(90)
def test_a_table_starting_while_kafka_does_not_answer_gives_up_once_the_process_must_stop(
    fresh_broker: EmbeddedBroker,
) -> None:
    """A flow starts its reference tables on a decode thread, which its stop waits for: a
    start that waited out its Kafka client's timeouts held a killed flow for seconds."""
    raised: list[BaseException] = []

    def start() -> None:
        try:
            spec("test.reference.stop").start(fresh_broker.bootstrap).close()
        except BaseException as exc:
            raised.append(exc)

    starting = threading.Thread(target=start, daemon=True)
    os.kill(fresh_broker.pid, signal.SIGSTOP)  # Kafka takes connections but does not answer
    try:
        starting.start()
        wait_until(lambda: _running_in(starting, "answered_within"), 30, "a wait for Kafka")
        asked = time.monotonic()
        shutdown.request_stop()
        starting.join(30)
        given_up_after = time.monotonic() - asked
    finally:
        shutdown.forget_stop_request()
        os.kill(fresh_broker.pid, signal.SIGCONT)
    assert not starting.is_alive()
    assert [type(e) for e in raised] == [shutdown.StopRequested]
    assert given_up_after < WAIT_STEP_S + 2.0
