"""Declaring a flow: what it reads, how it keys, enriches and windows events, what it emits.

A flow module in `flows/` builds one `Flow` and names it `FLOW`. `streamlane flow
run NAME` runs it (see `streamlane.dataflow`), and the warehouse lands every output
it declares into the table the output names, keyed as declared. What a flow does:

1. reads its input topic and decodes each record against the input event type's
   schema; a malformed or invalid record becomes a dead letter with the reason;
2. lifts `columns` out of each event's `data` and runs the `enrich` lookups in
   order; an event without a reference row becomes a dead letter;
3. adds the `derive` columns, then drops re-sent events (same id within the dedupe
   horizon) and emits each remaining event once on the `enriched` output;
4. folds on-time events into each window set; a closed window is emitted once on
   the window set's output, and an event that arrives after its window closed goes
   to the window set's `late` output instead of being dropped.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from streamlane.aggregates import Aggregate
from streamlane.enrich import LookupEnricher
from streamlane.errors import UserError
from streamlane.reference import TopicReference
from streamlane.shards import WindowDef
from streamlane.windows import WindowKind

MICROS = 1_000_000
PYTHON_FUNCTION = "python_udf"
"""How polars prints an expression that calls a Python function. Polars runs expressions
on its own threads, where a Python function waits for the interpreter lock, and some
polars calls hold that lock while they wait for those threads (pickling a frame, which
bytewax does to snapshot state and to send batches between processes): the flow hangs.
So a flow's expressions are polars' own, and a flow that calls a Python function in one
is refused when loaded."""


def minutes(n: float) -> int:
    """`n` minutes in the microseconds window kinds take."""
    return int(n * 60 * MICROS)


def data(name: str) -> pl.Expr:
    """A field of the input event's `data` object, for a flow's `columns`."""
    return pl.col("data").struct.field(name)


@dataclass(frozen=True)
class Table:
    """The warehouse table an output lands in, with the columns that identify a row.

    The table has one column per field of the output's `data` (RFC 3339 strings
    become timestamps), plus the `envelope` columns named (`event_time`, the event's
    time; `traceparent`) and `produced_at`, the Kafka timestamp of the record. A row
    landed again with a key already stored is dropped, so replays are harmless.
    `near` is a key-stable column that follows landing order (an event time, a window
    start), which lets the duplicate check skip most of the table.
    """

    name: str
    key: tuple[str, ...]
    near: str
    envelope: tuple[str, ...] = ("event_time", "traceparent")


def events_table(name: str) -> Table:
    """The table of an enriched-events output: one row per event id."""
    return Table(name, key=("event_id",), near="event_time")


def windows_table(name: str, *keys: str) -> Table:
    """The table of a window set's output: one row per key (the flow key, then the window
    set's `by` columns) and window start."""
    return Table(name, key=(*keys, "window_start"), near="window_start", envelope=())


def late_table(name: str) -> Table:
    """The table of a late output: one row per event and window it missed (its data must
    carry `window`, the window set's name)."""
    return Table(
        name,
        key=("event_id", "window", "window_start"),
        near="event_time",
        envelope=("event_time",),
    )


@dataclass(frozen=True)
class Output:
    """A stream the flow emits: topic, CloudEvents type, the `data` fields, its table.

    `data` lists columns of the frame being emitted, by name or as named expressions.
    Records are keyed by the flow's key column. `event_type` must have a schema in
    `schemas/`; the landing decodes the topic with it.
    """

    topic: str
    event_type: str
    data: tuple[str | pl.Expr, ...]
    table: Table


@dataclass(frozen=True)
class Windows:
    """A window set: one window per key (the flow key plus `by`) and window of `kind`.

    `aggregates` are computed over the on-time events of each window; `derive` adds
    columns computed from a closed window's aggregates (a ratio, say). In the frames
    `output` and `late` see, `window_start`, `window_end` (and for late events
    `watermark`) are RFC 3339 strings.
    """

    name: str
    kind: WindowKind
    aggregates: tuple[Aggregate, ...]
    output: Output
    late: Output
    by: tuple[str, ...] = ()
    derive: dict[str, pl.Expr] = field(default_factory=dict)


