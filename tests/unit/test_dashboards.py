"""Dashboards as code: the committed JSON is what the Python generates, and it fits the SDK's model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.generate import DASHBOARDS, OUT, render
from dashboards.macros import expand


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_json_is_current_and_valid(name: str) -> None:
    committed = (OUT / name).read_text()
    assert committed == render(DASHBOARDS[name]), "run: python -m dashboards.generate"
    model = Dashboard.from_json(json.loads(committed))
    assert model.uid and model.title and model.panels
    for panel in model.panels:
        for target in panel.targets or []:
            sql = target.to_json()["rawSql"]
            assert isinstance(sql, str) and "SELECT" in sql.upper()


def test_check_mode_passes_on_the_committed_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dashboards.generate", "--check"], capture_output=True
    )
    assert done.returncode == 0, done.stderr


def test_macros_expand_like_grafana() -> None:
    from datetime import UTC, datetime

    start, end = datetime(2026, 11, 23, 12, tzinfo=UTC), datetime(2026, 11, 23, 13, tzinfo=UTC)
    sql = expand(
        "SELECT $__timeGroupAlias(t, '1m'), x FROM y WHERE $__timeFilter(t) AND r IN ($region)",
        start,
        end,
        {"region": ["UK", "O'Hare"]},
    )
    assert sql == (
        'SELECT floor(extract(epoch from t)/60)*60 AS "time", x FROM y '
        "WHERE t BETWEEN '2026-11-23T12:00:00Z' AND '2026-11-23T13:00:00Z' AND r IN ('UK','O''Hare')"
    )
