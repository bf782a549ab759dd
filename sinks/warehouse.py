"""The warehouse process: the one owner of the DuckDB file, landing topics and answering queries.

DuckDB allows one read-write process per file, so nothing else opens it while
this runs. The landing thread writes; every query runs on its own cursor, which
sees a consistent snapshot (never half a landing batch). Queries arrive over a
small HTTP endpoint on loopback, whose address is written beside the warehouse
file (`<file>.endpoint.json`) for `streamlane query`. Queries run inside a
transaction that is rolled back, so a query cannot change the warehouse.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import re
import secrets
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, Message, TopicPartition

from sinks.duckdb import (
    LandingTable,
    Prepared,
    TopicBatch,
    create_tables,
    flow_tables,
    land_batches,
    prepare,
)
from sinks.quack import serve_quack
from streamlane import metrics, shutdown
from streamlane.brokerwatch import DEFAULT_OUTAGE_LIMIT_S, watch
from streamlane.cloudevents import envelope_time_s
from streamlane.collector import collect_rarely
from streamlane.errors import UserError, make_folder
from streamlane.flow import flow_names, load_flow
from streamlane.kafka import (
    LANDING_READER_CONFIG,
    check_reachable,
    consumer_config,
    partitions_by_topic,
)
from streamlane.pgwire.auth import Credentials
from streamlane.pgwire.server import PgServer
from streamlane.ports import free_port
from streamlane.progresslines import ProgressLog, RateMeter, landing_line, own_metrics
from streamlane.query import endpoint_file, result_table
from streamlane.sqlquote import literal
from streamlane.threadname import name_this_thread

log = logging.getLogger(__name__)

CHECKPOINT_MARGIN_BYTES = 64 << 20
CHECKPOINT_THRESHOLD = "512MB"
"""Log size past which a commit also checkpoints; below it the landing checkpoints when idle,
or when it keeps up with a steady stream and a table has `LIVE_CHECKPOINT_ROWS` new rows (or
the log `LIVE_CHECKPOINT_BYTES`)."""
ROW_GROUP_ROWS = 122_880
"""Rows in one of DuckDB's row groups (its default: DuckDB takes another size only when it
attaches a database, and the Quack endpoint answers on the database the process opened
first, so the warehouse keeps the default)."""
LIVE_CHECKPOINT_ROWS = ROW_GROUP_ROWS * 4 // 5
"""New rows of one table after which a landing that keeps up checkpoints. A checkpoint holds
every write back while it runs, for longer the more rows it writes, so it should write few;
but each writes a table's new rows as row groups of their own, and DuckDB rewrites adjacent
row groups that fit in fewer (any four holding at most three row groups' rows, three at most
two, two at most one) at the next checkpoint, reading them back and compressing them again.
Checkpoints of fewer than three quarters of a row group each therefore cost several times as
much per row; four fifths leaves room for the rows of the write that passes it. For enriched
orders this is about 32 MB of log: of 16, 32 and 64 MB of log, `bench.freshness` over two
minutes showed 32 keeping the tail of produce-to-visible shortest (16 MB, about 50,000
orders, is under three quarters). Counting rows rather than bytes holds for wider records
too (`python -m bench.checkpoint_sizes` shows the cost by rows per checkpoint)."""
LIVE_CHECKPOINT_BYTES = 64 << 20
"""Log size after which a landing that keeps up checkpoints even before a table has
`LIVE_CHECKPOINT_ROWS` new rows: what a checkpoint holds writes back for grows with what it
writes, so records twice as wide as enriched orders are checkpointed by rows, wider ones by
this."""
LIVE_CHECKPOINT_BUSY_SHARE = 0.4
"""Share of its time the landing's writer may spend writing rows and still checkpoint as it
goes while it lands history (rows older than `LIVE_EVENT_AGE_S`). Checkpointing rows a few
at a time costs about as much as writing them, so a writer busier than this (one following
a flow through a backlog on the same cores, say) would fall behind: it leaves the log to
grow, as in a backlog, until it has room again, is idle, or the log reaches
`CHECKPOINT_THRESHOLD`."""
LIVE_EVENT_AGE_S = 60.0
"""Rows whose event time is at most this far behind the landing's clock are live: a
dashboard is waiting for them, so a busy writer still checkpoints as it goes. A writer that
lands whatever has arrived is busy most of its time at a live rate on a loaded machine
(each write has a fixed cost, and rows arrive while it runs); deferring there let the log
reach `CHECKPOINT_THRESHOLD`, and `bench.freshness` then saw every write wait seconds for
the one checkpoint of it all."""
BUSY_SHARE_WEIGHT = 0.2
"""Weight of the last batch in the writer's busy share (a moving average over about five)."""