@dataclass(frozen=True)
class Flow:
    """A declared flow; see the module docstring for what happens to each event.

    `input_type` is the CloudEvents type (with its version) the flow works on;
    `older_input_types` are earlier versions it also accepts, upcast to `input_type`
    when decoded (see `streamlane.versions`). `columns` are lifted from `data`
    (`data("field")`, or any expression over it); `key` is the column records
    are partitioned and windows keyed by. `enrich` are lookups, run in order: factories
    of lookups from files (built once per process) or `TopicReference`s, tables kept
    from a compacted topic (see `streamlane.reference`). An event a lookup misses
    follows `on_miss`: a dead letter with the lookup's reason (the default), or
    `pass_through`, on with null reference columns and `unenriched` true.
    `reference_tables` are CSV files the warehouse also serves as tables, so
    dashboards can join them.
    """

    name: str
    input_topic: str
    input_type: str
    dead_letter_topic: str
    key: str
    columns: dict[str, pl.Expr]
    enriched: Output
    older_input_types: tuple[str, ...] = ()
    enrich: tuple[Callable[[], LookupEnricher] | TopicReference, ...] = ()
    on_miss: Literal["dead_letter", "pass_through"] = "dead_letter"
    derive: dict[str, pl.Expr] = field(default_factory=dict)
    windows: tuple[Windows, ...] = ()
    reference_tables: dict[str, Path] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The CloudEvents `source` of everything this flow emits."""
        return f"streamlane/flows/{self.name}"

    def outputs(self) -> list[Output]:
        """Every output stream: the enriched events, then each window set's windows and late events."""
        outputs = [self.enriched]
        for windows in self.windows:
            outputs += [windows.output, windows.late]
        return outputs

    @property
    def reference_topics(self) -> list[str]:
        """The compacted topics the flow's lookups keep their tables from."""
        return [e.topic for e in self.enrich if isinstance(e, TopicReference)]

    @property
    def topics(self) -> list[str]:
        """Every topic the flow reads or writes, input first, each once."""
        topics = [self.input_topic, *self.reference_topics, self.dead_letter_topic]
        topics += [o.topic for o in self.outputs()]
        return list(dict.fromkeys(topics))

    def expressions(self) -> dict[str, pl.Expr]:
        """Every expression the flow declares, by where it is declared (`columns['total']`)."""
        found = {f"columns[{n!r}]": e for n, e in self.columns.items()}
        found |= {f"derive[{n!r}]": e for n, e in self.derive.items()}
        for output in self.outputs():
            for i, item in enumerate(output.data):
                if isinstance(item, pl.Expr):
                    found[f"output {output.topic!r} data[{i}]"] = item
        for windows in self.windows:
            for aggregate in windows.aggregates:
                found[f"windows {windows.name!r} aggregate {aggregate.name!r}"] = aggregate.partial
            for n, e in windows.derive.items():
                found[f"windows {windows.name!r} derive[{n!r}]"] = e
        return found

    def window_defs(self) -> tuple[WindowDef, ...]:
        """The window sets as the state shards keep them."""
        return tuple(
            WindowDef(w.name, (self.key, *w.by), w.kind, w.aggregates) for w in self.windows
        )


def flow_names() -> list[str]:
    """Names of the flows in `flows/` (each module there that declares a `FLOW`)."""
    import flows  # the project's flow modules: a namespace package beside `streamlane`

    names = [m.name for m in pkgutil.iter_modules(flows.__path__) if not m.name.startswith("_")]
    return sorted(n for n in names if isinstance(getattr(_module(n), "FLOW", None), Flow))


def _module(name: str) -> Any:
    return importlib.import_module(f"flows.{name}")


def load_flow(name: str) -> Flow:
    """The `FLOW` declared by `flows/<name>.py`; a clear UserError when there is none."""
    known = flow_names()
    if name not in known:
        raise UserError(f"unknown flow {name!r} (known: {', '.join(known) or 'none'})")
    flow: Flow = _module(name).FLOW
    for where, expr in flow.expressions().items():
        if PYTHON_FUNCTION in str(expr):
            raise UserError(
                f"flow {name!r}: {where} calls a Python function (map_elements, map_batches); "
                "write it with polars expressions: a Python function there can hang the flow"
            )
    return flow
