"""Running a flow module on bytewax, with recovery tied to the broker it reads from."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from streamlane import dedupe, shutdown, storelock
from streamlane.brokerwatch import BrokerWatch, watch
from streamlane.collector import collect_rarely
from streamlane.dataflow import build_dataflow
from streamlane.errors import UserError
from streamlane.flow import load_flow
from streamlane.kafka import check_reachable, partitions_of
from streamlane.localparts import WorkerLayout
from streamlane.progresslines import ProgressLog, RateMeter, flow_line, own_metrics
from streamlane.settings import FlowSettings

log = logging.getLogger(__name__)

RECOVERY_PARTITIONS = 8
"""Fixed when a recovery store is created: enough for the largest cluster we run."""
CLUSTER_EXIT_AFTER_S = 1.5
"""How long an interrupted cluster process waits to end before it exits on its own: with the
grace period, below the 10 s every child of `streamlane run` gets to stop."""
DEDUPE_RUNS = "dedupe-runs"
"""Folder of the recovery store holding the dedupe state's run files (incremental snapshots)."""


_STORE_ENTRY = re.compile(rf"part-\d+\.sqlite3(-wal|-shm|-journal)?|broker\.json|{DEDUPE_RUNS}")
"""Names a recovery store holds: bytewax's partitions (with SQLite's side files), the broker
marker and the dedupe run files' folder."""


