"""Store enricher: name, city, region and location of the store an order was placed at.

The store table is the shipped CSV, overlaid by the compacted topic `pizza.stores`
(one JSON row per store, keyed by store id): a store added or changed there applies
to the orders enriched from then on.
"""

from pathlib import Path

import polars as pl

from streamlane.enrich import LookupEnricher, read_reference_csv
from streamlane.paths import REFERENCE_DIR
from streamlane.reference import TopicReference

STORES_CSV = REFERENCE_DIR / "stores.csv"
STORE_COLUMNS: dict[str, pl.DataType] = {
    "store_id": pl.Int64(),
    "name": pl.String(),
    "city": pl.String(),
    "region": pl.String(),
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
}


def store_enricher(path: Path = STORES_CSV) -> LookupEnricher:
    """Enricher adding store_name, city, region, latitude, longitude by `store_id`.

    An order for a store id that is not in the table is a miss (dead letter).
    """
    table = read_reference_csv(path, STORE_COLUMNS).rename({"name": "store_name"})
    return LookupEnricher(
        table=table, key="store_id", table_key="store_id", miss_reason="unknown store_id {}"
    )


STORES = TopicReference(
    name="stores",
    topic="pizza.stores",
    key="store_id",
    table_key="store_id",
    columns=STORE_COLUMNS,
    rename={"name": "store_name"},
    miss_reason="unknown store_id {}",
    version_column="store_version",
    seed_csv=STORES_CSV,
)
"""Stores by `store_id`, from `pizza.stores` over reference/stores.csv; `store_version` says
which (the CSV's name, or `pizza.stores/partition@offset`)."""
