"""Enrichers: store and FX lookups; misses leave the stream with a reason."""

import polars as pl

from enrichers.fx import fx_enricher, with_total_usd
from enrichers.stores import store_enricher


def test_store_and_fx_enrichment_with_misses() -> None:
    orders = pl.DataFrame(
        {
            "row": [0, 1, 2],
            "store_id": [1, 99_999, 2],
            "currency": ["USD", "USD", "EUR"],
            "total": [10.0, 5.0, 20.0],
        }
    )
    by_store = store_enricher().apply(orders)
    assert by_store.misses.rows() == [(1, "unknown store_id 99999")]
    assert by_store.events["city"].to_list() == ["New York", "New York"]
    priced = with_total_usd(fx_enricher().apply(by_store.events).events)
    assert priced["total_usd"].to_list() == [10.0, 20.0 * 1.08]


def test_a_miss_shows_text_keys_quoted_and_a_missing_key_as_null() -> None:
    from streamlane.enrich import LookupEnricher
    from streamlane.metrics import reason_kind

    table = pl.DataFrame({"sku": ["margherita"], "price": [9.5]})
    lookup = LookupEnricher(table=table, key="sku", table_key="sku", miss_reason="unknown sku {}")
    events = pl.DataFrame(
        {"row": [0, 1, 2, 3, 4], "sku": ["margherita", "it's", "a:b", "c\\", None]}
    )
    reasons = lookup.apply(events).misses["reason"].to_list()
    assert reasons == [
        "unknown sku 'it\\'s'",
        "unknown sku 'a:b'",
        "unknown sku 'c\\\\'",
        "unknown sku null",
    ]
    # Whatever the value, the metric labels an unknown key alike, and a missing one apart.
    assert {reason_kind(r) for r in reasons} == {"unknown sku N", "unknown sku null"}


def _click_batch(shops: list[int]):  # type: ignore[no-untyped-def]
    import json

    import polars as pl

    from flows.clickstream import FLOW
    from streamlane.dataflow import decoder
    from streamlane.source import DEAD_LETTER_SCHEMA, PartitionBatch
    from streamlane.windows import PartitionProgress

    values = [
        json.dumps({"specversion": "1.0", "id": f"c{i}", "source": "t", "type": "shop.click.v1",
                    "time": "2026-11-02T09:00:00Z",
                    "data": {"visitor_id": "v", "shop_id": s, "action": "page_view", "page": "/"}}
                   ).encode()
        for i, s in enumerate(shops)
    ]  # fmt: skip
    valid = decoder(FLOW)(values).valid
    events = valid.with_columns(
        part=pl.lit(0, pl.Int32),
        offset=pl.col("row"),
        event_time_us=pl.col("event_time").dt.epoch("us"),
        own_newest_before_us=pl.lit(None, pl.Int64),
    )
    progress = PartitionProgress("shop.clicks/0", None, False, 0)
    return FLOW, PartitionBatch(
        events,
        pl.DataFrame(schema=DEAD_LETTER_SCHEMA),
        (progress,),
        len(values),
        keys=[b"k"] * len(values),
        values=values,
    )


def test_a_lookup_miss_is_a_dead_letter_or_passes_through_marked() -> None:
    from dataclasses import replace

    from streamlane.dataflow import enrich_batch

    flow, batch = _click_batch([1, 999, 2])
    dead_lettered = enrich_batch(flow, batch, brokers="")
    assert dead_lettered.events["event_id"].to_list() == ["c0", "c2"]
    assert dead_lettered.dead_letters["reason"].to_list() == ["unknown shop_id 999"]

    passing = replace(flow, name="clickstream-pass-through", on_miss="pass_through")
    passed = enrich_batch(passing, batch, brokers="")
    assert passed.dead_letters.is_empty()
    assert passed.events.select("event_id", "shop_name", "unenriched").rows() == [
        ("c0", "Streamlane Outdoor", False),
        ("c1", None, True),
        ("c2", "Streamlane Books", False),
    ]
