"""Building the bytewax dataflow of a declared `Flow` (see `streamlane.flow`).

input ─► decode + validate ──────────────────────► dead letters
          │ lift columns, enrich ── miss ────────► dead letters
          │ derive; split by key over the shards
          │ (all on the source's decode threads)
          │ dedupe by id
          ├──────────────────────────────────────► enriched output
          ▼ each window set
          ├── closed windows ────────────────────► window output
          └── late events ───────────────────────► late output

Every frame stays columnar from decode to the Kafka sinks; records are
serialized once per batch.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import polars as pl
from bytewax import operators as op
from bytewax.dataflow import Dataflow

from sinks.kafka import KafkaFrameSink
from streamlane import metrics
from streamlane.cloudevents import derived_traceparent, envelope_json, rfc3339
from streamlane.decode import Decoded
from streamlane.engine import BATCH_ENGINE
from streamlane.enrich import LookupEnricher
from streamlane.flow import Flow, Output, Windows
from streamlane.localparts import WorkerLayout
from streamlane.reference import TopicReference, TopicTable
from streamlane.settings import FlowSettings
from streamlane.shards import ShardOutput, ShardRows, WindowSpec, route, shard_step, split
from streamlane.source import (
    EventSource,
    PartitionBatch,
    dead_letter_frame,
    partition_indexes,
    partition_name,
    partition_names,
)
from streamlane.versions import decode_versions, upcast_chain

Keyed = tuple[str, pl.DataFrame]
"""(sink partition key, frame): the key names one of the sink partitions of the worker that
made the frame (`KafkaFrameSink.key_for`), which writes it."""


def decoder(flow: Flow) -> Callable[[list[bytes]], Decoded]:
    """Decode raw records as the flow's input type, older versions upcast (loss-free)."""
    for older in flow.older_input_types:
        upcast_chain(older, flow.input_type)  # a missing upcaster fails at build time

    def decode(values: list[bytes]) -> Decoded:
        return decode_versions(values, flow.input_type, flow.older_input_types)

    return decode


def lifted(flow: Flow, events: pl.DataFrame) -> pl.DataFrame:
    """One row per event: the envelope fields every flow keeps, and the flow's `columns`."""
    return (
        events.lazy()
        .select(
            "row",
            "part",
            "offset",
            "event_time_us",
            "own_newest_before_us",
            event_id=pl.col("id"),
            traceparent=pl.col("traceparent").fill_null(derived_traceparent(pl.col("id"))),
            **flow.columns,
        )
        .collect(engine=BATCH_ENGINE)
    )


SHARD_STEP = "dedupe_and_window"
"""The step id of the state shards' step: a flow's recovery store keys their snapshots
under it, so renaming it would leave every existing store's shard state behind."""

_LOOKUPS: dict[str, list[LookupEnricher | TopicTable]] = {}
_LOOKUPS_LOCK = threading.Lock()


def lookups(flow: Flow, brokers: str) -> list[LookupEnricher | TopicTable]:
    """The flow's lookups, built once per process and shared by its workers (reading
    reference files, or a reference topic to its end, is not free)."""
    with _LOOKUPS_LOCK:
        if flow.name not in _LOOKUPS:
            _LOOKUPS[flow.name] = [
                e.start(brokers) if isinstance(e, TopicReference) else e() for e in flow.enrich
            ]
        return _LOOKUPS[flow.name]


def enrich_batch(flow: Flow, batch: PartitionBatch, brokers: str) -> PartitionBatch:
    """The batch with its events lifted, enriched, derived and serialized as enriched
    records (`key`, `value`); an event a lookup misses follows the flow's `on_miss` (a dead
    letter with the lookup's reason, or passed through marked `unenriched`). The records'
    original bytes are dropped: nothing after enrichment refers to them."""
    if batch.events.is_empty():
        return replace(batch, events=pl.DataFrame(), keys=[], values=[])
    events = lifted(flow, batch.events)
    misses = []
    keep = flow.on_miss == "pass_through"
    for lookup in lookups(flow, brokers):
        found = lookup.apply(events, keep_misses=keep)
        events = found.events
        misses.append(found.misses)
    dead = batch.dead_letters
    missed = pl.concat(misses) if misses else pl.DataFrame(schema={"row": pl.Int64})
    if keep:
        events = events.with_columns(unenriched=pl.col("row").is_in(missed["row"].implode()))
    elif missed.height:
        dead = pl.concat([dead, _miss_dead_letters(batch, missed)])
    if flow.derive:
        events = events.with_columns(**flow.derive)
    # Serialized here, once per batch: after dedupe a shard only selects its rows,
    # instead of every shard encoding its slice separately.
    events = events.with_columns(enriched_records(flow, events))
    return replace(batch, events=events, dead_letters=dead, keys=[], values=[])


