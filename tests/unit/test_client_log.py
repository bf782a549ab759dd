"""Kafka clients' repeated log lines are held back, and the next one says how many were."""

from __future__ import annotations

import logging

import pytest

from streamlane.clientlog import RepeatsHeldBack, line_kind


def test_lines_that_differ_only_in_numbers_are_of_one_kind() -> None:
    assert line_kind("FAIL [rdkafka#consumer-4] 127.0.0.1:21896: refused (after 0ms)") == (
        line_kind("FAIL [rdkafka#consumer-7] 127.0.0.1:30001: refused (after 12ms)")
    )
    assert line_kind("Connect failed: refused") != line_kind("Disconnected: closed by peer")


def test_repeats_within_the_window_are_held_back_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    logger = logging.getLogger("test-client-log")
    logger.addFilter(RepeatsHeldBack(window_s=60, clock=lambda: now[0]))
    with caplog.at_level(logging.INFO, logger="test-client-log"):
        logger.error("FAIL [consumer-%d] connect failed", 1)
        logger.error("FAIL [consumer-%d] connect failed", 2)
        logger.info("FAIL [consumer-%d] disconnected", 2)
        now[0] += 59.9
        logger.error("FAIL [consumer-%d] connect failed", 3)
        now[0] += 0.2
        logger.error("FAIL [consumer-%d] connect failed", 4)
        logger.error("FAIL [consumer-%d] connect failed", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "FAIL [consumer-1] connect failed",
        "FAIL [consumer-2] disconnected",
        "FAIL [consumer-4] connect failed (2 more like it held back since the last one)",
    ]
