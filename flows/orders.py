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

from collections import Counter
from dataclasses import dataclass
from functools import cache

import polars as pl
from bytewax import operators as op
from bytewax.dataflow import Dataflow

from enrichers.fx import fx_enricher, with_total_usd
from enrichers.stores import store_enricher
from sinks.kafka import KafkaFrameSink
from streamlane import metrics
from streamlane.cloudevents import derived_traceparent, envelope_json, rfc3339
from streamlane.decode import Decoded, decode_batch
from streamlane.enrich import LookupEnricher
from streamlane.schemas import load_schema
from streamlane.settings import FlowSettings
from streamlane.shards import ShardOutput, WindowSpec, route, shard_step
from streamlane.source import DEAD_LETTER_SCHEMA, EventSource, PartitionBatch
from streamlane.windows import Aggregate, Tumbling

INPUT_TOPIC = "pizza.orders"
DEAD_LETTER_TOPIC = "pizza.orders.dlq"
ENRICHED_TOPIC = "pizza.orders.enriched"
REVENUE_TOPIC = "pizza.orders.by_store.1m"
LATE_TOPIC = "pizza.orders.late"
TOPICS = [INPUT_TOPIC, DEAD_LETTER_TOPIC, ENRICHED_TOPIC, REVENUE_TOPIC, LATE_TOPIC]

ORDER_CONFIRMED = "pizza.order.confirmed.v1"
ORDER_ENRICHED = "pizza.order.enriched.v1"
ORDER_LATE = "pizza.order.late.v1"
STORE_REVENUE = "pizza.store.revenue.1m.v1"
SOURCE = "streamlane/flows/orders"
WINDOW_US = 60_000_000

REVENUE = (
    Aggregate("orders", pl.len(), "sum"),
    Aggregate("items", pl.col("item_count").sum(), "sum"),
    # Exact, so a window recomputed after a restart has the very same revenue.
    Aggregate("revenue_usd", pl.col("total_usd"), "fsum"),
    Aggregate("max_order_usd", pl.col("total_usd").max(), "max"),
)


@dataclass(frozen=True)
class EnrichedBatch:
    """A partition batch after validation and enrichment."""

    orders: pl.DataFrame
    dead_letters: pl.DataFrame
    source: PartitionBatch


def decode_orders(values: list[bytes]) -> Decoded:
    """Decode raw records as `pizza.order.confirmed.v1` events."""
    return decode_batch(values, load_schema(ORDER_CONFIRMED))


def flatten_orders(events: pl.DataFrame) -> pl.DataFrame:
    """One row per order with the envelope fields the flow keeps and the data fields lifted."""
    data = pl.col("data")
    return (
        events.lazy()
        .select(
            "row",
            "offset",
            "event_time_us",
            "own_newest_before_us",
            event_id=pl.col("id"),
            traceparent=pl.col("traceparent").fill_null(derived_traceparent(pl.col("id"))),
            order_id=data.struct.field("order_id"),
            customer_id=data.struct.field("customer_id"),
            store_id=data.struct.field("store_id"),
            channel=data.struct.field("channel"),
            items=data.struct.field("items"),
            item_count=data.struct.field("items")
            .list.eval(pl.element().struct.field("qty"))
            .list.sum(),
            total=data.struct.field("total"),
            currency=data.struct.field("currency"),
        )
        .collect()
    )


@cache
def _reference() -> tuple[LookupEnricher, LookupEnricher]:
    return store_enricher(), fx_enricher()


def enrich_batch(batch: PartitionBatch) -> EnrichedBatch:
    """Add store and FX data; orders for unknown stores or currencies become dead letters."""
    stores, fx = _reference()
    if batch.events.is_empty():
        return EnrichedBatch(pl.DataFrame(), batch.dead_letters, batch)
    orders = flatten_orders(batch.events)
    by_store = stores.apply(orders)
    by_fx = fx.apply(by_store.events)
    misses = pl.concat([by_store.misses, by_fx.misses])
    dead = batch.dead_letters
    if misses.height:
        dead = pl.concat([dead, _miss_dead_letters(batch, misses)])
    # The enriched event is serialized here, once per batch: after dedupe a shard only
    # selects its rows, instead of every shard encoding its slice separately.
    orders = with_total_usd(by_fx.events)
    return EnrichedBatch(orders.with_columns(enriched_records(orders)), dead, batch)


