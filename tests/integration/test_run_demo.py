"""`streamlane run --demo`: rows become queryable while it runs; SIGTERM stops every child."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamlane.query import run_sql
from streamlane.storelock import remove_abandoned
from tests.helpers import stop_run, wait_until


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def _start_demo(tmp_path: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`streamlane run --demo` on a warehouse and data folder in `tmp_path`, on free ports,
    its output in `out`."""
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlane", "run", "--demo",
             "--warehouse", str(tmp_path / "warehouse.duckdb"), "--data-dir", str(tmp_path / "data"),
             "--rate", "100", "--pg-port", "0", "--quack-port", "0", *extra],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _children(tmp_path: Path, out: Path) -> set[int]:
    """The processes of a run started by `_start_demo`: those naming its folder or its
    embedded broker's address."""
    port = re.search(rb"embedded broker on 127\.0\.0\.1:(\d+)", out.read_bytes())
    assert port, out.read_text()
    return set(_processes_mentioning(str(tmp_path))) | set(
        _processes_mentioning(f"127.0.0.1:{port.group(1).decode()}")
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("processes", [1, 2])
def test_run_demo_lands_rows_and_stops_cleanly(tmp_path: Path, processes: int) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    out = tmp_path / "run.out"
    # Stores of embedded brokers gone since: one that a killed run left, and one that a
    # process still holds (this test, standing in for a flow of another run).
    recovery = tmp_path / "data" / "recovery"
    abandoned = recovery / "orders-embedded-0123456789ab"
    held = recovery / "clickstream-embedded-ba9876543210"
    for store in (abandoned, held):
        store.mkdir(parents=True)
        (store / "broker.json").write_text(json.dumps({"cluster_id": store.name.split("-", 1)[1]}))
    holder = open(held / "broker.json", "rb")  # noqa: SIM115 - closed at the end
    fcntl.flock(holder, fcntl.LOCK_SH)
    run = _start_demo(tmp_path, out, "--processes", str(processes))
    try:

        def rows(table: str) -> int:
            if not warehouse.with_name(warehouse.name + ".endpoint.json").exists():
                return 0
            return int(run_sql(warehouse, f"SELECT count(*) AS n FROM {table}")["n"][0])

        wait_until(lambda: rows("orders_enriched") > 0, 90, "enriched orders", every_s=1)
        wait_until(lambda: rows("store_revenue_1m") > 0, 90, "window rows", every_s=1)
        children = _children(tmp_path, out)
        # broker, warehouse, generator and each flow process
        assert len(children) >= 3 + processes
        # It says where PostgreSQL clients connect, and that address answers with the rows.
        wait_until(lambda: b"PostgreSQL clients" in out.read_bytes(), 30, "the endpoint line")
        said = re.search(
            r"PostgreSQL clients \(psql, Grafana\): postgresql://streamlane@127\.0\.0\.1:(\d+)"
            r"/warehouse \(password in (\S+)\)",
            out.read_text(),
        )
        assert said, out.read_text()
        assert Path(said.group(2)) == warehouse.with_name(warehouse.name + ".pg-password")
        counted = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", said.group(1), "-U", "streamlane", "-d", "warehouse",
             "-X", "-A", "-t", "-c", "SELECT count(*) > 0 FROM orders_enriched"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGPASSWORD": Path(said.group(2)).read_text().strip()},
        )  # fmt: skip
        assert counted.stdout.strip() == "t", counted.stderr
        # The flow keeps its state in a recovery store for this run's embedded broker, and
        # holds it: nothing takes it for abandoned while the flow runs.
        stores = list(recovery.glob("orders-embedded-*"))
        assert len(stores) == 1 and (stores[0] / "broker.json").exists(), stores
        assert remove_abandoned(recovery, "orders-embedded-*") == []
        # The run removed the store nothing held, and kept the one held.
        assert not abandoned.exists() and held.exists()
        assert "removed 1 recovery store(s) of embedded brokers gone since" in out.read_text()
        stopping = time.monotonic()
        run.send_signal(signal.SIGTERM)
        run.wait(30)
        stop_s = time.monotonic() - stopping
    finally:
        stop_run(run)  # also when the test failed
        holder.close()
    assert run.returncode == 0, out.read_text()[-2000:]
    # Its output is a file here, as under a service manager: progress comes as plain lines
    # (the run's title, then a line per flow) and, after the last of them, it says it stopped.
    lines = out.read_text().splitlines()
    assert lines[-2:] == ["stopping…", "stopped"], lines[-10:]
    # On the embedded broker the title also says how much memory the broker holds.
    title = re.fullmatch(
        r"streamlane · [\d,]+s · landed rows [\d,]+ \([\d,]+/s\)"
        r" · embedded broker ([\d,.]+) [MG]iB",
        lines[-4],
    )
    assert title, lines[-10:]
    assert float(title.group(1).replace(",", "")) > 0, lines[-4]
    assert re.fullmatch(
        r"  orders: events in [\d,]+ \([\d,]+/s\) · enriched [\d,]+ · windows [\d,]+"
        r" · dead letters [\d,]+ · late [\d,]+ · duplicates [\d,]+ · lag [\d,]+( \(.*\))?",
        lines[-3],
    ), lines[-10:]
    assert int(lines[-3].split("enriched ")[1].split(" ")[0].replace(",", "")) > 0, lines[-3]
    leftovers = [p for p in children if Path(f"/proc/{p}").exists()]
    assert not leftovers, f"children still running after SIGTERM: {leftovers}"
    # Every child gets 10 s; the broker stops after them.
    assert stop_s < 12, f"stopping took {stop_s:.1f} s"
    logs = tmp_path / "data" / "logs"
    for log in logs.glob("flow*.log"):
        assert "stopped after a final snapshot" in log.read_text(), log.name
        # Each process says in its own log what it did, last when it stopped.
        said = log.read_text()
        assert re.search(r"orders: events in [1-9][\d,]* \([\d,]+/s\) · enriched [1-9]", said), (
            said[-2000:]
        )
    assert re.search(
        r"landed rows [1-9][\d,]* \([\d,]+/s\) · landing lag", (logs / "warehouse.log").read_text()
    )
    # Nothing can resume from that store once the embedded broker is gone: the run removed it.
    assert not stores[0].exists(), sorted(p.name for p in stores[0].iterdir())


def _running(pid: int) -> bool:
    """Whether a process runs (an exited one that nobody has reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGKILL], ids=["hangup", "kill"])
def test_run_leaves_no_child_running_when_its_terminal_closes_or_it_is_killed(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    out = tmp_path / "run.out"
    run = _start_demo(tmp_path, out)
    children: set[int] = set()
    try:
        # Once the warehouse serves, every child has been started.
        wait_until(lambda: b"PostgreSQL clients" in out.read_bytes(), 90, "the endpoint line")
        children = _children(tmp_path, out)
        assert len(children) >= 4, children  # broker, warehouse, flow, generator
        run.send_signal(stop_signal)
        run.wait(30)
        wait_until(
            lambda: not [p for p in children if _running(p)], 30, "every child of run to stop"
        )
    finally:
        stop_run(run)
        for pid in children:  # also when the test failed
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    if stop_signal == signal.SIGHUP:
        # A closed terminal stops run as Ctrl-C does.
        assert run.returncode == 0, out.read_text()[-2000:]
        assert out.read_text().splitlines()[-2:] == ["stopping…", "stopped"]
