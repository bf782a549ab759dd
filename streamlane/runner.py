"""`streamlane run`: everything a local pipeline needs, supervised, with live progress.

Starts the embedded broker when no brokers are given, creates the topics, then
the warehouse (landing + queries), the chosen flows (the orders flow unless
told otherwise) and, with `--demo`, each flow's generator, each as a child
process with its log in `<data>/logs/`. Progress
comes from the children's metrics endpoints. Ctrl-C, SIGTERM or SIGHUP (its terminal
closed) stops the children in order (generator, flow, warehouse, broker), then removes the
recovery stores of flows that read the embedded broker; a child that dies on
its own stops the run with a one-line error: the child's own error line, when it
gave one, and its log. On Linux the children also stop when run is killed (`lifeline`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamlane.broker import CLUSTER_ID_PREFIX, EmbeddedBroker
from streamlane.errors import UserError, make_folder
from streamlane.flow import Flow, load_flow
from streamlane.generator import generator_for
from streamlane.kafka import check_reachable, ensure_topics
from streamlane.lifeline import stop_with_parent
from streamlane.plainprogress import PlainProgress
from streamlane.ports import cluster_port, free_port
from streamlane.procmem import memory_mib
from streamlane.progresslines import (
    FLOW_COLUMNS,
    KAFKA_DOWN,
    LANDING_PAUSED,
    RateMeter,
    broker_memory_figure,
    figures_text,
    flow_figures,
    kafka_down,
    landed_figure,
    landing_paused,
    scrape,
)
from streamlane.query import endpoint_file
from streamlane.settings import FlowSettings
from streamlane.storelock import remove_abandoned

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


WAREHOUSE_THREADS_ENV = "STREAMLANE_WAREHOUSE_THREADS"


def warehouse_threads_beside_flows(cores: int | None = None) -> int:
    """DuckDB's threads for a warehouse that shares its machine with the flows and the broker,
    as under `streamlane run`: one fewer than `cores` (the machine's when None), and at least
    one.

    DuckDB sizes its pool for a machine of its own. Beside a flow at a steady rate, its
    threads took the cores the flow and the broker were waiting for: on two cores, at 20,000
    events/s, rows became visible later with two threads than with one, and the landing's
    writes and checkpoints took longer (see the README's "Benchmark"). A warehouse on a
    machine of its own (`streamlane serve`) keeps one thread per core.
    """
    return max(1, (cores if cores is not None else os.cpu_count() or 1) - 1)


def warehouse_threads_under_run() -> str:
    """The DuckDB threads `streamlane run` gives its warehouse: `STREAMLANE_WAREHOUSE_THREADS`
    as set, else `warehouse_threads_beside_flows()`."""
    return os.environ.get(WAREHOUSE_THREADS_ENV) or str(warehouse_threads_beside_flows())


def warehouse_thread_args() -> list[str]:
    """`serve`'s `--threads` for a warehouse beside the flows (`warehouse_threads_beside_flows`),
    or none when `STREAMLANE_WAREHOUSE_THREADS` sets them, which `serve` reads itself."""
    if os.environ.get(WAREHOUSE_THREADS_ENV):
        return []
    return ["--threads", str(warehouse_threads_beside_flows())]


@dataclass
class RunSettings:
    """What `streamlane run` starts."""

    flow: FlowSettings
    warehouse: Path
    data_dir: Path
    partitions: int = 4
    processes: int = 1
    demo: bool = False
    demo_rate: float = 200.0
    embedded: bool = False
    pg_host: str = "127.0.0.1"
    pg_port: int = 5433
    quack_port: int = 9494
    flows: tuple[str, ...] = ("orders",)
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int | None
    flow: str | None = None
    """The flow a flow process runs (None for the warehouse and generators)."""

    def error_line(self) -> str | None:
        """The one-line error the child stopped with (`streamlane: error: ...`, last in its
        log, without that prefix), or None when it said none."""
        prefix = "streamlane: error: "
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                tail = log.read().decode("utf-8", "replace")
        except OSError:
            return None
        said = [line for line in tail.splitlines() if line.startswith(prefix)]
        return said[-1][len(prefix) :] if said else None


class Pipeline:
    """A supervised local pipeline; use `run()` to start it and block until stopped."""

    def __init__(self, settings: RunSettings, console: Console | None = None) -> None:
        self.settings = settings
        self.console = console or Console(stderr=True)
        if not self.console.is_terminal:
            # Lines in a log are not cut at an assumed width of 80 columns.
            self.console.soft_wrap = True
        self.children: list[Child] = []
        self.broker: EmbeddedBroker | None = None
        self.stopping = False
        self.started = time.monotonic()
        self.rates = RateMeter()
        self.announced = False

    def _spawn(
        self, name: str, args: list[str], metrics: bool = True, flow: str | None = None
    ) -> Child:
        logs = self.settings.data_dir / "logs"
        make_folder(logs, "log folder")
        log_path = logs / f"{name}.log"
        port = free_port() if metrics else None
        cmd = [sys.executable, "-m", "streamlane", *args]
        if port:
            cmd += ["--metrics-port", str(port)]
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=stop_with_parent(),
            )
        child = Child(name, process, log_path, port, flow)
        self.children.append(child)
        return child

    def start(self) -> None:
        """Start broker (if embedded), topics, warehouse, flow and the demo generator."""
        s = self.settings
        # What the command line alone decides is checked before anything starts.
        if s.partitions % s.processes:
            raise UserError(
                f"{s.processes} flow processes cannot share {s.partitions} partitions evenly; "
                f"use a process count that divides {s.partitions}"
            )
        flows = [load_flow(name) for name in s.flows]
        make_folder(s.data_dir, "data folder")
        make_folder(s.warehouse.parent, "warehouse's folder")
        abandoned = self._remove_embedded_stores()
        if abandoned:
            self.console.print(
                f"removed {len(abandoned)} recovery store(s) of embedded brokers gone since "
                f"(from runs that were killed) in {self._recovery_folder}"
            )
        brokers = s.flow.brokers
        if not brokers:
            self.broker = EmbeddedBroker(log_path=s.data_dir / "broker.log").start()
            brokers = self.broker.bootstrap
            self.console.print(f"embedded broker on {brokers}")
        cluster_id = check_reachable(brokers)
        created = ensure_topics(
            brokers,
            [t for f in flows for t in f.topics],
            s.partitions,
            compacted={t for f in flows for t in f.reference_topics},
        )
        if created:
            self.console.print(f"created topics: {', '.join(created)}")
        common = ["--brokers", brokers]
        self._spawn(
            "warehouse",
            [
                "serve", *common, "--warehouse", str(s.warehouse),
                "--pg-host", s.pg_host, "--pg-port", str(s.pg_port),
                "--quack-port", str(s.quack_port),
                "--broker-timeout", str(s.flow.broker_timeout_s),
                *warehouse_thread_args(),
            ],
        )  # fmt: skip
        for flow in flows:
            self._start_flow(flow, common, cluster_id)
        self.console.print(
            f"flows: {', '.join(s.flows)}" + (" with demo generators" if s.demo else "")
        )
        self.console.print(
            f'warehouse {s.warehouse}; query it with: streamlane query "SELECT ..." '
            f"--warehouse {s.warehouse}; logs in {s.data_dir / 'logs'}; Ctrl-C to stop"
        )

    def _start_flow(self, flow: Flow, common: list[str], cluster_id: str) -> None:
        s = self.settings
        f = s.flow
        flow_args = [
            "flow", "run", flow.name, *common,
            "--recovery-dir", str(self._recovery_folder / f"{flow.name}-{cluster_id}"),
            "--lateness", str(f.lateness_s),
            "--idle-timeout", str(f.idle_timeout_s),
            "--dedupe-horizon", str(f.dedupe_horizon_s),
            "--max-drift", str(f.max_drift_s),
            "--broker-timeout", str(f.broker_timeout_s),
        ]  # fmt: skip
        if s.processes == 1:
            self._spawn(f"flow-{flow.name}", flow_args, flow=flow.name)
        else:
            addresses = ";".join(f"127.0.0.1:{cluster_port()}" for _ in range(s.processes))
            for index in range(s.processes):
                self._spawn(
                    f"flow-{flow.name}-{index}",
                    [*flow_args, "--process-id", str(index), "--addresses", addresses],
                    flow=flow.name,
                )
        if s.demo:
            generator = generator_for(flow.name)
            seed = str(time.time_ns() % 2**31)
            self._spawn(
                f"generator-{flow.name}",
                ["generate", "--flow", flow.name, *common,
                 "--rate", str(generator.demo_rate or s.demo_rate),
                 "--backfill", str(generator.demo_backfill_s), "--seed", seed],
                metrics=False,
            )  # fmt: skip

    def _warehouse(self) -> Child | None:
        return next((c for c in self.children if c.name == "warehouse"), None)

    def _status(self) -> tuple[str, list[tuple[str, list[str]]]]:
        """The progress title (run time, Kafka and warehouse state, rows landed, the embedded
        broker's memory) and, per flow, its figures in `FLOW_COLUMNS` order, from the
        children's metrics."""
        wh = self._warehouse()
        per_flow: dict[str, dict[str, float]] = {}
        down = False
        for child in self.children:  # a cluster's processes each count their own partitions
            if child.flow is None or not child.metrics_port:
                continue
            scraped = scrape(child.metrics_port)
            down |= kafka_down(scraped)
            m = per_flow.setdefault(child.flow, {})
            for key, value in scraped.items():
                m[key] = m.get(key, 0.0) + value
        w = scrape(wh.metrics_port) if wh and wh.metrics_port else {}
        down |= kafka_down(w)
        title = f"streamlane · {time.monotonic() - self.started:,.0f}s"
        if down:
            title += f" · {KAFKA_DOWN} (see logs)"
        if landing_paused(w):
            title += f" · {LANDING_PAUSED}"
        title += f" · landed rows {landed_figure(w, self.rates)}"
        broker_mib = memory_mib(self.broker.pid) if self.broker else None
        if broker_mib is not None:
            title += f" · {broker_memory_figure(broker_mib)}"
        rows = [
            (name, flow_figures(load_flow(name), m, self.rates)) for name, m in per_flow.items()
        ]
        return title, rows

    def _progress(self) -> Table:
        title, rows = self._status()
        table = Table(title=title, expand=False)
        table.add_column("flow")
        for column in FLOW_COLUMNS:
            table.add_column(column, justify="right")
        for name, figures in rows:
            table.add_row(name, *figures)
        return table

    def _progress_lines(self) -> str:
        """The progress as plain lines, for output that is not a terminal: the title, then
        one line per flow."""
        title, rows = self._status()
        flows = [f"  {figures_text(name, figures)}" for name, figures in rows]
        return "\n".join([title, *flows])

    def _check_children(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None and not (child.name.startswith("generator") and code == 0):
                said = child.error_line()
                raise UserError(
                    f"{child.name} exited with status {code}"
                    + (f": {said}" if said else "")
                    + f" (see {child.log_path})"
                )

    def run(self) -> None:
        """Start, show progress until Ctrl-C, SIGTERM, SIGHUP or a child failure, then stop
        everything."""
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # A closed terminal or dropped connection: the children, in sessions of their own,
        # do not hear it, and would run on without run if it just ended.
        signal.signal(signal.SIGHUP, signal.default_int_handler)
        try:
            self.start()
            if self.console.is_terminal:
                self._show_live()
            else:
                self._write_progress()
        except KeyboardInterrupt:
            self.console.print("stopping…")
            killed = self.stop()
            self.console.print(
                f"stopped (killed after {STOP_TIMEOUT_S:.0f} s: {', '.join(killed)})"
                if killed
                else "stopped"
            )
        finally:
            self.stop()

    def _announce_endpoint(self) -> None:
        """Once the warehouse serves, say where PostgreSQL clients (psql, Grafana, BI tools)
        connect and where the password is: the port may have been chosen for it (0)."""
        if self.announced:
            return
        warehouse = self._warehouse()
        try:
            served = json.loads(endpoint_file(self.settings.warehouse).read_text())
        except (OSError, ValueError):
            return
        if warehouse is None or served.get("pid") != warehouse.process.pid:
            return  # not yet written, or left by an earlier warehouse process
        self.console.print(
            f"PostgreSQL clients (psql, Grafana): {served['pg_url']} ({served['pg_password_from']})"
        )
        self.announced = True

    def _supervise(self, refresh: Callable[[], None]) -> None:
        """Every second: stop on a failed child, announce the endpoint once it serves, and
        `refresh` the progress; until interrupted."""
        while True:
            self._check_children()
            self._announce_endpoint()
            time.sleep(1)
            refresh()

    def _show_live(self) -> None:
        """Redraw the progress table every second until interrupted or a child fails."""
        live = Live(self._progress(), console=self.console, refresh_per_second=2, transient=False)
        with live:
            self._supervise(lambda: live.update(self._progress()))

    def _write_progress(self) -> None:
        """Write the progress as plain lines every `PLAIN_PROGRESS_S`, and once more when
        interrupted or a child fails."""
        try:
            self._supervise(PlainProgress(self._progress_lines, self.console.print).tick)
        finally:
            self.console.print(self._progress_lines())

    def stop(self) -> list[str]:
        """Stop every child within the stop timeout, then the embedded broker, and remove the
        recovery stores of the flows that read it.

        All children are asked at once (SIGINT): the flow finishes its batch and snapshots,
        the warehouse commits its batch, so none waits for another. A child still running
        at the deadline is killed; Kafka and the last snapshot keep what it had in hand.
        Returns the names of the children it killed.
        """
        killed: list[str] = []
        running = [c for c in reversed(self.children) if c.process.poll() is None]
        for child in running:
            child.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in running:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", child.name, STOP_TIMEOUT_S)
                child.process.kill()
                child.process.wait()
                killed.append(child.name)
        self.children.clear()
        if self.broker:
            self.broker.stop()
            self.broker = None
        # Only once every flow process has exited: each held its store until then.
        self._remove_embedded_stores()
        return killed

    @property
    def _recovery_folder(self) -> Path:
        return self.settings.data_dir / "recovery"

    def _remove_embedded_stores(self) -> list[Path]:
        """Remove the recovery stores of embedded brokers that no flow process holds: the
        broker keeps topics in memory, so nothing resumes from them once it is gone (this
        run's, once its flows have exited, and those of runs that were killed)."""
        return remove_abandoned(self._recovery_folder, f"*-{CLUSTER_ID_PREFIX}*")
