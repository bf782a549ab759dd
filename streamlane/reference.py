"""Reference data from a compacted Kafka topic: a lookup table kept up to date as records arrive.

The topic holds one record per reference row, keyed by the row's key, its value
a JSON object of the row's columns (a null value deletes the row). Every flow
process keeps the whole table (like a global table: the compacted topic is its
changelog). At start the table is the seed CSV, if any, overlaid by the topic read
up to its end before the first event is enriched; after that a reader thread
applies records as they arrive. So an update applies to events enriched from the
moment it is read, and events enriched earlier keep what they were enriched with
(no re-enrichment of the past). A restart reads the topic again, so the table
survives restarts without state of its own.

Each enriched event records the version of the row it was enriched with: the
seed file's name, or `topic/partition@offset` of the record. A record that is not
a JSON object of the table's columns is skipped with a warning (and counted), the
row it would have changed stays as it was.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamlane import metrics, shutdown
from streamlane.enrich import Enriched, LookupEnricher, read_reference_csv
from streamlane.errors import UserError
from streamlane.kafka import answered_within, consumer_config, existing_partitions
from streamlane.threadname import name_this_thread

log = logging.getLogger(__name__)

BOOTSTRAP_TIMEOUT_S = 60.0
WATERMARK_TIMEOUT_S = 10.0
LOOK_AGAIN_S = 5.0
"""How often a topic that did not exist when the flow started is looked for."""


@dataclass(frozen=True)
class TopicReference:
    """A lookup whose table comes from compacted topic `topic` (seeded from `seed_csv`).

    Events are matched on `key` against the table's `table_key`; a match adds the
    table's other columns (renamed by `rename`) and `version_column`. A miss is
    reported with `miss_reason` (the key value as `{}`) and handled by the flow's
    miss policy.
    """

    name: str
    topic: str
    key: str
    table_key: str
    columns: dict[str, pl.DataType]
    miss_reason: str
    version_column: str
    seed_csv: Path | None = None
    rename: dict[str, str] = field(default_factory=dict)

    def start(self, brokers: str) -> TopicTable:
        """The live table of this lookup, read up to the topic's end (see the module docstring)."""
        return TopicTable(self, brokers)


