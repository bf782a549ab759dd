"""streamlane: Kafka events in; validated, deduplicated, enriched, windowed and landed in DuckDB."""

from streamlane import memory as _memory  # noqa: F401  (allocator settings before polars loads)

__version__ = "0.1.0"
