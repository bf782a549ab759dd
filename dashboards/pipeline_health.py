"""Dashboard "Pipeline health": throughput per stage, lag, dead-letter reasons, latency, landing."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import dashboard

from dashboards.panels import time_series
from dashboards.sql import WAREHOUSE, SqlTarget
from streamlane.metrics import reason_kind_sql

UID = "streamlane-pipeline-health"

EVENTS_PER_SECOND = """
SELECT $__timeGroupAlias(happened_at, '10s'), stage AS metric, count(*) / 10.0 AS events_per_s
FROM (
    SELECT produced_at AS happened_at, 'enriched' AS stage FROM orders_enriched
    UNION ALL SELECT produced_at, 'windows' FROM store_revenue_1m
    UNION ALL SELECT produced_at, 'late' FROM late_events
    UNION ALL SELECT received_at, 'dead letters' FROM dead_letters
) out
WHERE $__timeFilter(happened_at)
GROUP BY 1, 2 ORDER BY 1, 2
"""
LANDED_PER_SECOND = """
SELECT $__timeGroupAlias(landed_at, '10s'), sum("rows") / 10.0 AS landed_per_s
FROM landing_batches WHERE $__timeFilter(landed_at)
GROUP BY 1 ORDER BY 1
"""
LANDING_LAG = """
SELECT $__timeGroupAlias(landed_at, '10s'), max(lag) AS records_behind
FROM landing_batches WHERE $__timeFilter(landed_at)
GROUP BY 1 ORDER BY 1
"""
LAG_PER_PARTITION = """
SELECT topic, "partition", next_offset, lag
FROM landing_offsets ORDER BY topic, "partition"
"""
# Grouped as the flows' `streamlane_dead_letters_total{reason=...}` labels them.
DEAD_LETTER_REASONS = f"""
SELECT $__timeGroupAlias(received_at, '1m'),
       {reason_kind_sql("reason")} AS metric,
       count(*) AS dead_letters
FROM dead_letters WHERE $__timeFilter(received_at)
GROUP BY 1, 2 ORDER BY 1, 2
"""
END_TO_END_LATENCY = """
SELECT $__timeGroupAlias(produced_at, '1m'),
       quantile_cont(epoch(produced_at) - epoch(event_time), 0.5) AS p50_s,
       quantile_cont(epoch(produced_at) - epoch(event_time), 0.95) AS p95_s
FROM orders_enriched WHERE $__timeFilter(produced_at)
GROUP BY 1 ORDER BY 1
"""
LANDING_BATCH_TIME = """
SELECT $__timeGroupAlias(landed_at, '10s'), avg(seconds) AS avg_s, max(seconds) AS max_s
FROM landing_batches WHERE $__timeFilter(landed_at)
GROUP BY 1 ORDER BY 1
"""


def build() -> dashboard.Dashboard:
    """The dashboard model (serialize with `to_json`)."""
    return (
        dash.Dashboard("Pipeline health")
        .uid(UID)
        .tags(["streamlane", "operations"])
        .time("now-30m", "now")
        .refresh("5s")
        .timezone("utc")
        .with_panel(time_series("Events out per second by stage", EVENTS_PER_SECOND, "short"))
        .with_panel(time_series("Rows landed per second", LANDED_PER_SECOND, "short"))
        .with_panel(time_series("Landing consumer lag", LANDING_LAG, "short"))
        .with_panel(
            table.Panel()
            .title("Consumer lag per partition (landing)")
            .datasource(WAREHOUSE)
            .with_target(SqlTarget(LAG_PER_PARTITION, "table"))
            .height(8)
            .span(12)
        )
        .with_panel(time_series("Dead letters by reason", DEAD_LETTER_REASONS, "short"))
        .with_panel(
            time_series("End-to-end latency (event time to enriched)", END_TO_END_LATENCY, "s")
        )
        .with_panel(time_series("Landing batch time", LANDING_BATCH_TIME, "s"))
        .build()
    )
