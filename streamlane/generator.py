"""Seeded event streams for demos, tests and the benchmark, and the pizza order generator.

`EventGenerator` is the stream machinery every flow's generator shares: the
clock, live pacing and bursts, and the share of re-sent duplicates, malformed
records, events out of order within the allowed lateness and events far beyond it.
A flow's generator (in `generators/<flow>.py`, a class named `Generator`) only says
how to make one valid event and how to break one.

In `count` mode event time runs on a simulated clock whose rate follows the
generator's `intensity`; in `rate` mode event time is the wall clock. Every
record says what kind it is, so tests can compute the expected answer.

The order generator makes `pizza.order.confirmed.v1` events. Store popularity
is skewed (a few busy stores, a long tail) and orders follow a day with lunch
and dinner peaks.
"""

from __future__ import annotations

import csv
import importlib
import itertools
import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from streamlane.errors import UserError
from streamlane.paths import REFERENCE_DIR

MENU = [
    ("margherita-m", 9.5),
    ("margherita-l", 12.0),
    ("pepperoni-m", 10.5),
    ("pepperoni-l", 13.5),
    ("quattro-formaggi-l", 14.0),
    ("diavola-m", 11.0),
    ("veggie-l", 13.0),
    ("calzone", 11.5),
    ("garlic-bread", 4.5),
    ("tiramisu", 5.5),
    ("cola", 2.5),
]
CHANNELS = (("web", 0.45), ("app", 0.40), ("phone", 0.15))
OFFSETS = (
    UTC,
    timezone(timedelta(hours=1)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
)
KINDS = ("valid", "duplicate", "malformed", "out_of_order", "too_late")


@dataclass(frozen=True)
class GeneratorSettings:
    """What to generate. Shares are fractions of all records."""

    seed: int = 42
    count: int | None = 10_000
    start: datetime | None = None
    events_per_second: float = 40.0
    duplicates: float = 0.01
    malformed: float = 0.01
    out_of_order: float = 0.03
    too_late: float = 0.002
    lateness_s: float = 30.0
    too_late_by_s: float = 600.0
    burst_factor: float = 1.0
    """In live mode, `events_per_second` times this during the burst."""
    burst_after_s: float = 10.0
    """Seconds of live production before the burst starts."""
    burst_for_s: float = 60.0
    stores_csv: Path = REFERENCE_DIR / "stores.csv"
    order_v2_share: float = 0.0
    """Share of orders sent as `pizza.order.confirmed.v2` (total with its currency)."""


@dataclass(frozen=True)
class GeneratedRecord:
    """One Kafka record and what the generator meant it to be."""

    key: bytes
    value: bytes
    kind: str
    event_time: datetime | None


def _daily_intensity(t: datetime) -> float:
    hour = t.hour + t.minute / 60
    lunch = math.exp(-(((hour - 12.5) / 1.0) ** 2))
    dinner = math.exp(-(((hour - 19.0) / 1.3) ** 2))
    return 0.25 + 1.0 * lunch + 1.4 * dinner


def _load_stores(path: Path) -> list[tuple[int, str]]:
    with open(path, newline="") as f:
        return [(int(r["store_id"]), r["currency"]) for r in csv.DictReader(f)]


def _format_time(t: datetime, rng: random.Random) -> str:
    zone = OFFSETS[0] if rng.random() < 0.85 else rng.choice(OFFSETS)
    local = t.astimezone(zone)
    text = local.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def format_time(t: datetime, rng: random.Random) -> str:
    """An RFC 3339 time as producers write them: mostly UTC with `Z`, some with an offset."""
    return _format_time(t, rng)


def _malform(event: dict, rng: random.Random, unknown_store: int) -> bytes:
    """A record that must be rejected, in one of several realistic ways."""
    kind = rng.randrange(9)
    data = event["data"]
    if kind == 0:
        return json.dumps(event).encode()[: rng.randint(5, 60)]  # truncated
    if kind == 1:
        data["store_id"] = str(data["store_id"])  # a string where an integer belongs
    elif kind == 2:
        del event["time"]
    elif kind == 3:
        event["type"] = "pizza.order.cancelled.v1"
    elif kind == 4:
        data["items"][0]["qty"] = 0
    elif kind == 5:
        data["store_id"] = (
            unknown_store  # valid shape, but no such store: dead letter on enrichment
        )
    elif kind == 6:
        return b"\xff\xfe" + json.dumps(event).encode()[2:]  # not UTF-8
    elif kind == 7:
        data["items"] = []
    else:
        event["time"] = "yesterday at noon"
    return json.dumps(event).encode()


class EventGenerator:
    """Iterates `GeneratedRecord`s for the given settings (endless when `count` is None).

    Subclasses implement `event` (one valid event at a time) and `malform` (a record
    that must be rejected, made from a valid event).
    """

    demo_backfill_s: float = 180.0
    """History `streamlane run --demo` produces first, so windows show data at once."""
    demo_rate: float | None = None
    """Events per second for `streamlane run --demo`, when not the run's `--rate`."""

    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        start = settings.start or datetime.now(UTC).replace(microsecond=0)
        self.clock = start
        self.recent: deque[tuple[bytes, bytes, datetime]] = deque(maxlen=500)
        self.n = 0
        self.n_ticks = 0
        self.live_since: tuple[float, int] | None = None
        self.next_due = 0.0

    def event(self, event_time: datetime) -> tuple[bytes, dict[str, Any]]:
        """One valid event at `event_time`: (record key, CloudEvent as a dict)."""
        raise NotImplementedError

    def malform(self, event: dict[str, Any]) -> bytes:
        """A record that must become a dead letter, made from a valid `event`."""
        raise NotImplementedError

    def intensity(self, t: datetime) -> float:
        """Relative event rate at simulated time `t` (1.0: `events_per_second`)."""
        return 1.0

    def _rate_at(self, live_s: float) -> float:
        """Live events per second, `live_s` seconds after going live."""
        s = self.settings
        bursting = s.burst_after_s <= live_s < s.burst_after_s + s.burst_for_s
        return s.events_per_second * (s.burst_factor if bursting else 1.0)

    def _tick(self, live: bool) -> datetime:
        now = datetime.now(UTC)
        if live and self.clock >= now:
            if self.live_since is None:
                self.live_since = (time.monotonic(), self.n_ticks)
                self.next_due = self.live_since[0]
            started = self.live_since[0]
            delay = self.next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_due += 1.0 / self._rate_at(self.next_due - started)
            self.n_ticks += 1
            return datetime.now(UTC)
        # Simulated clock: the whole stream (count mode) or the backfill before going live.
        rate = self.settings.events_per_second * self.intensity(self.clock)
        self.clock += timedelta(seconds=self.rng.expovariate(rate))
        self.n_ticks += 1
        return self.clock

    def __iter__(self) -> Iterator[GeneratedRecord]:
        return self.records(live=False)

    def records(self, live: bool = False) -> Iterator[GeneratedRecord]:
        """The record stream.

        With `live`, events are paced at `events_per_second` and stamped with the
        wall clock, after a fast backfill from `start` (if in the past) up to now.
        """
        s = self.settings
        rng = self.rng
        produced = 0
        while s.count is None or produced < s.count:
            produced += 1
            now = self._tick(live)
            roll = rng.random()
            if roll < s.duplicates and self.recent:
                key, value, t = rng.choice(self.recent)
                yield GeneratedRecord(key, value, "duplicate", t)
                continue
            roll -= s.duplicates
            if roll < s.malformed:
                key, event = self.event(now)
                yield GeneratedRecord(key, self.malform(event), "malformed", None)
                continue
            roll -= s.malformed
            kind = "valid"
            event_time = now
            if roll < s.out_of_order:
                kind = "out_of_order"
                event_time = now - timedelta(seconds=rng.uniform(0.5, s.lateness_s / 3))
            elif roll < s.out_of_order + s.too_late:
                kind = "too_late"
                event_time = now - timedelta(seconds=s.too_late_by_s * rng.uniform(1.0, 1.5))
            key, event = self.event(event_time)
            value = json.dumps(event, separators=(",", ":")).encode()
            if kind == "valid":
                self.recent.append((key, value, event_time))
            yield GeneratedRecord(key, value, kind, event_time)


class OrderGenerator(EventGenerator):
    """Pizza orders: skewed store popularity, a day with lunch and dinner peaks."""

    def __init__(self, settings: GeneratorSettings) -> None:
        super().__init__(settings)
        stores = _load_stores(settings.stores_csv)
        self.rng.shuffle(stores)
        self.stores = stores
        weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(stores))]
        # Cumulative once: choices() with plain weights sums all of them on every call.
        self.cum_weights = list(itertools.accumulate(weights))
        self.channels = [c for c, _ in CHANNELS]
        self.channel_cum_weights = list(itertools.accumulate(w for _, w in CHANNELS))
        self.unknown_store = max(s for s, _ in stores) + 1000

    def intensity(self, t: datetime) -> float:
        return _daily_intensity(t)

    def malform(self, event: dict[str, Any]) -> bytes:
        return _malform(event, self.rng, self.unknown_store)

    def event(self, event_time: datetime) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        store_id, currency = rng.choices(self.stores, cum_weights=self.cum_weights)[0]
        items: list[dict[str, Any]] = []
        for sku, price in rng.sample(MENU, rng.choice((1, 1, 2, 2, 3, 4))):
            items.append({"sku": sku, "qty": rng.choice((1, 1, 1, 2, 3)), "unit_price": price})
        total = round(sum(i["qty"] * i["unit_price"] for i in items), 2)
        self.n += 1
        trace = f"{rng.getrandbits(128):032x}"
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "source": f"pos/store/{store_id}",
            "type": "pizza.order.confirmed.v1",
            "time": _format_time(event_time, rng),
            "datacontenttype": "application/json",
            "traceparent": f"00-{trace}-{rng.getrandbits(64):016x}-01",
            "data": {
                "order_id": f"o-{self.settings.seed}-{self.n}",
                "customer_id": f"c-{rng.randint(1, 50_000)}",
                "store_id": store_id,
                "channel": rng.choices(self.channels, cum_weights=self.channel_cum_weights)[0],
                "items": items,
                "total": total,
                "currency": currency,
            },
        }
        if rng.random() < 0.05:
            event["data"]["coupon"] = "LUNCH10"  # extra fields must be tolerated
        # Drawn only when asked for, so a seed gives the same orders as before versions.
        if self.settings.order_v2_share and rng.random() < self.settings.order_v2_share:
            event = order_as_v2(event)
        return str(store_id).encode(), event


def order_as_v2(event: dict[str, Any]) -> dict[str, Any]:
    """The same order as a `pizza.order.confirmed.v2` event: `total: {value, currency}`."""
    data = dict(event["data"])
    data["total"] = {"value": data["total"], "currency": data.pop("currency")}
    return {**event, "type": "pizza.order.confirmed.v2", "data": data}


def generator_for(flow: str) -> type[EventGenerator]:
    """The `Generator` class of `generators/<flow>.py`; a clear UserError when there is none."""
    try:
        module = importlib.import_module(f"generators.{flow}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("generators", f"generators.{flow}"):
            raise
        raise UserError(f"flow {flow!r} has no generator (generators/{flow}.py)") from None
    generator: type[EventGenerator] = module.Generator
    return generator
