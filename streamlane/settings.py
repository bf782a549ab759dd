"""Settings of a flow run, shared by the CLI, the runner and the flows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlowSettings:
    """How a flow reads, windows and dedupes; defaults are the documented ones."""

    brokers: str
    lateness_s: float = 30.0
    idle_timeout_s: float = 10.0
    dedupe_horizon_s: float = 3600.0
    batch_size: int = 20_000
    shards: int = 16
    broker_timeout_s: float = 120.0
    max_drift_s: float = 600.0
    """How far ahead in event time a partition behind may read of the slowest one behind
    (plus one batch's span): see `streamlane.source`."""
