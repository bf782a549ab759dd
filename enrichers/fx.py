"""FX enricher: converts an order's total to USD with the reference rate of its currency."""

from pathlib import Path

import polars as pl

from streamlane.enrich import LookupEnricher, read_reference_csv
from streamlane.paths import REFERENCE_DIR

FX_RATES_CSV = REFERENCE_DIR / "fx_rates.csv"


def fx_enricher(path: Path = FX_RATES_CSV) -> LookupEnricher:
    """Enricher adding `usd_rate` by `currency`; a currency without a rate is a miss."""
    table = read_reference_csv(path, {"currency": pl.String(), "usd_rate": pl.Float64()})
    return LookupEnricher(
        table=table, key="currency", table_key="currency", miss_reason="no FX rate for currency {}"
    )


def with_total_usd(orders: pl.DataFrame) -> pl.DataFrame:
    """`total_usd` = total x usd_rate (orders already carry `usd_rate`)."""
    return orders.with_columns(total_usd=pl.col("total") * pl.col("usd_rate"))
