"""The event catalog: every event type and version, who produces and consumes it, as a site and Markdown.

Built from what the project declares, so it cannot drift: the schemas in
`schemas/` (fields, descriptions, examples, `deprecated`), the flows in `flows/`
(which topic each type travels on, which flow reads or writes it, which
warehouse table it lands in) and the provisioned dashboards (which of them read
those tables).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from streamlane.flow import Flow, Output, flow_names, load_flow
from streamlane.paths import PROJECT_ROOT, SCHEMAS_DIR
from streamlane.reference import TopicReference
from streamlane.windows import Hopping, Session, WindowKind

DASHBOARDS_DIR = PROJECT_ROOT / "dashboards" / "provisioning" / "dashboards"
_VERSION = re.compile(r"^(?P<name>.+)\.(?P<version>v\d+)$")


@dataclass(frozen=True)
class FieldRow:
    """One field of an event's `data`: dotted path, type as read, required, description."""

    path: str
    kind: str
    required: bool
    description: str


@dataclass
class EventEntry:
    """One event type and version, with where it travels and who touches it."""

    event_type: str
    name: str
    version: str
    title: str
    description: str
    deprecated: bool
    fields: list[FieldRow]
    example: str
    topics: set[str] = field(default_factory=set)
    producers: set[str] = field(default_factory=set)
    consumers: set[str] = field(default_factory=set)
    flows: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    dashboards: set[str] = field(default_factory=set)

    @property
    def slug(self) -> str:
        return self.event_type


@dataclass(frozen=True)
class FlowEntry:
    """A flow as the catalog shows it: its docstring, what it reads and what it writes."""

    name: str
    summary: str
    input_topic: str
    input_types: list[str]
    outputs: list[Output]
    windows: list[tuple[str, str, list[str]]]
    lookups: list[str]


@dataclass(frozen=True)
class Catalog:
    events: list[EventEntry]
    flows: list[FlowEntry]


def _kind(node: dict[str, Any]) -> str:
    if "const" in node:
        return f"constant {json.dumps(node['const'])}"
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    declared = node.get("type", "any")
    kind = " or ".join(declared) if isinstance(declared, list) else str(declared)
    if node.get("format"):
        kind += f" ({node['format']})"
    bounds = []
    if "minimum" in node:
        bounds.append(f">= {node['minimum']:g}")
    if "maximum" in node and node["maximum"] < 2**62:
        bounds.append(f"<= {node['maximum']:g}")
    if "minLength" in node:
        bounds.append(f"length >= {node['minLength']}")
    if "minItems" in node:
        bounds.append(f"at least {node['minItems']} item(s)")
    if kind == "array":
        kind = f"array of {_kind(node.get('items', {}))}"
    return kind + (f", {', '.join(bounds)}" if bounds else "")


def _fields(node: dict[str, Any], prefix: str) -> list[FieldRow]:
    rows = []
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}"
        rows.append(FieldRow(path, _kind(child), name in required, child.get("description", "")))
        if child.get("type") == "object":
            rows += _fields(child, path)
        elif child.get("type") == "array" and child.get("items", {}).get("type") == "object":
            rows += _fields(child["items"], f"{path}[]")
    return rows


def _event(path: Path) -> EventEntry:
    document = json.loads(path.read_text())
    event_type = document["properties"]["type"]["const"]
    match = _VERSION.match(event_type)
    name, version = (match["name"], match["version"]) if match else (event_type, "")
    examples = document.get("examples") or []
    return EventEntry(
        event_type=event_type,
        name=name,
        version=version,
        title=document.get("title", event_type),
        description=document.get("description", ""),
        deprecated=bool(document.get("deprecated", False)),
        fields=_fields(document["properties"]["data"], "data"),
        example=json.dumps(examples[0], indent=2) if examples else "",
    )


def _dashboards_by_table(tables: set[str]) -> dict[str, set[str]]:
    """Per warehouse table, the titles of the provisioned dashboards whose SQL reads it."""
    found: dict[str, set[str]] = {t: set() for t in tables}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        sql = " ".join(
            t.get("rawSql", "") for p in board.get("panels", []) for t in p.get("targets", [])
        )
        for table in tables:
            if re.search(rf"\b{re.escape(table)}\b", sql):
                found[table].add(board["title"])
    return found


