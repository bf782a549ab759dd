"""Pizza orders: validate, dedupe, enrich, and one-minute revenue windows per store.

pizza.orders ─► decode + validate ───────────────► pizza.orders.dlq
                 │ enrich (store, FX) ── miss ───► pizza.orders.dlq
                 │ key by store id; dedupe by event id
                 ├──────────────────────────────► pizza.orders.enriched
                 ▼ 1-minute tumbling windows
                 ├──────────────────────────────► pizza.orders.by_store.1m
                 └── late ──────────────────────► pizza.orders.late
"""

from __future__ import annotations

import polars as pl

from enrichers.fx import fx_enricher
from enrichers.stores import STORES, STORES_CSV
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
from streamlane.windows import Tumbling

ORDER_FIELDS = ("event_id", "order_id", "customer_id", "store_id", "channel")

FLOW = Flow(
    name="orders",
    input_topic="pizza.orders",
    input_type="pizza.order.confirmed.v2",
    # v1 orders (total and currency side by side) are upcast in schemas/upcasters.py.
    older_input_types=("pizza.order.confirmed.v1",),
    dead_letter_topic="pizza.orders.dlq",
    key="store_id",
    columns={
        "order_id": data("order_id"),
        "customer_id": data("customer_id"),
        "store_id": data("store_id"),
        "channel": data("channel"),
        "items": data("items"),
        "item_count": data("items").list.eval(pl.element().struct.field("qty")).list.sum(),
        "total": data("total").struct.field("value"),
        "currency": data("total").struct.field("currency"),
    },
    # Stores come from the pizza.stores topic over the shipped CSV; FX rates from a CSV.
    # An order for a store or currency not in the reference data is a dead letter.
    enrich=(STORES, fx_enricher),
    derive={"total_usd": pl.col("total") * pl.col("usd_rate")},
    enriched=Output(
        topic="pizza.orders.enriched",
        event_type="pizza.order.enriched.v1",
        data=(
            *ORDER_FIELDS,
            *("items", "total", "currency", "store_name", "city", "region"),
            *("latitude", "longitude", "usd_rate", "total_usd", "store_version"),
        ),
        table=events_table("orders_enriched"),
    ),
    windows=(
        Windows(
            name="revenue_1m",
            kind=Tumbling(minutes(1)),
            aggregates=(
                agg.count("orders"),
                agg.total("items", pl.col("item_count"), exact=False),
                # Exact, so a window recomputed after a restart has the very same revenue.
                agg.total("revenue_usd", pl.col("total_usd")),
                agg.maximum("max_order_usd", pl.col("total_usd")),
            ),
            derive={"avg_order_usd": pl.col("revenue_usd") / pl.col("orders")},
            output=Output(
                topic="pizza.orders.by_store.1m",
                event_type="pizza.store.revenue.1m.v1",
                data=(
                    *("store_id", "window_start", "window_end", "orders", "items"),
                    *("revenue_usd", "avg_order_usd", "max_order_usd"),
                ),
                table=windows_table("store_revenue_1m", "store_id"),
            ),
            late=Output(
                topic="pizza.orders.late",
                event_type="pizza.order.late.v1",
                data=(
                    *ORDER_FIELDS,
                    *("total", "currency", "total_usd", "region"),
                    *("window", "window_start", "window_end", "watermark"),
                ),
                table=late_table("late_events"),
            ),
        ),
    ),
    reference_tables={"stores": STORES_CSV},
)
