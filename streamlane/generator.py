"""Seeded event streams for demos, tests and the benchmark, and the pizza order generator.

`EventGenerator` is the stream machinery every flow's generator shares: the
clock, live pacing and bursts, and the share of re-sent duplicates, malformed
records, events out of order within the allowed lateness and events far beyond it.
A flow's generator (in `generators/<flow>.py`, a class named `Generator`) only says
how to make one valid event and how to break one.

In `count` mode event time runs on a simulated clock whose rate follows the
generator's `intensity`, one event at a time, so a seed always gives the same
records. In `rate` mode event time is the wall clock: the events that came due
are made every `LIVE_TICK_S` as one block, which a generator can build in bulk
(`events`); the order generator does, so one process keeps up with tens of
thousands of events a second. Every record says what kind it is, so tests can
compute the expected answer.

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

import numpy as np
import polars as pl
import pyarrow as pa

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
ITEM_COUNTS = (1, 1, 2, 2, 3, 4)
"""How many different menu items an order has, drawn uniformly from this list."""
QTYS = (1, 1, 1, 2, 3)
"""How many of an item an order has, drawn uniformly from this list."""
OFFSETS = (
    UTC,
    timezone(timedelta(hours=1)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
)
KINDS = ("valid", "duplicate", "malformed", "out_of_order", "too_late")
LIVE_TICK_S = 0.05
"""How often a live generator makes the events that have come due since its last block."""
SIMULATED_BLOCK = 5_000
"""Records of the simulated clock per block (they are made one at a time)."""
MAX_BLOCK = 50_000
"""At most this many events per live block: a generator that fell behind (its producer
waiting on a full queue) catches up over several blocks."""


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
        # A separate stream for live blocks, so the simulated-clock records of a seed
        # stay the same whatever the block code draws.
        self.block_rng = np.random.default_rng(settings.seed)
        start = settings.start or datetime.now(UTC).replace(microsecond=0)
        self.clock = start
        self.recent: deque[tuple[bytes, bytes, datetime]] = deque(maxlen=500)
        self.n = 0

    def event(self, event_time: datetime) -> tuple[bytes, dict[str, Any]]:
        """One valid event at `event_time`: (record key, CloudEvent as a dict)."""
        raise NotImplementedError

    def malform(self, event: dict[str, Any]) -> bytes:
        """A record that must become a dead letter, made from a valid `event`."""
        raise NotImplementedError

    def events(self, times_us: np.ndarray) -> list[tuple[bytes, bytes]]:
        """Valid events at `times_us` (microseconds since the epoch, UTC) as (record key,
        JSON value), in order. This makes one `event` at a time; a generator that can
        build many at once overrides it to keep up with high live rates."""
        out = []
        for t in times_us.tolist():
            key, event = self.event(datetime.fromtimestamp(t / 1e6, UTC))
            out.append((key, json.dumps(event, separators=(",", ":")).encode()))
        return out

    def intensity(self, t: datetime) -> float:
        """Relative event rate at simulated time `t` (1.0: `events_per_second`)."""
        return 1.0

    def _rate_at(self, live_s: float) -> float:
        """Live events per second, `live_s` seconds after going live."""
        s = self.settings
        bursting = s.burst_after_s <= live_s < s.burst_after_s + s.burst_for_s
        return s.events_per_second * (s.burst_factor if bursting else 1.0)

    def _tick(self) -> datetime:
        """The simulated clock's next event time: the whole stream (count mode) or the
        backfill before going live."""
        rate = self.settings.events_per_second * self.intensity(self.clock)
        self.clock += timedelta(seconds=self.rng.expovariate(rate))
        return self.clock

    def __iter__(self) -> Iterator[GeneratedRecord]:
        return self.records(live=False)

    def records(self, live: bool = False) -> Iterator[GeneratedRecord]:
        """The record stream.

        With `live`, events are paced at `events_per_second` and stamped with the
        wall clock, after a fast backfill from `start` (if in the past) up to now.
        """
        for block in self.blocks(live):
            yield from block

    def blocks(self, live: bool = False) -> Iterator[list[GeneratedRecord]]:
        """The record stream of `records`, in blocks: live records as each tick's block is
        made, simulated-clock records (count mode, the backfill) `SIMULATED_BLOCK` at a time."""
        s = self.settings
        produced = 0
        block: list[GeneratedRecord] = []
        # The history ends where the stream started: one made an event at a time could
        # never reach a clock that keeps moving at a rate faster than it makes them.
        live_from = datetime.now(UTC)
        while s.count is None or produced < s.count:
            if live and self.clock >= live_from:
                if block:
                    yield block
                yield from self._live(None if s.count is None else s.count - produced, live_from)
                return
            produced += 1
            block.append(self._simulated())
            if len(block) >= SIMULATED_BLOCK:
                yield block
                block = []
        if block:
            yield block

    def _simulated(self) -> GeneratedRecord:
        """The next record on the simulated clock, of the kind a roll of the dice says."""
        s = self.settings
        rng = self.rng
        now = self._tick()
        roll = rng.random()
        if roll < s.duplicates and self.recent:
            key, value, t = rng.choice(self.recent)
            return GeneratedRecord(key, value, "duplicate", t)
        roll -= s.duplicates
        if roll < s.malformed:
            key, event = self.event(now)
            return GeneratedRecord(key, self.malform(event), "malformed", None)
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
        return GeneratedRecord(key, value, kind, event_time)

    def _live(self, remaining: int | None, since: datetime) -> Iterator[list[GeneratedRecord]]:
        """Live records from `since` on, `remaining` of them (None: until stopped): every
        `LIVE_TICK_S` the events due at the current rate (bursts included), stamped evenly
        over the time they came due in. Events due before the first tick (since `since`)
        are made at once, in blocks of at most `MAX_BLOCK`."""
        behind_s = max(0.0, (datetime.now(UTC) - since).total_seconds())
        started = last = time.monotonic() - behind_s
        last_us = int(since.timestamp() * 1e6)
        due = 0.0
        while remaining is None or remaining > 0:
            time.sleep(max(0.0, last + LIVE_TICK_S - time.monotonic()))
            now = time.monotonic()
            due += (now - last) * self._rate_at(last - started)
            last = now
            n = min(int(due), MAX_BLOCK, remaining if remaining is not None else MAX_BLOCK)
            if n == 0:
                continue
            # The share of the time since the last block that these events came due in.
            until_us = last_us + int((time.time_ns() // 1000 - last_us) * n / due)
            times = np.linspace(last_us, until_us, n + 1)[1:].astype(np.int64)
            last_us = until_us
            due -= n
            yield self._block(times)
            if remaining is not None:
                remaining -= n

    def _block(self, times_us: np.ndarray) -> list[GeneratedRecord]:
        """Records at `times_us`, each a duplicate, malformed, out of order, too late or
        valid in the shares the settings give (as `_simulated` draws them one at a time)."""
        s = self.settings
        rng = self.block_rng
        n = len(times_us)
        roll = rng.random(n)
        duplicate = roll < (s.duplicates if self.recent else 0.0)
        malformed = ~duplicate & (roll < s.duplicates + s.malformed)
        roll = roll - s.duplicates - s.malformed
        out_of_order = ~duplicate & ~malformed & (roll >= 0) & (roll < s.out_of_order)
        too_late = ~duplicate & ~malformed & (roll >= s.out_of_order)
        too_late &= roll < s.out_of_order + s.too_late
        event_us = times_us.copy()
        event_us[out_of_order] -= (
            rng.uniform(0.5, s.lateness_s / 3, int(out_of_order.sum())) * 1e6
        ).astype(np.int64)
        event_us[too_late] -= (
            s.too_late_by_s * rng.uniform(1.0, 1.5, int(too_late.sum())) * 1e6
        ).astype(np.int64)
        made = ~duplicate & ~malformed
        built = iter(self.events(event_us[made]))
        recent = list(self.recent)
        picks = iter(rng.integers(0, max(1, len(recent)), int(duplicate.sum())).tolist())
        kinds = np.select([duplicate, malformed, out_of_order, too_late], KINDS[1:], "valid")
        records = []
        for kind, t in zip(kinds.tolist(), event_us.tolist(), strict=True):
            if kind == "duplicate":
                key, value, when = recent[next(picks)]
                records.append(GeneratedRecord(key, value, kind, when))
            elif kind == "malformed":
                key, event = self.event(datetime.fromtimestamp(t / 1e6, UTC))
                records.append(GeneratedRecord(key, self.malform(event), kind, None))
            else:
                key, value = next(built)
                when = datetime.fromtimestamp(t / 1e6, UTC)
                records.append(GeneratedRecord(key, value, kind, when))
                if kind == "valid":
                    self.recent.append((key, value, when))
        return records


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
        # For blocks of live events: the same draws as `event`, as arrays and JSON pieces.
        self.store_cum_weights = np.asarray(self.cum_weights)
        self.channel_cum = np.asarray(self.channel_cum_weights)
        self.prices = np.array([price for _, price in MENU])
        # Each item's JSON, at `menu_row * (max(QTYS) + 1) + qty`.
        self.item_texts = pl.Series(
            [
                json.dumps({"sku": sku, "qty": qty, "unit_price": price}, separators=(",", ":"))
                for sku, price in MENU
                for qty in range(max(QTYS) + 1)
            ]
        )
        self.store_ids = pl.Series([store_id for store_id, _ in stores], dtype=pl.Int64)
        self.currencies = pl.Series([currency for _, currency in stores], dtype=pl.String)
        self.channel_names = pl.Series(self.channels, dtype=pl.String)

    def intensity(self, t: datetime) -> float:
        return _daily_intensity(t)

    def malform(self, event: dict[str, Any]) -> bytes:
        return _malform(event, self.rng, self.unknown_store)

    def event(self, event_time: datetime) -> tuple[bytes, dict[str, Any]]:
        rng = self.rng
        store_id, currency = rng.choices(self.stores, cum_weights=self.cum_weights)[0]
        items: list[dict[str, Any]] = []
        for sku, price in rng.sample(MENU, rng.choice(ITEM_COUNTS)):
            items.append({"sku": sku, "qty": rng.choice(QTYS), "unit_price": price})
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

    def events(self, times_us: np.ndarray) -> list[tuple[bytes, bytes]]:
        """Orders at `times_us`, built in bulk: the same kinds of values in the same shares
        as `event` (from the block generator, so not the same orders as a seed's
        simulated-clock stream), serialized as `event`'s JSON would be."""
        n = len(times_us)
        if n == 0:
            return []
        rng = self.block_rng
        weights = self.store_cum_weights
        store_at = np.searchsorted(weights, rng.random(n) * weights[-1], side="right")
        store_at = np.minimum(store_at, len(self.stores) - 1)
        counts = np.asarray(ITEM_COUNTS)[rng.integers(0, len(ITEM_COUNTS), n)]
        slots = max(ITEM_COUNTS)
        picks = np.argsort(rng.random((n, len(MENU))), axis=1)[:, :slots]
        qtys = np.asarray(QTYS)[rng.integers(0, len(QTYS), (n, slots))]
        bought = np.arange(slots) < counts[:, None]
        totals = np.round((qtys * self.prices[picks] * bought).sum(axis=1), 2)
        channels = np.searchsorted(self.channel_cum, rng.random(n) * self.channel_cum[-1], "right")
        customers = rng.integers(1, 50_001, n)
        coupons = rng.random(n) < 0.05
        v2_share = self.settings.order_v2_share
        as_v2 = rng.random(n) < v2_share if v2_share else np.zeros(n, dtype=bool)
        ids = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        ids[:, 6] = (ids[:, 6] & 0x0F) | 0x40  # version 4
        ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
        trace = rng.integers(0, 256, (n, 24), dtype=np.uint8)
        zone = _zones(rng, n)
        # Built as columns and joined in one query: a formatted string per order, its items
        # joined one by one, took about twice the CPU per order.
        item_at = picks * (max(QTYS) + 1) + qtys
        columns = pl.DataFrame(
            {
                "id": _fixed_text(_uuid_chars(ids)),
                "trace": _fixed_text(_with_dashes(_hex_chars(trace), (32, 16))),
                "store_at": store_at,
                "v2": as_v2,
                "local_ms": (times_us + _OFFSET_US[zone]) // 1000,
                "zone": zone,
                "customer": customers,
                "channel": channels,
                "total": totals,
                "coupon": coupons,
                **{f"item{slot}": item_at[:, slot] for slot in range(slots)},
                **{f"bought{slot}": bought[:, slot] for slot in range(slots)},
            }
        )
        first = self.n + 1
        self.n += n
        v2 = pl.col("v2")
        store = pl.lit(self.store_ids).gather(pl.col("store_at")).cast(pl.String)
        currency = pl.concat_str(
            pl.lit(',"currency":"'), pl.lit(self.currencies).gather(pl.col("store_at")), pl.lit('"')
        )
        total = pl.col("total").cast(pl.String)
        items = [
            pl.when(pl.col(f"bought{slot}")).then(
                pl.lit(self.item_texts).gather(pl.col(f"item{slot}"))
            )
            for slot in range(slots)
        ]
        built = columns.select(
            key=store.cast(pl.Binary),
            value=pl.concat_str(
                pl.lit('{"specversion":"1.0","id":"'),
                pl.col("id"),
                pl.lit('","source":"pos/store/'),
                store,
                pl.lit('","type":"pizza.order.confirmed.'),
                pl.when(v2).then(pl.lit("v2")).otherwise(pl.lit("v1")),
                pl.lit('","time":"'),
                _rfc3339(pl.col("local_ms"), pl.col("zone")),
                pl.lit('","datacontenttype":"application/json","traceparent":"00-'),
                pl.col("trace"),
                pl.lit(f'-01","data":{{"order_id":"o-{self.settings.seed}-'),
                pl.int_range(first, first + n, dtype=pl.Int64).cast(pl.String),
                pl.lit('","customer_id":"c-'),
                pl.col("customer").cast(pl.String),
                pl.lit('","store_id":'),
                store,
                pl.lit(',"channel":"'),
                pl.lit(self.channel_names).gather(pl.col("channel")),
                pl.lit('","items":['),
                pl.concat_str(items, separator=",", ignore_nulls=True),
                pl.lit('],"total":'),
                pl.when(v2)
                .then(pl.concat_str(pl.lit('{"value":'), total, currency, pl.lit("}")))
                .otherwise(pl.concat_str(total, currency)),
                pl.when(pl.col("coupon")).then(pl.lit(',"coupon":"LUNCH10"')).otherwise(pl.lit("")),
                pl.lit("}}"),
            ).cast(pl.Binary),
        )
        return list(zip(built["key"].to_list(), built["value"].to_list(), strict=True))


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_chars(octets: np.ndarray) -> np.ndarray:
    """Each row of `octets` as lowercase hex digits (ASCII), two a byte."""
    chars = np.empty((octets.shape[0], octets.shape[1] * 2), dtype=np.uint8)
    chars[:, 0::2] = _HEX_DIGITS[octets >> 4]
    chars[:, 1::2] = _HEX_DIGITS[octets & 0x0F]
    return chars


