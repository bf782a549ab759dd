"""Web shop clickstream: visitor sessions, and conversion over 5-minute windows every minute.

shop.clicks ─► decode + validate ────────────────► shop.clicks.dlq
                │ enrich (shop) ── miss ─────────► shop.clicks.dlq
                │ key by shop id; dedupe by event id
                ├───────────────────────────────► shop.clicks.enriched
                ├─ sessions per visitor (30-minute gap) ─► shop.sessions
                ├─ 5-minute windows every minute ───────► shop.conversion.5m
                └── late (either window set) ───────────► shop.clicks.late
"""

from __future__ import annotations

import polars as pl

from enrichers.shops import SHOPS_CSV, shop_enricher
from streamlane import aggregates as agg
from streamlane.flow import (
    Flow,
    Output,
    Windows,
    data,
    events_table,
    late_table,
    minutes,
    windows_table,
)
from streamlane.windows import Hopping, Session

SESSION_GAP = minutes(30)

action = pl.col("action")
checkout_amount = pl.when(action == "checkout").then(pl.col("amount"))

LATE = Output(
    topic="shop.clicks.late",
    event_type="shop.click.late.v1",
    data=(
        *("event_id", "visitor_id", "shop_id", "action", "page"),
        *("window", "window_start", "window_end", "watermark"),
    ),
    table=late_table("click_late_events"),
)

FLOW = Flow(
    name="clickstream",
    input_topic="shop.clicks",
    input_type="shop.click.v1",
    dead_letter_topic="shop.clicks.dlq",
    key="shop_id",
    columns={
        "visitor_id": data("visitor_id"),
        "shop_id": data("shop_id"),
        "action": data("action"),
        "page": data("page"),
        "product_id": data("product_id"),
        "amount": data("amount"),
    },
    enrich=(shop_enricher,),
    enriched=Output(
        topic="shop.clicks.enriched",
        event_type="shop.click.enriched.v1",
        data=(
            *("event_id", "visitor_id", "shop_id", "action", "page", "product_id", "amount"),
            *("shop_name", "country", "currency"),
        ),
        table=events_table("clicks_enriched"),
    ),
    windows=(
        Windows(
            name="sessions",
            kind=Session(SESSION_GAP),
            by=("visitor_id",),
            aggregates=(
                agg.count("events"),
                agg.total("page_views", (action == "page_view").cast(pl.Int64), exact=False),
                agg.total("add_to_carts", (action == "add_to_cart").cast(pl.Int64), exact=False),
                agg.total("checkouts", (action == "checkout").cast(pl.Int64), exact=False),
                agg.distinct_count("pages", pl.col("page")),
                agg.total("revenue", checkout_amount),
            ),
            derive={
                "duration_s": (pl.col("window_end") - pl.col("window_start") - SESSION_GAP) / 1e6,
                "converted": pl.col("checkouts") > 0,
            },
            output=Output(
                topic="shop.sessions",
                event_type="shop.session.v1",
                data=(
                    *("shop_id", "visitor_id", "window_start", "window_end", "events"),
                    *("page_views", "add_to_carts", "checkouts", "pages", "revenue"),
                    *("duration_s", "converted"),
                ),
                table=windows_table("shop_sessions", "shop_id", "visitor_id"),
            ),
            late=LATE,
        ),
        Windows(
            name="conversion_5m",
            kind=Hopping(size_us=minutes(5), every_us=minutes(1)),
            aggregates=(
                agg.distinct_count("visitors", pl.col("visitor_id")),
                agg.distinct_count("buyers", pl.when(action == "checkout").then("visitor_id")),
                agg.total("page_views", (action == "page_view").cast(pl.Int64), exact=False),
                agg.mean("checkout_mean", checkout_amount),
                agg.minimum("checkout_min", checkout_amount),
                agg.maximum("checkout_max", checkout_amount),
                agg.percentiles("checkout", checkout_amount, (0.5, 0.95, 0.99)),
            ),
            derive={"conversion_rate": pl.col("buyers") / pl.col("visitors")},
            output=Output(
                topic="shop.conversion.5m",
                event_type="shop.conversion.5m.v1",
                data=(
                    *("shop_id", "window_start", "window_end", "visitors", "buyers"),
                    *("page_views", "conversion_rate", "checkout_mean", "checkout_min"),
                    *("checkout_max", "checkout_p50", "checkout_p95", "checkout_p99"),
                ),
                table=windows_table("shop_conversion_5m", "shop_id"),
            ),
            late=LATE,
        ),
    ),
    reference_tables={"shops": SHOPS_CSV},
)