WAREHOUSE_THREADS: int | None = None
"""DuckDB's threads in the warehouse process, by default: DuckDB's own (one per core). Each
query also runs on the thread that asked for it, so concurrent queries run side by side with
one thread too. On the 2-core machine, one thread cost the landing about a fifth less CPU at
a live rate (with more, the thread that asked for a query polls DuckDB's other threads
without pausing while they finish its last tasks: DuckDB's Python client does so), but with
eight dashboard readers it landed about a quarter fewer rows a second and the heaviest
panels took longer (see the README's "Benchmark"), so a warehouse on its own keeps the
default; `streamlane run`, which runs it beside the flows, gives it one thread fewer than
the cores (`streamlane.runner.warehouse_threads_beside_flows`)."""

MAX_BATCH = 100_000
"""Records the landing takes in one poll and writes in one transaction, by default."""
STORAGE_RETRY_S = 5.0
TOPIC_LOOKUP_S = 5.0
"""How often the landing looks for output topics that did not exist yet."""


def landed_tables() -> dict[str, LandingTable]:
    """Every table the warehouse lands, by topic: the outputs of every flow in `flows/`."""
    tables: dict[str, LandingTable] = {}
    for name in flow_names():
        tables |= flow_tables(load_flow(name))
    return tables


def _records_by_topic(messages: list[Any]) -> dict[str, list[Any]]:
    """The records among `messages` by topic, each topic's in the order consumed; an error
    that is not retriable is logged. The topics are read through the client's unbound
    accessor and compared column-wise, with no Python frame per record (see
    `Landing._topic_batch`)."""
    if any(map(Message.error, messages)):
        records = []
        for m in messages:
            err = m.error()
            if err is None:
                records.append(m)
            elif not err.retriable():
                log.warning("landing consumer: %s", err)
        messages = records
    if not messages:
        return {}
    topics = cast("list[str]", list(map(Message.topic, messages)))
    if topics.count(topics[0]) == len(topics):
        return {topics[0]: messages}
    column = np.array(topics, dtype=object)
    return {
        topic: list(map(messages.__getitem__, np.flatnonzero(column == topic).tolist()))
        for topic in dict.fromkeys(topics)
    }


class WholeRowGroups:
    """Which of a poll's records a landing writes: in a backlog, an output's records in
    whole row groups, the rest held back for the next write.

    A transaction that appends a whole row group to a table has DuckDB write it to the
    file, compressed, as it inserts it, and log only where it is. Fewer rows are logged in
    full and written again by the next checkpoint, which a backlog defers until the log
    reaches `CHECKPOINT_THRESHOLD` (writes then wait for it), and rows beyond whole row
    groups leave partial groups that checkpoints rewrite together. Records held back are
    not part of the positions the write commits, so a landing stopped meanwhile reads them
    again: nothing is lost, nothing landed twice.
    """

    def __init__(self, row_group_rows: int, max_batch: int, topics: set[str]) -> None:
        self.row_group_rows = row_group_rows
        # Held records and a poll could never make a whole row group out of less.
        self.most_held = min(row_group_rows, max_batch) if 2 * max_batch >= row_group_rows else 0
        self.topics = topics
        self.held: dict[str, list[Any]] = {}

    def take(self, by_topic: dict[str, list[Any]], full_poll: bool) -> dict[str, list[Any]]:
        """The records to write from a poll's `by_topic` (records by topic, each topic's in
        the order consumed), after the records held back from earlier polls, which come
        first. After a full poll, the records of each of `topics` beyond its last whole row
        group are held back, largest topic first, as long as no more than `most_held`
        records are held in all (a poll's, at most one row group's); after any other poll
        (the backlog is read) every record is written.
        """
        for topic, held in self.held.items():
            by_topic[topic] = held + by_topic.get(topic, [])
        self.held = {}
        if not full_poll:
            return by_topic
        room = self.most_held
        for topic, records in sorted(by_topic.items(), key=lambda item: -len(item[1])):
            whole = len(records) - len(records) % self.row_group_rows
            if topic not in self.topics or len(records) - whole > room:
                continue
            room -= len(records) - whole
            if whole < len(records):
                self.held[topic] = records[whole:]
            if whole:
                by_topic[topic] = records[:whole]
            else:
                del by_topic[topic]
        return by_topic


