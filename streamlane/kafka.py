"""Kafka clients: configuration, reachability and topic administration."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError as KafkaPythonError
from kafka.errors import TopicAlreadyExistsError

from streamlane import shutdown
from streamlane.clientlog import RepeatsHeldBack
from streamlane.errors import UserError

log = logging.getLogger(__name__)
"""Where every Kafka client of ours logs (each kind of line at most once a minute)."""
log.addFilter(RepeatsHeldBack())

T = TypeVar("T")

REACH_TIMEOUT_S = 6.0

# The embedded broker has no log retention settings of its own: say them explicitly.
TOPIC_CONFIG = {"retention.ms": "-1", "cleanup.policy": "delete"}


def _topic_config(compacted: bool) -> dict[str, str]:
    return {**TOPIC_CONFIG, "cleanup.policy": "compact"} if compacted else dict(TOPIC_CONFIG)


def admin_config(brokers: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for an admin client."""
    return {"bootstrap.servers": brokers, "logger": log, **(extra or {})}


def consumer_config(brokers: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for a consumer that is assigned partitions (offsets kept by us)."""
    return {
        "bootstrap.servers": brokers,
        "group.id": "streamlane-assigned",  # required by librdkafka, unused with assign()
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        # A caught-up reader should not wait half a second (the default) for a fetch to fill.
        "fetch.wait.max.ms": 50,
        # A consumer of several partitions reads much faster on the embedded broker with
        # large fetches and prefetch queue.
        "fetch.max.bytes": 64 * 1024 * 1024,
        "queued.max.messages.kbytes": 64 * 1024,
        "logger": log,
        **(extra or {}),
    }


QUICK_REFETCH_CONFIG = {"fetch.queue.backoff.ms": 10}
"""Fetch again 10 ms after the prefetch queue was full, not after the client's default
second. A reader that takes what its queue holds faster than that (the landing, a flow's
partition readers in a backlog, the benchmark's ceiling) otherwise sits waiting for Kafka
for the rest of each second: in a backlog, a flow's largest partition, read alone once the
others were done, delivered one batch a second."""


CAUGHT_UP_FETCH_WAIT_CONFIG = {"fetch.wait.max.ms": 200}
"""How long a long-running reader (a flow's partition reader, the landing) lets the broker
hold a fetch that finds nothing new. The embedded broker holds such a fetch for its whole
wait, and each fetch costs it more the more batches the partition holds. At a steady 20,000
events/s (`bench.freshness`), readers waiting 50 ms kept it about half again as busy as
with 200 ms, and with the cores short of room the time to visible had the longer tail; a
backlog reads as fast with either (a fetch that finds records returns them at once). A
record that arrives while a fetch is held waits for the rest of it, so on the embedded
broker the median time from produce to visible is up to a tenth of a second longer, and a
reader assigned partitions anew waits for its held fetch first; a Kafka broker answers as
soon as records arrive. Tools that read a topic once keep the shorter wait of
`consumer_config`, so they stop soon after its end."""


LANDING_READER_CONFIG = {**QUICK_REFETCH_CONFIG, **CAUGHT_UP_FETCH_WAIT_CONFIG}
"""The landing's consumer of every output topic (see `QUICK_REFETCH_CONFIG` and
`CAUGHT_UP_FETCH_WAIT_CONFIG`)."""


PARTITION_READER_CONFIG = {
    "fetch.max.bytes": 2 * 1024 * 1024,
    "max.partition.fetch.bytes": 2 * 1024 * 1024,
    "queued.max.messages.kbytes": 6 * 1024,
    "queued.min.messages": 100_000,
    **QUICK_REFETCH_CONFIG,
    **CAUGHT_UP_FETCH_WAIT_CONFIG,
}
"""A consumer of one partition in a flow: the flow reads each partition in turn and
processes a poll before the next. It holds at most 8 MiB of records ahead of the flow: a
queue of 6 MiB, refilled by fetches of 2 MiB whenever it holds less (quickly, see
`QUICK_REFETCH_CONFIG`), which keeps a backlog's polls full while bounding what the flow
holds in memory. Refilled only once empty, the queue would sit on records for seconds while
more arrived: the partition's lag is computed from the high watermark of the last fetch
response, and a reader whose queue never emptied during a burst (small polls, or a slow
flow) kept reporting the watermark from before the burst, a fraction of the real backlog.
Fetches of the queue's full size on top of it raised the flow's peak memory in `bench.run`
by about a quarter. Fetching whenever the queue is not full means one small fetch after
another in a steady stream: the embedded broker used 0.27 cores in `bench.freshness` at
20,000 events/s, against 0.23 before, and the freshness did not change. The client's wait
for a minimum fetch size, which would have spaced those fetches, cost the broker more than
the fetches it saved."""


def producer_config(brokers: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka settings for an idempotent, batching producer with a bounded queue."""
    return {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 200_000,
        "compression.type": "lz4",
        "logger": log,
        **(extra or {}),
    }


WAIT_STEP_S = 0.5
"""How long one wait of a Kafka client (for deliveries, for an answer) lasts at most. The
client waits outside the interpreter, and holds an exception raised in a callback it runs
(an interrupt landing in its log callback, say) until the wait it ran in ends: one long
wait would hold a stop request, or its interrupt, for its whole timeout."""


def flush_within(producer: Producer, timeout_s: float) -> int:
    """Wait up to `timeout_s` for every record queued in `producer` to be delivered (or to
    fail, which its delivery callback is told), and return how many are still waiting.
    Waits in steps of at most `WAIT_STEP_S`, so an interrupt is raised within one step."""
    deadline = time.monotonic() + timeout_s
    remaining = len(producer)
    while remaining and (left := deadline - time.monotonic()) > 0:
        remaining = producer.flush(min(WAIT_STEP_S, left))
    return remaining


def answered_within(ask: Callable[[float], T], timeout_s: float) -> T:
    """What `ask(step)` (a Kafka client call given a timeout) returns, asked again in steps
    of at most `WAIT_STEP_S` until it answers: its KafkaException is raised once `timeout_s`
    has passed, and `shutdown.StopRequested` once this process is asked to stop (looked at
    before each step). A stop thus ends the wait within a step, also on a thread the stop
    waits for (a flow's decode thread starting a reference table, say), where one long call
    held a killed flow for its whole timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        shutdown.give_up_if_stopping()
        step_ends = min(time.monotonic() + WAIT_STEP_S, deadline)
        try:
            return ask(max(step_ends - time.monotonic(), 0.0))
        except KafkaException:
            if time.monotonic() >= deadline:
                raise
        # A call refused at once is asked again after its step, not in a busy loop.
        time.sleep(max(step_ends - time.monotonic(), 0.0))


def check_reachable(brokers: str, timeout_s: float = REACH_TIMEOUT_S) -> str:
    """Return the cluster id, or raise UserError naming the address if Kafka does not answer."""
    client = AdminClient(admin_config(brokers, {"socket.connection.setup.timeout.ms": 3000}))
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise UserError(
            f"cannot reach Kafka at {brokers} within {timeout_s:.0f} s ({exc.args[0].str()})"
        ) from None
    return str(metadata.cluster_id or "")


def partitions_of(config: dict[str, Any], topic: str) -> list[int]:
    """Partition indexes of an existing topic; UserError if it does not exist."""
    found = existing_partitions(config, topic)
    if found is None:
        raise UserError(f"topic {topic!r} does not exist on {config['bootstrap.servers']}")
    return found


def existing_partitions(config: dict[str, Any], topic: str) -> list[int] | None:
    """Partition indexes of a topic, or None when it does not exist (yet); UserError when
    Kafka does not answer."""
    return partitions_by_topic(config, [topic])[topic]


def partitions_by_topic(
    config: dict[str, Any], topics: Collection[str]
) -> dict[str, list[int] | None]:
    """Partition indexes of each of `topics`, None for one that does not exist (yet), from
    one listing; UserError naming the topics when Kafka does not answer within
    `REACH_TIMEOUT_S`, `shutdown.StopRequested` when this process is asked to stop meanwhile.

    All topics are listed: asking for some by name lets a broker that creates topics on
    first use (the embedded one does) create them, with its default partition count.
    """
    try:
        client = AdminClient(admin_config(config["bootstrap.servers"], config))
        metadata = answered_within(lambda step: client.list_topics(timeout=step), REACH_TIMEOUT_S)
    except KafkaException as exc:
        names = ", ".join(repr(t) for t in sorted(topics))
        raise UserError(
            f"cannot reach Kafka at {config['bootstrap.servers']} to list the partitions of "
            f"{names} ({exc.args[0].str()})"
        ) from None
    found: dict[str, list[int] | None] = {}
    for topic in topics:
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            found[topic] = None
        else:
            found[topic] = sorted(info.partitions)
    return found


def _admin(brokers: str) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=brokers.split(","), request_timeout_ms=int(REACH_TIMEOUT_S * 1000)
        )
    except KafkaPythonError as exc:
        raise UserError(f"cannot reach Kafka at {brokers}: {exc}") from None


def ensure_topics(
    brokers: str, topics: list[str], partitions: int, compacted: Collection[str] = ()
) -> list[str]:
    """Create the topics that do not exist yet (with `partitions` each); return the created ones.

    Topics in `compacted` (reference tables) keep the newest record per key; the others
    keep every record.
    """
    admin = _admin(brokers)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        created = []
        for topic in wanted:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic, partitions, 1, topic_configs=_topic_config(topic in compacted)
                        )
                    ]
                )
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def describe_topics(brokers: str) -> list[tuple[str, int]]:
    """(name, partition count) of every topic, sorted by name."""
    admin = _admin(brokers)
    try:
        names = sorted(t for t in admin.list_topics() if not t.startswith("__"))
        if not names:
            return []
        return [(d["name"], len(d["partitions"])) for d in admin.describe_topics(names)]
    finally:
        admin.close()
