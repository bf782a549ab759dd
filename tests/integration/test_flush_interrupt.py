"""A stop request's interrupt reaches a process that is waiting for deliveries promptly."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Producer

from streamlane.kafka import WAIT_STEP_S, flush_within, producer_config
from streamlane.ports import free_port


class _InterruptedWhileLogging(logging.Logger):
    """A logger whose first record is interrupted, as an interrupt that lands while the
    Kafka client runs its log callback."""

    def __init__(self) -> None:
        super().__init__("interrupted")
        self.interrupted_at: float | None = None

    def log(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        if self.interrupted_at is None:
            self.interrupted_at = time.monotonic()
            raise KeyboardInterrupt


@pytest.mark.timeout(60)
def test_an_interrupt_in_the_clients_log_callback_ends_the_wait_within_a_step() -> None:
    """With Kafka gone, a record cannot be delivered and the client logs each failed
    connection. An interrupt raised in that log callback is held by the client until its
    wait ends: waiting in steps raises it within one step, not at the 30 s timeout."""
    logger = _InterruptedWhileLogging()
    nowhere = f"127.0.0.1:{free_port()}"
    producer = Producer(producer_config(nowhere, {"logger": logger}))
    producer.produce("orders", b"{}")
    with pytest.raises(KeyboardInterrupt):
        flush_within(producer, 30)
    assert logger.interrupted_at is not None
    assert time.monotonic() - logger.interrupted_at < WAIT_STEP_S + 2.0
