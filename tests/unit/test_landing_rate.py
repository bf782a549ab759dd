"""The benchmark's landing rate, read from the landing's own log of writes."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bench.run import landing_writes_from_log
from sinks.duckdb import TABLES_DDL


def _warehouse(path: Path, writes: list[tuple[float, float, int]]) -> Path:
    """A warehouse whose log holds `writes`: (start in seconds after 12:00, seconds, rows)."""
    con = duckdb.connect(str(path))
    try:
        con.execute(TABLES_DDL)
        for start_s, seconds, rows in writes:
            con.execute(
                "INSERT INTO landing_batches VALUES "
                "(TIMESTAMPTZ '2026-12-01 12:00:00+00' + to_microseconds(?), ?, ?, 0)",
                [int(start_s * 1e6), rows, seconds],
            )
    finally:
        con.close()
    return path


def test_the_first_write_is_left_out_and_the_rest_timed_from_its_end(tmp_path: Path) -> None:
    # Writes end at 0.1, 0.7 and 1.1 s: 150,000 rows in the 1.0 s after the first ended.
    warehouse = _warehouse(
        tmp_path / "w.duckdb", [(1.0, 0.1, 50_000), (0.0, 0.1, 100_000), (0.5, 0.2, 100_000)]
    )
    rows, seconds = landing_writes_from_log(warehouse)
    assert rows == 150_000
    assert seconds == pytest.approx(1.0, rel=1e-6)


def test_one_write_cannot_be_timed(tmp_path: Path) -> None:
    warehouse = _warehouse(tmp_path / "w.duckdb", [(0.0, 0.4, 100_000)])
    with pytest.raises(SystemExit, match="one batch"):
        landing_writes_from_log(warehouse)
