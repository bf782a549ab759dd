"""Shop enricher: name, country and currency of the web shop a click happened on."""

from pathlib import Path

import polars as pl

from streamlane.enrich import LookupEnricher, read_reference_csv
from streamlane.paths import REFERENCE_DIR

SHOPS_CSV = REFERENCE_DIR / "shops.csv"
SHOP_COLUMNS: dict[str, pl.DataType] = {
    "shop_id": pl.Int64(),
    "shop_name": pl.String(),
    "country": pl.String(),
    "currency": pl.String(),
}


def shop_enricher(path: Path = SHOPS_CSV) -> LookupEnricher:
    """Enricher adding shop_name, country and currency by `shop_id`.

    A click for a shop id that is not in the table is a miss (dead letter).
    """
    table = read_reference_csv(path, SHOP_COLUMNS)
    return LookupEnricher(
        table=table, key="shop_id", table_key="shop_id", miss_reason="unknown shop_id {}"
    )
