"""Window aggregates: reduced per batch, merged across batches, finished when a window closes.

Every aggregate's result is the same however the window's events were batched,
so a window recomputed after a restart equals the one emitted before it:

- `count`, `minimum`, `maximum` and integer `total`s combine partial values;
- float `total`s and `mean` keep the window's values and sum them correctly
  rounded at close (`math.fsum`);
- `distinct_count` keeps the window's distinct values;
- `percentiles` keep a mergeable log-bucket sketch (relative error at most 1%):
  integer bucket counts, compact however many events a window holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from streamlane.engine import with_series

SKETCH_ACCURACY = 0.01
"""Relative error bound of a percentile: the value reported is within 1% of a true one."""

_GAMMA = (1 + SKETCH_ACCURACY) / (1 - SKETCH_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
# Bucket indices of positive values are offset so that every magnitude from 1e-9 up
# lands above zero; negatives mirror them below zero, and zero is bucket 0.
_OFFSET = 4096
_SMALLEST = 1e-9
_SKETCH_SUFFIX = ".sketch"


@dataclass(frozen=True)
class Aggregate:
    """One window aggregate: `partial` over a batch's events of a window, then `merge`d.

    `merge` is one of `sum`, `max`, `min` (partials combined), `fsum` (values kept,
    exact sum at close), `mean` (values kept, exact mean at close), `distinct` (distinct
    values kept, their number at close) or `sketch` (bucket counts kept, `quantiles` read
    at close into one column each, `<name>_p50` ...). Build them with the functions below.
    """

    name: str
    partial: pl.Expr
    merge: str
    quantiles: tuple[float, ...] = ()

    def merged(self) -> pl.Expr:
        """Expression combining this aggregate's partial rows of one window (in a group-by)."""
        col = pl.col(self.name)
        kept = col.list.explode(keep_nulls=False, empty_as_null=False)
        merges = {
            "sum": col.sum(),
            "max": col.max(),
            "min": col.min(),
            "fsum": kept,
            "mean": kept,
            "distinct": kept.unique(),
            "sketch": kept,
        }
        return merges[self.merge].alias(self.name)

    def outputs(self) -> list[str]:
        """Names of the columns this aggregate adds to a closed window."""
        if self.merge == "sketch":
            prefix = self.name.removesuffix(_SKETCH_SUFFIX)
            return [quantile_column(prefix, q) for q in self.quantiles]
        return [self.name]


def count(name: str = "count") -> Aggregate:
    """Number of on-time events in the window (late events are not counted)."""
    return Aggregate(name, pl.len(), "sum")


def total(name: str, value: pl.Expr, exact: bool = True) -> Aggregate:
    """Sum of `value` over the window's events; nulls are skipped, and a sum of none is 0.

    `exact` (the default) keeps the values and sums them correctly rounded at close,
    so the result does not depend on batching; `exact=False` adds partial sums (right
    for integers, cheaper).
    """
    if exact:
        return Aggregate(name, value.drop_nulls(), "fsum")
    return Aggregate(name, value.sum(), "sum")


def minimum(name: str, value: pl.Expr) -> Aggregate:
    """Smallest `value` in the window (nulls skipped; null if all are)."""
    return Aggregate(name, value.min(), "min")


def maximum(name: str, value: pl.Expr) -> Aggregate:
    """Largest `value` in the window (nulls skipped; null if all are)."""
    return Aggregate(name, value.max(), "max")


def mean(name: str, value: pl.Expr) -> Aggregate:
    """Exact mean of `value` over the window's events (nulls skipped; null if all are)."""
    return Aggregate(name, value.drop_nulls(), "mean")


def distinct_count(name: str, value: pl.Expr) -> Aggregate:
    """Number of distinct non-null `value`s in the window (exact; the values are kept)."""
    return Aggregate(name, value.drop_nulls().unique(), "distinct")


