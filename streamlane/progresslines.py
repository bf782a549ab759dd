"""What a flow or a landing has done so far, as one line, from its Prometheus metrics.

`streamlane run` scrapes its children's metrics for its display; `flow run` and `serve`
read their own and log the line every `PLAIN_PROGRESS_S` while it changes, and once when
they stop, so a flow or a warehouse running on its own (in a container, under a service
manager) says what it is doing in its log.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from streamlane.flow import Flow
from streamlane.plainprogress import PLAIN_PROGRESS_S
from streamlane.threadname import name_this_thread

log = logging.getLogger(__name__)

FLOW_COLUMNS = ("events in", "enriched", "windows", "dead letters", "late", "duplicates", "lag")
LAG_PARTITIONS_SHOWN = 4
KAFKA_DOWN = "Kafka not answering: waiting"
LANDING_PAUSED = "warehouse not writable: landing paused"


class RateMeter:
    """Per-second rates of growing totals (events read, rows landed) over about the last
    `window_s`, for progress lines: a figure a second would jump with every batch.

    Every total is taken to be 0 when the meter is made, as a process's counters start at
    0, so the first reading already has a rate. A total below the last one (a scrape that
    found no process to read) reads as 0 a second and is not kept, so the next reading's
    rate is measured from real totals.
    """

    def __init__(
        self, window_s: float = PLAIN_PROGRESS_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s, self.clock = window_s, clock
        self.started = clock()
        self.readings: dict[str, deque[tuple[float, float]]] = {}

    def per_s(self, name: str, total: float) -> float:
        """Record `total` for `name` now; return how much it grew a second over the window."""
        now = self.clock()
        readings = self.readings.setdefault(name, deque([(self.started, 0.0)]))
        if total < readings[-1][1]:
            return 0.0
        readings.append((now, total))
        # Keep the newest reading at least a window old as the base of the rate.
        while len(readings) > 2 and now - readings[1][0] >= self.window_s:
            readings.popleft()
        since, before = readings[0]
        return max(0.0, (total - before) / (now - since)) if now > since else 0.0


def with_rate(total: float, rates: RateMeter | None, name: str) -> str:
    """`1,200`, or with `rates` `1,200 (120/s)`: a total and how fast it grows."""
    if rates is None:
        return f"{total:,.0f}"
    return f"{total:,.0f} ({rates.per_s(name, total):,.0f}/s)"


def metric_totals(families: Iterable[Metric]) -> dict[str, float]:
    """Metric samples summed by name, name|topic and name|topic/partition."""
    totals: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            keys = [sample.name]
            if "topic" in sample.labels:
                keys.append(f"{sample.name}|{sample.labels['topic']}")
                if "partition" in sample.labels:
                    keys.append(
                        f"{sample.name}|{sample.labels['topic']}/{sample.labels['partition']}"
                    )
            for key in keys:
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def scrape(port: int) -> dict[str, float]:
    """A local process's metrics (`metric_totals`) from its endpoint; {} when unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return metric_totals(text_string_to_metric_families(text))


def own_metrics() -> dict[str, float]:
    """This process's metrics (`metric_totals`), read in place."""
    return metric_totals(REGISTRY.collect())


def lag_figure(metrics: dict[str, float], topic: str) -> str:
    """Total input lag and the partitions furthest behind, most first (from fetch high
    watermarks); every partition's lag is in the metrics."""
    prefix = f"streamlane_consumer_lag|{topic}/"
    per_partition = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
    total = metrics.get("streamlane_consumer_lag", 0.0)
    behind = sorted((p for p, v in per_partition.items() if v > 0), key=lambda p: -per_partition[p])
    if not behind or total == 0:
        return f"{total:,.0f}"
    shown = LAG_PARTITIONS_SHOWN
    parts = ", ".join(f"p{p}: {per_partition[p]:,.0f}" for p in behind[:shown])
    more = f", +{len(behind) - shown} more" if len(behind) > shown else ""
    return f"{total:,.0f} ({parts}{more})"


