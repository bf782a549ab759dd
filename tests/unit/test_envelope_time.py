"""The landing tells live rows from history by the `time` of a record's CloudEvent envelope,
read without parsing the record."""

from __future__ import annotations

import polars as pl

from streamlane.cloudevents import envelope_json, envelope_time_s


def test_the_envelope_time_is_read_before_a_data_field_of_the_same_name() -> None:
    document = (
        pl.DataFrame({"t": [1_795_000_001_234_567], "data_time": ["2000-01-01T00:00:00Z"]})
        .select(
            envelope_json(
                event_type="test.v1",
                source="tests",
                event_id=pl.lit("e-1"),
                time_us=pl.col("t"),
                subject=pl.lit("s"),
                traceparent=pl.lit("00-0-0-01"),
                data=pl.struct(time=pl.col("data_time")),
            )
        )
        .item()
        .encode()
    )
    assert envelope_time_s(document) == 1_795_000_001.234567


def test_a_time_without_an_offset_is_utc() -> None:
    assert envelope_time_s(b'{"time":"2026-11-18T11:06:40"}') == 1_795_000_000.0


def test_a_record_without_an_envelope_time_has_none() -> None:
    assert envelope_time_s(b'{"id":"e-1"}') is None
    assert envelope_time_s(b'{"time":"yesterday"}') is None
    assert envelope_time_s(b'{"time":"\xff"}') is None
