"""Content enrichment: add columns to events from a reference table, by key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl


@dataclass(frozen=True)
class Enriched:
    """Events that found their reference row (`events`) and the ones that did not (`misses`: row, reason)."""

    events: pl.DataFrame
    misses: pl.DataFrame


@dataclass(frozen=True)
class LookupEnricher:
    """Adds the reference table's columns to each event whose `key` matches `table_key`.

    An event without a match is a miss: it leaves the stream with `miss_reason`
    (formatted with the key value as `{}`) so the flow can dead-letter it. A text key
    is shown in single quotes (a quote or backslash in it escaped with a backslash) and
    a missing key as `null`, so every value reads apart from the reason's words and a
    reason's kind (`streamlane.metrics.reason_kind`) stays the same whatever the value.
    Event order is preserved; the table must hold each key once; an event whose key is
    missing matches nothing.
    """

    table: pl.DataFrame
    key: str
    table_key: str
    miss_reason: str

    def __post_init__(self) -> None:
        if self.table[self.table_key].is_duplicated().any():
            raise ValueError(f"reference table has duplicate {self.table_key!r} values")

    def apply(self, events: pl.DataFrame, keep_misses: bool = False) -> Enriched:
        """Join the reference columns onto `events`; see the class docstring for misses.

        With `keep_misses` the events that missed stay in `events` too, their reference
        columns null (and are still reported in `misses`).
        """
        hit = "__hit"
        joined = events.join(
            self.table.with_columns(pl.lit(True).alias(hit)),
            left_on=self.key,
            right_on=self.table_key,
            how="left",
            maintain_order="left",
            coalesce=True,
        )
        found = pl.col(hit).is_not_null()
        misses = joined.filter(~found).select(
            "row",
            reason=pl.format(self.miss_reason, _shown(pl.col(self.key), events.schema[self.key])),
        )
        kept = joined if keep_misses else joined.filter(found)
        return Enriched(events=kept.drop(hit), misses=misses)


def _shown(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A key value as a miss reason shows it: text quoted, a missing value as `null`."""
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        escaped = (
            value.cast(pl.String)
            .str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all("'", "\\'", literal=True)
        )
        value = pl.concat_str(pl.lit("'"), escaped, pl.lit("'"))
    else:
        value = value.cast(pl.String)
    return value.fill_null(pl.lit("null"))


def read_reference_csv(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Read a reference CSV with explicit column types; a missing column is a clear error."""
    frame = pl.read_csv(path, schema_overrides=schema)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame.select(list(schema))