def flow_figures(
    flow: Flow, metrics: dict[str, float], rates: RateMeter | None = None
) -> list[str]:
    """A flow's figures in `FLOW_COLUMNS` order: events read (with `rates`, and how many a
    second), records written to its enriched, window and dead-letter topics, late events,
    duplicates dropped, input lag."""

    def out(topic: str) -> float:
        return metrics.get(f"streamlane_events_out_total|{topic}", 0.0)

    events_in = metrics.get("streamlane_events_in_total", 0.0)
    return [
        with_rate(events_in, rates, f"{flow.name} events in"),
        f"{out(flow.enriched.topic):,.0f}",
        f"{sum(out(w.output.topic) for w in flow.windows):,.0f}",
        f"{out(flow.dead_letter_topic):,.0f}",
        f"{metrics.get('streamlane_late_events_total', 0):,.0f}",
        f"{metrics.get('streamlane_duplicates_dropped_total', 0):,.0f}",
        lag_figure(metrics, flow.input_topic),
    ]


def kafka_down(metrics: dict[str, float]) -> bool:
    """Whether the process found Kafka not answering (`streamlane_broker_up` 0)."""
    return metrics.get("streamlane_broker_up", 1.0) == 0


def landing_paused(metrics: dict[str, float]) -> bool:
    """Whether the landing has paused because the warehouse cannot be written."""
    return metrics.get("streamlane_landing_paused", 0.0) == 1


def figures_text(flow_name: str, figures: list[str]) -> str:
    """A flow's `flow_figures` as text: `orders: events in 1,000 · enriched 980 · ...`."""
    named = zip(FLOW_COLUMNS, figures, strict=True)
    return f"{flow_name}: " + " · ".join(f"{column} {value}" for column, value in named)


def flow_line(flow: Flow, metrics: dict[str, float], rates: RateMeter | None = None) -> str:
    """`figures_text` of the flow's metrics, and a note while Kafka does not answer."""
    line = figures_text(flow.name, flow_figures(flow, metrics, rates))
    return line + f" · {KAFKA_DOWN}" if kafka_down(metrics) else line


def landed_figure(metrics: dict[str, float], rates: RateMeter | None = None) -> str:
    """Rows landed (with `rates`, and how many a second)."""
    return with_rate(metrics.get("streamlane_landed_rows_total", 0.0), rates, "landed rows")


def broker_memory_figure(mib: float) -> str:
    """The embedded broker's memory as the progress title shows it (`embedded broker 312 MiB`,
    `embedded broker 1.4 GiB`): it holds every record a run produced until it stops (it
    applies no retention), so this figure grows with everything the run makes."""
    size = f"{mib / 1024:,.1f} GiB" if round(mib) >= 1024 else f"{mib:,.0f} MiB"
    return f"embedded broker {size}"


def landing_line(metrics: dict[str, float], rates: RateMeter | None = None) -> str:
    """What the landing has done: rows landed (with `rates`, how many a second) and records
    it is behind, and a note while the warehouse cannot be written or Kafka does not answer."""
    line = (
        f"landed rows {landed_figure(metrics, rates)}"
        f" · landing lag {metrics.get('streamlane_landing_lag', 0):,.0f}"
    )
    if landing_paused(metrics):
        line += f" · {LANDING_PAUSED}"
    if kafka_down(metrics):
        line += f" · {KAFKA_DOWN}"
    return line


class ProgressLog:
    """While entered, logs `describe()` every `every_s` when it changed since the last line
    (a quiet process logs nothing more), and once more on exit, whatever the exit, unless
    nothing changed since entering (a process that stopped before doing anything, on a
    broker it could not reach, say)."""

    def __init__(self, describe: Callable[[], str], every_s: float = PLAIN_PROGRESS_S) -> None:
        self.describe, self.every_s = describe, every_s
        self.first: str | None = None
        self.last: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def tick(self) -> None:
        """Log the progress if it changed since the last line."""
        line = self.describe()
        if line != self.last:
            log.info("%s", line)
            self.last = line

    def _run(self) -> None:
        name_this_thread("progress")
        while not self._stopped.wait(self.every_s):
            self.tick()

    def __enter__(self) -> ProgressLog:
        self.first = self.describe()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._thread.join()
        line = self.describe()
        if line != self.first or self.last is not None:
            log.info("%s", line)
