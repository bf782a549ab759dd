"""The CLI against the real embedded broker: topics, generation, errors users can cause."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Consumer, TopicPartition

from sinks.warehouse import run_query
from streamlane.broker import EmbeddedBroker
from streamlane.kafka import ensure_topics
from streamlane.ports import free_port
from tests.helpers import stop_run, the_error_line


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlane", *args], capture_output=True, text=True, timeout=timeout
    )


def test_topics_create_and_list(broker: EmbeddedBroker) -> None:
    created = cli(
        "topics", "create", "--brokers", broker.bootstrap, "--partitions", "3", "it.topics.a"
    )
    assert created.returncode == 0, created.stderr
    listed = cli("topics", "list", "--brokers", broker.bootstrap)
    assert "it.topics.a\t3" in listed.stdout.splitlines()


def test_generate_count_produces_every_record(broker: EmbeddedBroker) -> None:
    cli("topics", "create", "--brokers", broker.bootstrap, "--partitions", "2", "it.gen")
    out = cli(
        "generate",
        "--brokers",
        broker.bootstrap,
        "--topic",
        "it.gen",
        "--count",
        "3000",
        "--seed",
        "5",
    )
    assert out.returncode == 0, out.stderr
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it"})
    consumer.assign([TopicPartition("it.gen", p, 0) for p in (0, 1)])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 3000 and time.monotonic() < deadline:
        seen += len([m for m in consumer.consume(5000, 0.5) if m.error() is None])
    consumer.close()
    assert seen == 3000


def test_a_broker_with_clients_still_connected_stops_at_once() -> None:
    """Asked to stop, the broker waits for its clients to leave; a client left connected
    held every stop of a test's broker for five seconds."""
    broker = EmbeddedBroker().start()
    ensure_topics(broker.bootstrap, ["it.stop"], 1)
    client = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "it.stop"})
    try:
        # Asking for the group's positions holds a connection to its coordinator too.
        client.committed([TopicPartition("it.stop", 0)], timeout=10)
        asked = time.monotonic()
        broker.stop()
        assert time.monotonic() - asked < 2.0
    finally:
        broker.stop()
        client.close()


def test_unreachable_broker_fails_fast_with_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = cli("topics", "list", "--brokers", address)
    assert time.monotonic() - started < 10
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0], out.stderr