def percentiles(
    name: str, value: pl.Expr, quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> Aggregate:
    """Approximate quantiles of `value` (nulls skipped), one column `<name>_p<100q>` each.

    Values go to logarithmic buckets; a quantile is read from the bucket holding that
    rank and reported as the bucket's midpoint, within 1% of the true value
    (`SKETCH_ACCURACY`). Magnitudes below 1e-9 count as zero.
    """
    if not quantiles or any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError(f"{name}: quantiles must be between 0 and 1, got {quantiles}")
    buckets = sketch_buckets(value).drop_nulls().value_counts()
    # The sketch's own column is named apart from the results, which may share `name`
    # with another aggregate's prefix or an input column.
    sketch = buckets.struct.rename_fields(["bucket", "n"])
    return Aggregate(name + _SKETCH_SUFFIX, sketch, "sketch", quantiles)


def quantile_column(name: str, q: float) -> str:
    """Column name of quantile `q` of a percentiles aggregate: `latency_p95`, `latency_p99.9`."""
    return f"{name}_p{100 * q:g}"


def sketch_buckets(value: pl.Expr) -> pl.Expr:
    """The sketch bucket of each value: ordered like the values, zero for zero."""
    magnitude = value.abs().cast(pl.Float64)
    index = (magnitude.log() / _LOG_GAMMA).ceil().cast(pl.Int32) + _OFFSET
    return (
        pl.when(magnitude < _SMALLEST)
        .then(0)
        .when(value > 0)
        .then(index)
        .otherwise(-index)
        .cast(pl.Int32)
    )


def _bucket_values(buckets: np.ndarray) -> np.ndarray:
    """Midpoint (in relative terms) of each bucket: within `SKETCH_ACCURACY` of its values."""
    magnitude = 2 * np.power(_GAMMA, np.abs(buckets) - _OFFSET) / (_GAMMA + 1)
    return np.where(buckets == 0, 0.0, np.sign(buckets) * magnitude)


def compact_sketches(aggregates: tuple[Aggregate, ...], frame: pl.DataFrame) -> pl.DataFrame:
    """Sketch columns with each window's repeated buckets summed into one (bucket, count)."""
    for agg in aggregates:
        if agg.merge != "sketch" or frame.is_empty():
            continue
        name = agg.name
        buckets = frame.select(name).with_row_index("__window").explode(name).unnest(name)
        summed = (
            buckets.drop_nulls("bucket")
            .group_by("__window", "bucket")
            .agg(pl.col("n").sum())
            .sort("__window", "bucket")
            .group_by("__window", maintain_order=True)
            .agg(pl.struct("bucket", "n").alias(name))
        )
        frame = (
            frame.with_row_index("__window")
            .drop(name)
            .join(summed, on="__window", how="left")
            .drop("__window")
        )
    return frame


def finish(
    aggregates: tuple[Aggregate, ...], windows: pl.DataFrame, **extra: pl.Series
) -> pl.DataFrame:
    """Closed windows with each aggregate's kept state turned into its result columns, and
    the `extra` columns (one value per window) added after them."""
    if windows.is_empty():
        return with_series(windows, **extra) if extra else windows
    windows = compact_sketches(aggregates, windows)
    columns: list[pl.Series] = []
    for agg in aggregates:
        if agg.merge == "fsum":
            values = windows[agg.name].to_list()
            columns.append(pl.Series(agg.name, [math.fsum(v) for v in values], pl.Float64))
        elif agg.merge == "mean":
            values = windows[agg.name].to_list()
            means = [math.fsum(v) / len(v) if v else None for v in values]
            columns.append(pl.Series(agg.name, means, pl.Float64))
        elif agg.merge == "distinct":
            columns.append(windows[agg.name].list.len().cast(pl.Int64).alias(agg.name))
        elif agg.merge == "sketch":
            columns.extend(_quantiles(agg, windows[agg.name]))
    if not columns and not extra:
        return windows
    finished = with_series(windows, *columns, **extra)
    sketches = [a.name for a in aggregates if a.merge == "sketch"]
    return finished.drop(sketches) if sketches else finished


def _quantiles(agg: Aggregate, sketches: pl.Series) -> list[pl.Series]:
    """Each quantile of each window's sketch: the bucket where the rank `q * (n - 1)` falls."""
    results: dict[float, list[float | None]] = {q: [] for q in agg.quantiles}
    for sketch in sketches.to_list():
        if not sketch:
            for q in agg.quantiles:
                results[q].append(None)
            continue
        buckets = np.array([p["bucket"] for p in sketch], dtype=np.int64)
        counts = np.array([p["n"] for p in sketch], dtype=np.int64)
        order = np.argsort(buckets)
        buckets, cumulative = buckets[order], np.cumsum(counts[order])
        for q in agg.quantiles:
            rank = q * (cumulative[-1] - 1)
            at = int(np.searchsorted(cumulative, rank, side="right"))
            results[q].append(float(_bucket_values(buckets[min(at, len(buckets) - 1)])))
    names = agg.outputs()
    return [pl.Series(n, results[q], pl.Float64) for n, q in zip(names, agg.quantiles, strict=True)]
