"""Event schemas: the JSON Schema files in `schemas/` compiled for the columnar hot path.

A schema file is the contract for one event type and version. From it we derive
the Arrow schema the batch decoder parses with, and polars expressions that
name the first rule a decoded row breaks. The same file drives the per-record
`jsonschema` validator used for the rare records the columnar parser rejects,
so both paths take the same valid-or-not decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import polars as pl
import pyarrow as pa

from streamlane.paths import SCHEMAS_DIR

RFC3339_FORMAT = "%+"
"""`%Y-%m-%dT%H:%M:%S%.f%:z`, read with `T` and `Z` in either case."""
# What the parsers alone let through: years of other lengths, the year 0 (which no
# calendar of the clients reading the warehouse holds), leap seconds, other layouts.
_RFC3339_SHAPE = (
    r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
    r"-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


@dataclass(frozen=True)
class Check:
    """One schema rule as a polars expression: `violated` is true on rows that break it."""

    violated: pl.Expr
    reason: pl.Expr


@dataclass(frozen=True)
class EventSchema:
    """A compiled event schema: its type name, Arrow parse schema and row checks."""

    event_type: str
    document: dict[str, Any]
    arrow_schema: pa.Schema
    checks: tuple[Check, ...]
    validator: jsonschema.protocols.Validator
    suspect_pattern: str
    violation: pl.Expr
    """True on rows that break any rule: cheaper than `reason_expr`, which is only needed
    on those rows (the rules on a list's items are checked in one pass over the items)."""

    def reason_expr(self) -> pl.Expr:
        """Expression giving the first broken rule's reason per row, null when the row is valid."""
        return pl.coalesce(
            [pl.when(c.violated.fill_null(False)).then(c.reason) for c in self.checks]
        ).alias("reason")


def parse_rfc3339(expr: pl.Expr) -> pl.Expr:
    """RFC 3339 timestamps (any UTC offset, `Z`, optional fraction) to UTC microseconds.

    Anything else, including a missing offset, a year not of four digits or the year 0,
    becomes null.
    So does a leap second (`23:59:60`): RFC 3339 allows it, but no timestamp type
    downstream can hold it, and the standard RFC 3339 validators refuse it too. A
    fraction beyond microseconds is cut off.

    Built from polars' own expressions only, never a Python function (why: see
    `streamlane.flow.PYTHON_FUNCTION`): with Arrow's cast in a Python function here, a
    two-process flow hung for good within seconds of starting.
    """
    # The parse is outside the condition, where polars computes it once for every use
    # in a query (the event time, and the schema's check of the same field).
    parsed = expr.str.to_datetime(RFC3339_FORMAT, time_unit="us", time_zone="UTC", strict=False)
    return pl.when(expr.str.contains(_RFC3339_SHAPE)).then(parsed)


_PLAIN_TYPES = ("string", "integer", "number", "boolean")
_NULL_ALLOWED = {b"null": b"allowed"}
"""Arrow field metadata marking a field whose schema allows `null` besides its type."""


def value_type(node: dict[str, Any]) -> str | None:
    """The JSON type a schema node declares for its values, `null` left out: the type of
    `{"type": ["number", "null"]}` is `number`. None when it declares no type."""
    kind = node.get("type")
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        return rest[0] if len(rest) == 1 else None
    return kind


def allows_null(field: pa.Field) -> bool:
    """Whether the schema of an event's Arrow field allows `null` as its value (a field
    the schema does not require may still be absent, which is another thing)."""
    return (field.metadata or {}).get(b"null") == b"allowed"


def null_allowed(node: dict[str, Any]) -> bool:
    """Whether a schema node lists `null` among its types (`["string", "null"]`)."""
    kind = node.get("type")
    return isinstance(kind, list) and "null" in kind


def _nullable(node: dict[str, Any], where: str) -> bool:
    """Whether a node allows null besides one plain type (`["string", "null"]`); ValueError
    for any other list of types."""
    kind = node.get("type")
    if not isinstance(kind, list):
        return False
    if not null_allowed(node) or len(kind) != 2 or value_type(node) not in _PLAIN_TYPES:
        raise ValueError(
            f"{where}: a list of types must be one of {', '.join(_PLAIN_TYPES)} and null"
        )
    return True


def _arrow_field(name: str, node: dict[str, Any], where: str, required: bool) -> pa.Field:
    if not _nullable(node, where):
        return pa.field(name, _arrow_type(node, where))
    if required:
        # The columnar parse reads a missing field and a null one alike: with both the
        # rule and the null, the two paths could not take the same decision.
        raise ValueError(f"{where}: a required field cannot also allow null")
    return pa.field(name, _arrow_type(node, where), metadata=_NULL_ALLOWED)


def _arrow_type(node: dict[str, Any], where: str) -> pa.DataType:
    if "const" in node:
        return _literal_type(node["const"], where)
    if "enum" in node:
        kinds = {type(v) for v in node["enum"]}
        if len(kinds) != 1:
            raise ValueError(f"{where}: enum values must share one JSON type")
        return _literal_type(node["enum"][0], where)
    kind = value_type(node)
    if kind == "string":
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "object":
        props, required = node.get("properties", {}), set(node.get("required", []))
        return pa.struct(
            [_arrow_field(k, v, f"{where}.{k}", k in required) for k, v in props.items()]
        )
    if kind == "array":
        return pa.list_(_arrow_type(node.get("items", {}), f"{where}[]"))
    raise ValueError(f"{where}: unsupported schema node {node!r}")


def _literal_type(value: Any, where: str) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return pa.string()
    raise ValueError(f"{where}: unsupported literal {value!r}")


_IGNORED_KEYWORDS = {
    "$schema",
    "$id",
    "title",
    "description",
    "examples",
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "default",
    "deprecated",
}


def _checks(node: dict[str, Any], expr: pl.Expr, path: str, merged: bool = False) -> list[Check]:
    """Checks for one node; `expr` evaluates to the node's value (null when absent).

    With `merged`, the checks on an array's items become one check (any item breaks any
    rule), whose reason is not meaningful.
    """
    out: list[Check] = []
    lit = pl.lit
    for keyword, arg in node.items():
        if keyword == "const":
            reason = (
                pl.format("unknown event type '{}'", expr)
                if path == "type"
                else lit(f"{path} must be {arg!r}")
            )
            out.append(Check(expr != arg, reason))
        elif keyword == "enum":
            out.append(Check(~expr.is_in(arg), lit(f"{path} must be one of {arg}")))
        elif keyword == "minLength":
            out.append(Check(expr.str.len_chars() < arg, lit(f"{path} is shorter than {arg}")))
        elif keyword == "minimum":
            out.append(Check(expr < arg, lit(f"{path} must be >= {arg}")))
        elif keyword == "maximum":
            out.append(Check(expr > arg, lit(f"{path} must be <= {arg}")))
        elif keyword == "minItems":
            items = "item" if arg == 1 else "items"
            out.append(Check(expr.list.len() < arg, lit(f"{path} needs at least {arg} {items}")))
        elif keyword == "format":
            if arg != "date-time":
                raise ValueError(f"{path}: unsupported format {arg!r}")
            out.append(
                Check(
                    expr.is_not_null() & parse_rfc3339(expr).is_null(),
                    lit(f"{path} is not an RFC 3339 date-time"),
                )
            )
        elif keyword not in _IGNORED_KEYWORDS:
            raise ValueError(f"{path}: unsupported schema keyword {keyword!r}")
    if value_type(node) == "number":
        out.append(Check(~expr.is_finite(), lit(f"{path} must be a finite number")))
    for name in node.get("required", []):
        out.append(Check(expr.struct.field(name).is_null(), lit(f"{path}.{name} is required")))
    for name, child in node.get("properties", {}).items():
        out.extend(_checks(child, expr.struct.field(name), f"{path}.{name}", merged))
    if value_type(node) == "array" and "items" in node:
        items = node["items"]
        item_checks = _checks(items, pl.element(), f"{path}[]", merged)
        if not _nullable(items, f"{path}[]") and not items.get("required"):
            # A null item is written as one (a list has no absent items), unlike a null
            # field; the rules of an object's required fields already refuse it.
            null_item = Check(pl.element().is_null(), lit(f"{path}[] must not be null"))
            item_checks.insert(0, null_item)
        if merged and item_checks:
            any_item = pl.any_horizontal([c.violated.fill_null(False) for c in item_checks])
            out.append(Check(expr.list.eval(any_item).list.any(), lit(f"{path}[] is invalid")))
        else:
            for item_check in item_checks:
                violated = expr.list.eval(item_check.violated.fill_null(False)).list.any()
                out.append(Check(violated, item_check.reason))
    return out


_JSON_KINDS = (
    (pa.types.is_string, "string"),
    (pa.types.is_integer, "integer"),
    (pa.types.is_floating, "number"),
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_struct, "object"),
    (pa.types.is_list, "array"),
)