def prepare_batch(
    flow: Flow, spec: WindowSpec, batch: PartitionBatch, brokers: str
) -> PartitionBatch:
    """The batch enriched (`enrich_batch`) and its events split by state shard
    (`shard_split`): the flow's work that needs no state, done on the source's decode
    threads."""
    enriched = enrich_batch(flow, batch, brokers)
    shards = shard_split(flow, spec, enriched.events)
    return replace(enriched, events=pl.DataFrame(), shards=shards)


def shard_split(flow: Flow, spec: WindowSpec, events: pl.DataFrame) -> dict[int, ShardRows]:
    """Enriched events split by state shard, with what each shard's step needs (`split`),
    keeping only the columns a later step reads (`carried_columns`): the split copies
    every column it keeps, and a shard's step filters them again."""
    carried = carried_columns(flow, spec)
    return split(spec, events.select([c for c in events.columns if c in carried]))


def carried_columns(flow: Flow, spec: WindowSpec) -> set[str]:
    """The enriched events' columns read after the split: the records already encoded
    (`key`, `value`), what the shard steps read (ids, partitions, event times, window keys,
    the aggregates' inputs) and what late events are written with."""
    names = {"key", "value", spec.id_column, "part", "event_time_us", "own_newest_before_us"}
    names |= {"traceparent", flow.key}
    for window in spec.windows:
        names.update(window.keys)
        for aggregate in window.aggregates:
            names.update(aggregate.partial.meta.root_names())
    for windows in flow.windows:
        for field in windows.late.data:
            names.update([field] if isinstance(field, str) else field.meta.root_names())
    return names


def window_spec(flow: Flow, settings: FlowSettings, partitions: tuple[str, ...]) -> WindowSpec:
    """How `flow` dedupes and windows under `settings`, reading the input's `partitions`."""
    return WindowSpec(
        partitions=partitions,
        key=flow.key,
        windows=flow.window_defs(),
        lateness_us=int(settings.lateness_s * 1e6),
        dedupe_horizon_us=int(settings.dedupe_horizon_s * 1e6),
        shards=settings.shards,
    )


def enriched_records(flow: Flow, events: pl.DataFrame) -> pl.DataFrame:
    """Records (`key`, `value`) of enriched events: one CloudEvent of the enriched type each,
    its id derived from the event's, its time the event time, its trace the event's."""
    return _records(
        flow,
        flow.enriched,
        events,
        event_id=pl.format("{}/enriched", "event_id"),
        time_us=pl.col("event_time_us"),
        traceparent=pl.col("traceparent"),
    )


def _miss_dead_letters(batch: PartitionBatch, misses: pl.DataFrame) -> pl.DataFrame:
    missed = misses.join(
        batch.events.select("row", "part", "offset"), on="row", how="left", maintain_order="left"
    )
    return dead_letter_frame(
        batch.topic, batch.kafka_partitions(missed["part"]), batch.keys, batch.values,
        missed["row"], missed["reason"], missed["offset"],
    )  # fmt: skip


def _records(
    flow: Flow,
    output: Output,
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    event_id: pl.Expr,
    time_us: pl.Expr,
    traceparent: pl.Expr,
) -> pl.DataFrame:
    """Records (`key` = the flow key, `value` = one CloudEvent of `output`'s type) of `frame`.

    A lazy `frame` is collected with the records, in the one query: on the worker every
    query waits for the columnar engine's threads, which the decode threads keep busy."""
    envelope = envelope_json(
        event_type=output.event_type,
        source=flow.source,
        event_id=event_id,
        time_us=time_us,
        subject=pl.col(flow.key),
        traceparent=traceparent,
        data=pl.struct(*output.data),
    )
    # Built in a lazy query, which encodes JSON faster than an eager select does.
    return (
        frame.lazy()
        .select(key=pl.col(flow.key).cast(pl.String), value=envelope)
        .collect(engine=BATCH_ENGINE)
    )


