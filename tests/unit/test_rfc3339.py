"""Event times: the fast ISO 8601 cast and the format parser name the same instants."""

from __future__ import annotations

import random

import polars as pl
import pytest

from streamlane.schemas import _format_parsed, _utc_micros, parse_rfc3339

EDGES = [
    "2026-11-02T11:00:00.029Z", "2026-11-02t11:00:00z", "2026-11-02T11:00:00+05:30",
    "2026-11-02T11:00:00-08:00", "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-00-01T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:59.123456789Z", "2026-01-01T23:59:59.1234567Z", "2026-01-01T23:59:59.5Z",
    "2026-01-01T23:59:59+24:00", "2026-01-01T23:59:59+23:59", "2026-01-01T23:59:59-00:00",
    "2026-01-01T23:59:59+00:60", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-05:00",
    "1969-12-31T23:59:59.999999Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
]  # fmt: skip


def random_times(count: int, seed: int) -> list[str]:
    """Times of RFC 3339 shape with fields inside and just outside their ranges."""
    rng = random.Random(seed)
    fractions = ["", ".1", ".12", ".123", ".123456", ".1234567", ".123456789"]
    out = []
    for _ in range(count):
        date = f"{rng.randint(0, 9999):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}"
        clock = f"{rng.randint(0, 24):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        sign = rng.choice("+-")
        offset = rng.choice(["Z", "z", f"{sign}{rng.randint(0, 25):02d}:{rng.randint(0, 60):02d}"])
        out.append(f"{date}{rng.choice('Tt')}{clock}{rng.choice(fractions)}{offset}")
    return out


def micros(series: pl.Series) -> list[int | None]:
    # As integers: Python's datetime cannot hold year 0, which the parsers may return.
    return series.dt.epoch("us").to_list()


@pytest.mark.parametrize("times", [EDGES, random_times(3000, seed=1)], ids=["edges", "random"])
def test_each_time_parses_as_the_format_parser_reads_it(times: list[str]) -> None:
    """Parsed one at a time, every time takes the cast where it succeeds and the format
    parser elsewhere: both must give the same instant (or null)."""
    by_cast = [micros(_utc_micros(pl.Series([t])))[0] for t in times]
    by_format = micros(_format_parsed(pl.Series(times)))
    assert by_cast == by_format
    assert any(value is not None for value in by_cast) and None in by_cast


def test_a_batch_with_a_time_the_cast_refuses_parses_every_time() -> None:
    """One bad time sends its batch to the format parser; the good times still parse."""
    good = ["2026-11-02T11:00:00.029Z", "2026-11-02T12:30:00+01:30"]
    parsed = pl.DataFrame({"t": [*good, "2026-02-30T00:00:00Z", None, "yesterday"]}).select(
        parse_rfc3339(pl.col("t"))
    )
    assert micros(parsed["t"]) == [1793617200029000, 1793617200000000, None, None, None]


def test_times_not_of_rfc3339_shape_are_null() -> None:
    """ISO 8601 forms outside RFC 3339 are refused, though the cast would read them."""
    odd = ["2026-11-02 11:00:00Z", "2026-11-02", "2026-11-02T11:00Z", "2026-11-02T11:00:00",
           "2026-11-02T11:00:00+0000", "2026-11-02T23:59:60Z", "26-11-02T11:00:00Z", ""]  # fmt: skip
    parsed = pl.DataFrame({"t": odd}).select(parse_rfc3339(pl.col("t")))
    assert parsed["t"].null_count() == len(odd)
