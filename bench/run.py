"""The project's benchmark: the orders flow and the landing against a bare consume+decode ceiling.

    python -m bench.run --events 1000000

Generates the events (1% duplicates, 1% malformed) into a fresh embedded broker,
measures a bare confluent-kafka consumer that only JSON-decodes them into Arrow
(the ceiling, before and after the flow), then runs the orders flow and the landing
as real processes and reads their progress from their metrics. CPU seconds and peak
RSS are those of the flow and landing processes. Results print as a table and go to
bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.baselines.bare_consumer import consume_and_decode
from bench.profile import Sampler, sampler_path
from flows import orders
from sinks.warehouse import logged_bytes
from streamlane.broker import EmbeddedBroker
from streamlane.collector import collect_rarely
from streamlane.generator import GeneratorSettings, OrderGenerator
from streamlane.kafka import ensure_topics
from streamlane.paths import REFERENCE_DIR
from streamlane.ports import cluster_port, free_port
from streamlane.procmem import cpu_seconds, cpu_seconds_by_thread, memory_mib
from streamlane.progresslines import scrape
from streamlane.publish import publish
from streamlane.query import run_sql
from streamlane.runner import (
    WAREHOUSE_THREADS_ENV,
    warehouse_thread_args,
    warehouse_threads_under_run,
)
from streamlane.settings import FlowSettings

RESULTS = Path(__file__).parent / "results"
CHILDREN: list[subprocess.Popen[bytes]] = []  # stopped by main() however it ends


def child(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A streamlane command with its metrics on a free port, in its own process group."""
    port = free_port()
    command = [sys.executable, "-m", "streamlane", *args, "--metrics-port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    CHILDREN.append(proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes], *, signalled: bool = False) -> int:
    """Stop a child's process group: SIGINT (a clean stop; not sent again when `signalled`,
    as a second one interrupts the stop), then SIGKILL if it has not exited within a
    minute. Returns the child's peak RSS in MiB (its own `VmHWM`, the benchmark holding
    every generated event), read until it exits (its clean stop included), or 0 if it had
    already ended."""
    peak = 0.0
    if proc.poll() is None:
        peak = memory_mib(proc.pid, "VmHWM") or 0.0
        if not signalled:
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            peak = max(peak, memory_mib(proc.pid, "VmHWM") or 0.0)
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return round(peak)


def stop_together(procs: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    """Stop children as `stop` does, every one signalled before any is waited for (a
    cluster's process finishes its last epoch only with the others); each one's peak RSS in
    MiB, read before any was signalled as well (0 for one that had already ended)."""
    running = [proc.poll() is None for proc in procs]
    peaks = [
        (memory_mib(proc.pid, "VmHWM") or 0.0) if alive else 0.0
        for proc, alive in zip(procs, running, strict=True)
    ]
    for proc, alive in zip(procs, running, strict=True):
        if alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
    return [
        round(max(peak, stop(proc, signalled=True)))
        for proc, peak in zip(procs, peaks, strict=True)
    ]


def with_children_stopped(measure: Callable[[], dict[str, object]]) -> dict[str, object]:
    """The figures `measure()` returns; every child it started is stopped however it ends."""
    try:
        return measure()
    finally:
        stop_together(CHILDREN)


@contextlib.contextmanager
def work_directory(prefix: str) -> Iterator[Path]:
    """A new directory for a run's brokers, flows and warehouses. However the run ends, only
    their logs stay in it afterwards: a million-event run leaves about half a gigabyte of
    recovery stores and warehouse files, and every run makes a directory of its own."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    except BaseException:
        print(f"benchmark: logs in {work}", file=sys.stderr)
        raise
    finally:
        for path in sorted(work.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):  # left where it still holds a log
                    path.rmdir()
            elif path.suffix != ".log":
                path.unlink(missing_ok=True)


def summed(figures: Iterable[dict[str, float]]) -> dict[str, float]:
    """Each figure added up over `figures` (a flow run as a cluster counts in every process)."""
    total: dict[str, float] = {}
    for one in figures:
        for name, value in one.items():
            total[name] = total.get(name, 0.0) + value
    return total


def scrape_all(ports: Sequence[int]) -> dict[str, float]:
    """The metrics of the processes answering on `ports`, each one summed over them."""
    return summed(scrape(port) for port in ports)


def wait_metric(ports: Sequence[int], name: str, target: float, timeout_s: float) -> float:
    """Seconds until metric `name` (summed over `ports`) reaches `target` (to within one poll).

    Polled four times a second: each scrape costs the measured process about 20 ms of
    CPU, so polling faster would slow down what it measures.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if scrape_all(ports).get(name, 0) >= target:
            return time.perf_counter() - started
        time.sleep(0.25)
    raise SystemExit(f"benchmark: {name} did not reach {target} within {timeout_s} s")


def steady_rate(
    ports: Sequence[int],
    name: str,
    target: float,
    timeout_s: float,
    processes: dict[str, list[int]],
) -> tuple[float, dict[str, float]]:
    """Per second, how fast counter `name` went from its first reading after it started to
    `target`, and how many cores each group of `processes` (by name) kept busy
    meanwhile: what a process did before that reading (its first batch) is left out of the
    count, the time and the CPU, so a large first batch does not inflate the rate."""
    wait_metric(ports, name, 1, 120)
    first = scrape_all(ports).get(name, 0)
    cpu_from = cpu_used(processes)
    if first >= target:
        raise SystemExit(
            f"benchmark: {name} reached {target:,.0f} in its first batch; measure more events"
        )
    seconds = wait_metric(ports, name, target, timeout_s)
    cpu_to = cpu_used(processes)
    cores = {who: (cpu_to[who] - cpu_from[who]) / seconds for who in processes}
    return (target - first) / seconds, cores


def own_cpu_s() -> float:
    """CPU seconds this process has used (the ceiling's consumer runs in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of_children() -> float:
    """CPU seconds of the children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_used(processes: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes."""
    return {name: sum(cpu_seconds(pid) or 0.0 for pid in pids) for name, pids in processes.items()}


def utc_stamp() -> str:
    """The current UTC time as result files are named by (20261202T152403Z)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def save_result(result: dict[str, object], stem: str) -> Path:
    """Write a benchmark's figures to bench/results/<stem>.json; the file written."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def print_figures(result: dict[str, object]) -> None:
    """One `name  value` line per figure, names aligned."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample every thread of the flow and the landing until their timed part ends, "
        "print where each spends its time and keep the stacks (bench/results/*.folded)",
    )
    parser.add_argument("--workers", type=int, default=1, help="flow worker threads per process")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="flow processes, run as one cluster on this machine (the figures are the "
        "cluster's: events summed, CPU of every process, the largest process's peak RSS; "
        "--profile samples the first)",
    )
    parser.add_argument(
        "--max-poll",
        type=int,
        default=FlowSettings.batch_size,
        help="the flow's --max-poll: most records per partition poll, one columnar batch",
    )
    parser.add_argument(
        "--stores", type=int, default=0, help="distinct stores (default: the shipped list)"
    )
    parser.add_argument(
        "--event-rate",
        type=float,
        default=40.0,
        help="orders per second of event time at the daily peak (sets how much event time "
        "the events span, so how many ids the dedupe horizon holds)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the per-event bytewax baseline"
    )
    parser.add_argument(
        "--flow-only", action="store_true", help="measure the ceiling and the flow, nothing else"
    )
    args = parser.parse_args()
    if args.processes < 1 or args.workers < 1 or args.partitions % (args.processes * args.workers):
        parser.error("--processes times --workers must divide --partitions (the flow refuses "
                     "workers owning unequal numbers of partitions)")  # fmt: skip
    stamp = utc_stamp()
    RESULTS.mkdir(exist_ok=True)  # profiles are written there during the run
    if args.profile:
        sampler_path()  # fails before the run when the profiler is missing
    with work_directory("streamlane-bench-") as work:
        result = with_children_stopped(lambda: measure(args, work, stamp))
    out = save_result(result, stamp)
    print_figures(result)
    print()
    for line in target_table(result):
        print(line)
    print(f"(written to {out}; logs in {work})")


TARGETS = (
    ("flow_ratio_to_ceiling", ">=", 0.6),
    ("landing_rows_per_s", ">=", 200_000),
    ("landing_rows_per_s_checkpointed", ">=", 200_000),
    ("flow_plus_landing_events_per_s", ">=", 100_000),
    ("flow_peak_rss_mib", "<", 1024),
)
"""The throughput and memory targets on the project's 2-core reference machine."""


def target_table(result: dict[str, object]) -> list[str]:
    """One line per target: the measured figure, the target and whether it is met."""
    lines = [f"{'measure':<32} {'result':>10} {'target':>12}  met  (cores: {result['cores']})"]
    for name, op, goal in TARGETS:
        if name not in result:
            continue
        value = float(result[name])  # type: ignore[arg-type]
        met = value >= goal if op == ">=" else value < goal
        lines.append(f"{name:<32} {value:>10,.6g} {op + f'{goal:,}':>12}  {'yes' if met else 'NO'}")
    return lines


@dataclass
class FlowProcesses:
    """The orders flow's processes (one, or the processes of a cluster) and their metrics ports."""

    procs: list[subprocess.Popen[bytes]]
    ports: list[int]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> int:
        """Stop every process (`stop_together`); the largest peak RSS of one, in MiB."""
        return max(stop_together(self.procs))


def run_flow(
    brokers: str,
    work: Path,
    workers: int = 1,
    max_poll: int = FlowSettings.batch_size,
    processes: int = 1,
) -> FlowProcesses:
    """The orders flow as the CLI runs it, with its own recovery store under `work`; with
    `processes` > 1, as a cluster of that many local processes sharing the store."""
    args = ["flow", "run", "orders", "--brokers", brokers, "--recovery-dir", str(work / "recovery"),
            "--workers", str(workers), "--max-poll", str(max_poll)]  # fmt: skip
    if processes == 1:
        proc, port = child(args, work / "flow.log")
        return FlowProcesses([proc], [port])
    addresses = ";".join(f"127.0.0.1:{cluster_port()}" for _ in range(processes))
    started = [
        child([*args, "--process-id", str(i), "--addresses", addresses], work / f"flow-{i}.log")
        for i in range(processes)
    ]
    return FlowProcesses([proc for proc, _ in started], [port for _, port in started])


def landing_writes_from_log(warehouse: Path) -> tuple[float, float]:
    """Rows the landing wrote and the seconds it took, from its own log of writes
    (`landing_batches`): the rows of every write after the first, over the time from the
    end of the first write to the end of the last (each write's start plus its logged
    duration, which stops just before its commit, at both ends alike). Its counter moves by
    whole batches (up to 100,000 rows, about half a second's work in a backlog), so timing
    it by polling four times a second, as `steady_rate` does, left up to a quarter of a
    second of doubt at either end of a run of a few seconds."""
    writes = run_sql(
        warehouse,
        'SELECT epoch(landed_at) + seconds AS ended, "rows" FROM landing_batches ORDER BY landed_at',
    )
    if writes.height < 2:
        raise SystemExit("benchmark: the landing wrote its rows in one batch; measure more events")
    ended = writes["ended"]
    return float(writes["rows"][1:].sum()), float(ended[-1] - ended[0])


CHECKPOINTS = "streamlane_landing_checkpoint_duration_seconds_sum"
"""Seconds the landing's checkpoints took, in all (the sum of its histogram of durations)."""


def checkpoint_seconds(warehouse: Path, port: int, timeout_s: float) -> float:
    """Seconds the landing answering on `port` spent checkpointing, from its start until it
    had checkpointed its log (which it does once it is idle), moving every landed row from
    DuckDB's log into the warehouse file. A backlog defers that (see the README's
    "Benchmark"): a million events leave less log than the size at which DuckDB checkpoints
    on its own, so the timed writes never include a checkpoint, while a longer backlog
    waits for one each time the log reaches that size. Read once the log is empty and the
    sum has stayed put for a poll: DuckDB empties the log before its checkpoint returns and
    the landing counts it."""
    deadline = time.perf_counter() + timeout_s
    seconds = -1.0
    while True:
        saved = logged_bytes(warehouse) == 0
        latest = scrape(port).get(CHECKPOINTS, 0.0)
        if saved and latest == seconds:
            return seconds
        if time.perf_counter() > deadline:
            raise SystemExit(
                f"benchmark: the landing left {warehouse}'s log unsaved for {timeout_s} s"
            )
        seconds = latest if saved else -1.0
        time.sleep(0.25)


def run_landing(
    brokers: str, work: Path, beside_flows: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """The warehouse (landing plus query endpoints on free ports) as the CLI runs it: alone,
    as `streamlane serve` does, or `beside_flows`, with the DuckDB threads `streamlane run`
    gives it."""
    args = ["serve", "--brokers", brokers, "--warehouse", str(work / "warehouse.duckdb"),
            "--pg-port", "0", "--quack-port", "0",
            *(warehouse_thread_args() if beside_flows else [])]  # fmt: skip
    return child(args, work / "warehouse.log")


@contextlib.contextmanager
def fresh_input(
    work: Path, records: list[tuple[bytes, bytes]], partitions: int
) -> Iterator[EmbeddedBroker]:
    """A new embedded broker holding the input topic, so each stage starts from nothing."""
    work.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        ensure_topics(broker.bootstrap, orders.FLOW.topics, partitions)
        publish(broker.bootstrap, orders.FLOW.input_topic, iter(records))
        yield broker


def wait_ready(port: int, timeout_s: float) -> None:
    """Until a child answers on its metrics port."""
    deadline = time.perf_counter() + timeout_s
    while not scrape(port):
        if time.perf_counter() > deadline:
            raise SystemExit(f"benchmark: nothing answered on metrics port {port}")
        time.sleep(0.1)


@dataclass(frozen=True)
class CeilingRun:
    """One run of the bare consume+decode ceiling."""

    events_per_s: float
    cpu_s: float
    """CPU seconds of this process, where the ceiling's consumer runs."""
    cores_busy_with_broker: float

    def mean(self, other: CeilingRun) -> CeilingRun:
        """Each figure's mean over this run and `other`."""
        return CeilingRun(
            (self.events_per_s + other.events_per_s) / 2,
            (self.cpu_s + other.cpu_s) / 2,
            (self.cores_busy_with_broker + other.cores_busy_with_broker) / 2,
        )


def ceiling_run(
    broker: EmbeddedBroker, partitions: int, events: int, malformed: frozenset[bytes]
) -> CeilingRun:
    """The ceiling consuming and decoding every input event on `broker` once."""
    cpu_from, broker_from = own_cpu_s(), cpu_seconds(broker.pid) or 0.0
    wall_from = time.perf_counter()
    events_per_s = consume_and_decode(
        broker.bootstrap, orders.FLOW.input_topic, partitions, events, malformed
    )
    wall_s = time.perf_counter() - wall_from
    cpu_s = own_cpu_s() - cpu_from
    broker_cpu_s = (cpu_seconds(broker.pid) or 0.0) - broker_from
    return CeilingRun(events_per_s, cpu_s, (cpu_s + broker_cpu_s) / wall_s)


def measure(args: argparse.Namespace, work: Path, stamp: str) -> dict[str, object]:
    """Run every measurement, each stage on its own fresh broker; the figures as a flat dict."""
    stores_csv = REFERENCE_DIR / "stores.csv"
    if args.stores:
        stores_csv = many_stores(work / "reference", args.stores)
        os.environ["STREAMLANE_REFERENCE_DIR"] = str(stores_csv.parent)  # read by the children
    settings = GeneratorSettings(
        seed=1, count=args.events, start=datetime(2026, 11, 2, 11, 0, tzinfo=UTC),
        duplicates=0.01, malformed=0.01, stores_csv=stores_csv,
        events_per_second=args.event_rate,
    )  # fmt: skip
    print(f"generating {args.events:,} events…", file=sys.stderr)
    generated = list(OrderGenerator(settings))
    records = [(r.key, r.value) for r in generated]
    malformed = frozenset(r.value for r in generated if r.kind == "malformed")
    # The generated events stay in this process for the whole run, and the ceiling's
    # consumer runs here too: every full collection walked all of them, which made the
    # ceiling slower and its spread wider. It collects as the flow and the landing do.
    collect_rarely()

    def sampled(proc: subprocess.Popen[bytes], name: str) -> Sampler | None:
        return (
            Sampler.attach(proc.pid, RESULTS / f"{stamp}-{name}.folded") if args.profile else None
        )

    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "events": args.events,
        "partitions": args.partitions,
        "flow_processes": args.processes,
        "flow_workers": args.workers,
        "flow_max_poll": args.max_poll,
        "stores": args.stores or "shipped list",
        "event_rate_per_s": args.event_rate,
    }
    with fresh_input(work / "separate", records, args.partitions) as broker:
        print("measuring the bare consume+decode ceiling…", file=sys.stderr)
        before = ceiling_run(broker, args.partitions, args.events, malformed)
        print("running the flow…", file=sys.stderr)
        flow = run_flow(
            broker.bootstrap, work / "separate", args.workers, args.max_poll, args.processes
        )
        flow_sampler = sampled(flow.procs[0], "flow")
        # Timed from the first batch read, so process start-up is not counted.
        flow_eps, flow_cores = steady_rate(
            flow.ports,
            "streamlane_events_in_total",
            args.events,
            900,
            {"flow": flow.pids, "broker": [broker.pid]},
        )
        # Sampling stops with the timed part: the flow then waits idle for its last outputs
        # and for the signal to stop, which would read as time the worker spent waiting. The
        # sampler is a child too: its CPU is left out of the flow's and the landing's figures.
        sampling_cpu = report_profile("flow", flow_sampler, stamp)
        outputs = settled(flow.ports, "streamlane_events_out_total")
        flow_threads = summed(cpu_seconds_by_thread(pid) for pid in flow.pids)
        flow_rss = flow.stop()
        flow_cpu = cpu_of_children() - sampling_cpu
        print("measuring the ceiling again…", file=sys.stderr)
        after = ceiling_run(broker, args.partitions, args.events, malformed)
        ceiling = before.mean(after)
        result |= {
            "ceiling_events_per_s": round(ceiling.events_per_s),
            "ceiling_before_events_per_s": round(before.events_per_s),
            "ceiling_after_events_per_s": round(after.events_per_s),
            "ceiling_cpu_s": round(ceiling.cpu_s, 1),
            "ceiling_cores_busy_with_broker": round(ceiling.cores_busy_with_broker, 2),
            "flow_events_per_s": round(flow_eps),
            "flow_ratio_to_ceiling": round(flow_eps / ceiling.events_per_s, 3),
            "flow_cpu_s": round(flow_cpu, 1),
            "flow_cores_busy": round(flow_cores["flow"], 2),
            "flow_cores_busy_with_broker": round(sum(flow_cores.values()), 2),
            "flow_peak_rss_mib": flow_rss,
            **by_thread("flow", flow_threads),
        }
        if args.flow_only:
            return result

        print("running the landing…", file=sys.stderr)
        landing, landing_port = run_landing(broker.bootstrap, work / "separate")
        landing_sampler = sampled(landing, "landing")
        landing_rps, landing_cores = steady_rate(
            [landing_port],
            "streamlane_landed_rows_total",
            outputs,
            900,
            {"landing": [landing.pid], "broker": [broker.pid]},
        )
        sampling_cpu += report_profile("landing", landing_sampler, stamp)
        landing_threads = cpu_seconds_by_thread(landing.pid)
        warehouse = work / "separate" / "warehouse.duckdb"
        checkpoint_s = checkpoint_seconds(warehouse, landing_port, 300)
        landed, writing_s = landing_writes_from_log(warehouse)
        landing_rss = stop(landing)
        total_cpu = cpu_of_children() - sampling_cpu
        result |= {
            "landing_rows_per_s": round(landed / writing_s),
            "landing_rows_per_s_polled": round(landing_rps),
            "landing_checkpoint_s": round(checkpoint_s, 2),
            "landing_rows_per_s_checkpointed": round(landed / (writing_s + checkpoint_s)),
            "landing_rows": int(outputs),
            "landing_cpu_s": round(total_cpu - flow_cpu, 1),
            "landing_cores_busy": round(landing_cores["landing"], 2),
            "landing_cores_busy_with_broker": round(sum(landing_cores.values()), 2),
            "landing_peak_rss_mib": landing_rss,
            "landing_warehouse_threads": os.environ.get(WAREHOUSE_THREADS_ENV) or "one per core",
            **by_thread("landing", landing_threads),
        }

    with fresh_input(work / "together", records, args.partitions) as broker:
        print("running the flow and the landing together…", file=sys.stderr)
        landing, landing_port = run_landing(broker.bootstrap, work / "together", True)
        wait_ready(landing_port, 120)
        flow = run_flow(
            broker.bootstrap, work / "together", args.workers, args.max_poll, args.processes
        )
        wait_metric(flow.ports, "streamlane_events_in_total", 1, 120)
        busy = {"flow": flow.pids, "landing": [landing.pid], "broker": [broker.pid]}
        cpu_from = cpu_used(busy)
        together_s, cpu_to = time_to_land_all(flow.ports, landing_port, args.events, busy, 900)
        # Its checkpoints of these rows, while it landed them (if it found the time) and after.
        result["together_landing_checkpoint_s"] = round(
            checkpoint_seconds(work / "together" / "warehouse.duckdb", landing_port, 300), 2
        )
        flow.stop()
        stop(landing)
    result["flow_plus_landing_events_per_s"] = round(args.events / together_s)
    # Whether running together is bound by the machine's cores: what each process used
    # while the events went from the raw topic to the warehouse.
    together_cpu = {name: cpu_to[name] - cpu_from[name] for name in busy}
    result |= {f"together_{name}_cpu_s": round(cpu, 1) for name, cpu in together_cpu.items()}
    result["together_cores_busy"] = round(sum(together_cpu.values()) / together_s, 2)
    result["together_warehouse_threads"] = warehouse_threads_under_run()
    if not args.no_baseline:
        with fresh_input(work / "per-event", records, args.partitions) as broker:
            print("running the per-event bytewax baseline…", file=sys.stderr)
            per_event_eps = per_event_baseline(broker.bootstrap, work / "per-event", args.events)
        result["per_event_baseline_events_per_s"] = round(per_event_eps)
        result["flow_ratio_to_per_event"] = round(flow_eps / per_event_eps, 2)
    return result


def by_thread(process: str, used: dict[str, float]) -> dict[str, float]:
    """`<process>_cpu_s_<kind>` figures: the CPU seconds a process had used by kind of thread
    when it was done (before it was stopped), largest first."""
    return {
        f"{process}_cpu_s_{kind.replace(' ', '_')}": round(seconds, 1)
        for kind, seconds in sorted(used.items(), key=lambda kv: -kv[1])
    }


def report_profile(name: str, sampler: Sampler | None, stamp: str) -> float:
    """Print where each thread of a sampled process spent its time; keep it next to the stacks.
    Returns the CPU seconds the sampler used (0 without one)."""
    if sampler is None:
        return 0.0
    before = cpu_of_children()
    lines = [f"{name}: where each thread spent its time (wall clock, waits included; "
             f"stacks in {sampler.output})", *sampler.finish()]  # fmt: skip
    (RESULTS / f"{stamp}-{name}-profile.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), file=sys.stderr)
    return cpu_of_children() - before


def many_stores(folder: Path, count: int) -> Path:
    """A reference folder like `reference/` whose store list has `count` stores."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REFERENCE_DIR / "fx_rates.csv", folder / "fx_rates.csv")
    shipped = list(csv.DictReader((REFERENCE_DIR / "stores.csv").open()))
    path = folder / "stores.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(shipped[0]))
        writer.writeheader()
        for n in range(count):
            row = dict(shipped[n % len(shipped)])
            row["store_id"] = str(n + 1)
            row["name"] = f"{row['name']} #{n + 1}"
            writer.writerow(row)
    return path


def per_event_baseline(brokers: str, work: Path, total: int) -> float:
    """Events/s of the same job on bytewax's per-event operators (bench/baselines/per_event.py)."""
    report = work / "per-event.seconds"
    command = [sys.executable, "-m", "bench.baselines.per_event", "--brokers", brokers,
               "--events", str(total), "--report", str(report)]  # fmt: skip
    with open(work / "per-event.log", "ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    CHILDREN.append(proc)
    deadline = time.perf_counter() + 1800
    while not report.exists():
        if proc.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit(
                f"benchmark: the per-event baseline failed (see {work / 'per-event.log'})"
            )
        time.sleep(0.2)
    stop(proc)
    return total / float(report.read_text())


QUIET_S = 2.0
"""How long the flow's output count must stay put after its last input for it to count as
done: longer than the flow takes to process its last batch."""


def time_to_land_all(
    flow_ports: Sequence[int],
    landing_port: int,
    events: int,
    busy: dict[str, list[int]],
    timeout_s: float,
) -> tuple[float, dict[str, float]]:
    """Seconds until the landing had landed every record the flow produced for `events` input
    events, and the CPU seconds of the `busy` processes at that moment. The flow has read
    them all, its output count has then stayed put for `QUIET_S`, and the landing had
    reached that count (timed from when it first did).

    The count is the flow's own, not the separate run's: how many events come late, and
    which windows a backlog's end leaves open until the idle timeout closes them, depend on
    how partitions interleave. Waiting for another run's count measured the idle timeout
    whenever this run produced fewer (the windows it closes later are not waited for).
    """
    started = time.perf_counter()
    out, out_since = -1.0, started
    landed_at: tuple[float, dict[str, float]] | None = None
    while time.perf_counter() - started < timeout_s:
        flow, landing = scrape_all(flow_ports), scrape(landing_port)
        now = time.perf_counter()
        if (produced := flow.get("streamlane_events_out_total", 0)) != out:
            out, out_since = produced, now
        read_all = flow.get("streamlane_events_in_total", 0) >= events
        if read_all and landing.get("streamlane_landed_rows_total", 0) >= out:
            landed_at = landed_at or (now - started, cpu_used(busy))
            if now - out_since >= QUIET_S:
                return landed_at
        else:
            landed_at = None
        time.sleep(0.25)
    raise SystemExit(f"benchmark: the flow's outputs were not all landed within {timeout_s} s")


def settled(ports: Sequence[int], name: str, quiet_s: float = 1.0, timeout_s: float = 60) -> float:
    """The value of counter `name` once it has not changed for `quiet_s` (outputs in flight
    when the last input was read are still counted)."""
    deadline = time.perf_counter() + timeout_s
    last, since = scrape_all(ports).get(name, 0), time.perf_counter()
    while time.perf_counter() < deadline:
        time.sleep(0.1)
        now = scrape_all(ports).get(name, 0)
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= quiet_s:
            break
    return last


if __name__ == "__main__":
    main()
