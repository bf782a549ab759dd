"""Frames put together column by column keep with_columns' names, order and values."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from streamlane.engine import with_series


def test_replaces_in_place_and_adds_after_as_with_columns_does() -> None:
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]})
    b = pl.Series("b", ["p", "q"])
    d = pl.Series("anything", [7, 8])
    expected = frame.with_columns(b, d=d)
    got = with_series(frame, b, d=d)
    assert_frame_equal(got, expected)
    assert got.columns == ["a", "b", "c", "d"]


def test_an_empty_frame_gets_empty_columns() -> None:
    frame = pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)})
    got = with_series(frame, e=pl.Series([], dtype=pl.Int64))
    assert got.columns == ["a", "e"] and got.height == 0
