"""Upcasters: each turns one version of an event's `data` into the next version's.

A flow reads the newest version of its input type and accepts every older one
that a chain of upcasters leads from (see `streamlane.versions`).
"""

import polars as pl

from streamlane.versions import upcaster


@upcaster("pizza.order.confirmed.v1", "pizza.order.confirmed.v2")
def order_total_with_currency(data: pl.Expr) -> pl.Expr:
    """v2 carries the currency with the amount: `total: {value, currency}` replaces the
    separate `total` and `currency` fields."""
    total = pl.struct(value=data.struct.field("total"), currency=data.struct.field("currency"))
    return data.struct.with_fields(total=total)
