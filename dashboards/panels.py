"""Panel and variable builders every dashboard uses, so they look and behave alike."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard

from dashboards.sql import WAREHOUSE, SqlTarget


def time_series(title: str, sql: str, unit: str, span: int = 12) -> timeseries.Panel:
    """A time series panel over one SQL query of the warehouse, 8 rows high."""
    return (
        timeseries.Panel()
        .title(title)
        .datasource(WAREHOUSE)
        .with_target(SqlTarget(sql))
        .unit(unit)
        .height(8)
        .span(span)
    )


def choice(name: str, label: str, sql: str) -> dash.QueryVariable:
    """A multi-value variable (with All) whose values a warehouse query lists, sorted."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(WAREHOUSE)
        .query(sql)
        .multi(True)
        .include_all(True)
        .refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
    )
