"""Dashboard "Pizza orders — live": orders, revenue and health of the orders flow, per region."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import geomap, stat, table
from grafana_foundation_sdk.models import common, dashboard

from dashboards.panels import choice, time_series
from dashboards.sql import WAREHOUSE, SqlTarget

UID = "streamlane-pizza-orders"
REGION = "s.region IN ($region)"

ORDERS_PER_MINUTE = f"""
SELECT $__timeGroupAlias(r.window_start, '1m'), s.region AS metric, sum(r.orders) AS orders
FROM store_revenue_1m r JOIN stores s USING (store_id)
WHERE $__timeFilter(r.window_start) AND {REGION}
GROUP BY 1, 2 ORDER BY 1, 2
"""
REVENUE_PER_MINUTE = f"""
SELECT $__timeGroupAlias(r.window_start, '1m'), s.region AS metric,
       sum(r.revenue_usd) AS revenue_usd
FROM store_revenue_1m r JOIN stores s USING (store_id)
WHERE $__timeFilter(r.window_start) AND {REGION}
GROUP BY 1, 2 ORDER BY 1, 2
"""
TOP_STORES = f"""
SELECT s.name AS store, s.city, s.region, sum(r.orders) AS orders,
       sum(r.revenue_usd) AS revenue_usd, sum(r.revenue_usd) / sum(r.orders) AS avg_order_usd
FROM store_revenue_1m r JOIN stores s USING (store_id)
WHERE $__timeFilter(r.window_start) AND {REGION}
GROUP BY 1, 2, 3 ORDER BY revenue_usd DESC LIMIT 20
"""
AVERAGE_ORDER = f"""
SELECT sum(r.revenue_usd) / nullif(sum(r.orders), 0) AS avg_order_usd
FROM store_revenue_1m r JOIN stores s USING (store_id)
WHERE $__timeFilter(r.window_start) AND {REGION}
"""
REVENUE_MAP = f"""
SELECT s.name AS store, s.latitude, s.longitude, sum(r.revenue_usd) AS revenue_usd
FROM store_revenue_1m r JOIN stores s USING (store_id)
WHERE $__timeFilter(r.window_start) AND {REGION}
GROUP BY 1, 2, 3
"""
REJECTED_PER_MINUTE = """
SELECT $__timeGroupAlias(happened_at, '1m'), kind AS metric, count(*) AS events
FROM (
    SELECT received_at AS happened_at, 'dead letters' AS kind FROM dead_letters
    UNION ALL
    SELECT produced_at AS happened_at, 'late events' AS kind FROM late_events
) rejected
WHERE $__timeFilter(happened_at)
GROUP BY 1, 2 ORDER BY 1, 2
"""
DATA_AS_OF = """
SELECT epoch_ms(max(produced_at)) AS data_as_of FROM store_revenue_1m
"""
REGIONS = "SELECT DISTINCT region FROM stores ORDER BY 1"


def build() -> dashboard.Dashboard:
    """The dashboard model (serialize with `to_json`)."""
    region = choice("region", "Region", REGIONS)
    return (
        dash.Dashboard("Pizza orders — live")
        .uid(UID)
        .tags(["streamlane", "pizza"])
        .time("now-1h", "now")
        .refresh("5s")
        .timezone("utc")
        .with_variable(region)
        .with_panel(time_series("Orders per minute by region", ORDERS_PER_MINUTE, "short"))
        .with_panel(
            time_series("Revenue (USD) per minute by region", REVENUE_PER_MINUTE, "currencyUSD")
        )
        .with_panel(
            table.Panel()
            .title("Top stores in range")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(TOP_STORES, "table"))
            .height(9)
            .span(12)
        )
        .with_panel(
            geomap.Panel()
            .title("Revenue by store")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(REVENUE_MAP, "table"))
            .view(geomap.MapViewConfig().id("europe").lat(45).lon(-30).zoom(2))
            .layers(
                [
                    common_builders.MapLayerOptions()
                    .type("markers")
                    .name("stores")
                    .location(
                        common_builders.FrameGeometrySource()
                        .mode(common.FrameGeometrySourceMode.COORDS)
                        .latitude("latitude")
                        .longitude("longitude")
                    )
                    .config(
                        {
                            "showLegend": True,
                            "style": {
                                "size": {"field": "revenue_usd", "min": 3, "max": 20, "fixed": 5},
                                "color": {"fixed": "dark-green"},
                            },
                        }
                    )
                    .tooltip(True)
                ]
            )
            .height(9)
            .span(12)
        )
        .with_panel(
            stat.Panel()
            .title("Average order value")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(AVERAGE_ORDER, "table"))
            .unit("currencyUSD")
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
            .height(5)
            .span(6)
        )
        .with_panel(
            stat.Panel()
            .title("Data as of")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(DATA_AS_OF, "table"))
            .unit("dateTimeFromNow")
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
            .height(5)
            .span(6)
        )
        .with_panel(
            time_series("Dead letters and late events per minute", REJECTED_PER_MINUTE, "short")
        )
        .build()
    )
