"""Knowing whether Kafka answers: outages are waited out, reported once, and bounded.

A Kafka client retries on its own, but it says little while it does: a consumer of a
stopped (or frozen) broker simply receives nothing, which looks exactly like an idle
partition. The flow must not mistake one for the other (an idle partition lets the
watermark advance on wall-clock time, so an outage would make the events after it
late). One daemon thread per process asks the brokers for metadata every second;
a request that fails or is not answered in time marks an outage. Outages are logged
once when they start and once when they end, exported as `streamlane_broker_up`, and
end the process (one line, exit status 2, state kept) when they outlast the limit.
The thread asks for as long as something uses the watch: each user that took it from
`watch` gives it back with `release`, and the last one stops it.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamlane import metrics
from streamlane.errors import UserError, exit_from_step
from streamlane.kafka import admin_config
from streamlane.threadname import name_this_thread

log = logging.getLogger(__name__)

DEFAULT_OUTAGE_LIMIT_S = 120.0
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0


class BrokerOutage(UserError):
    """Kafka did not answer for longer than the configured limit."""


class BrokerWatch:
    """Probes `brokers` from a daemon thread; see the module docstring for the semantics."""

    def __init__(
        self,
        brokers: str,
        limit_s: float = DEFAULT_OUTAGE_LIMIT_S,
        every_s: float = PROBE_EVERY_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.brokers = brokers
        self.limit_s = limit_s
        self._every_s = every_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._up_since = time.monotonic()
        client = AdminClient(
            admin_config(brokers, {"socket.connection.setup.timeout.ms": int(timeout_s * 1000)})
        )
        self._users = 0  # took it from `watch` and have not released it; under _watches_lock
        self._released = threading.Event()
        metrics.BROKER_UP.set(1)
        # Only the probe thread holds the client, so it is closed when the thread ends.
        self._thread = threading.Thread(
            target=self._run, args=(client,), name="broker-watch", daemon=True
        )
        self._thread.start()

    def _run(self, client: AdminClient) -> None:
        name_this_thread("broker-watch")
        while not self._released.is_set():
            started = time.monotonic()
            try:
                client.list_topics(timeout=self._timeout_s)
                answered = True
            except KafkaException:
                answered = False
            if self._released.is_set():
                break  # the brokers may be gone with their last user: nothing to tell
            if answered:
                self._answered()
            else:
                self._unanswered(started)
            self._released.wait(max(0.0, self._every_s - (time.monotonic() - started)))

    def release(self) -> None:
        """One user is done with this watch. The last one stops its probes (within one
        probe's timeout), and the next `watch` of these brokers starts a new watch: a
        process that keeps running after its flows (a notebook, a test session) would
        otherwise keep asking every broker it ever used, long gone ones too, and those
        asks knock on whatever listens on the port later."""
        with _watches_lock:
            self._users -= 1
            if self._users > 0:
                return
            if _watches.get((self.brokers, self.limit_s)) is self:
                del _watches[(self.brokers, self.limit_s)]
        self._released.set()

    @property
    def probing(self) -> bool:
        """Whether the watch still asks the brokers (false soon after its last release)."""
        return self._thread.is_alive()

    def _answered(self) -> None:
        with self._lock:
            down_since, self._down_since = self._down_since, None
            if down_since is not None:
                self._up_since = time.monotonic()
        if down_since is not None:
            metrics.BROKER_UP.set(1)
            log.warning(
                "Kafka at %s answers again after %.0f s; continuing",
                self.brokers,
                time.monotonic() - down_since,
            )

    def _unanswered(self, since: float) -> None:
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = since
        if first:
            metrics.BROKER_UP.set(0)
            log.warning(
                "Kafka at %s does not answer; waiting up to %.0f s for it (input stays in Kafka)",
                self.brokers,
                self.limit_s,
            )

    @property
    def down_for_s(self) -> float | None:
        """Seconds since the current outage began, or None while Kafka answers."""
        with self._lock:
            since = self._down_since
        return None if since is None else time.monotonic() - since

    @property
    def up_since(self) -> float:
        """`time.monotonic()` when Kafka last came back (or when watching began)."""
        with self._lock:
            return self._up_since

    def check(self) -> None:
        """Raise BrokerOutage when the current outage has lasted longer than the limit."""
        down_for = self.down_for_s
        if down_for is not None and down_for > self.limit_s:
            raise BrokerOutage(
                f"Kafka at {self.brokers} has not answered for {down_for:.0f} s "
                f"(limit {self.limit_s:.0f} s, --broker-timeout); stopping with state kept"
            )

    def check_or_exit(self) -> None:
        """`check()`, ending the process at once (one line, status 2) instead of raising.

        For flow steps: the recovery store already holds the last snapshot, which is all
        the next start needs.
        """
        try:
            self.check()
        except BrokerOutage as exc:
            exit_from_step(exc)


_watches: dict[tuple[str, float], BrokerWatch] = {}
_watches_lock = threading.Lock()


def watch(brokers: str, limit_s: float = DEFAULT_OUTAGE_LIMIT_S) -> BrokerWatch:
    """The process's watch of `brokers` (one probe thread however many users ask), for the
    caller to `release` once it no longer reads or writes through those brokers."""
    with _watches_lock:
        found = _watches.get((brokers, limit_s))
        if found is None:
            found = _watches[(brokers, limit_s)] = BrokerWatch(brokers, limit_s)
        found._users += 1
        return found


def watched() -> set[str]:
    """The broker lists this process watches now: each has a user that has not released
    its watch."""
    with _watches_lock:
        return {brokers for brokers, _ in _watches}
