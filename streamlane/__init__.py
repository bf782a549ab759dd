"""streamlane: Kafka events in; validated, deduplicated, enriched, windowed and landed in DuckDB."""

__version__ = "0.1.0"
