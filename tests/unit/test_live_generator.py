"""Live orders are built in blocks: the same records, in the same shares, as one at a time."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from flows.orders import FLOW
from streamlane.dataflow import decoder
from streamlane.generator import ITEM_COUNTS, GeneratorSettings, OrderGenerator

START_US = int(datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp() * 1e6)


def block_orders(count: int, **settings: object) -> tuple[OrderGenerator, list[bytes]]:
    generator = OrderGenerator(GeneratorSettings(seed=3, **settings))  # type: ignore[arg-type]
    times = START_US + np.arange(count, dtype=np.int64) * 997
    return generator, [value for _, value in generator.events(times)]


def shape(value: object) -> object:
    """The keys (in order) and value types of a JSON document, without the values."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_block_orders_are_valid_and_keep_their_event_times() -> None:
    _, values = block_orders(5_000, order_v2_share=0.3)
    decoded = decoder(FLOW)(values)
    assert decoded.rejects.is_empty(), decoded.rejects.head(3).rows()
    times = decoded.valid["event_time"].dt.epoch("us").to_numpy()
    expected = (START_US + np.arange(5_000, dtype=np.int64) * 997) // 1000 * 1000
    assert np.array_equal(times, expected)
    offsets = Counter(json.loads(v)["time"][23:] for v in values)
    assert offsets.keys() == {"Z", "+01:00", "-05:00", "+05:30"}
    assert offsets["Z"] / len(values) == pytest.approx(0.85 + 0.15 / 4, abs=0.02)


def test_block_orders_are_serialized_as_single_orders_are() -> None:
    generator, values = block_orders(2_000, order_v2_share=0.5)
    single = [
        json.loads(json.dumps(generator.event(datetime.now(UTC))[1], separators=(",", ":")))
        for _ in range(2_000)
    ]
    in_blocks = [json.loads(v) for v in values]
    # Every layout a single order can take (version, coupon or not), and no other.
    assert {json.dumps(shape(e)) for e in in_blocks} == {json.dumps(shape(e)) for e in single}
    compact = [json.dumps(e, separators=(",", ":")).encode() for e in in_blocks]
    assert compact == values


def test_block_orders_follow_the_same_shares() -> None:
    generator, values = block_orders(20_000)
    orders = [json.loads(v)["data"] for v in values]
    stores = Counter(o["store_id"] for o in orders)
    busiest = generator.stores[0][0]
    weights = generator.cum_weights
    assert stores[busiest] / len(orders) == pytest.approx(weights[0] / weights[-1], rel=0.1)
    assert stores.most_common(1)[0][0] == busiest
    items = [len(o["items"]) for o in orders]
    assert np.mean(items) == pytest.approx(np.mean(ITEM_COUNTS), rel=0.03)
    assert all(len({i["sku"] for i in o["items"]}) == len(o["items"]) for o in orders)
    for order in orders[:500]:
        total = sum(i["qty"] * i["unit_price"] for i in order["items"])
        assert order["total"] == round(total, 2)
    channels = Counter(o["channel"] for o in orders)
    assert channels["web"] / len(orders) == pytest.approx(0.45, abs=0.02)
    assert len({json.loads(v)["id"] for v in values}) == len(values)


def test_live_records_come_in_the_configured_shares_and_pace() -> None:
    started = datetime.now(UTC)
    settings = GeneratorSettings(
        seed=9, count=30_000, start=started, events_per_second=100_000, duplicates=0.02,
        malformed=0.03,
    )  # fmt: skip
    generator = OrderGenerator(settings)
    records = list(generator.records(live=True))
    assert len(records) == 30_000
    kinds = Counter(r.kind for r in records)
    assert kinds["duplicate"] / 30_000 == pytest.approx(0.02, abs=0.005)
    assert kinds["malformed"] / 30_000 == pytest.approx(0.03, abs=0.005)
    valid = [r for r in records if r.kind == "valid"]
    # Live from the start: every event is stamped with the wall clock as it was made.
    assert all(r.event_time is not None and r.event_time >= started for r in valid)
    decoded = decoder(FLOW)([r.value for r in records if r.kind != "malformed"])
    assert decoded.rejects.is_empty(), decoded.rejects.head(3).rows()
    ids = [json.loads(r.value)["id"] for r in records if r.kind in ("valid", "duplicate")]
    # A duplicate re-sends an earlier valid record, byte for byte.
    assert len(set(ids)) == kinds["valid"]