def window_records(flow: Flow, windows: Windows, closed: pl.DataFrame) -> pl.DataFrame:
    """One event of the window set's output type per key and closed window."""
    metrics.EVENTS_BY_TYPE.labels(direction="out", type=windows.output.event_type).inc(
        closed.height
    )
    keys = (flow.key, *windows.by)
    start = rfc3339(pl.col("window_start"))
    identity = pl.format("{}/" * len(keys) + "{}", *keys, start)
    frame = (
        closed.lazy()
        .with_columns(**windows.derive)
        .with_columns(
            __id=pl.format("{}/{}", pl.lit(windows.output.topic), identity),
            __trace=derived_traceparent(identity),
            __end_us=pl.col("window_end"),
            window_start=start,
            window_end=rfc3339(pl.col("window_end")),
        )
    )
    return _records(
        flow,
        windows.output,
        frame,
        event_id=pl.col("__id"),
        time_us=pl.col("__end_us"),
        traceparent=pl.col("__trace"),
    )


def late_records(flow: Flow, windows: Windows, late: pl.DataFrame) -> pl.DataFrame:
    """Late events: the enriched event plus the window it missed and the watermark it met."""
    metrics.EVENTS_BY_TYPE.labels(direction="out", type=windows.late.event_type).inc(late.height)
    start = rfc3339(pl.col("window_start_us"))
    frame = late.lazy().with_columns(
        window=pl.lit(windows.name),
        window_start=start,
        window_end=rfc3339(pl.col("window_end_us")),
        watermark=rfc3339(pl.col("watermark_us")),
    )
    return _records(
        flow,
        windows.late,
        frame,
        event_id=pl.format("{}/late/{}/{}", "event_id", pl.lit(windows.name), start),
        time_us=pl.col("event_time_us"),
        traceparent=pl.col("traceparent"),
    )


def dead_letter_records(topic: str, dead: pl.DataFrame) -> pl.DataFrame:
    """Dead letters keep the original key and bytes; the reason and origin travel as headers."""
    for reason, count in Counter(dead["reason"].to_list()).items():
        metrics.DEAD_LETTERS.labels(topic=topic, reason=metrics.reason_kind(reason)).inc(count)
    return dead.select(
        "key",
        "value",
        header_reason="reason",
        header_topic="topic",
        header_partition="partition",
        header_offset="offset",
    )


def _outputs(pick: Callable[[ShardOutput], pl.DataFrame | None]):  # type: ignore[no-untyped-def]
    def flat(keyed: tuple[str, ShardOutput]) -> list[Keyed]:
        frame = pick(keyed[1])
        return [] if frame is None or frame.is_empty() else [(keyed[0], frame)]

    return flat


def _keyed(
    encode: Callable[[pl.DataFrame], pl.DataFrame], sink: KafkaFrameSink
) -> Callable[[Keyed], Keyed]:
    """`encode` applied to the frame of a (shard key, frame) item, keyed to the sink partition
    of the worker running it that takes that shard's records."""

    def apply(item: Keyed) -> Keyed:
        return sink.key_for(item[0]), encode(item[1])

    return apply


def _enriched_records(flow: Flow) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def select(events: pl.DataFrame) -> pl.DataFrame:
        metrics.EVENTS_BY_TYPE.labels(direction="out", type=flow.enriched.event_type).inc(
            events.height
        )
        # The columns as they are: a query here would wait for polars' threads.
        return pl.DataFrame([events.get_column("key"), events.get_column("value")])

    return select