@dataclass(frozen=True)
class PreparedBatch:
    """One poll, ready to write: per table its records and what `prepare` made of them, the
    positions after the poll, lags."""

    rows: list[tuple[LandingTable, TopicBatch, Prepared]]
    offsets: dict[tuple[str, int], int]
    lags: dict[tuple[str, int], int]
    records: int
    """Records written by this batch (an output's records held back are not among them)."""
    full_poll: bool = False
    """Whether the poll it came from was full: the landing is working through a backlog."""
    newest_event_s: float | None = None
    """Event time of the newest output record (the last of each topic's), if any."""


class Landing:
    """Consumes the output topics and inserts them into their tables, offsets in the same transaction.

    A reader thread polls and prepares the next batch while the current one is written,
    so reading (which needs the interpreter) overlaps writing (which DuckDB does
    without it); an output's records are parsed by DuckDB as the writer lands them
    (see `sinks.duckdb.insert_parsed`). At most `depth` prepared batches of at most `max_batch`
    records wait between the two: a backlog stays in Kafka. DuckDB wrote a backlog's rows at
    the same cost per row in batches of 100,000 as of 200,000, so the default is the
    smaller, which holds less in memory.

    In a backlog an output's rows are written in whole row groups of `row_group_rows`
    (`WholeRowGroups`), so DuckDB writes them to the file as they are inserted
    instead of logging them and writing them again at a checkpoint.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        brokers: str,
        tables: dict[str, LandingTable],
        max_batch: int = MAX_BATCH,
        poll_timeout_s: float = 0.2,
        depth: int = 1,
        broker_timeout_s: float = DEFAULT_OUTAGE_LIMIT_S,
        live_checkpoint_bytes: int = LIVE_CHECKPOINT_BYTES,
        live_checkpoint_busy_share: float = LIVE_CHECKPOINT_BUSY_SHARE,
        live_checkpoint_rows: int = LIVE_CHECKPOINT_ROWS,
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        self.con = con
        self._whole_row_groups = WholeRowGroups(
            row_group_rows, max_batch, {t for t, table in tables.items() if table.parsed}
        )
        self.live_checkpoint_rows = live_checkpoint_rows
        self._new_rows: dict[str, int] = {}
        self._logged_after_write = 0
        self.live_checkpoint_bytes = live_checkpoint_bytes
        self.live_checkpoint_busy_share = live_checkpoint_busy_share
        self._busy_share = 0.0
        self._last_written = time.monotonic()
        self.brokers = brokers
        self.tables = tables
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.cluster_id = check_reachable(brokers)
        self.broker = watch(brokers, broker_timeout_s)
        self.consumer = Consumer(consumer_config(brokers, LANDING_READER_CONFIG))
        self._stored = self._stored_positions()
        self._waiting = set(tables)
        self._look_again_at = 0.0
        self._looking_after_the_outage = False
        self.consumer.assign([])
        self._discover(at_start=True)
        for topic in sorted(self._waiting):
            log.info("landing %s once topic %s is created", tables[topic].name, topic)
        self.landed = 0
        found = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()
        self.path = str(found[0]) if found else "in memory"
        self._held: PreparedBatch | None = None
        self._unsaved = False
        self._caught_up = False
        self._paused_at = 0.0
        self._ready: queue.Queue[Future[PreparedBatch] | BaseException] = queue.Queue(maxsize=depth)
        # Preparing a batch (columnar, mostly outside the interpreter lock) overlaps the next poll.
        self._decoder = ThreadPoolExecutor(
            1,
            thread_name_prefix="landing-decode",
            initializer=name_this_thread,
            initargs=("land-prepare",),
        )
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name="landing-reader", daemon=True)
        self._reader.start()

    def _stored_positions(self) -> dict[tuple[str, int], int]:
        stored = {
            (t, p): (o, c)
            for t, p, o, c in self.con.execute(
                'SELECT topic, "partition", next_offset, cluster_id FROM landing_offsets'
            ).fetchall()
        }
        if any(c != self.cluster_id for _, c in stored.values()):
            # Topics of an earlier (embedded, memory-only) broker are gone: land the new ones from the start.
            log.warning("broker changed since the last landing: reading topics from the start")
            self.con.execute("DELETE FROM landing_offsets")
            return {}
        return {key: offset for key, (offset, _) in stored.items()}

    def _discover(self, at_start: bool = False) -> None:
        """Start landing the topics that exist now; the others are looked for again later.

        At start a Kafka that does not answer is an error (UserError). Later, during an
        outage, they are looked for again once it is over: the broker watch tells of the
        outage and ends the landing once it outlasts its limit, so a lookup that fails
        meanwhile must not end it sooner, and none is made while the watch sees Kafka down
        (each would hold the reader, and a landing stopped meanwhile, for seconds).
        """
        self._look_again_at = time.monotonic() + TOPIC_LOOKUP_S
        if self.broker.down_for_s is not None:
            self._look_after_the_outage()
            return
        try:
            existing = partitions_by_topic({"bootstrap.servers": self.brokers}, self._waiting)
        except UserError:
            if at_start:
                raise
            self._look_after_the_outage()
            return
        self._looking_after_the_outage = False
        found = []
        for topic, indexes in sorted(existing.items()):
            if indexes is None:
                continue
            self._waiting.discard(topic)
            found += [TopicPartition(topic, i, self._stored.get((topic, i), 0)) for i in indexes]
        if found:
            self.consumer.incremental_assign(found)

    def _look_after_the_outage(self) -> None:
        if not self._looking_after_the_outage:
            log.info(
                "landing: looking for topics %s again once Kafka answers",
                ", ".join(sorted(self._waiting)),
            )
        self._looking_after_the_outage = True

    def _read(self) -> None:
        name_this_thread("land-read")
        while not self._stopping.is_set():
            try:
                prepared = self._prepare()
            except shutdown.StopRequested:  # the writer finishes the write in hand and stops
                return
            except BaseException as exc:  # handed to the writer, which raises it
                self._put(exc)
                return
            if prepared is not None:
                self._put(prepared)

    def _put(self, item: Future[PreparedBatch] | BaseException) -> None:
        while not self._stopping.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _prepare(self) -> Future[PreparedBatch] | None:
        if self._waiting and time.monotonic() >= self._look_again_at:
            self._discover()
        messages = self.consumer.consume(self.max_batch, self.poll_timeout_s)
        full_poll = len(messages) >= self.max_batch
        by_topic = self._whole_row_groups.take(_records_by_topic(messages), full_poll)
        if not by_topic:
            return None
        batches = [self._topic_batch(topic, records) for topic, records in by_topic.items()]
        offsets: dict[tuple[str, int], int] = {}
        for batch in batches:
            # Records come in offset order per partition: the last one's offset is the highest.
            offsets |= {
                (batch.topic, p): o + 1
                for p, o in zip(batch.partitions, batch.offsets, strict=True)
            }
        lags = self._lags(offsets)
        records = sum(len(batch.values) for batch in batches)
        return self._decoder.submit(self._decoded, batches, offsets, lags, records, full_poll)

    def _topic_batch(self, topic: str, records: list[Any]) -> TopicBatch:
        dead_letters = self.tables[topic].name == "dead_letters"
        # Read through the client's unbound accessors, with no Python frame per record: the
        # reader holds the interpreter lock for these loops, which the writer's thread and
        # the preparing one wait for.
        values = cast("list[bytes]", list(map(Message.value, records)))
        if not all(values):  # a record without a value (a tombstone) is read as an empty one
            values = [v or b"" for v in values]
        return TopicBatch(
            topic=topic,
            values=values,
            keys=list(map(Message.key, records)) if dead_letters else [],
            partitions=cast("list[int]", list(map(Message.partition, records))),
            offsets=cast("list[int]", list(map(Message.offset, records))),
            timestamps_ms=list(map(itemgetter(1), map(Message.timestamp, records))),
            # A header may have no value: read as absent.
            headers=[
                {k: v.decode("utf-8", "replace") for k, v in (m.headers() or []) if v is not None}
                for m in records
            ]
            if dead_letters
            else [],
        )

    def _decoded(
        self,
        batches: list[TopicBatch],
        offsets: dict[tuple[str, int], int],
        lags: dict[tuple[str, int], int],
        records: int,
        full_poll: bool,
    ) -> PreparedBatch:
        rows = [(self.tables[b.topic], b, prepare(self.tables[b.topic], b)) for b in batches]
        # One record a topic tells live rows from history: a poll's records are of a moment.
        times = [envelope_time_s(b.values[-1]) for table, b, _ in rows if table.parsed and b.values]
        newest = max((s for s in times if s is not None), default=None)
        return PreparedBatch(rows, offsets, lags, records, full_poll, newest)

    def poll_once(self, timeout_s: float = 0.5) -> int:
        """Write the next decoded batch, if one is ready within `timeout_s`; return its records.

        While Kafka does not answer this waits; past the outage limit it raises BrokerOutage.
        When the warehouse file cannot be written (a full disk, say) the batch is rolled
        back and kept, the landing says so once and stops consuming (Kafka keeps the
        rest), and the batch is tried again every `STORAGE_RETRY_S` until it commits.
        """
        self.broker.check()
        item = self._held
        if item is None:
            try:
                got = self._ready.get(timeout=timeout_s)
            except queue.Empty:
                self._checkpoint_when_idle()
                return 0
            if isinstance(got, BaseException):
                raise got
            item = got.result()
        started = time.monotonic()
        try:
            self._write(item, started)
        except (duckdb.IOException, duckdb.TransactionException) as exc:
            if not _storage_fault(exc):
                raise
            self._pause(item, exc)
            return 0
        if self._held is not None:
            log.warning(
                "warehouse %s is writable again after %.0f s; landing resumed",
                self.path,
                time.monotonic() - self._paused_at,
            )
            metrics.LANDING_PAUSED.set(0)
            self._held = None
        written = time.monotonic()
        took = written - started
        metrics.LANDING_BATCH_SECONDS.set(took)
        self._note_busy(took, written)
        metrics.LANDING_BATCH_ROWS.set(item.records)
        self.landed += item.records
        self._checkpoint_when_due(item)
        return item.records

    def _write(self, item: PreparedBatch, started: float) -> None:
        """One transaction: the batch's new rows, the positions after it, the batch log."""

        def positions_and_log() -> None:
            # One statement for every partition (a statement per row costs milliseconds
            # each), its values written out: bound as parameters, the five per partition
            # of a poll of four topics cost DuckDB tens of milliseconds to bind, more than
            # a caught-up batch's rows cost to insert.
            cluster = literal(self.cluster_id)
            positions = [
                f"({literal(t)}, {int(p)}, {int(o)}, {cluster}, {int(item.lags[(t, p)])})"
                for (t, p), o in item.offsets.items()
            ]
            if positions:
                self.con.execute(
                    "INSERT OR REPLACE INTO landing_offsets VALUES " + ", ".join(positions)
                )
            self.con.execute(
                "INSERT INTO landing_batches VALUES (now(), ?, ?, ?)",
                [item.records, time.monotonic() - started, sum(item.lags.values())],
            )

        inserted = land_batches(self.con, item.rows, positions_and_log)
        logged = self._logged_bytes()
        if logged < self._logged_after_write:
            self._new_rows.clear()  # DuckDB checkpointed in the commit (`CHECKPOINT_THRESHOLD`)
        else:
            for name, rows in inserted.items():
                self._new_rows[name] = self._new_rows.get(name, 0) + rows
        self._logged_after_write = logged
        self._unsaved = True
        self._caught_up = not any(item.lags.values())
        for table, batch, _ in item.rows:
            metrics.LANDED_ROWS.labels(table=table.name).inc(len(batch.values))

    def _checkpoint_when_idle(self) -> None:
        """Move what the log holds into the warehouse file once the topics are caught up on.

        Writing a checkpoint costs about as much as landing the rows did; doing it at each
        commit (DuckDB's default once the log passes 16 MB) would halve the landing rate
        while topics are caught up on. DuckDB checkpoints on its own once the log passes
        `CHECKPOINT_THRESHOLD`, and a landing that keeps up with a steady stream, and so
        is never idle, checkpoints by `_checkpoint_when_due`.
        """
        if self._unsaved and self._caught_up:
            self._checkpoint()

    def _checkpoint_when_due(self, item: PreparedBatch) -> None:
        """After a commit that kept up with the topics (the poll was not full, and what is
        left to read is less than one), checkpoint once a table has `live_checkpoint_rows`
        new rows or the log holds `live_checkpoint_bytes`, if the rows are live
        (`LIVE_EVENT_AGE_S`) or the writer is busy no more than `live_checkpoint_busy_share`
        of its time.

        A steady stream never leaves the landing idle, so without this the log grows to
        `CHECKPOINT_THRESHOLD` and DuckDB then checkpoints all of it in one commit, during
        which nothing lands: seconds, far past the freshness a live dashboard needs. Small
        checkpoints hold each write back for a fraction of a second. A backlog keeps
        deferring them, and so does a writer landing history too busy to afford them:
        there the rate matters, not how fresh the last row is.
        """
        backlog = item.full_poll or sum(item.lags.values()) >= self.max_batch
        busy = self._busy_share > self.live_checkpoint_busy_share
        if backlog or (busy and not _live(item)):
            return
        most_new_rows = max(self._new_rows.values(), default=0)
        if (
            most_new_rows >= self.live_checkpoint_rows
            or self._logged_bytes() >= self.live_checkpoint_bytes
        ):
            self._checkpoint()

    def _note_busy(self, writing_s: float, now: float) -> None:
        """Fold a write into the writer's busy share: the time it took over the time since
        the previous write ended, checkpoints left out (waiting for records is not busy)."""
        share = writing_s / max(now - self._last_written, writing_s, 1e-9)
        self._busy_share += BUSY_SHARE_WEIGHT * (share - self._busy_share)
        self._last_written = now
        metrics.LANDING_BUSY_SHARE.set(self._busy_share)

    def _checkpoint(self) -> None:
        """Checkpoint now, if the disk has room for it. A checkpoint that cannot run now (a
        query is reading, the disk is full) is tried again at the next chance."""
        if not self._room_to_checkpoint():
            return
        started = time.monotonic()
        try:
            # On the writer's thread: run on a cursor of its own meanwhile, a checkpoint still
            # held back the inserts into the table it was writing (DuckDB commits inserts
            # during a checkpoint, but not into that table), so writes waited as long.
            self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.debug("checkpoint deferred: %s", str(exc).splitlines()[0])
            return
        except RuntimeError as exc:
            # Ctrl-C (or a stop signal) interrupts the statement; DuckDB checkpoints on close.
            if shutdown.interrupted(exc):
                raise KeyboardInterrupt from None
            raise
        took = time.monotonic() - started
        self._last_written += took  # the busy share is of the time rows leave to checkpoints
        metrics.LANDING_CHECKPOINT_SECONDS.set(took)
        metrics.LANDING_CHECKPOINTS.observe(took)
        self._unsaved = False
        self._new_rows.clear()
        self._logged_after_write = 0

    def _logged_bytes(self) -> int:
        """What the warehouse's log holds (0 for a warehouse in memory)."""
        return 0 if self.path == "in memory" else logged_bytes(Path(self.path))

    def _room_to_checkpoint(self) -> bool:
        """Whether the disk holds what a checkpoint writes (at most what the log holds, plus
        a margin): a checkpoint that runs out of space invalidates the database, where a
        commit that does only rolls back."""
        if self.path == "in memory":
            return True
        free = shutil.disk_usage(Path(self.path).parent).free
        return free > 2 * self._logged_bytes() + CHECKPOINT_MARGIN_BYTES

    def _pause(self, item: PreparedBatch, exc: duckdb.Error) -> None:
        if self._held is None:
            self._paused_at = time.monotonic()
            metrics.LANDING_PAUSED.set(1)
            log.warning(
                "cannot write warehouse %s (%s); landing paused, Kafka keeps the data; "
                "retrying every %.0f s",
                self.path,
                _storage_fault(exc),
                STORAGE_RETRY_S,
            )
        self._held = item
        self._stopping.wait(STORAGE_RETRY_S)

    def _lags(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Records behind each partition's high watermark (from fetch responses) after this batch."""
        lags = {}
        for (topic, partition), next_offset in offsets.items():
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
            lag = max(0, high - next_offset) if high >= 0 else 0
            metrics.LANDING_LAG.labels(topic=topic, partition=str(partition)).set(lag)
            lags[(topic, partition)] = lag
        return lags

    def close(self) -> None:
        """Stop reading and preparing, and close the consumer. Prepared batches not yet
        written are dropped, not lost: their offsets are stored only with their rows, so
        the next start reads them again."""
        self._stopping.set()
        self._reader.join(timeout=10)
        self._decoder.shutdown(wait=True, cancel_futures=True)
        self.consumer.close()
        self.broker.release()


def _storage_fault(exc: duckdb.Error) -> str:
    """What failed, when `exc` says the warehouse file could not be written; else ''.

    DuckDB reports a failed data write as an IO error, a failed log write at commit as
    a transaction error that names the file.
    """
    message = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.IOException) or "Could not write" in message:
        return message.split(": ", 1)[-1]  # without DuckDB's "<kind> Error: " prefix
    return ""


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run one read query on its own cursor and snapshot; changes it makes are rolled back."""
    cursor = con.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION")
        try:
            table = result_table(cursor, sql)
        finally:
            cursor.execute("ROLLBACK")
        return table
    finally:
        cursor.close()


def _handler(con: duckdb.DuckDBPyConnection) -> type[BaseHTTPRequestHandler]:
    class QueryHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
            length = int(self.headers.get("Content-Length", 0))
            sql = self.rfile.read(length).decode("utf-8", "replace")
            try:
                table = run_query(con, sql)
            except duckdb.Error as exc:
                body = json.dumps({"error": str(exc).splitlines()[0]}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            body = sink.getvalue().to_pybytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.apache.arrow.stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return QueryHandler


def logged_bytes(warehouse: Path) -> int:
    """What DuckDB's log beside the warehouse file `warehouse` holds (0 when there is none):
    rows committed but not yet checkpointed into the file."""
    wal = Path(f"{warehouse}.wal")
    return wal.stat().st_size if wal.exists() else 0


def _live(item: PreparedBatch) -> bool:
    """Whether `item`'s newest output record is live: its event time is at most
    `LIVE_EVENT_AGE_S` behind this machine's clock."""
    newest = item.newest_event_s
    return newest is not None and time.time() - newest <= LIVE_EVENT_AGE_S


