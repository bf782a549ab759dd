"""The progress display's lag column: total input lag and the partitions furthest behind."""

from __future__ import annotations

from pathlib import Path

from streamlane.runner import Pipeline, RunSettings
from streamlane.settings import FlowSettings


def _pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(
        RunSettings(flow=FlowSettings(brokers=""), warehouse=tmp_path / "w", data_dir=tmp_path)
    )


def test_lag_names_the_partition_furthest_behind(tmp_path: Path) -> None:
    metrics = {
        "streamlane_consumer_lag": 1_530.0,
        "streamlane_consumer_lag|pizza.orders": 1_530.0,
        "streamlane_consumer_lag|pizza.orders/0": 30.0,
        "streamlane_consumer_lag|pizza.orders/5": 1_500.0,
    }
    assert _pipeline(tmp_path)._lag(metrics, "pizza.orders") == "1,530 (p5: 1,500, p0: 30)"


def test_lag_lists_at_most_four_partitions(tmp_path: Path) -> None:
    metrics = {"streamlane_consumer_lag": 15.0} | {
        f"streamlane_consumer_lag|pizza.orders/{p}": float(p) for p in range(6)
    }
    assert (
        _pipeline(tmp_path)._lag(metrics, "pizza.orders")
        == "15 (p5: 5, p4: 4, p3: 3, p2: 2, +1 more)"
    )


def test_no_lag_is_a_plain_zero(tmp_path: Path) -> None:
    assert _pipeline(tmp_path)._lag({}, "pizza.orders") == "0"
    assert (
        _pipeline(tmp_path)._lag({"streamlane_consumer_lag|pizza.orders/1": 0.0}, "pizza.orders")
        == "0"
    )
