"""Dashboard "Web shop clickstream — live": visitors, conversion and sessions, per shop."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table
from grafana_foundation_sdk.models import dashboard

from dashboards.panels import choice, time_series
from dashboards.sql import WAREHOUSE, SqlTarget

UID = "streamlane-clickstream"
SHOP = "s.shop_name IN ($shop)"

VISITORS = f"""
SELECT $__timeGroupAlias(c.window_end, '1m'), sum(c.visitors) AS visitors,
       sum(c.buyers) AS buyers
FROM shop_conversion_5m c JOIN shops s USING (shop_id)
WHERE $__timeFilter(c.window_end) AND {SHOP}
GROUP BY 1 ORDER BY 1
"""
CONVERSION = f"""
SELECT $__timeGroupAlias(c.window_end, '1m'), s.shop_name AS metric,
       avg(c.conversion_rate) AS conversion_rate
FROM shop_conversion_5m c JOIN shops s USING (shop_id)
WHERE $__timeFilter(c.window_end) AND {SHOP}
GROUP BY 1, 2 ORDER BY 1, 2
"""
CHECKOUT_PERCENTILES = f"""
SELECT $__timeGroupAlias(c.window_end, '1m'), max(c.checkout_p50) AS p50,
       max(c.checkout_p95) AS p95, max(c.checkout_p99) AS p99
FROM shop_conversion_5m c JOIN shops s USING (shop_id)
WHERE $__timeFilter(c.window_end) AND {SHOP} AND c.checkout_p50 IS NOT NULL
GROUP BY 1 ORDER BY 1
"""
SESSIONS_ENDED = f"""
SELECT $__timeGroupAlias(x.window_end, '1m'),
       CASE WHEN x.converted THEN 'with checkout' ELSE 'without' END AS metric,
       count(*) AS sessions
FROM shop_sessions x JOIN shops s USING (shop_id)
WHERE $__timeFilter(x.window_end) AND {SHOP}
GROUP BY 1, 2 ORDER BY 1, 2
"""
SHOPS_BY_SESSIONS = f"""
SELECT s.shop_name AS shop, s.country, count(*) AS sessions,
       avg(x.duration_s) AS avg_duration_s, avg(x.pages) AS avg_pages,
       avg(CASE WHEN x.converted THEN 1.0 ELSE 0.0 END) AS converted_share,
       sum(x.revenue) AS revenue
FROM shop_sessions x JOIN shops s USING (shop_id)
WHERE $__timeFilter(x.window_end) AND {SHOP}
GROUP BY 1, 2 ORDER BY sessions DESC LIMIT 20
"""
SESSION_CONVERSION = f"""
SELECT avg(CASE WHEN x.converted THEN 1.0 ELSE 0.0 END) AS converted_share
FROM shop_sessions x JOIN shops s USING (shop_id)
WHERE $__timeFilter(x.window_end) AND {SHOP}
"""
REJECTED = """
SELECT $__timeGroupAlias(happened_at, '1m'), kind AS metric, count(*) AS clicks
FROM (
    SELECT received_at AS happened_at, 'dead letters' AS kind FROM dead_letters
    WHERE topic = 'shop.clicks'
    UNION ALL
    SELECT produced_at AS happened_at, 'late (per missed window)' AS kind
    FROM click_late_events
) rejected
WHERE $__timeFilter(happened_at)
GROUP BY 1, 2 ORDER BY 1, 2
"""
SHOPS = "SELECT shop_name FROM shops ORDER BY 1"


def build() -> dashboard.Dashboard:
    """The dashboard model (serialize with `to_json`)."""
    shop = choice("shop", "Shop", SHOPS)
    return (
        dash.Dashboard("Web shop clickstream — live")
        .uid(UID)
        .tags(["streamlane", "clickstream"])
        .time("now-3h", "now")
        .refresh("10s")
        .timezone("utc")
        .with_variable(shop)
        .with_panel(time_series("Visitors and buyers (5-minute windows)", VISITORS, "short"))
        .with_panel(
            time_series("Conversion rate by shop (5-minute windows)", CONVERSION, "percentunit")
        )
        .with_panel(
            time_series(
                "Checkout amount percentiles (shop currency)", CHECKOUT_PERCENTILES, "short"
            )
        )
        .with_panel(time_series("Sessions ended per minute", SESSIONS_ENDED, "short"))
        .with_panel(
            table.Panel()
            .title("Shops by sessions in range")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(SHOPS_BY_SESSIONS, "table"))
            .height(9)
            .span(16)
        )
        .with_panel(
            stat.Panel()
            .title("Sessions with a checkout")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(SESSION_CONVERSION, "table"))
            .unit("percentunit")
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
            .height(9)
            .span(8)
        )
        .with_panel(time_series("Dead letters and late clicks per minute", REJECTED, "short"))
        .build()
    )
