"""The `streamlane` command line.

Flags are a contract (scripts outside the repo use them). Every option with an
environment variable reads it when the flag is absent. User mistakes print one
line and exit with status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from streamlane.errors import UserError
from streamlane.settings import FlowSettings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="streamlane: Kafka events in; validated, deduplicated, enriched, windowed, landed in DuckDB.",
)
topics_app = typer.Typer(no_args_is_help=True, help="List, create, tail or produce to topics.")
flow_app = typer.Typer(no_args_is_help=True, help="Run a single flow.")
dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards.")
app.add_typer(topics_app, name="topics")
app.add_typer(flow_app, name="flow")
app.add_typer(dashboards_app, name="dashboards")
schemas_app = typer.Typer(no_args_is_help=True, help="Event schemas and their evolution.")
app.add_typer(schemas_app, name="schemas")
dlq_app = typer.Typer(no_args_is_help=True, help="List, show and replay dead letters.")
app.add_typer(dlq_app, name="dlq")
new_app = typer.Typer(no_args_is_help=True, help="Start something new from a working scaffold.")
reference_app = typer.Typer(no_args_is_help=True, help="Reference tables kept from topics.")
app.add_typer(reference_app, name="reference")
app.add_typer(new_app, name="new")

Brokers = Annotated[
    str | None,
    typer.Option(
        "--brokers",
        envvar="STREAMLANE_BROKERS",
        help="Kafka bootstrap servers HOST:PORT[,...]; without it `run` starts the embedded broker.",
    ),
]


def _share(flag: str, help: str) -> typer.models.OptionInfo:
    """An option for a fraction of the generated records, from 0 to 1."""
    return typer.Option(flag, min=0, max=1, help=help)


RequiredBrokers = Annotated[
    str, typer.Option("--brokers", envvar="STREAMLANE_BROKERS", help="Kafka bootstrap servers.")
]
Warehouse = Annotated[
    Path,
    typer.Option("--warehouse", envvar="STREAMLANE_WAREHOUSE", help="DuckDB warehouse file."),
]
MetricsPort = Annotated[
    int,
    typer.Option(
        "--metrics-port", envvar="STREAMLANE_METRICS_PORT", help="Prometheus port (0: off)."
    ),
]
MetricsHost = Annotated[
    str,
    typer.Option(
        "--metrics-host",
        envvar="STREAMLANE_METRICS_HOST",
        help="Address the metrics listen on (0.0.0.0: every interface, as in a container).",
    ),
]
Lateness = Annotated[
    float,
    typer.Option(
        "--lateness", envvar="STREAMLANE_LATENESS", min=0, help="Allowed lateness, seconds."
    ),
]
IdleTimeout = Annotated[
    float,
    typer.Option(
        "--idle-timeout",
        envvar="STREAMLANE_IDLE_TIMEOUT",
        min=0,
        help="Partition idle timeout, seconds.",
    ),
]
DedupeHorizon = Annotated[
    float,
    typer.Option(
        "--dedupe-horizon",
        envvar="STREAMLANE_DEDUPE_HORIZON",
        min=0,
        help="Dedupe horizon, seconds.",
    ),
]
MaxDrift = Annotated[
    float,
    typer.Option(
        "--max-drift",
        envvar="STREAMLANE_MAX_DRIFT",
        min=0,
        help="How far ahead in event time a partition catching up may read of the slowest "
        "one, seconds (plus one batch).",
    ),
]
BrokerTimeout = Annotated[
    float,
    typer.Option(
        "--broker-timeout",
        envvar="STREAMLANE_BROKER_TIMEOUT",
        min=1,
        help="How long to wait for Kafka during an outage before stopping, seconds.",
    ),
]
PgHost = Annotated[
    str,
    typer.Option("--pg-host", envvar="STREAMLANE_PG_HOST", help="PostgreSQL endpoint address."),
]
PgPort = Annotated[
    int,
    typer.Option(
        "--pg-port",
        envvar="STREAMLANE_PG_PORT",
        min=0,
        help="PostgreSQL endpoint port (0: any free).",
    ),
]
QuackHost = Annotated[
    str,
    typer.Option("--quack-host", envvar="STREAMLANE_QUACK_HOST", help="Quack endpoint address."),
]
QuackPort = Annotated[
    int,
    typer.Option(
        "--quack-port",
        envvar="STREAMLANE_QUACK_PORT",
        min=0,
        help="Quack endpoint port (0: any free).",
    ),
]
PgWrites = Annotated[
    bool,
    typer.Option("--pg-allow-writes", help="Let PostgreSQL clients change the warehouse."),
]
DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@app.command()
def run(
    demo: Annotated[
        bool, typer.Option("--demo", help="Also run each flow's event generator.")
    ] = False,
    flows: Annotated[
        list[str] | None,
        typer.Option("--flow", help="A flow to run (repeat for several; default: orders)."),
    ] = None,
    brokers: Brokers = None,
    warehouse: Warehouse = DEFAULT_WAREHOUSE,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            envvar="STREAMLANE_PARTITIONS",
            min=1,
            help="Partitions per topic created.",
        ),
    ] = 4,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Flow processes, as one cluster; must divide --partitions.",
        ),
    ] = 1,
    rate: Annotated[
        float, typer.Option("--rate", min=0.001, help="Demo events per second.")
    ] = 200.0,
    lateness: Lateness = FlowSettings.lateness_s,
    idle_timeout: IdleTimeout = FlowSettings.idle_timeout_s,
    dedupe_horizon: DedupeHorizon = FlowSettings.dedupe_horizon_s,
    max_drift: MaxDrift = FlowSettings.max_drift_s,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="STREAMLANE_DATA_DIR", help="Logs and recovery state."),
    ] = Path("data"),
    broker_timeout: BrokerTimeout = 120.0,
    pg_host: PgHost = "127.0.0.1",
    pg_port: PgPort = 5433,
    quack_port: QuackPort = 9494,
) -> None:
    """Run the local pipeline: broker (embedded unless --brokers), topics, flows, warehouse."""
    from streamlane.flow import load_flow
    from streamlane.runner import Pipeline, RunSettings

    chosen = tuple(dict.fromkeys(flows or ["orders"]))
    for name in chosen:
        load_flow(name)  # an unknown flow is a one-line error before anything starts

    flow = FlowSettings(
        brokers=brokers or "",
        lateness_s=lateness,
        idle_timeout_s=idle_timeout,
        dedupe_horizon_s=dedupe_horizon,
        max_drift_s=max_drift,
        broker_timeout_s=broker_timeout,
    )
    Pipeline(
        RunSettings(
            flow=flow,
            warehouse=warehouse,
            data_dir=data_dir,
            partitions=partitions,
            processes=processes,
            demo=demo,
            demo_rate=rate,
            pg_host=pg_host,
            pg_port=pg_port,
            quack_port=quack_port,
            flows=chosen,
        )
    ).run()


@app.command()
def generate(
    brokers: RequiredBrokers,
    flow: Annotated[
        str, typer.Option("--flow", help="Whose events: a flow in flows/ with a generator.")
    ] = "orders",
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic to write to (default: the flow's input).")
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Events to generate, then stop.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="Events per second (wall clock).")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed makes the same events.")
    ] = 42,
    duplicates: Annotated[
        float, _share("--duplicates", "Share of records that re-send an earlier event.")
    ] = 0.01,
    malformed: Annotated[
        float,
        _share(
            "--malformed", "Share of records that must be rejected (dead letters), in several ways."
        ),
    ] = 0.01,
    out_of_order: Annotated[
        float,
        _share(
            "--out-of-order",
            "Share of events stamped up to 10 s before the newest (on time, out of order).",
        ),
    ] = 0.03,
    too_late: Annotated[
        float,
        _share(
            "--too-late",
            "Share of events stamped 10 to 15 minutes back: late for the default lateness.",
        ),
    ] = 0.002,
    start: Annotated[
        datetime | None,
        typer.Option("--start", help="Event time of the first event (with --count)."),
    ] = None,
    backfill: Annotated[
        float,
        typer.Option(
            "--backfill", min=0, help="With --rate: first produce this many seconds of history."
        ),
    ] = 0.0,
    burst: Annotated[
        float,
        typer.Option(
            "--burst",
            min=1,
            help="With --rate: produce this many times the rate during a burst.",
        ),
    ] = 1.0,
    burst_after: Annotated[
        float, typer.Option("--burst-after", min=0, help="Seconds of --rate before the burst.")
    ] = 10.0,
    burst_for: Annotated[
        float, typer.Option("--burst-for", min=0, help="How long the burst lasts, in seconds.")
    ] = 60.0,
    v2_share: Annotated[
        float, _share("--v2-share", "Orders: share sent as version 2 (total+currency).")
    ] = 0.0,
    broker_timeout: BrokerTimeout = 120.0,
    metrics_port: MetricsPort = 0,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Produce realistic events for a flow: seeded, with duplicates, malformed and out-of-order ones."""
    from datetime import timedelta
    from itertools import takewhile

    from rich.console import Console
    from rich.progress import Progress

    from streamlane import metrics, shutdown
    from streamlane.flow import load_flow
    from streamlane.generator import GeneratorSettings, generator_for
    from streamlane.kafka import check_reachable
    from streamlane.plainprogress import PlainProgress
    from streamlane.publish import publish_blocks

    if count is None and rate is None:
        raise UserError(
            "give --count N (as fast as possible) or --rate R (events/s, until stopped)"
        )
    topic = topic or load_flow(flow).input_topic
    make_generator = generator_for(flow)
    check_reachable(brokers)
    if rate is not None and start is None:
        start = datetime.now(UTC) - timedelta(seconds=backfill)
    settings = GeneratorSettings(
        seed=seed,
        count=count,
        start=start.replace(tzinfo=start.tzinfo or UTC) if start else None,
        events_per_second=rate or 40.0,
        duplicates=duplicates,
        malformed=malformed,
        out_of_order=out_of_order,
        too_late=too_late,
        burst_factor=burst,
        burst_after_s=burst_after,
        burst_for_s=burst_for,
        order_v2_share=v2_share,
    )
    if burst > 1 and rate is None:
        raise UserError("--burst needs --rate (a burst is a multiple of the live rate)")
    # Ctrl-C or SIGTERM ends the stream after the block in hand; what was handed to the
    # producer is still delivered (a second signal interrupts at once).
    shutdown.install(doing="ending the stream and delivering what was produced")
    blocks = takewhile(
        lambda _: not shutdown.stop_requested(),
        make_generator(settings).blocks(live=rate is not None),
    )
    metrics.serve_metrics(metrics_port, metrics_host)
    produced = metrics.EVENTS_OUT.labels(topic=topic)
    counted = 0
    # Off a terminal (a container's log) the bar would show nothing until the end.
    bar = Progress(transient=False) if Console().is_terminal else None
    lines = PlainProgress(lambda: f"{counted} events produced to {topic}")

    def progress(sent: int) -> None:
        nonlocal counted
        # Counted as handed to the producer: what a benchmark compares landed rows with.
        produced.inc(sent - counted)
        counted = sent
        if bar is not None and task is not None:
            bar.update(task, completed=sent)
        else:
            lines.tick()

    with bar or contextlib.nullcontext():
        task = bar.add_task(f"producing to {topic}", total=count) if bar is not None else None
        try:
            sent = publish_blocks(
                brokers,
                topic,
                ([(r.key, r.value) for r in b] for b in blocks),
                on_progress=progress,
                outage_limit_s=broker_timeout,
            )
        except SystemError:
            # The Kafka client reports an interrupt inside its own calls this way.
            if shutdown.stop_requested():
                raise KeyboardInterrupt from None
            raise
    print(f"{sent} events produced to {topic}", file=sys.stderr)
    if count is not None and sent < count:
        raise typer.Exit(130)  # stopped before its count


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run on the warehouse.")],
    warehouse: Warehouse = DEFAULT_WAREHOUSE,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Query the warehouse, through the running pipeline when there is one."""
    from streamlane.query import print_result, run_sql

    print_result(run_sql(warehouse, sql), format.value)


@app.command()
def serve(
    brokers: Brokers = None,
    warehouse: Warehouse = DEFAULT_WAREHOUSE,
    pg_host: PgHost = "127.0.0.1",
    pg_port: PgPort = 5433,
    pg_allow_writes: PgWrites = False,
    pg_auth: Annotated[
        str,
        typer.Option(
            "--pg-auth", envvar="STREAMLANE_PG_AUTH", help="Password method: scram-sha-256 or md5."
        ),
    ] = "scram-sha-256",
    quack_host: QuackHost = "127.0.0.1",
    quack_port: QuackPort = 9494,
    broker_timeout: BrokerTimeout = 120.0,
    metrics_port: MetricsPort = 0,
    metrics_host: MetricsHost = "127.0.0.1",
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            envvar="STREAMLANE_WAREHOUSE_THREADS",
            min=1,
            help="DuckDB's threads (default: one per core; under `streamlane run`, beside the "
            "flows, one fewer). Fewer cost the landing less CPU per row at a live rate; more "
            "serve dashboards and one large query faster.",
        ),
    ] = None,
) -> None:
    """Own the warehouse: land the output topics (when --brokers is given) and serve queries,
    also to PostgreSQL clients (psql, Grafana, drivers)."""
    from sinks.warehouse import EndpointSettings
    from sinks.warehouse import Warehouse as WarehouseServer
    from streamlane import shutdown
    from streamlane.metrics import serve_metrics

    if pg_auth not in ("scram-sha-256", "md5"):
        raise UserError(f"--pg-auth must be scram-sha-256 or md5, not {pg_auth!r}")

    _logging()
    serve_metrics(metrics_port, metrics_host)
    endpoint = EndpointSettings(
        host=pg_host,
        port=pg_port,
        allow_writes=pg_allow_writes,
        auth_method=pg_auth,
        quack_host=quack_host,
        quack_port=quack_port,
    )
    server = WarehouseServer(
        warehouse, brokers, endpoint, broker_timeout_s=broker_timeout, threads=threads
    )
    shutdown.install(on_stop=server.stop, doing="finishing the write in hand")
    try:
        server.serve()
    except KeyboardInterrupt:  # one more, while it was closing
        server.stop()


@topics_app.command("list")
def topics_list(brokers: RequiredBrokers) -> None:
    """List topics and their partition counts."""
    from streamlane.kafka import check_reachable, describe_topics

    check_reachable(brokers)
    for name, partitions in describe_topics(brokers):
        print(f"{name}\t{partitions}")


@topics_app.command("create")
def topics_create(
    brokers: RequiredBrokers,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            envvar="STREAMLANE_PARTITIONS",
            min=1,
            help="Partitions of each topic created (the flows' unit of parallelism).",
        ),
    ] = 4,
    names: Annotated[
        list[str] | None, typer.Argument(help="Topics (default: every flow's).")
    ] = None,
) -> None:
    """Create topics that do not exist yet (default: the topics of every flow in flows/)."""
    from streamlane.flow import flow_names, load_flow
    from streamlane.kafka import check_reachable, ensure_topics

    check_reachable(brokers)
    flows = [load_flow(name) for name in flow_names()]
    every = [t for f in flows for t in f.topics]
    compacted = {t for f in flows for t in f.reference_topics}
    created = ensure_topics(brokers, names or every, partitions, compacted)
    print(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


@topics_app.command("tail")
def topics_tail(
    topic: Annotated[str, typer.Argument(help="Topic to follow.")],
    brokers: RequiredBrokers,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record, not now.")
    ] = False,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Only events of this type (repeatable).")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Only events with PATH=VALUE, e.g. data.channel=web."),
    ] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="Print only this part, e.g. .data.items[0].")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Stop after this many records (0: never).")
    ] = 0,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text output.")] = False,
) -> None:
    """Print a topic's events as they arrive: decoded, pretty and coloured, filtered by type,
    by PATH=VALUE, or cut down to one path. Records that are not JSON are shown escaped."""
    import json

    from rich.console import Console
    from rich.json import JSON
    from rich.markup import escape

    from streamlane.kafka import check_reachable
    from streamlane.topictools import condition, get_path, missing, parse_path, tail

    check_reachable(brokers)
    console = Console(no_color=no_color, highlight=not no_color, soft_wrap=True)
    filters = [condition(w) for w in where or []]
    selected = parse_path(path) if path else None
    shown = 0
    try:
        for record in tail(brokers, topic, from_beginning):
            event = record.event
            if types and (not isinstance(event, dict) or event.get("type") not in types):
                continue
            if not all(f(event) for f in filters):
                continue
            key = record.key.decode("utf-8", "backslashreplace") if record.key else "-"
            where_at = f"{topic}/{record.partition}@{record.offset} key={key}"
            if event is None:
                text = record.value.decode("utf-8", "backslashreplace")
                console.print(f"[bold]{escape(where_at)}[/] [red]not JSON:[/] {escape(text[:500])}")
            else:
                kind = event.get("type", "") if isinstance(event, dict) else ""
                when = event.get("time", "") if isinstance(event, dict) else ""
                console.print(f"[bold]{escape(where_at)}[/] [cyan]{escape(str(kind))}[/] {when}")
                part = get_path(event, selected) if selected is not None else event
                body = "(no such path)" if missing(part) else json.dumps(part, ensure_ascii=False)
                console.print(JSON(body) if not missing(part) else body)
            shown += 1
            if limit and shown >= limit:
                return
    except KeyboardInterrupt:
        return


@topics_app.command("produce")
def topics_produce(
    topic: Annotated[str, typer.Argument(help="Topic to send to.")],
    brokers: RequiredBrokers,
    file: Annotated[Path, typer.Option("--file", help="JSONL file, one event per line.")],
    key: Annotated[
        str, typer.Option("--key", help="Path of the record key in each event (absent: no key).")
    ] = "data.store_id",
) -> None:
    """Send the events of a JSONL file, each validated against the schema of its `type` first:
    if any line is invalid, every bad line is listed and nothing is sent."""
    from streamlane.kafka import check_reachable
    from streamlane.topictools import produce_file, validate_file

    records, rejected = validate_file(file)
    if rejected:
        for bad in rejected[:20]:
            print(f"{file}:{bad.line}: {bad.reason}", file=sys.stderr)
        more = " (first 20 shown)" if len(rejected) > 20 else ""
        raise UserError(f"{len(rejected)} invalid line(s) in {file}{more}; nothing sent")
    if not records:
        raise UserError(f"no events in {file}")
    check_reachable(brokers)
    sent = produce_file(brokers, topic, records, key)
    print(f"{sent} events sent to {topic}")


@schemas_app.command("check")
def schemas_check(
    against: Annotated[
        str, typer.Option("--against", help="Git ref to compare with (a branch, tag, HEAD~1).")
    ] = "HEAD",
    folder: Annotated[Path, typer.Option("--dir", help="Schema folder.")] = Path("schemas"),
) -> None:
    """Fail when a schema changed in a breaking way without a new version: a removed property,
    a changed type, a newly required property, a narrowed enum, a tightened bound, a deleted
    version. Additive changes and new versions pass."""
    from streamlane.schemacheck import breaking_changes, schemas_at, schemas_in, work_tree_root

    if not folder.is_dir():
        raise UserError(f"no schema folder {folder}")
    top = work_tree_root(folder.resolve())
    relative = folder.resolve().relative_to(top).as_posix()
    before = schemas_at(top, against, relative)
    after = schemas_in(folder)
    found = breaking_changes(before, after)
    for change in found:
        print(f"breaking: {change}", file=sys.stderr)
    if found:
        raise UserError(
            f"{len(found)} breaking change(s) against {against}: publish them as a new "
            "version of the event type (a new schema file, e.g. ….v2.json) instead"
        )
    added = sorted(set(after) - set(before))
    extra = f"; new: {', '.join(added)}" if added else ""
    print(f"{len(before)} schema(s) compared with {against}: no breaking changes{extra}")


@flow_app.command("run")
def flow_run(
    name: Annotated[str, typer.Argument(help="Flow module in flows/ (e.g. orders).")],
    brokers: RequiredBrokers,
    recovery_dir: Annotated[
        Path | None,
        typer.Option("--recovery-dir", help="Recovery store (default data/recovery/NAME)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker threads in this process.")
    ] = 1,
    process_id: Annotated[
        int | None,
        typer.Option("--process-id", min=0, help="This process's index in --addresses."),
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(
            "--addresses",
            help="A multi-process cluster: host:port of every process, separated by ';'.",
        ),
    ] = None,
    lateness: Lateness = FlowSettings.lateness_s,
    idle_timeout: IdleTimeout = FlowSettings.idle_timeout_s,
    dedupe_horizon: DedupeHorizon = FlowSettings.dedupe_horizon_s,
    max_drift: MaxDrift = FlowSettings.max_drift_s,
    snapshot_interval: Annotated[
        float,
        typer.Option(
            "--snapshot-interval",
            envvar="STREAMLANE_SNAPSHOT_INTERVAL",
            min=0.1,
            help="Seconds between recovery snapshots: a restart processes again what came "
            "after the last one.",
        ),
    ] = 5.0,
    max_poll: Annotated[
        int,
        typer.Option(
            "--max-poll",
            envvar="STREAMLANE_MAX_POLL",
            min=1,
            help="Most records taken from one partition per poll (one columnar batch).",
        ),
    ] = FlowSettings.batch_size,
    broker_timeout: BrokerTimeout = FlowSettings.broker_timeout_s,
    metrics_port: MetricsPort = 0,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Run one flow on bytewax, resuming from its recovery store."""
    from streamlane.flowrun import run_flow
    from streamlane.metrics import serve_metrics

    _logging()
    serve_metrics(metrics_port, metrics_host)
    settings = FlowSettings(
        brokers=brokers,
        lateness_s=lateness,
        idle_timeout_s=idle_timeout,
        dedupe_horizon_s=dedupe_horizon,
        max_drift_s=max_drift,
        batch_size=max_poll,
        broker_timeout_s=broker_timeout,
    )
    run_flow(
        name,
        settings,
        recovery_dir or Path("data/recovery") / name,
        workers=workers,
        snapshot_interval_s=snapshot_interval,
        process_id=process_id,
        addresses=[a.strip() for a in addresses.split(";") if a.strip()] if addresses else None,
    )


