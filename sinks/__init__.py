"""Outputs: Kafka topics, the DuckDB landing and the warehouse server."""
