"""A flow catching up on input partitions of unequal size still drops repeats.

Two partitions cover the same hour of event time, one with four times the records of the
other, and an order repeated in the larger one a few batches after its first copy. Read
at the same pace, the smaller partition would race ahead in event time, and a dedupe
horizon that followed the newest event would pass the first copy before its repeat
arrived. Read aligned in event time (`--max-drift`), the partitions stay within the
drift plus one batch's span; and however far apart they are (an unbounded drift here),
the horizon ends no later than the slowest partition's newest event, so the repeat is
dropped either way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from tests.helpers import Processes, wait_until
from tests.unequal_partitions import orders_over_an_hour, produce_to_partitions

ORDERS = 5000
REPEATED = 400
"""Position in the larger partition of the order sent twice (about six minutes in)."""
REPEAT_AFTER = 300
"""Records of that partition between the order and its repeat: three of its batches."""


def publish_unequal_partitions(brokers: str) -> int:
    """The orders over two partitions (four fifths in the first), each spanning one hour,
    with one order of the first repeated; how many records were produced."""
    larger, smaller = orders_over_an_hour(23, (ORDERS * 4 // 5, ORDERS - ORDERS * 4 // 5))
    larger.insert(REPEATED + REPEAT_AFTER, larger[REPEATED])
    return produce_to_partitions(brokers, orders.FLOW.input_topic, [larger, smaller])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("max_drift", ["60", "1e9"], ids=["aligned", "unbounded"])
def test_a_flow_catching_up_on_unequal_partitions_drops_the_repeat(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path, max_drift: str
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 2)
    produced = publish_unequal_partitions(brokers)
    port = free_port()
    flow = processes.start(
        "flow", "flow", "run", "orders", "--brokers", brokers,
        "--recovery-dir", str(tmp_path / "recovery"), "--max-poll", "100",
        "--dedupe-horizon", "900", "--max-drift", max_drift, "--metrics-port", str(port),
    )  # fmt: skip

    def read_all() -> bool:
        assert flow.poll() is None, processes.log("flow")
        return scrape(port).get("streamlane_events_in_total", 0.0) >= produced

    wait_until(read_all, 180, f"the flow to read all {produced:,} records", every_s=0.5)
    metrics = scrape(port)
    assert metrics.get("streamlane_duplicates_dropped_total") == 1.0, processes.log("flow")
    assert metrics.get("streamlane_late_events_total", 0.0) == 0.0
