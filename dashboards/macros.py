"""Grafana's PostgreSQL-data-source macros and template variables, expanded as Grafana does.

Used to run every panel's SQL exactly as Grafana would send it (tests, benchmark).
Supported: `$__time`, `$__timeEpoch`, `$__timeFilter`, `$__timeFrom`, `$__timeTo`,
`$__timeGroup`, `$__timeGroupAlias`, `$__unixEpochFilter`, and `$var` / `${var}`
template variables (multi-value: each value single-quoted, comma-separated).
"""

from __future__ import annotations

import re
from datetime import datetime

_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(interval: str) -> int:
    m = re.fullmatch(r"\s*'?(\d+)([smhd])'?\s*", interval)
    if not m:
        raise ValueError(f"unsupported interval {interval!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(
    sql: str, time_from: datetime, time_to: datetime, variables: dict[str, list[str]]
) -> str:
    """The SQL Grafana sends for a panel over [time_from, time_to] with these variable values."""

    def macro(m: re.Match[str]) -> str:
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")] if m.group(2) else []
        if name == "time":
            return f'{args[0]} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {args[0]}) AS "time"'
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{_rfc3339(time_from)}' AND '{_rfc3339(time_to)}'"
        if name == "timeFrom":
            return f"'{_rfc3339(time_from)}'"
        if name == "timeTo":
            return f"'{_rfc3339(time_to)}'"
        if name in ("timeGroup", "timeGroupAlias"):
            n = _seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{n})*{n}"
            return group + (' AS "time"' if name == "timeGroupAlias" else "")
        if name == "unixEpochFilter":
            return f"{args[0]} >= {int(time_from.timestamp())} AND {args[0]} <= {int(time_to.timestamp())}"
        raise ValueError(f"unsupported macro $__{name}")

    sql = _MACRO.sub(macro, sql)
    for name, values in variables.items():
        quoted = ",".join(_quote(v) for v in values)
        sql = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", quoted, sql)
    return sql