class TopicTable:
    """A `TopicReference`'s table in this process, kept current by a reader thread."""

    def __init__(self, spec: TopicReference, brokers: str) -> None:
        self.spec = spec
        self.brokers = brokers
        seed = (
            read_reference_csv(spec.seed_csv, spec.columns).with_columns(
                pl.lit(spec.seed_csv.name).alias(spec.version_column)
            )
            if spec.seed_csv
            else pl.DataFrame(schema={**spec.columns, spec.version_column: pl.String()})
        )
        self._rows = seed
        self._enricher = self._lookup(seed)
        self.updates = 0
        self._consumer = Consumer(consumer_config(brokers, {"fetch.wait.max.ms": 100}))
        try:
            partitions = self._assign()
            if not partitions:
                log.info(
                    "reference %s: topic %s not created yet; using the seed", spec.name, spec.topic
                )
            self._bootstrap(partitions)
        except BaseException:
            self._consumer.close()
            raise
        self._stopping = threading.Event()
        self._reader = threading.Thread(
            target=self._follow, name=f"reference-{spec.name}", daemon=True
        )
        self._reader.start()

    def _lookup(self, rows: pl.DataFrame) -> LookupEnricher:
        return LookupEnricher(
            table=rows.rename(self.spec.rename),
            key=self.spec.key,
            table_key=self.spec.rename.get(self.spec.table_key, self.spec.table_key),
            miss_reason=self.spec.miss_reason,
        )

    def apply(self, events: pl.DataFrame, keep_misses: bool = False) -> Enriched:
        """Enrich `events` with the table as it is now (see `LookupEnricher.apply`)."""
        return self._enricher.apply(events, keep_misses)

    def _bootstrap(self, partitions: list[int]) -> None:
        """Read the topic up to its end as of now. Every wait gives up once the process is
        asked to stop (`shutdown.StopRequested`): the table starts on a flow's decode thread,
        which the stop waits for."""
        ends = {}
        for p in partitions:
            where = TopicPartition(self.spec.topic, p)
            _, high = answered_within(
                partial(self._consumer.get_watermark_offsets, where), WATERMARK_TIMEOUT_S
            )
            if high > 0:
                ends[p] = high
        deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
        done: dict[int, int] = {}
        while any(done.get(p, 0) < end for p, end in ends.items()):
            shutdown.give_up_if_stopping()
            if time.monotonic() > deadline:
                raise UserError(
                    f"reference topic {self.spec.topic!r} on {self.brokers} could not be read to "
                    f"its end within {BOOTSTRAP_TIMEOUT_S:.0f} s"
                )
            for p, offset in self._poll():
                done[p] = max(done.get(p, 0), offset + 1)
        log.info(
            "reference %s: %d rows (%d updates from %s)",
            self.spec.name,
            self._rows.height,
            self.updates,
            self.spec.topic,
        )

    def close(self) -> None:
        """Stop following the topic (the table stays as it is)."""
        self._stopping.set()
        self._reader.join(timeout=5)
        self._consumer.close()

    def _assign(self) -> list[int]:
        """Read every partition of the topic from the start; [] while it does not exist."""
        partitions = existing_partitions({"bootstrap.servers": self.brokers}, self.spec.topic)
        if partitions:
            self._consumer.assign(
                [TopicPartition(self.spec.topic, p, OFFSET_BEGINNING) for p in partitions]
            )
        return partitions or []

    def _follow(self) -> None:
        name_this_thread("reference")
        assigned = bool(self._consumer.assignment())
        unanswered = False
        while not self._stopping.is_set():
            try:
                if not assigned:  # a topic created after the flow started is picked up
                    assigned = bool(self._assign())
                    unanswered = False
                    if not assigned:
                        self._stopping.wait(LOOK_AGAIN_S)
                    continue
                self._poll()
            except shutdown.StopRequested:  # the process stops; the table's close ends this
                self._stopping.wait(LOOK_AGAIN_S)
            except UserError as exc:  # Kafka does not answer: told once, looked for again
                if not unanswered:
                    log.warning(
                        "reference %s: %s; looked for again once it answers", self.spec.name, exc
                    )
                unanswered = True
                self._stopping.wait(LOOK_AGAIN_S)
            except Exception:  # the table stays as it is; the next poll tries again
                log.exception("reference %s: reading %s failed", self.spec.name, self.spec.topic)
                time.sleep(1)

    def _poll(self) -> list[tuple[int, int]]:
        """Apply the next records of the topic; return (partition, offset) of each one read."""
        messages = self._consumer.consume(10_000, 0.2)
        rows: list[dict[str, Any]] = []
        deleted: list[Any] = []
        seen: list[tuple[int, int]] = []
        for m in messages:
            if m.error() is not None:
                continue
            seen.append((m.partition() or 0, m.offset() or 0))
            version = f"{self.spec.topic}/{m.partition()}@{m.offset()}"
            parsed = self._row(m.key(), m.value(), version)
            if parsed is None:
                continue
            if parsed is _TOMBSTONE:
                deleted.append(self._key_value(m.key()))
            else:
                rows.append(parsed)
        if rows or deleted:
            self._update(rows, deleted)
        return seen

    def _key_value(self, key: bytes | None) -> Any:
        kind = self.spec.columns[self.spec.table_key]
        text = (key or b"").decode("utf-8", "replace")
        return int(text) if kind == pl.Int64() else text

    def _row(self, key: bytes | None, value: bytes | None, version: str) -> Any:
        if value is None:
            try:
                return _TOMBSTONE if key is not None and self._key_value(key) is not None else None
            except ValueError:
                return self._skip(version, "a tombstone whose key is not a table key")
        try:
            row = json.loads(value)
        except ValueError:
            return self._skip(version, "not JSON")
        if not isinstance(row, dict) or set(self.spec.columns) - set(row):
            return self._skip(version, f"not an object with {', '.join(self.spec.columns)}")
        return {**{c: row[c] for c in self.spec.columns}, self.spec.version_column: version}

    def _skip(self, version: str, why: str) -> None:
        log.warning("reference %s: skipped record %s: %s", self.spec.name, version, why)
        metrics.REFERENCE_SKIPPED.labels(table=self.spec.name).inc()
        return None

    def _update(self, rows: list[dict[str, Any]], deleted: list[Any]) -> None:
        schema = {**self.spec.columns, self.spec.version_column: pl.String()}
        try:
            updates = pl.DataFrame(rows, schema=schema, strict=True) if rows else None
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            # One bad value spoils the frame: take the rows one by one to keep the good ones.
            if len(rows) == 1:
                self._skip(rows[0][self.spec.version_column], f"a value of the wrong type ({exc})")
                return
            for row in rows:
                self._update([row], [])
            self._update([], deleted)
            return
        key = self.spec.table_key
        table = self._rows
        changed = [*deleted]
        if updates is not None:
            updates = updates.unique(key, keep="last", maintain_order=True)
            changed += updates[key].to_list()
        table = table.filter(~pl.col(key).is_in(pl.Series(changed, dtype=schema[key]).implode()))
        if updates is not None:
            table = pl.concat([table, updates])
        self._rows = table
        self._enricher = self._lookup(table)
        self.updates += len(rows) + len(deleted)
        metrics.REFERENCE_UPDATES.labels(table=self.spec.name).inc(len(rows) + len(deleted))


_TOMBSTONE = object()


def topic_references() -> dict[str, TopicReference]:
    """Every topic lookup the flows in `flows/` declare, by name."""
    from streamlane.flow import flow_names, load_flow

    found: dict[str, TopicReference] = {}
    for name in flow_names():
        found |= {e.name: e for e in load_flow(name).enrich if isinstance(e, TopicReference)}
    return found


def read_rows(spec: TopicReference, path: Path) -> pl.DataFrame:
    """Reference rows from a CSV or JSONL file, typed as the table's columns; UserError if not."""
    if not path.is_file():
        raise UserError(f"cannot read {path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        if path.suffix == ".csv":
            return read_reference_csv(path, spec.columns)
        frame = pl.read_ndjson(path, schema=spec.columns)
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not rows of {spec.name} ({first})") from None
    missing = frame.filter(pl.any_horizontal(pl.all().is_null()))
    if missing.height:
        raise UserError(f"{path}: {missing.height} row(s) lack a column of {spec.name}")
    return frame


def publish_rows(brokers: str, spec: TopicReference, rows: pl.DataFrame, deleted: list[str]) -> int:
    """Publish rows (keyed by the table key) and deletions (null values) to the lookup's topic."""
    from streamlane.publish import publish

    records: list[tuple[bytes, bytes | None]] = [
        (str(row[spec.table_key]).encode(), json.dumps(row).encode())
        for row in rows.iter_rows(named=True)
    ]
    records += [(key.encode(), None) for key in deleted]
    return publish(brokers, spec.topic, records)
