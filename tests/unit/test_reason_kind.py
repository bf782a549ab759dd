"""Dead-letter reasons without their values: the metrics' labels (`reason_kind`) and the
dashboard's groups (`reason_kind_sql`, run by DuckDB) are the same for every reason."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.orders import FLOW
from streamlane.dataflow import decoder
from streamlane.metrics import reason_kind, reason_kind_sql
from tests.hostile import mutate

AT = datetime(2026, 11, 23, 12, 4, 31, tzinfo=UTC)


def kinds_in_sql(reasons: list[str]) -> list[str]:
    """`reason_kind_sql` of each reason, in order, as DuckDB computes it."""
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE dead (i INTEGER, reason VARCHAR)")
        con.executemany("INSERT INTO dead VALUES (?, ?)", list(enumerate(reasons)))
        rows = con.execute(f"SELECT {reason_kind_sql('reason')} FROM dead ORDER BY i").fetchall()
    finally:
        con.close()
    return [row[0] for row in rows]


def test_values_become_n_and_a_standards_number_stays() -> None:
    cases = {
        "unknown store_id 1308": "unknown store_id N",
        "unknown event type 'shop.order.v9'": "unknown event type N",
        "data.items needs at least 1 item": "data.items needs at least N item",
        "data.status must be one of ['placed', 'paid']": "data.status must be one of [N, N]",
        "not UTF-8 (byte 12)": "not UTF-8 (byte N)",
        "data.created_at is not an RFC 3339 date-time": (
            "data.created_at is not an RFC 3339 date-time"
        ),
        "not valid JSON: Expecting value: line 1 column 1 (char 0)": "not valid JSON",
        "data.quantity must be <= 100": "data.quantity must be <= N",
        # A value's repr takes double quotes when it holds a single one, escapes when it
        # holds both, and the colon can cut it open.
        'unknown event type "shop\'s.order"': "unknown event type N",
        "unknown event type 'it\\'s a \"v9\"'": "unknown event type N",
        "unknown event type 'urn:shop:order'": "unknown event type N",
    }
    assert [reason_kind(r) for r in cases] == list(cases.values())
    assert kinds_in_sql(list(cases)) == list(cases.values())


def test_the_decoders_reasons_group_alike_in_metrics_and_dashboards() -> None:
    rng = random.Random(3)
    decoded = decoder(FLOW)([mutate(rng, i, AT) for i in range(3000)])
    reasons = sorted(set(decoded.rejects["reason"].to_list()))
    assert len(reasons) > 20, "too few distinct reasons to compare"
    assert kinds_in_sql(reasons) == [reason_kind(r) for r in reasons]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="AUTFRC-8 0123:'\"\\<>ab(", max_size=40), min_size=1, max_size=40))
def test_any_text_groups_alike_in_metrics_and_dashboards(reasons: list[str]) -> None:
    assert kinds_in_sql(reasons) == [reason_kind(r) for r in reasons]