def build_dataflow(
    flow: Flow, settings: FlowSettings, layout: WorkerLayout | None = None
) -> Dataflow:
    """The bytewax dataflow of `flow` for the given settings (brokers, lateness, idle timeout...),
    run by the workers of `layout` (one, by default). Each worker writes the outputs it makes
    to sink partitions of its own (`streamlane.localparts`), which the layout shares out."""
    # One listing of the input's partitions for the watermark's and the source's.
    partitions = partition_indexes(settings.brokers, flow.input_topic)
    spec = window_spec(flow, settings, tuple(partition_names(flow.input_topic, partitions)))
    source = EventSource(
        settings.brokers,
        flow.input_topic,
        decoder(flow),
        prepare=partial(prepare_batch, flow, spec, brokers=settings.brokers),
        batch_size=settings.batch_size,
        idle_timeout_s=settings.idle_timeout_s,
        broker_timeout_s=settings.broker_timeout_s,
        max_drift_s=settings.max_drift_s,
        partitions=partitions,
    )

    def sink(topic: str, headers: bool = False) -> KafkaFrameSink:
        return KafkaFrameSink(
            settings.brokers,
            topic,
            headers=headers,
            broker_timeout_s=settings.broker_timeout_s,
            layout=layout,
        )

    dead_letter_sink = sink(flow.dead_letter_topic, headers=True)

    def dead_letters(batch: PartitionBatch) -> list[Keyed]:
        if batch.dead_letters.is_empty():
            return []
        records = dead_letter_records(flow.dead_letter_topic, batch.dead_letters)
        # Keyed by input partition, so each partition's dead letters keep their order.
        by_partition = records.partition_by("header_partition", as_dict=True, maintain_order=True)
        return [
            (dead_letter_sink.key_for(partition_name(batch.topic, index)), part)
            for (index,), part in by_partition.items()
        ]

    dataflow = Dataflow(flow.name)
    # Decoded, enriched and split by shard off the worker, on the source's decode threads.
    enriched = op.input("read", dataflow, source)
    op.output("to_dlq", op.flat_map("dead_letters", enriched, dead_letters), dead_letter_sink)

    shards = op.flat_map(
        f"key_by_{flow.key}", enriched, lambda b: route(spec, b.shards, b.progress)
    )
    results = op.stateful_map(SHARD_STEP, shards, shard_step(spec))
    unique = op.flat_map("unique_events", results, _outputs(lambda r: r.unique))
    enriched_sink = sink(flow.enriched.topic)
    events = op.map("enriched_events", unique, _keyed(_enriched_records(flow), enriched_sink))
    op.output("to_enriched", events, enriched_sink)
    for windows in flow.windows:
        _window_outputs(flow, windows, results, sink)
    return dataflow


def closed_window_records(
    flow: Flow, windows: Windows, outputs: list[ShardOutput]
) -> pl.DataFrame | None:
    """The windows of the set `windows` that closed in any of `outputs` (shard steps' outputs,
    a batch's on one worker), encoded as `window_records` in one query; None when none did.

    One query for all shards, not one per shard: each query costs the worker a fixed
    fraction of a millisecond however few windows it encodes, and a batch that closes
    windows (a backlog's every batch) closes some in nearly every shard."""
    return _together(
        [o.windows.get(windows.name) for o in outputs], partial(window_records, flow, windows)
    )


def late_event_records(
    flow: Flow, windows: Windows, outputs: list[ShardOutput]
) -> pl.DataFrame | None:
    """The late events of the set `windows` in any of `outputs`, encoded as `late_records`
    in one query (as `closed_window_records`); None when there are none."""
    return _together(
        [o.late.get(windows.name) for o in outputs], partial(late_records, flow, windows)
    )


def _together(
    frames: list[pl.DataFrame | None], encode: Callable[[pl.DataFrame], pl.DataFrame]
) -> pl.DataFrame | None:
    found = [f for f in frames if f is not None and not f.is_empty()]
    if not found:
        return None
    return encode(found[0] if len(found) == 1 else pl.concat(found, how="vertical_relaxed"))


def _per_worker(
    encode: Callable[[list[ShardOutput]], pl.DataFrame | None], sink: KafkaFrameSink
) -> Callable[[list[tuple[str, ShardOutput]]], list[Keyed]]:
    """A mapper of the batch of shard outputs a worker's step emitted at once: `encode`'s
    records as one item, keyed to a sink partition of the worker itself, the same one every
    time, so the records of a key keep their order, as they did keyed by their shard (a
    shard stays on one worker for the run)."""

    def flat(batch: list[tuple[str, ShardOutput]]) -> list[Keyed]:
        records = encode([output for _, output in batch])
        if records is None:
            return []
        return [(sink.key_for(f"{os.getpid()}/{threading.get_ident()}"), records)]

    return flat


def _window_outputs(
    flow: Flow, windows: Windows, results: Any, sink: Callable[[str], KafkaFrameSink]
) -> None:
    name = windows.name
    closed = partial(closed_window_records, flow, windows)
    window_sink = sink(windows.output.topic)
    op.output(
        f"to_{name}",
        op.flat_map_batch(f"{name}_events", results, _per_worker(closed, window_sink)),
        window_sink,
    )
    late = partial(late_event_records, flow, windows)
    late_sink = sink(windows.late.topic)
    op.output(
        f"to_late_{name}",
        op.flat_map_batch(f"late_{name}_events", results, _per_worker(late, late_sink)),
        late_sink,
    )
