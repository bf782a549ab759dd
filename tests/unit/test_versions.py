"""Several versions of the order type in one batch: each decoded by its schema, upcast to v2."""

from __future__ import annotations

import json

import pytest

from flows.orders import FLOW
from streamlane.dataflow import decoder
from streamlane.generator import GeneratorSettings, OrderGenerator, order_as_v2
from streamlane.versions import upcast_chain


def orders(count: int = 400) -> list[dict]:
    records = OrderGenerator(GeneratorSettings(seed=5, count=count, malformed=0, duplicates=0))
    return [json.loads(r.value) for r in records]


def encode(events: list[dict], **dumps: object) -> list[bytes]:
    return [json.dumps(e, **dumps).encode() for e in events]  # type: ignore[arg-type]


def test_a_mixed_batch_decodes_like_the_all_v1_one() -> None:
    v1 = orders()
    mixed = [order_as_v2(e) if i % 3 else e for i, e in enumerate(v1)]
    decode = decoder(FLOW)
    expected, got = decode(encode(v1)), decode(encode(mixed))
    assert got.rejects.is_empty() and expected.rejects.is_empty()
    assert got.valid.drop("type").equals(expected.valid.drop("type"))
    # Upcast rows keep their own version, for the metrics per type.
    assert got.valid["type"].value_counts().sort("type").rows() == [
        ("pizza.order.confirmed.v1", len([i for i in range(len(v1)) if i % 3 == 0])),
        ("pizza.order.confirmed.v2", len([i for i in range(len(v1)) if i % 3])),
    ]
    assert got.valid["data"][0]["total"].keys() == {"value", "currency"}


def test_versions_are_found_however_the_json_is_written() -> None:
    v1 = orders(50)
    mixed = [order_as_v2(e) if i % 2 else e for i, e in enumerate(v1)]
    # Spaces around colons, and a data field that names the other version first.
    for event in mixed[:10]:
        event["data"] = {"type": "pizza.order.confirmed.v1", **event["data"]}
    decoded = decoder(FLOW)(
        encode(mixed[:25]) + encode(mixed[25:], indent=None, separators=(", ", ": "))
    )
    assert decoded.rejects.is_empty(), decoded.rejects.rows()
    assert decoded.valid["row"].to_list() == list(range(50))


def test_an_unknown_version_is_a_dead_letter_with_its_type() -> None:
    event = order_as_v2(orders(1)[0]) | {"type": "pizza.order.confirmed.v3"}
    decoded = decoder(FLOW)(encode([orders(1)[0], event]))
    assert decoded.valid["row"].to_list() == [0]
    assert decoded.rejects.rows() == [(1, "unknown event type 'pizza.order.confirmed.v3'")]


def test_a_v2_shape_under_the_v1_type_is_rejected_not_upcast() -> None:
    wrong = order_as_v2(orders(1)[0]) | {"type": "pizza.order.confirmed.v1"}
    decoded = decoder(FLOW)(encode([wrong]))
    assert decoded.valid.is_empty()
    assert decoded.rejects.height == 1


def test_an_older_version_without_an_upcaster_is_refused() -> None:
    with pytest.raises(ValueError, match="no upcaster chain from pizza.order.confirmed.v0"):
        upcast_chain("pizza.order.confirmed.v0", "pizza.order.confirmed.v2")