def _with_dashes(chars: np.ndarray, parts: tuple[int, ...]) -> np.ndarray:
    """Rows of `chars` cut into pieces of `parts` characters, joined by dashes."""
    out = np.full((chars.shape[0], sum(parts) + len(parts) - 1), ord("-"), dtype=np.uint8)
    at = taken = 0
    for width in parts:
        out[:, at : at + width] = chars[:, taken : taken + width]
        at, taken = at + width + 1, taken + width
    return out


def _uuid_chars(octets: np.ndarray) -> np.ndarray:
    """UUIDs of 16 octets a row, as their 36 characters of text."""
    return _with_dashes(_hex_chars(octets), (8, 4, 4, 4, 12))


def _fixed_text(chars: np.ndarray) -> pl.Series:
    """Rows of ASCII characters, all of one length, as a text column (no copy per row)."""
    rows, width = chars.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * width
    text = pa.StringArray.from_buffers(
        rows, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))
    )
    series = pl.from_arrow(text)
    assert isinstance(series, pl.Series)
    return series


_OFFSET_SUFFIX_TEXT = pl.Series(
    [datetime(2000, 1, 1, tzinfo=zone).isoformat().replace("+00:00", "Z")[19:] for zone in OFFSETS]
)
_OFFSET_US = np.array([int(zone.utcoffset(None).total_seconds()) * 1_000_000 for zone in OFFSETS])  # type: ignore[union-attr]


def _zones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Which of `OFFSETS` each of `n` times is written in, drawn as `format_time` draws it."""
    return np.where(rng.random(n) < 0.85, 0, rng.integers(0, len(OFFSETS), n))


def _rfc3339(local_ms: pl.Expr, zone: pl.Expr) -> pl.Expr:
    """RFC 3339 times as `format_time` writes them: milliseconds since the epoch in the
    zone's local time, and the zone's index in `OFFSETS`."""
    return pl.concat_str(
        local_ms.cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
        pl.lit(_OFFSET_SUFFIX_TEXT).gather(zone),
    )


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