def prepare_recovery(directory: Path, cluster_id: str) -> None:
    """Create the recovery store, or reset it when it belongs to another broker (stale).

    Only a recovery store is ever reset: a folder that also holds anything else (a data
    folder named by mistake, say) is refused with UserError, its contents untouched.
    """
    marker = directory / storelock.MARKER
    if directory.exists():
        if not directory.is_dir():
            raise UserError(f"--recovery-dir {directory} is not a folder")
        owner = json.loads(marker.read_text()).get("cluster_id") if marker.exists() else None
        if owner == cluster_id:
            return
        foreign = sorted(p.name for p in directory.iterdir() if not _STORE_ENTRY.fullmatch(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (
                f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            )
            raise UserError(
                f"--recovery-dir {directory} is not a recovery store (it holds {shown}); "
                "give a new or empty folder"
            )
        if any(directory.iterdir()):
            log.warning("recovery state in %s belongs to another broker; starting fresh", directory)
        shutil.rmtree(directory)
    try:
        directory.mkdir(parents=True)
        init_db_dir(directory, RECOVERY_PARTITIONS)
        marker.write_text(json.dumps({"cluster_id": cluster_id}))
    except OSError as exc:
        raise UserError(
            f"cannot create the recovery store in {directory}: {exc.strerror or exc}"
        ) from None


def run_flow(
    name: str,
    settings: FlowSettings,
    recovery_dir: Path,
    *,
    workers: int = 1,
    snapshot_interval_s: float = 5.0,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Run flow `flows.<name>` until interrupted; resumes from its recovery store when present.

    On the first start the flow reads its input from the earliest offset; later
    starts continue after the last snapshot (records after it are processed
    again and their outputs re-emitted with the same ids, which the landing absorbs).
    While it runs it logs what it has done (`progresslines.flow_line`) every 10 s, when
    that changed, and once when it stops.
    With `addresses` (one `host:port` per process) this process is `process_id` of a
    cluster; every process runs `workers` threads and must see the same recovery store.
    The cluster's total worker count must divide the input partition count, so every
    worker owns as many partitions as the others.
    """
    declared = load_flow(name)
    cluster = cluster_options(process_id, addresses)
    cluster_id = check_reachable(settings.brokers)
    layout = WorkerLayout(process_id or 0, len(addresses) if addresses else 1, workers)
    check_balanced(settings.brokers, declared.input_topic, layout.workers)
    if process_id in (None, 0):
        prepare_recovery(recovery_dir, cluster_id)
    else:
        wait_for_recovery(recovery_dir, cluster_id)
    # While this process runs, `streamlane run` does not take the store for abandoned.
    storelock.hold(recovery_dir)
    # Snapshots then write only the ids seen since the last one, not the whole horizon.
    dedupe.keep_runs_in(recovery_dir / DEDUPE_RUNS)
    flow = build_dataflow(declared, settings, layout)
    # Held for the whole run, so the reason a cluster process gives when it exits without
    # its final snapshot comes from the watch its sources and sinks used.
    broker = watch(settings.brokers, settings.broker_timeout_s)
    if cluster:
        shutdown.install(
            doing="finishing the current batch and snapshotting, once every process of the "
            "cluster is asked to stop",
            exit_after=shutdown.ExitAfterInterrupt(
                CLUSTER_EXIT_AFTER_S, partial(_no_final_snapshot, name, broker)
            ),
        )
    else:
        shutdown.install()
    collect_rarely()
    try:
        rates = RateMeter()
        with ProgressLog(lambda: flow_line(declared, own_metrics(), rates)):
            cli_main(
                flow,
                workers_per_process=workers,
                **cluster,
                epoch_interval=timedelta(seconds=snapshot_interval_s),
                recovery_config=RecoveryConfig(recovery_dir),
            )
        if shutdown.stop_requested():
            log.info("flow %s stopped after a final snapshot", name)
    except KeyboardInterrupt:
        log.info("flow %s stopped", name)
    except BytewaxRuntimeError as exc:
        if (cause := _user_error(exc)) is not None:
            raise cause from None
        if not _interrupted(exc):
            raise
        log.info("flow %s stopped", name)
    except BaseException as exc:
        # A cluster process whose peer stopped panics in bytewax's network thread; that is
        # the end of this process too, and its state is safe in the recovery store.
        if not cluster or type(exc).__name__ != "PanicException":
            raise
        log.error("flow %s stopped: another process of the cluster went away", name)
        raise SystemExit(1) from None
    finally:
        broker.release()


def _no_final_snapshot(name: str, broker: BrokerWatch) -> str:
    """Why a process of a cluster exits without a final snapshot: the snapshot waits for
    every process of the cluster, and for Kafka to take the records produced since the last
    one (when `streamlane run` is killed, its broker goes away with the flows)."""
    if broker.down_for_s is not None:
        held = f"Kafka at {broker.brokers} does not answer"
    else:
        held = "another process of the cluster is still running"
    return (
        f"flow {name} stopped without a final snapshot: {held}; "
        "the next start resumes from the last snapshot"
    )


def cluster_options(process_id: int | None, addresses: list[str] | None) -> dict[str, Any]:
    """bytewax's cluster arguments, after checking that the two options agree."""
    if addresses is None and process_id is None:
        return {}
    if addresses is None or process_id is None:
        raise UserError("--process-id and --addresses go together")
    if not 0 <= process_id < len(addresses):
        raise UserError(
            f"--process-id {process_id} is not in the cluster of {len(addresses)} addresses"
        )
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"--addresses: {address!r} is not HOST:PORT")
    return {"process_id": process_id, "addresses": addresses}


def check_balanced(brokers: str, topic: str, total_workers: int) -> None:
    """Refuse a cluster whose workers would own unequal numbers of input partitions.

    bytewax 0.21.1 can stall when its workers own uneven numbers of partitions (a known
    upstream defect in its partitioned input); an even split avoids it.
    """
    if total_workers == 1:
        return
    count = len(partitions_of({"bootstrap.servers": brokers}, topic))
    if count % total_workers:
        raise UserError(
            f"{total_workers} workers cannot share the {count} partitions of {topic} evenly; "
            f"use a worker count that divides {count}"
        )


def wait_for_recovery(directory: Path, cluster_id: str, timeout_s: float = 60.0) -> None:
    """Wait until process 0 has prepared the shared recovery store for this broker."""
    marker = directory / storelock.MARKER
    deadline = time.monotonic() + timeout_s
    while True:
        if marker.exists() and json.loads(marker.read_text()).get("cluster_id") == cluster_id:
            return
        if time.monotonic() > deadline:
            raise UserError(
                f"no recovery store for this broker in {directory} (process 0 makes it)"
            )
        time.sleep(0.1)


def _user_error(exc: BaseException) -> UserError | None:
    """The UserError a step raised (a broker outage past its limit, say), if that is what
    stopped bytewax: it is reported as one line, not as bytewax's wrapped traceback."""
    return next((e for e in shutdown.causes(exc) if isinstance(e, UserError)), None)


def _interrupted(exc: BaseException) -> bool:
    """Whether bytewax stopped because of Ctrl-C/SIGTERM.

    The interrupt surfaces either in bytewax's own loop ("signal received") or inside a
    step, wrapped in a runtime error. Both are clean stops: a half-processed epoch was
    never snapshotted, so the next start processes it again.
    """
    return shutdown.interrupted(exc) or any(
        "signal received" in str(e) for e in shutdown.causes(exc)
    )
