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