DlqTopic = Annotated[str, typer.Option("--topic", help="Dead-letter topic.")]
OriginTopic = Annotated[
    str,
    typer.Option("--origin", help="Where dead letters without origin headers came from."),
]
DlqRefs = Annotated[
    list[str] | None,
    typer.Argument(help="Dead letters by position in the dead-letter topic, partition:offset."),
]
ReasonFilter = Annotated[
    str | None, typer.Option("--reason", help="Only dead letters whose reason contains this.")
]


def _preview(value: bytes, width: int = 60) -> str:
    text = value.decode("utf-8", "backslashreplace")
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= width else text[: width - 1] + "…"


@dlq_app.command("list")
def dlq_list(
    brokers: RequiredBrokers,
    topic: DlqTopic = "pizza.orders.dlq",
    origin: OriginTopic = "pizza.orders",
    reason: ReasonFilter = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows to show (0: all).")] = 50,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Dead letters, oldest first per partition, with their reason and origin; then counts by
    kind of reason."""
    import json

    from rich.console import Console
    from rich.table import Table

    from streamlane.dlq import read_dead_letters, select
    from streamlane.kafka import check_reachable
    from streamlane.metrics import reason_kind

    check_reachable(brokers)
    letters = select(read_dead_letters(brokers, topic, origin), reason)
    shown = letters if limit == 0 else letters[:limit]
    if format != Format.table:
        rows = [
            {
                "ref": d.ref,
                "reason": d.reason,
                "origin_topic": d.origin_topic,
                "origin_partition": d.origin_partition,
                "origin_offset": d.origin_offset,
                "key": d.key.decode("utf-8", "replace") if d.key is not None else None,
                "value": d.value.decode("utf-8", "replace"),
            }
            for d in shown
        ]
        if format == Format.json:
            print(json.dumps(rows))
        else:
            import polars as pl

            sys.stdout.write(pl.DataFrame(rows).write_csv())
        return
    console = Console()
    table = Table(title=f"{topic}: {len(letters):,} dead letters", title_justify="left")
    for column in ("ref", "reason", "origin", "record"):
        table.add_column(column, overflow="fold")
    for d in shown:
        table.add_row(
            d.ref,
            d.reason,
            f"{d.origin_topic}/{d.origin_partition}@{d.origin_offset}",
            _preview(d.value),
        )
    console.print(table)
    kinds: dict[str, int] = {}
    for d in letters:
        kinds[reason_kind(d.reason)] = kinds.get(reason_kind(d.reason), 0) + 1
    for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        console.print(f"{n:>8,}  {kind}")
    if len(shown) < len(letters):
        console.print(f"showing {len(shown):,} of {len(letters):,} (--limit 0 for all)")


@dlq_app.command("show")
def dlq_show(
    refs: DlqRefs = None,
    brokers: RequiredBrokers = "",
    topic: DlqTopic = "pizza.orders.dlq",
    origin: OriginTopic = "pizza.orders",
) -> None:
    """Everything about the given dead letters: reason, origin, key and the original record
    (pretty-printed when it is JSON)."""
    import json

    from streamlane.dlq import parse_ref, read_dead_letters, select
    from streamlane.kafka import check_reachable

    if not refs:
        raise UserError("name the dead letters to show, as partition:offset (see `dlq list`)")
    for ref in refs:  # a mistyped ref is named before Kafka is asked anything
        parse_ref(ref)
    check_reachable(brokers)
    for d in select(read_dead_letters(brokers, topic, origin), refs=refs):
        print(f"dead letter {d.ref} in {topic}")
        print(f"  reason: {d.reason}")
        print(f"  origin: {d.origin_topic} partition {d.origin_partition} offset {d.origin_offset}")
        print(f"  key:    {d.key.decode('utf-8', 'backslashreplace') if d.key else None}")
        try:
            body = json.dumps(json.loads(d.value), indent=2, ensure_ascii=False)
        except ValueError:
            body = d.value.decode("utf-8", "backslashreplace")
        print("  record:")
        print("\n".join("    " + line for line in body.splitlines() or [""]))


@dlq_app.command("replay")
def dlq_replay(
    refs: DlqRefs = None,
    brokers: RequiredBrokers = "",
    topic: DlqTopic = "pizza.orders.dlq",
    origin: OriginTopic = "pizza.orders",
    reason: ReasonFilter = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; send nothing.")
    ] = False,
) -> None:
    """Re-publish chosen dead letters, bytes and key unchanged (same event ids), to the topic
    each came from, after the cause is fixed. Choose by ref, by --reason, or --all."""
    from streamlane.dlq import parse_ref, read_dead_letters, replay, select
    from streamlane.kafka import check_reachable

    if not refs and reason is None and not all_:
        raise UserError("choose dead letters to replay: partition:offset refs, --reason, or --all")
    for ref in refs or []:  # a mistyped ref is named before Kafka is asked anything
        parse_ref(ref)
    check_reachable(brokers)
    chosen = select(read_dead_letters(brokers, topic, origin), reason, refs)
    if not chosen:
        print("no dead letters match; nothing replayed")
        return
    if dry_run:
        for d in chosen:
            print(f"would replay {d.ref} to {d.origin_topic}: {d.reason}")
        return
    for target, n in replay(brokers, chosen).items():
        print(f"replayed {n:,} dead letter{'s' if n != 1 else ''} to {target}")


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", envvar="GRAFANA_URL", help="Grafana base URL.")],
    token: Annotated[
        str, typer.Option("--token", envvar="GRAFANA_TOKEN", help="Grafana service account token.")
    ],
    pg_address: Annotated[
        str,
        typer.Option(
            "--pg-address", help="The warehouse's PostgreSQL endpoint as Grafana reaches it."
        ),
    ] = "warehouse:5433",
    pg_user: Annotated[
        str, typer.Option("--pg-user", envvar="STREAMLANE_PG_USER", help="Endpoint user.")
    ] = "streamlane",
    pg_password: Annotated[
        str,
        typer.Option("--pg-password", envvar="STREAMLANE_PG_PASSWORD", help="Endpoint password."),
    ] = "",
) -> None:
    """Create or update the warehouse data source and the dashboards in a running Grafana."""
    from dashboards.push import push

    if not pg_password:
        raise UserError("give the endpoint password (--pg-password or STREAMLANE_PG_PASSWORD)")
    for uid in push(url, token, pg_address, pg_user, pg_password):
        print(f"pushed dashboard {uid}")


@new_app.command("flow")
def new_flow(
    name: Annotated[str, typer.Argument(help="The flow's name: a lower-case identifier.")],
    root: Annotated[
        Path | None, typer.Option("--dir", help="Project root (default: this project's).")
    ] = None,
) -> None:
    """Scaffold flow NAME: its module, event schemas, a generator and an end-to-end test."""
    from streamlane.paths import PROJECT_ROOT
    from streamlane.scaffold import new_flow as scaffold

    base = (root or PROJECT_ROOT).resolve()
    here = Path.cwd().resolve()

    def shown(path: Path) -> Path:
        # Relative to where the command ran when the project is there, else in full: the
        # project's root need not be the working folder.
        return path.relative_to(here) if path.is_relative_to(here) else path

    for path in scaffold(name, base):
        print(f"created {shown(path)}")
    print(
        f"next: edit {shown(base / 'flows' / f'{name}.py')} and "
        f"{shown(base / 'schemas')}/{name}.*.json, then run "
        f"pytest {shown(base / 'tests' / 'e2e' / f'test_{name}_flow.py')}, "
        f"or: streamlane flow run {name}"
    )


@app.command()
def catalog(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write the site and catalog.md into.")
    ] = Path("catalog"),
) -> None:
    """Write the event catalog: a static site and Markdown of every event type and version."""
    from streamlane.catalog import build_catalog, write_catalog

    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write the catalog to {out}: it is a file, not a folder")
    built = build_catalog()
    try:
        written = write_catalog(out, built)
    except OSError as exc:
        raise UserError(
            f"cannot write the catalog to {exc.filename or out}: {exc.strerror or exc}"
        ) from None
    print(
        f"{len(built.events)} event types, {len(built.flows)} flows: "
        f"open {out / 'index.html'} ({len(written)} files; Markdown in {out / 'catalog.md'})"
    )


@reference_app.command("put")
def reference_put(
    name: Annotated[str, typer.Argument(help="The lookup, e.g. stores.")],
    brokers: RequiredBrokers,
    file: Annotated[
        Path | None, typer.Option("--file", help="Rows to add or change (CSV or JSONL).")
    ] = None,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", help="A key to remove (repeatable).")
    ] = None,
) -> None:
    """Add, change or remove rows of a reference table, through its compacted topic."""
    import polars as pl

    from streamlane.kafka import check_reachable
    from streamlane.reference import publish_rows, read_rows, topic_references

    known = topic_references()
    if name not in known:
        raise UserError(f"no reference table {name!r} (known: {', '.join(known) or 'none'})")
    spec = known[name]
    if file is None and not delete:
        raise UserError("give --file ROWS and/or --delete KEY")
    rows = read_rows(spec, file) if file else pl.DataFrame(schema=spec.columns)
    check_reachable(brokers)
    sent = publish_rows(brokers, spec, rows, delete or [])
    print(
        f"{sent} record(s) sent to {spec.topic}: {rows.height} row(s), {len(delete or [])} removal(s)"
    )


def _listed_on_one_line(*groups: typer.Typer) -> None:
    """A group's command list shows each command's first docstring paragraph with its line
    breaks as written, so a sentence broke off mid-line: give each the paragraph on one
    line, which the list wraps to the terminal's width instead."""
    for group in groups:
        for command in group.registered_commands:
            doc = command.help or inspect.getdoc(command.callback) or ""
            if command.short_help is None and doc:
                command.short_help = " ".join(doc.split("\n\n")[0].split())


_listed_on_one_line(
    app, topics_app, flow_app, dashboards_app, schemas_app, dlq_app, new_app, reference_app
)


def main() -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    from streamlane import shutdown

    try:
        app()
    except UserError as exc:
        print(f"streamlane: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        shutdown.finished()
