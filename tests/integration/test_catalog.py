"""`streamlane catalog`: the site renders in headless Chromium with every type, version, field,
producer and consumer; its filter works; every link resolves; the Markdown says the same."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streamlane.paths import SCHEMAS_DIR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.rows: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a" and dict(attrs).get("href"):
            self.links.append(str(dict(attrs)["href"]))
        if tag == "tr":
            self.rows.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def rendered(page: Path, query: str = "") -> _Page:
    """The DOM of `page` after its scripts ran, as headless Chromium dumps it."""
    assert CHROMIUM, "chromium is installed by scripts/test"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         f"file://{page}{query}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    parsed = _Page()
    parsed.feed(dom)
    return parsed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog")
    made = subprocess.run(
        [sys.executable, "-m", "streamlane", "catalog", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "event types" in made.stdout
    return out


def schemas() -> dict[str, dict]:
    documents = [json.loads(p.read_text()) for p in SCHEMAS_DIR.glob("*.json")]
    return {d["properties"]["type"]["const"]: d for d in documents}


def test_the_index_lists_every_type_and_filters(site: Path) -> None:
    page = rendered(site / "index.html")
    text = " ".join(page.text)
    every = schemas()
    events = [r for r in page.rows if "event" in (r.get("class") or "")]
    assert len(events) == len(every)
    assert f"{len(every)} of {len(every)} event types" in text
    filtered = rendered(site / "index.html", "?q=clickstream")
    shown = [r for r in filtered.rows if "event" in (r.get("class") or "") and "hidden" not in r]
    clicks = [t for t in every if t.startswith("shop.")]
    assert len(shown) == len(clicks) and clicks
    assert f"{len(clicks)} of {len(every)} event types" in " ".join(filtered.text)


def static(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text())
    return parsed


def test_each_event_page_has_its_fields_producers_and_consumers(site: Path) -> None:
    # Every page as written; a few of them as Chromium renders them.
    for event_type, document in schemas().items():
        page = static(site / "events" / f"{event_type}.html")
        text = " ".join(page.text)
        data_fields = document["properties"]["data"]["properties"]
        for name in data_fields:
            assert f"data.{name}" in text, (event_type, name)
        assert ("Deprecated" in text) == bool(document.get("deprecated")), event_type
    enriched = " ".join(rendered(site / "events" / "pizza.order.enriched.v1.html").text)
    for part in ("flow orders", "warehouse table orders_enriched", "pizza.orders.enriched"):
        assert part in enriched
    revenue = " ".join(rendered(site / "events" / "pizza.store.revenue.1m.v1.html").text)
    assert "dashboard Pizza orders — live" in revenue
    old = " ".join(rendered(site / "events" / "pizza.order.confirmed.v1.html").text)
    assert "flow orders (upcast to pizza.order.confirmed.v2)" in old
    assert "generators/orders.py" in old
    sessions = " ".join(rendered(site / "events" / "shop.session.v1.html").text)
    assert "dashboard Web shop clickstream — live" in sessions


def test_every_link_resolves_and_the_markdown_agrees(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == len(schemas()) + 3  # the index and two flows
    for page in pages:
        for link in static(page).links:
            assert (page.parent / link).resolve().exists(), f"{page.name}: {link}"
    markdown = (site / "catalog.md").read_text()
    for event_type in schemas():
        assert f"## {event_type}\n" in markdown
    assert "## Flow clickstream" in markdown and "**Deprecated.**" in markdown


def test_an_unwritable_destination_is_one_line(tmp_path: Path) -> None:
    """`--out` naming a file, not a folder: one line saying where and why, no traceback."""
    taken = tmp_path / "taken"
    taken.write_text("")
    made = subprocess.run(
        [sys.executable, "-m", "streamlane", "catalog", "--out", str(taken)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 2
    assert made.stderr.strip() == (
        f"streamlane: error: cannot write the catalog to {taken}: it is a file, not a folder"
    ), made.stderr
