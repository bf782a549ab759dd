"""An output schema's value rules as DuckDB SQL, for the records DuckDB's parse lands.

DuckDB's parse (`sinks.duckdb.parsed_select`) reads each record as the output's types and
fails on a record missing a field it reads, and `sinks.parse_screen` keeps from it the
records whose values are of another type (a `null` where the schema allows none, or a
number JSON has no room for, among them). A record of the right types can still break a
value rule of its schema: a `const` or an `enum`, a bound (`minimum`, `maximum`,
`minLength`, `minItems`), a date-time outside the years 1-9999, a null item in a list.
The exact decode refuses such a record; landed by DuckDB, it would be landed or kept
depending on which decode its batch took. So the statement fails on the first such
record (`refusal_filter`), and the landing then decodes the batch the exact way, which
keeps the record in `dead_letters` with the rule it breaks.

The rules mirror `streamlane.schemas`' checks keyword by keyword, but for those the parse
and the screen already hold (`required`, a finite number), which would cost every
record of every batch a check more each. A null stands for no value: a rule on a null
field holds.
"""

from __future__ import annotations

import json
from typing import Any

from streamlane.schemas import null_allowed, value_type
from streamlane.sqlquote import identifier, literal

OWN_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How a flow writes date-times (`streamlane.cloudevents.rfc3339`), as DuckDB spells it."""


def own_time(expr: str) -> str:
    """SQL reading a date-time the way the flow writes it, as a UTC timestamp (an error for
    any other form)."""
    return f"(strptime({expr}, '{OWN_TIME_FORMAT}') AT TIME ZONE 'UTC')"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


_BROKEN_BOUND = {
    "const": "{value} <> {bound}",
    "minLength": "length({value}) < {bound}",
    "minimum": "{value} < {bound}",
    "maximum": "{value} > {bound}",
    "minItems": "len({value}) < {bound}",
}
"""Each keyword bounding a value by its argument, as SQL true on a value breaking it."""


def broken_rules(
    node: dict[str, Any], expr: str, parsed: frozenset[str] = frozenset(), depth: int = 0
) -> list[str]:
    """SQL conditions, one per value rule of the schema `node`, each true on a value of
    `expr` that breaks it (null when the value is null). `parsed` names the date-times the
    statement reads with `own_time`, which fails on any other form: only their year is
    left to check."""
    out = []
    for keyword, arg in node.items():
        if keyword in _BROKEN_BOUND:
            out.append(_BROKEN_BOUND[keyword].format(value=expr, bound=_value(arg)))
        elif keyword == "enum":
            out.append(f"{expr} NOT IN ({', '.join(_value(v) for v in arg)})")
        elif keyword == "format" and arg == "date-time":
            # In the flow's form, the year 0 is written so (and refused: `parse_rfc3339`).
            out.append(f"starts_with({expr}, '0000')")
            if expr not in parsed:
                # Another RFC 3339 form is no broken rule, but only the exact decode reads it.
                read = f"try_strptime({expr}, '{OWN_TIME_FORMAT}')"
                out.append(f"({read} IS NULL AND {expr} IS NOT NULL)")
    for name, child in node.get("properties", {}).items():
        out.extend(broken_rules(child, f"{expr}.{identifier(name)}", parsed, depth))
    if value_type(node) == "array" and "items" in node:
        if not null_allowed(node["items"]):
            # Counted without a function per item: the screen cannot see a null item.
            out.append(f"list_count({expr}) < len({expr})")
        item = f"item{depth}"
        item_rules = broken_rules(node["items"], item, parsed, depth + 1)
        if item_rules:
            each = " OR ".join(item_rules)
            out.append(f"list_bool_or(list_transform({expr}, lambda {item}: {each}))")
    return out


def ruled_properties(document: dict[str, Any]) -> list[str]:
    """The top-level properties of the schema `document` that a rule applies to: those it
    requires (the parse fails on a record missing one it reads), and those with a value
    rule of their own or on a field within."""
    required = set(document.get("required", []))
    return [
        name
        for name, child in document["properties"].items()
        if name in required or broken_rules(child, "value")
    ]


def refusal_filter(
    document: dict[str, Any], record: str, parsed: frozenset[str] = frozenset()
) -> str:
    """A WHERE condition over parsed records (`record`, a struct holding at least the
    schema's `ruled_properties`) that holds on a record breaking no rule of the schema
    `document`, and fails the statement on the first that breaks one. `parsed` as for
    `broken_rules`."""
    rules = []
    for name, child in document["properties"].items():
        rules.extend(broken_rules(child, f"{record}.{identifier(name)}", parsed))
    if not rules:
        return "true"
    any_broken = " OR ".join(f"({rule})" for rule in rules)
    return (
        f"CASE WHEN {any_broken} THEN error('a record breaks a rule of its schema') ELSE true END"
    )