def _miss_dead_letters(batch: PartitionBatch, misses: pl.DataFrame) -> pl.DataFrame:
    topic, index = batch.partition.rsplit("/", 1)
    original = batch.events.join(misses, on="row").select(
        key="key",
        value="raw",
        reason="reason",
        topic=pl.lit(topic),
        partition=pl.lit(int(index), dtype=pl.Int32),
        offset="offset",
    )
    return original.cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]


def _store_keyed(frame: pl.DataFrame, value: pl.Expr) -> pl.DataFrame:
    """Records (`key` = store id, `value`) from `frame`."""
    # Built in the lazy engine, which encodes JSON faster than an eager select does.
    return frame.lazy().select(key=pl.col("store_id").cast(pl.String), value=value).collect()


def _order_records(
    orders: pl.DataFrame, event_type: str, id_suffix: str, data: pl.Expr
) -> pl.DataFrame:
    """Records about one order each: keyed by store, id derived from the input id, same trace."""
    return _store_keyed(
        orders,
        envelope_json(
            event_type=event_type,
            source=SOURCE,
            event_id=pl.format("{}/" + id_suffix, "event_id"),
            time_us=pl.col("event_time_us"),
            subject=pl.col("order_id"),
            traceparent=pl.col("traceparent"),
            data=data,
        ),
    )


def enriched_records(orders: pl.DataFrame) -> pl.DataFrame:
    """`pizza.order.enriched.v1` events (`key`, `value`): the original data plus store, region
    and USD amounts."""
    data = pl.struct(
        "event_id",
        "order_id",
        "customer_id",
        "store_id",
        "channel",
        "items",
        "total",
        "currency",
        "store_name",
        "city",
        "region",
        "latitude",
        "longitude",
        "usd_rate",
        "total_usd",
    )
    return _order_records(orders, ORDER_ENRICHED, "enriched", data)


def revenue_records(windows: pl.DataFrame) -> pl.DataFrame:
    """`pizza.store.revenue.1m.v1` events, one per store and closed minute."""
    metrics.EVENTS_BY_TYPE.labels(direction="out", type=STORE_REVENUE).inc(windows.height)
    start = rfc3339(pl.col("window_start"))
    data = pl.struct(
        "store_id",
        window_start=start,
        window_end=rfc3339(pl.col("window_end")),
        orders="orders",
        items="items",
        revenue_usd="revenue_usd",
        avg_order_usd=pl.col("revenue_usd") / pl.col("orders"),
        max_order_usd="max_order_usd",
    )
    return _store_keyed(
        windows,
        envelope_json(
            event_type=STORE_REVENUE,
            source=SOURCE,
            event_id=pl.format("{}/{}/{}", pl.lit(REVENUE_TOPIC), "store_id", start),
            time_us=pl.col("window_end"),
            subject=pl.col("store_id"),
            traceparent=derived_traceparent(pl.format("{}/{}", "store_id", start)),
            data=data,
        ),
    )


def late_records(late: pl.DataFrame) -> pl.DataFrame:
    """Late orders: the enriched event plus the window it missed and the watermark it met."""
    metrics.EVENTS_BY_TYPE.labels(direction="out", type=ORDER_LATE).inc(late.height)
    data = pl.struct(
        "event_id",
        "order_id",
        "customer_id",
        "store_id",
        "channel",
        "total",
        "currency",
        "total_usd",
        "region",
        window_start=rfc3339(pl.col("window_start_us")),
        window_end=rfc3339(pl.col("window_end_us")),
        watermark=rfc3339(pl.col("watermark_us")),
    )
    return _order_records(late, ORDER_LATE, "late", data)


