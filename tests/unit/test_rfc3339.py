"""Event times: the pipeline's parse names the instants two other readers name."""

from __future__ import annotations

import random

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from streamlane.schemas import parse_rfc3339

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


def arrow_cast(time: str) -> int | None:
    """Arrow's ISO 8601 cast of one time: the exact instant, or None where it refuses."""
    try:
        cast = pc.cast(pa.array([time]), pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return micros(pl.Series(cast))[0]


def format_parsed(times: list[str]) -> list[int | None]:
    """The times read with RFC 3339's layout spelled out, in upper case, `Z` as `+00:00`."""
    normalized = pl.Series(times).str.to_uppercase().str.replace(r"Z$", "+00:00")
    return micros(
        normalized.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", time_unit="us", strict=False
        )
    )


@pytest.mark.parametrize("times", [EDGES, random_times(3000, seed=1)], ids=["edges", "random"])
def test_each_time_parses_as_arrow_and_the_spelled_out_layout_read_it(times: list[str]) -> None:
    """Every time gets the instant Arrow's cast gives where it accepts the time, and the one
    the spelled-out layout gives everywhere (null where neither reads one), but for the
    year 0, which both read and the pipeline refuses."""
    parsed = micros(pl.DataFrame({"t": times}).select(parse_rfc3339(pl.col("t")))["t"])
    year_zero = [t.startswith("0000") for t in times]
    assert parsed == [
        None if z else p for p, z in zip(format_parsed(times), year_zero, strict=True)
    ]
    by_cast = [None if z else arrow_cast(t) for t, z in zip(times, year_zero, strict=True)]
    assert [p for p, c in zip(parsed, by_cast, strict=True) if c is not None] == [
        c for c in by_cast if c is not None
    ]
    assert any(value is not None for value in by_cast) and None in parsed


def test_the_parse_runs_no_python_function() -> None:
    """A Python function inside a polars expression waits for the interpreter lock on
    polars' threads, and a polars call holding that lock while it waits for those threads
    (pickling a frame) then hangs the process: the parse is polars' own."""
    assert "python_udf" not in str(parse_rfc3339(pl.col("t")))


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
