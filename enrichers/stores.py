"""Store enricher: name, city, region and location of the store an order was placed at."""

from pathlib import Path

import polars as pl

from streamlane.enrich import LookupEnricher, read_reference_csv
from streamlane.paths import REFERENCE_DIR

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