def json_kind(kind: pa.DataType) -> str:
    """The JSON type a value of Arrow type `kind` is written as: string, integer, number,
    boolean, object or array."""
    for test, name in _JSON_KINDS:
        if test(kind):
            return name
    raise ValueError(f"no JSON type for {kind}")


LEADING_CHARS = {
    "string": '"',
    "integer": "0-9\\-",
    "number": "0-9\\-",
    "boolean": "tf",
    "object": "{",
    "array": "\\[",
}
"""The first character of a JSON value of each JSON type, as a regex class's contents
(`n`, of null, is possible where the field `allows_null`)."""


ESCAPED_KEY = r'\\.(?:[^"\\]|\\.)*"[ \t\n\r]*:'
"""A key of a JSON text holding an escape (`"c\\u0069ty":`), from its first backslash
on: a pattern matching keys as written misses it, and the parsers read it unescaped."""


Kind = TypeVar("Kind", bound=Hashable)
"""How `declared_fields` classifies a field."""


def declared_fields(
    arrow_schema: pa.Schema, classify: Callable[[pa.Field], Kind]
) -> dict[str, set[Kind]]:
    """Every field name declared at any level of an event's Arrow schema (in objects, and
    in objects in lists), with `classify` of each field it is declared as."""
    out: dict[str, set[Kind]] = {}

    def walk(kind: pa.DataType) -> None:
        if pa.types.is_struct(kind):
            for field in kind:
                out.setdefault(field.name, set()).add(classify(field))
                walk(field.type)
        elif pa.types.is_list(kind):
            walk(kind.value_type)

    walk(pa.struct(list(arrow_schema)))
    return out


