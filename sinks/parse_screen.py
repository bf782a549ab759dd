"""Which output records DuckDB's JSON parse may be given: those it reads as the exact decode does.

DuckDB's parse (`json_transform_strict`) refuses a record it cannot read as the output's
types, and the landing then decodes the batch the exact way (`sinks.duckdb.land_batches`).
But it reads some records the exact decode refuses, converting instead of refusing: text
that reads as a number into a number column (`"12"`), a fraction into an integer column
(`1.5` becomes 2), a boolean into a number (`true` becomes 1), any value into a text
column (`5` becomes `'5'`, an object its JSON text), `NaN` and `Infinity`, a number too
large for a double (infinity), and a comma before a closing bracket. A record another
writer sent to an output topic could hold any of these. Landed as converted, it would be
landed differently on a replay whose batch the exact decode took for another record.

So a batch goes to DuckDB only when no record matches the output's screen: a regex, built
from the schema's Arrow types, matching a declared field whose value starts like another
JSON type (`null` too, unless the schema allows it: DuckDB reads it as NULL, which the
exact decode refuses), an integer written with a fraction or an exponent, or a number
too large (an exponent of 100 or more, a hundred digits or more).
Field names are matched as written. A key spelt with an escape (`"c\\u0069ty"`) and a
comma before a closing bracket match a second regex, run only over the records holding a
backslash, or a comma before a bracket or a space: the flow's own records hold those only
in strings. A name declared with two types (at two levels of the schema), or as a list of
plain values, matches wherever it is written: the screen cannot tell its value's type
from its name, so records holding it always take the exact decode. A match decides only
which decode lands a batch, never whether a record is valid: a false match costs the
batch the exact decode's time (a string holding `,]`, a number of 1e100 or more).

The screen checks types only, as the Arrow parse of the exact decode's first pass does: the
schema's value rules (an enum, a range) are checked by DuckDB's statement itself
(`sinks.value_rules`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from streamlane.engine import BATCH_ENGINE
from streamlane.schemas import ESCAPED_KEY, LEADING_CHARS, allows_null, declared_fields, json_kind

_SPACE = r"[ \t\n\r]*"
_NOT_NULL = "n(?:[^u]|u[^l]|ul[^l])"
"""A value starting like `null` but another word (`nan`)."""
_TRAILING_COMMA = rf",{_SPACE}[\]}}]"
_RARE = [",}", ",]", ", ", ",\t", ",\n", ",\r", "\\"]
"""Text every record holding an escaped key or a trailing comma holds, and the flow's own
records only in a string (a comma and a space, say): `_RARE_PATTERN` is run only on the
records holding one, which costs less than one more alternative in the screen's regex."""
_RARE_PATTERN = f"{ESCAPED_KEY}|{_TRAILING_COMMA}"


_LIST_OF_VALUES = ("list of values", False)


def _kind(field: pa.Field) -> tuple[str, bool]:
    """The field's `json_kind`, telling lists of plain values (whose items have no name)
    from lists of objects, and whether its schema allows null."""
    kind = field.type
    if pa.types.is_list(kind) and not pa.types.is_struct(kind.value_type):
        return _LIST_OF_VALUES
    return json_kind(kind), allows_null(field)


def _names(names: list[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names))


def screen_pattern(arrow_schema: pa.Schema) -> str:
    """The regex matching a record whose values DuckDB's parse might read differently from
    the exact decode, given its keys are written without escapes (see the module's doc)."""
    declared = declared_fields(arrow_schema, _kind)
    by_kind: dict[tuple[str, bool], list[str]] = {}
    anywhere = []
    for name, kinds in declared.items():
        if len(kinds) > 1 or kinds == {_LIST_OF_VALUES}:
            anywhere.append(name)
        else:
            by_kind.setdefault(next(iter(kinds)), []).append(name)
    after = f'"{_SPACE}:{_SPACE}'
    parts = []
    for (kind, nullable), names in sorted(by_kind.items()):
        if nullable:
            wrong = [f"[^{LEADING_CHARS[kind]}n \\t\\n\\r]", _NOT_NULL]
        else:
            wrong = [f"[^{LEADING_CHARS[kind]} \\t\\n\\r]"]
        if kind in ("integer", "number"):
            wrong.append("-[^0-9]")
        if kind == "integer":
            wrong.append("-?[0-9]+[.eE]")
        if kind == "number":
            wrong += ["-?[0-9]{100}", r"-?[0-9]+(?:\.[0-9]*)?[eE]\+?0*[1-9][0-9]{2}"]
        parts.append(f'"(?:{_names(names)}){after}(?:{"|".join(wrong)})')
    if anywhere:
        parts.append(f'"(?:{_names(anywhere)}){after}')
    return "|".join(parts)


@dataclass(frozen=True)
class ParseScreen:
    """An output's screen: whether a batch of its records may be parsed by DuckDB."""

    pattern: str

    @classmethod
    def of(cls, arrow_schema: pa.Schema) -> ParseScreen:
        return cls(screen_pattern(arrow_schema))

    def passes(self, values: pa.Array | pa.ChunkedArray) -> bool:
        """True when no record of `values` (JSON text) matches the screen: DuckDB reads each
        as the exact decode would, or refuses it."""
        value = pl.col("value")
        matched = (
            pl.DataFrame({"value": pl.Series(values)})
            .lazy()
            .select(
                typed=value.str.contains(self.pattern).any(),
                rare=value.filter(value.str.contains_any(_RARE)).str.contains(_RARE_PATTERN).any(),
            )
            .collect(engine=BATCH_ENGINE)
        )
        return not (matched["typed"][0] or matched["rare"][0])
