"""Running a flow module on bytewax, with recovery tied to the broker it reads from."""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import signal
from datetime import timedelta
from pathlib import Path

from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from streamlane.errors import UserError
from streamlane.kafka import check_reachable
from streamlane.settings import FlowSettings

log = logging.getLogger(__name__)

RECOVERY_PARTITIONS = 8
"""Fixed when a recovery store is created: enough for the largest cluster we run."""

FLOWS = ("orders",)


def prepare_recovery(directory: Path, cluster_id: str) -> None:
    """Create the recovery store, or reset it when it belongs to another broker (stale)."""
    marker = directory / "broker.json"
    if directory.exists():
        owner = json.loads(marker.read_text()).get("cluster_id") if marker.exists() else None
        if owner == cluster_id:
            return
        log.warning("recovery state in %s belongs to another broker; starting fresh", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    init_db_dir(directory, RECOVERY_PARTITIONS)
    marker.write_text(json.dumps({"cluster_id": cluster_id}))


def run_flow(
    name: str,
    settings: FlowSettings,
    recovery_dir: Path,
    *,
    workers: int = 1,
    snapshot_interval_s: float = 5.0,
) -> None:
    """Run flow `flows.<name>` until interrupted; resumes from its recovery store when present.

    On the first start the flow reads its input from the earliest offset; later
    starts continue after the last snapshot (records after it are processed
    again and their outputs re-emitted with the same ids, which the landing absorbs).
    """
    if name not in FLOWS:
        raise UserError(f"unknown flow {name!r} (known: {', '.join(FLOWS)})")
    cluster_id = check_reachable(settings.brokers)
    prepare_recovery(recovery_dir, cluster_id)
    module = importlib.import_module(f"flows.{name}")
    flow = module.build_flow(settings)
    # SIGTERM stops the flow like Ctrl-C does, so bytewax shuts down cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            epoch_interval=timedelta(seconds=snapshot_interval_s),
            recovery_config=RecoveryConfig(recovery_dir),
        )
    except KeyboardInterrupt:
        log.info("flow %s stopped", name)
    except BytewaxRuntimeError as exc:
        if not _interrupted(exc):
            raise
        log.info("flow %s stopped", name)


def _interrupted(exc: BaseException) -> bool:
    """Whether bytewax stopped because of Ctrl-C/SIGTERM.

    The interrupt surfaces either in bytewax's own loop ("signal received") or inside a
    step, wrapped in a runtime error. Both are clean stops: a half-processed epoch was
    never snapshotted, so the next start processes it again.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) or "signal received" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