def open_warehouse(
    path: Path, threads: int | None = WAREHOUSE_THREADS
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the warehouse file read-write, with `threads` DuckDB threads
    (None: DuckDB's default), and make sure the tables exist."""
    make_folder(path.parent, "warehouse's folder")
    con = duckdb.connect(str(path))
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    create_tables(con, landed_tables())
    # Reference data the flows enrich with, for dashboards (region filters, map coordinates).
    for name in flow_names():
        for table, csv in load_flow(name).reference_tables.items():
            con.execute(
                f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM read_csv(?, header = true)',
                [str(csv)],
            )
    return con


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Settings for a database that clients reach over the network.

    Clients cannot read or write files on the server, attach databases, install or
    load extensions, or change settings; `/` on integers divides as in PostgreSQL
    (the dialect the endpoint speaks).
    """
    con.execute("SET GLOBAL integer_division = true")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def secret_file(warehouse: Path, kind: str) -> Path:
    """Where a generated credential (`pg-password`, `quack-token`) is kept, owner-readable only."""
    return warehouse.with_name(f"{warehouse.name}.{kind}")


_OTHER_PORT = "; choose another port with --{option} or STREAMLANE_{env}_PORT (0: any free)"
"""What to do when an endpoint's port is taken: often by another server on a developer's
machine (a second PostgreSQL, say)."""


def credential(warehouse: Path, kind: str, env_var: str) -> tuple[str, bool]:
    """The credential from `env_var`, else one generated and written beside the warehouse (kept
    across restarts). Returns (value, whether it comes from the file)."""
    configured = os.environ.get(env_var)
    if configured:
        return configured, False
    stored = secret_file(warehouse, kind)
    if stored.exists():
        return stored.read_text().strip(), True
    value = secrets.token_urlsafe(18)
    stored.touch(mode=0o600)
    stored.write_text(value + "\n")
    return value, True


@dataclass(frozen=True)
class EndpointSettings:
    """Where and how the PostgreSQL endpoint listens."""

    host: str = "127.0.0.1"
    port: int = 5433
    allow_writes: bool = False
    auth_method: str = "scram-sha-256"
    quack_host: str = "127.0.0.1"
    quack_port: int = 9494


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in .*\(PID (\d+)\)")


def _open_failure(exc: duckdb.IOException) -> str:
    """Why DuckDB could not open the warehouse, in one line: a file another process holds
    is named as such, with what to do, instead of DuckDB's message and its pointer."""
    message = str(exc).splitlines()[0]
    holder = _LOCK_HOLDER.search(message)
    if holder:
        return (
            f"another process (PID {holder.group(1)}) has it open; a running warehouse "
            "answers queries itself (`streamlane query`), or stop it first"
        )
    return message


class Warehouse:
    """Owns the DuckDB file: serves queries and runs the landing until stopped."""

    def __init__(
        self,
        path: Path,
        brokers: str | None,
        endpoint: EndpointSettings | None = None,
        broker_timeout_s: float = DEFAULT_OUTAGE_LIMIT_S,
        threads: int | None = WAREHOUSE_THREADS,
    ) -> None:
        self.path = path
        self.broker_timeout_s = broker_timeout_s
        try:
            self.con = open_warehouse(path, threads)
        except duckdb.IOException as exc:
            raise UserError(f"cannot open warehouse {path}: {_open_failure(exc)}") from None
        endpoint = endpoint or EndpointSettings()
        quack_token, _ = credential(path, "quack-token", "STREAMLANE_QUACK_TOKEN")
        self.quack_port = endpoint.quack_port or free_port(endpoint.quack_host)
        self.quack_host = endpoint.quack_host
        try:
            serve_quack(self.con, endpoint.quack_host, self.quack_port, quack_token)
        except duckdb.Error as exc:
            raise UserError(
                f"cannot serve Quack on {endpoint.quack_host}:{self.quack_port}: "
                f"{str(exc).splitlines()[0]}{_OTHER_PORT.format(option='quack-port', env='QUACK')}"
            ) from None
        lock_down(self.con)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.con))
        self.server.daemon_threads = True
        user = os.environ.get("STREAMLANE_PG_USER", "streamlane")
        password, generated = credential(path, "pg-password", "STREAMLANE_PG_PASSWORD")
        try:
            self.pg = PgServer(
                self.con,
                Credentials.from_password(user, password),
                endpoint.host,
                endpoint.port,
                auth_method=endpoint.auth_method,
                allow_writes=endpoint.allow_writes,
                max_concurrent_queries=int(os.environ.get("STREAMLANE_PG_MAX_QUERIES", "0")),
            )
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise UserError(
                f"cannot listen for PostgreSQL clients on {endpoint.host}:{endpoint.port}: "
                f"{exc.strerror}{_OTHER_PORT.format(option='pg-port', env='PG') if taken else ''}"
            ) from None
        where = f"postgresql://{user}@{endpoint.host}:{self.pg.port}/warehouse"
        told = (
            f"password in {secret_file(path, 'pg-password')}"
            if generated
            else "password from STREAMLANE_PG_PASSWORD"
        )
        log.info("PostgreSQL endpoint %s (%s)", where, told)
        self.pg_url, self.pg_password_from = where, told
        self.brokers = brokers
        self.stopping = threading.Event()
        self.landing: Landing | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self) -> None:
        """Serve queries and land topics until `stop()`, logging what the landing has done
        (`progresslines.landing_line`) every 10 s while it changes and once when it stops;
        removes the endpoint file on the way out."""
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.pg.serve_in_background()
        announce = endpoint_file(self.path)
        tmp = announce.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "url": self.url,
                    "pid": os.getpid(),
                    "pg_host": self.pg.tcp.server_address[0],
                    "pg_port": self.pg.port,
                    "pg_url": self.pg_url,
                    "pg_password_from": self.pg_password_from,
                    "quack_host": self.quack_host,
                    "quack_port": self.quack_port,
                }
            )
        )
        tmp.replace(announce)
        log.info("warehouse %s serving queries at %s", self.path, self.url)
        how = "stopped"
        try:
            if self.brokers:
                self.landing = Landing(
                    self.con, self.brokers, landed_tables(), broker_timeout_s=self.broker_timeout_s
                )
                collect_rarely()
                rates = RateMeter()
                with ProgressLog(lambda: landing_line(own_metrics(), rates)):
                    while not self.stopping.is_set():
                        self.landing.poll_once()
            else:
                while not self.stopping.wait(0.5):  # a timed wait lets Ctrl-C through
                    pass
        except (KeyboardInterrupt, RuntimeError) as exc:
            # DuckDB reports a statement it interrupted as an error raised from the interrupt.
            if not shutdown.interrupted(exc):
                raise
            how = "stopped at once (the write in hand rolled back; Kafka keeps its records)"
        finally:
            announce.unlink(missing_ok=True)
            if self.landing:
                self.landing.close()
            self.pg.stop()
            self.server.shutdown()
            self.con.close()
        log.info("warehouse %s %s", self.path, how)

    def stop(self) -> None:
        """Ask `serve` to stop after the write in hand, from a thread other than its own (the
        CLI's is the one that handles a stop signal); `serve` then closes the landing, the
        endpoints and the warehouse, and returns."""
        self.stopping.set()