def dead_letter_records(dead: pl.DataFrame) -> pl.DataFrame:
    """Dead letters keep the original key and bytes; the reason and origin travel as headers."""
    for reason, count in Counter(dead["reason"].to_list()).items():
        metrics.DEAD_LETTERS.labels(
            topic=DEAD_LETTER_TOPIC, reason=metrics.reason_kind(reason)
        ).inc(count)
    return dead.select(
        "key",
        "value",
        header_reason="reason",
        header_topic="topic",
        header_partition="partition",
        header_offset="offset",
    )


def _key_value(orders: pl.DataFrame) -> pl.DataFrame:
    """The enriched records built in `enrich_batch`, for the rows a shard kept."""
    metrics.EVENTS_BY_TYPE.labels(direction="out", type=ORDER_ENRICHED).inc(orders.height)
    return orders.select("key", "value")


Keyed = tuple[str, pl.DataFrame]


def _outputs(kind: str):  # type: ignore[no-untyped-def]
    def pick(keyed: tuple[str, ShardOutput]) -> list[Keyed]:
        frame = getattr(keyed[1], kind)
        return [] if frame is None or frame.is_empty() else [(keyed[0], frame)]

    return pick


def _keyed(encode):  # type: ignore[no-untyped-def]
    """`encode` applied to the frame of a (key, frame) item; the key picks the sink partition."""

    def apply(item: Keyed) -> Keyed:
        return item[0], encode(item[1])

    return apply


def _dead_letters(batch: EnrichedBatch) -> list[Keyed]:
    if batch.dead_letters.is_empty():
        return []
    return [(batch.source.partition, dead_letter_records(batch.dead_letters))]


def build_flow(settings: FlowSettings) -> Dataflow:
    """The orders dataflow for the given settings (brokers, lateness, idle timeout, ...)."""
    source = EventSource(
        settings.brokers,
        INPUT_TOPIC,
        decode_orders,
        batch_size=settings.batch_size,
        idle_timeout_s=settings.idle_timeout_s,
        broker_timeout_s=settings.broker_timeout_s,
    )
    spec = WindowSpec(
        partitions=tuple(source.partition_names()),
        key="store_id",
        window=Tumbling(WINDOW_US),
        lateness_us=int(settings.lateness_s * 1e6),
        dedupe_horizon_us=int(settings.dedupe_horizon_s * 1e6),
        aggregates=REVENUE,
        shards=settings.shards,
    )

    def sink(topic: str, headers: bool = False) -> KafkaFrameSink:
        return KafkaFrameSink(
            settings.brokers, topic, headers=headers, broker_timeout_s=settings.broker_timeout_s
        )

    flow = Dataflow("orders")
    batches = op.input("read_orders", flow, source)
    enriched = op.map("validate_and_enrich", batches, enrich_batch)
    dead = op.flat_map("dead_letters", enriched, _dead_letters)
    op.output("to_dlq", dead, sink(DEAD_LETTER_TOPIC, headers=True))

    shards = op.flat_map(
        "key_by_store", enriched, lambda b: route(spec, b.orders, b.source.progress)
    )
    results = op.stateful_map("dedupe_and_window", shards, shard_step(spec))

    unique = op.flat_map("unique_orders", results, _outputs("unique"))
    enriched_events = op.map("enriched_events", unique, _keyed(_key_value))
    op.output("to_enriched", enriched_events, sink(ENRICHED_TOPIC))
    windows = op.flat_map("closed_windows", results, _outputs("windows"))
    op.output(
        "to_revenue",
        op.map("revenue_events", windows, _keyed(revenue_records)),
        sink(REVENUE_TOPIC),
    )
    late = op.flat_map("late_orders", results, _outputs("late"))
    op.output("to_late", op.map("late_events", late, _keyed(late_records)), sink(LATE_TOPIC))
    return flow