def _suspect_pattern(arrow_schema: pa.Schema) -> str:
    """A regex matching a declared field whose value starts like the wrong JSON type.

    The columnar parser refuses such records one failed parse at a time; spotting them
    up front sends them straight to the exact per-record path. A name declared with
    several types accepts all of them, so the pattern never flags a value that could
    be right (it only decides which path decodes a record, never whether it is valid).
    `null` is the wrong type for a field whose schema does not allow it: the columnar
    parser reads it as an absent field, which an optional field may be, so the record
    must take the exact path, which refuses it.
    """
    fields = declared_fields(
        arrow_schema, lambda f: LEADING_CHARS[json_kind(f.type)] + ("n" if allows_null(f) else "")
    )
    by_chars: dict[str, list[str]] = {}
    for name, chars in sorted(fields.items()):
        by_chars.setdefault("".join(sorted(chars)), []).append(re.escape(name))
    return "|".join(
        f'"(?:{"|".join(names)})"\\s*:\\s*[^{chars}\\s]'
        for chars, names in sorted(by_chars.items())
    )


def compile_schema(document: dict[str, Any]) -> EventSchema:
    """Compile a CloudEvent JSON Schema (a supported keyword subset) for columnar decoding.

    Raises ValueError naming the keyword when the schema uses one the columnar path
    cannot check, so a schema is never silently checked less strictly than it reads.
    """
    event_type = document["properties"]["type"]["const"]
    jsonschema.Draft202012Validator.check_schema(document)
    props = document["properties"]
    required = set(document.get("required", []))
    arrow_schema = pa.schema([_arrow_field(k, v, k, k in required) for k, v in props.items()])
    checks: list[Check] = []
    merged: list[Check] = []
    for name in document.get("required", []):
        checks.append(Check(pl.col(name).is_null(), pl.lit(f"{name} is required")))
    merged.extend(checks)
    for name, child in props.items():
        checks.extend(_checks(child, pl.col(name), name))
        merged.extend(_checks(child, pl.col(name), name, merged=True))
    return EventSchema(
        event_type=event_type,
        document=document,
        arrow_schema=arrow_schema,
        checks=tuple(checks),
        validator=jsonschema.Draft202012Validator(document),
        suspect_pattern=_suspect_pattern(arrow_schema),
        violation=pl.any_horizontal([c.violated.fill_null(False) for c in merged]),
    )


@cache
def load_schema(event_type: str, schemas_dir: Path = SCHEMAS_DIR) -> EventSchema:
    """Load and compile `schemas/<event_type>.json`; raises FileNotFoundError if absent."""
    path = schemas_dir / f"{event_type}.json"
    return compile_schema(json.loads(path.read_text()))
