"""Shared fixtures: a real embedded broker on a free loopback port, and process supervision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamlane.broker import EmbeddedBroker
from tests.clients import build_go, build_jdbc
from tests.helpers import Processes


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session (tests use their own topic names)."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, for flows with fixed topic names."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as running:
        yield running


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Children started by the test; all stopped at teardown, even when the test fails."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lib/pq client (tests/clients/go), built once per session."""
    return build_go(tmp_path_factory.mktemp("go"))


@pytest.fixture(scope="session")
def jdbc_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JDBC client (tests/clients/jdbc), compiled once per session."""
    return build_jdbc(tmp_path_factory.mktemp("jdbc"))
