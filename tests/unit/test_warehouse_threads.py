"""How many DuckDB threads `streamlane run` gives the warehouse it runs beside the flows."""

from __future__ import annotations

import pytest

from streamlane.runner import (
    WAREHOUSE_THREADS_ENV,
    warehouse_thread_args,
    warehouse_threads_beside_flows,
)


def test_one_thread_fewer_than_the_cores_and_never_none() -> None:
    assert warehouse_threads_beside_flows(8) == 7
    assert warehouse_threads_beside_flows(2) == 1
    assert warehouse_threads_beside_flows(1) == 1


def test_the_warehouse_is_told_its_threads_unless_the_environment_sets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(WAREHOUSE_THREADS_ENV, raising=False)
    assert warehouse_thread_args() == ["--threads", str(warehouse_threads_beside_flows())]
    # `serve` reads the variable itself, and refuses a bad value with one line.
    monkeypatch.setenv(WAREHOUSE_THREADS_ENV, "3")
    assert warehouse_thread_args() == []
