"""A burst from the generator grows Kafka lag, not the flow's memory, and the lag drains after it.

The flow reads small polls here (`--max-poll`) so that it is slower than the burst (20,000
events/s): 100 records a poll keep it well below that, where 200 left too thin a margin on
a slower machine. Lag must rise while the generator bursts, and the flow's resident memory
must stay under its bound the whole time, because records wait in Kafka, not in the flow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import orders
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from streamlane.progresslines import scrape
from tests.helpers import Processes, memory_mib, wait_until

RSS_BOUND_MIB = 1024
LAG_SEEN = 5_000


@pytest.mark.timeout(300)
def test_burst_grows_lag_not_memory_and_lag_drains(
    fresh_broker: EmbeddedBroker, processes: Processes, tmp_path: Path
) -> None:
    brokers = fresh_broker.bootstrap
    ensure_topics(brokers, orders.FLOW.topics, 4)
    port = free_port()
    flow = processes.start(
        "flow", "flow", "run", "orders", "--brokers", brokers,
        "--recovery-dir", str(tmp_path / "recovery"), "--max-poll", "100",
        "--metrics-port", str(port),
    )  # fmt: skip
    wait_until(lambda: scrape(port), 60, "the flow's metrics")
    generator_port = free_port()
    generator = processes.start(
        "generate", "generate", "--brokers", brokers, "--seed", "5", "--rate", "200",
        "--burst", "100", "--burst-after", "2", "--burst-for", "6",
        "--metrics-port", str(generator_port),
    )  # fmt: skip

    peak_rss = 0.0
    peak_lag = 0.0

    def observe() -> float:
        nonlocal peak_rss, peak_lag
        assert flow.poll() is None, processes.log("flow")
        assert generator.poll() is None, processes.log("generate")
        peak_rss = max(peak_rss, memory_mib(flow.pid))
        lag = scrape(port).get("streamlane_consumer_lag", 0.0)
        peak_lag = max(peak_lag, lag)
        return lag

    wait_until(lambda: observe() >= LAG_SEEN, 90, f"input lag to pass {LAG_SEEN:,} records")
    consumed_at_peak = scrape(port).get("streamlane_events_in_total", 0.0)
    # After the burst the generator is back at its base rate, which the flow outpaces.
    wait_until(lambda: observe() < 500, 180, "the lag to drain after the burst", every_s=0.5)
    consumed = scrape(port)["streamlane_events_in_total"]
    assert consumed > consumed_at_peak + LAG_SEEN
    # The generator counts what it produced: the flow cannot have read more than that.
    produced = scrape(generator_port).get(f"streamlane_events_out_total|{orders.FLOW.input_topic}")
    assert produced is not None and produced >= consumed
    assert peak_rss < RSS_BOUND_MIB, f"flow RSS reached {peak_rss:.0f} MiB during the burst"
    assert peak_lag >= LAG_SEEN
    print(f"burst: peak input lag {peak_lag:,.0f} records, peak flow RSS {peak_rss:.0f} MiB")