def _flow_entry(flow: Flow, module_doc: str) -> FlowEntry:
    windows = [
        (w.name, _window_kind(w.kind), [o for a in w.aggregates for o in a.outputs()])
        for w in flow.windows
    ]
    lookups = [
        f"{e.name} (topic {e.topic}, over {e.seed_csv.name if e.seed_csv else 'nothing'})"
        if isinstance(e, TopicReference)
        else getattr(e, "__name__", type(e).__name__)
        for e in flow.enrich
    ]
    return FlowEntry(
        name=flow.name,
        summary=module_doc.strip(),
        input_topic=flow.input_topic,
        input_types=[flow.input_type, *flow.older_input_types],
        outputs=flow.outputs(),
        windows=windows,
        lookups=lookups,
    )


def _window_kind(kind: WindowKind) -> str:
    def minutes(us: int) -> str:
        return f"{us / 60e6:g} min"

    if isinstance(kind, Session):
        return f"session, gap {minutes(kind.gap_us)}"
    if isinstance(kind, Hopping):
        return f"hopping, {minutes(kind.size_us)} every {minutes(kind.every_us)}"
    return f"tumbling, {minutes(kind.size_us)}"


def build_catalog(schemas_dir: Path = SCHEMAS_DIR) -> Catalog:
    """The catalog of the project's schemas, flows and dashboards (see the module docstring)."""
    events = {e.event_type: e for e in map(_event, sorted(schemas_dir.glob("*.json")))}
    flows = []
    for name in flow_names():
        flow = load_flow(name)
        module = importlib.import_module(f"flows.{name}")
        flows.append(_flow_entry(flow, module.__doc__ or ""))
        for event_type in [flow.input_type, *flow.older_input_types]:
            entry = events.get(event_type)
            if entry is None:
                continue
            entry.topics.add(flow.input_topic)
            entry.flows.add(name)
            entry.producers.add(f"upstream producers, to {flow.input_topic}")
            if (PROJECT_ROOT / "generators" / f"{name}.py").exists():
                entry.producers.add(
                    f"generator generators/{name}.py (streamlane generate --flow {name})"
                )
            upcast = " (upcast to " + flow.input_type + ")" if event_type != flow.input_type else ""
            entry.consumers.add(f"flow {name}{upcast}")
        for output in flow.outputs():
            entry = events.get(output.event_type)
            if entry is None:
                continue
            entry.topics.add(output.topic)
            entry.flows.add(name)
            entry.producers.add(f"flow {name}")
            entry.tables.add(output.table.name)
            entry.consumers.add(f"warehouse table {output.table.name}")
    by_table = _dashboards_by_table({t for e in events.values() for t in e.tables})
    for entry in events.values():
        for table in entry.tables:
            entry.dashboards |= by_table[table]
        entry.consumers |= {f"dashboard {d}" for d in entry.dashboards}
    ordered = sorted(events.values(), key=lambda e: (e.name, e.version))
    return Catalog(ordered, flows)


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("streamlane", "catalog_templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_catalog(out: Path, catalog: Catalog | None = None) -> list[Path]:
    """Write the site (`index.html`, one page per event type and per flow) and `catalog.md`."""
    catalog = catalog or build_catalog()
    env = _environment()
    out.mkdir(parents=True, exist_ok=True)
    (out / "events").mkdir(exist_ok=True)
    (out / "flows").mkdir(exist_ok=True)
    pages = {out / "index.html": env.get_template("index.html").render(catalog=catalog)}
    for event in catalog.events:
        pages[out / "events" / f"{event.slug}.html"] = env.get_template("event.html").render(
            event=event, catalog=catalog
        )
    for flow in catalog.flows:
        pages[out / "flows" / f"{flow.name}.html"] = env.get_template("flow.html").render(
            flow=flow, catalog=catalog
        )
    pages[out / "catalog.md"] = env.get_template("catalog.md").render(catalog=catalog)
    (out / "style.css").write_text(env.get_template("style.css").render())
    for path, text in pages.items():
        path.write_text(text)
    return [*pages, out / "style.css"]