def test_bad_sql_is_one_line_and_nonzero(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    duckdb.connect(str(warehouse)).execute("CREATE TABLE t AS SELECT 1 AS x, 'a,b' AS y").close()
    bad = cli("query", "SELEC nonsense", "--warehouse", str(warehouse))
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    good = cli("query", "SELECT * FROM t", "--warehouse", str(warehouse), "--format", "csv")
    assert good.stdout.splitlines() == ["x,y", '1,"a,b"']


def test_run_refuses_its_own_arguments_before_starting_anything(tmp_path: Path) -> None:
    """A process count that cannot share the partitions, or a flow that does not exist, is
    refused in one line before `run` starts a broker or writes anything."""
    data = tmp_path / "data"
    uneven = cli("run", "--processes", "3", "--partitions", "4", "--data-dir", str(data))
    unknown = cli("run", "--flow", "no-such-flow", "--data-dir", str(data))
    for out in (uneven, unknown):
        assert out.returncode == 2, out.stderr
        assert "embedded broker" not in out.stdout, out.stdout
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "3 flow processes cannot share 4 partitions" in uneven.stderr
    assert "unknown flow 'no-such-flow'" in unknown.stderr
    # A demo rate the generator would refuse (its child failed after everything started).
    for rate in ("0", "-5"):
        still = cli("run", "--demo", "--rate", rate, "--data-dir", str(data))
        assert still.returncode == 2, still.stderr
        assert "Invalid value for '--rate'" in still.stderr, still.stderr
        assert "embedded broker" not in still.stdout + still.stderr
    assert not data.exists()


def test_a_file_where_a_folder_must_be_is_one_line(tmp_path: Path) -> None:
    """A data or warehouse folder that cannot be created (a file stands where it would be)
    stops `run` before it starts anything, and `serve` at once, with one line naming it."""
    in_the_way = tmp_path / "file"
    in_the_way.write_text("not a folder")
    data = cli("run", "--data-dir", str(in_the_way / "data"))
    warehouse = cli(
        "run", "--data-dir", str(tmp_path / "data"), "--warehouse", str(in_the_way / "w.duckdb")
    )
    served = cli("serve", "--warehouse", str(in_the_way / "w.duckdb"))
    for out in (data, warehouse, served):
        assert out.returncode == 2, out.stderr
        assert "embedded broker" not in out.stdout, out.stdout
    assert the_error_line(data.stderr) == (
        f"streamlane: error: cannot create the data folder {in_the_way / 'data'}: "
        f"{in_the_way} is a file"
    )
    for out in (warehouse, served):
        assert the_error_line(out.stderr) == (
            f"streamlane: error: cannot create the warehouse's folder {in_the_way}: "
            f"{in_the_way} is a file"
        )


@pytest.mark.timeout(120)
def test_run_stops_with_the_error_its_failed_child_gave(tmp_path: Path) -> None:
    """A child that stops on a user error (here the warehouse, whose file another process
    holds) stops `run` with that child's own one-line error, on a line of its own."""
    warehouse = tmp_path / "warehouse.duckdb"
    holder = duckdb.connect(str(warehouse))
    run = subprocess.Popen(
        [sys.executable, "-m", "streamlane", "run", "--warehouse", str(warehouse),
         "--data-dir", str(tmp_path / "data"), "--pg-port", "0", "--quack-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = run.communicate(timeout=90)
    finally:
        holder.close()
        stop_run(run)
    assert run.returncode == 2, stderr[-2000:]
    error = the_error_line(stderr)
    assert error == (
        f"streamlane: error: warehouse exited with status 2: cannot open warehouse {warehouse}: "
        f"another process (PID {os.getpid()}) has it open; a running warehouse answers queries "
        f"itself (`streamlane query`), or stop it first (see {tmp_path / 'data/logs/warehouse.log'})"
    )


def test_a_mistyped_dead_letter_ref_is_named_before_kafka_is_asked() -> None:
    """`dlq show` and `dlq replay` name a ref that is not partition:offset at once, even
    with no broker to ask (they used to wait for Kafka first, then report the broker)."""
    nowhere = f"127.0.0.1:{free_port()}"
    for command in ("show", "replay"):
        started = time.monotonic()
        out = cli("dlq", command, "0:1", "x:y", "--brokers", nowhere)
        assert time.monotonic() - started < 5
        assert out.returncode == 2
        assert out.stderr.strip() == (
            "streamlane: error: 'x:y' is not a dead letter reference (partition:offset, e.g. 0:17)"
        ), out.stderr


def test_a_taken_metrics_port_is_one_line(tmp_path: Path) -> None:
    """`--metrics-port` on a port another process listens on stops the command with one
    line naming the address, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "serve", "--warehouse", str(tmp_path / "w.duckdb"), "--pg-port", "0",
            "--quack-port", "0", "--metrics-port", str(port),
        )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert the_error_line(out.stderr) == (
        f"streamlane: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    )


@pytest.mark.parametrize(
    ("option", "env", "said"),
    [
        ("--pg-port", "PG", "cannot listen for PostgreSQL clients on 127.0.0.1:{port}: "
         "Address already in use"),
        ("--quack-port", "QUACK", "cannot serve Quack on 127.0.0.1:{port}: IO Error: "),
    ],
    ids=["pg", "quack"],
)  # fmt: skip
def test_a_taken_endpoint_port_says_how_to_choose_another(
    tmp_path: Path, option: str, env: str, said: str
) -> None:
    """A warehouse endpoint's port taken by another server (a second PostgreSQL on a
    developer's machine, say) stops `serve` with one line that names the address and the
    option that picks another port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--pg-port": "0", "--quack-port": "0"} | {option: str(port)}
        args = [a for pair in ports.items() for a in pair]
        out = cli("serve", "--warehouse", str(tmp_path / "w.duckdb"), *args)
    assert out.returncode == 2, out.stderr
    line = the_error_line(out.stderr)
    assert line.startswith(f"streamlane: error: {said.format(port=port)}"), line
    assert line.endswith(
        f"; choose another port with {option} or STREAMLANE_{env}_PORT (0: any free)"
    ), line


def test_a_query_without_a_statement(tmp_path: Path) -> None:
    """No SQL at all is one line; SQL that is only a comment runs and returns no rows, on
    the file and through a warehouse process (whose query server raised on it)."""
    warehouse = tmp_path / "w.duckdb"
    duckdb.connect(str(warehouse)).close()
    empty = cli("query", "  ", "--warehouse", str(warehouse))
    assert empty.returncode == 2
    assert (
        empty.stderr.strip()
        == 'streamlane: error: no SQL given (for example: streamlane query "SELECT 1")'
    )
    on_file = cli("query", "--warehouse", str(warehouse), "--format", "csv", "--", "-- nothing")
    assert on_file.returncode == 0 and on_file.stdout.strip() == "", on_file.stderr
    with duckdb.connect() as con:
        assert run_query(con, "-- nothing").num_rows == 0
        assert run_query(con, "SELECT 1 AS x -- one").to_pylist() == [{"x": 1}]


def test_flow_run_refuses_malformed_cluster_addresses_and_negative_durations() -> None:
    """A cluster address that is not HOST:PORT is one line before anything starts (it
    surfaced as the cluster's traceback); a negative lateness, idle timeout or dedupe
    horizon is refused as a usage error."""
    nowhere = f"127.0.0.1:{free_port()}"
    bad = cli("flow", "run", "orders", "--brokers", nowhere, "--process-id", "0",
              "--addresses", "flow-0:2101;nonsense")  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == "streamlane: error: --addresses: 'nonsense' is not HOST:PORT"
    for option in ("--lateness", "--idle-timeout", "--dedupe-horizon"):
        negative = cli("flow", "run", "orders", "--brokers", nowhere, option, "-1")
        assert negative.returncode == 2
        assert f"Invalid value for '{option}'" in negative.stderr, negative.stderr


ODD_TYPES = (
    "SELECT now() - now() AS behind, INTERVAL 1 DAY + INTERVAL 90 MINUTE AS i, 5::BIT AS b, "
    "'12'::VARINT AS v, union_value(k := 1) AS u, '\\xFFx'::BLOB AS bl, 2 AS n"
)


def test_results_of_types_a_frame_cannot_hold_print_as_duckdb_text(tmp_path: Path) -> None:
    """An interval (as `now() - max(event_time)` gives), a union, a bit string or a big
    number comes as DuckDB's text for it, and bytes as escaped text in CSV and JSON: each
    made `streamlane query` print a traceback, in every format or in CSV and JSON."""
    warehouse = tmp_path / "w.duckdb"
    duckdb.connect(str(warehouse)).close()
    csv = cli("query", ODD_TYPES, "--warehouse", str(warehouse), "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout.splitlines() == [
        "behind,i,b,v,u,bl,n",
        "00:00:00,1 day 01:30:00,00000000000000000000000000000101,12,1,\\xffx,2",
    ]
    as_json = cli("query", ODD_TYPES, "--warehouse", str(warehouse), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)[0]["bl"] == "\\xffx"
    table = cli("query", ODD_TYPES, "--warehouse", str(warehouse))
    assert table.returncode == 0 and "1 day 01:30:00" in table.stdout, table.stderr
    # The warehouse process's query server answers with the same columns.
    with duckdb.connect() as con:
        served = run_query(con, ODD_TYPES).to_pylist()
    assert served == [
        {"behind": "00:00:00", "i": "1 day 01:30:00", "b": "00000000000000000000000000000101",
         "v": "12", "u": "1", "bl": b"\xffx", "n": 2}
    ]  # fmt: skip
