"""Decode and validate on frames: every record is valid or a reject with a reason."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from streamlane.decode import decode_batch
from streamlane.schemas import compile_schema, load_schema

SCHEMA = load_schema("pizza.order.confirmed.v1")
GOOD: dict[str, Any] = SCHEMA.document["examples"][0]


def variant(change: Callable[[dict[str, Any]], None]) -> bytes:
    event = copy.deepcopy(GOOD)
    change(event)
    return json.dumps(event).encode()


def test_valid_event_decodes_with_utc_time() -> None:
    out = decode_batch([json.dumps(GOOD).encode()], SCHEMA)
    assert out.rejects.is_empty()
    assert out.valid["data"][0]["store_id"] == 17
    assert out.valid["event_time"][0].isoformat() == "2026-11-23T12:04:31.250000+00:00"


def test_offsets_name_the_same_instant() -> None:
    zulu = variant(lambda e: e.update(time="2026-11-23T12:00:00Z"))
    india = variant(lambda e: e.update(time="2026-11-23T17:30:00+05:30"))
    out = decode_batch([zulu, india], SCHEMA)
    assert out.valid["event_time"][0] == out.valid["event_time"][1]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (variant(lambda e: e["data"].update(store_id="17")), "data.store_id"),
        (variant(lambda e: e["data"].update(order_id=5)), "data.order_id"),
        (variant(lambda e: e.update(type="pizza.order.cancelled.v1")), "unknown event type"),
        (variant(lambda e: e.update(specversion="0.3")), "specversion"),
        (variant(lambda e: e.pop("time")), "time is required"),
        (variant(lambda e: e.update(time="yesterday")), "RFC 3339"),
        (variant(lambda e: e["data"].update(items=[])), "at least 1"),
        (variant(lambda e: e["data"]["items"][0].update(qty=0)), "qty"),
        (variant(lambda e: e["data"].update(channel="fax")), "channel"),
        (variant(lambda e: e["data"].update(total=-1)), "total"),
        (variant(lambda e: e["data"].update(store_id=2**70)), "store_id"),
        (b'{"specversion": "1.0", "id": "a", "id": "b"}', "duplicate key"),
    ],
)
def test_malformed_records_are_rejected_with_reason(record: bytes, reason: str) -> None:
    out = decode_batch([json.dumps(GOOD).encode(), record], SCHEMA)
    assert out.valid["row"].to_list() == [0]
    assert out.rejects["row"].to_list() == [1]
    assert reason in out.rejects["reason"][0]


def test_an_empty_list_reason_names_one_item_in_the_singular() -> None:
    out = decode_batch([variant(lambda e: e["data"].update(items=[]))], SCHEMA)
    assert out.rejects["reason"].to_list() == ["data.items needs at least 1 item"]


def test_tolerant_reader_ignores_unknown_fields() -> None:
    extra = variant(lambda e: (e.update(partnerid="x"), e["data"].update(coupon="LUNCH10")))
    out = decode_batch([extra], SCHEMA)
    assert out.rejects.is_empty() and out.valid.height == 1


def test_integral_float_is_an_integer_per_the_schema() -> None:
    out = decode_batch([variant(lambda e: e["data"].update(store_id=17.0))], SCHEMA)
    assert out.valid["data"][0]["store_id"] == 17


def test_every_record_is_accounted_for_in_order() -> None:
    records = [variant(lambda e, i=i: e.update(id=f"id-{i}")) for i in range(500)]
    for bad in (3, 77, 78, 250, 499):
        records[bad] = b"{broken"
    out = decode_batch(records, SCHEMA)
    assert out.rejects["row"].to_list() == [3, 77, 78, 250, 499]
    assert out.valid["row"].to_list() == [i for i in range(500) if i not in (3, 77, 78, 250, 499)]
    assert out.valid["id"].to_list() == [f"id-{i}" for i in out.valid["row"]]


def test_screened_records_decode_the_same_as_columnar_ones() -> None:
    """A record the up-front screen sends to the per-record path (here an unknown field that
    shares a declared field's name but not its type) decodes exactly like a clean one."""
    plain = variant(lambda e: e.update(id="plain"))
    lookalike = variant(lambda e: (e.update(id="lookalike"), e.update(note={"total": "n/a"})))
    wide = variant(lambda e: (e.update(id="wide"), e["data"].update(customer_id="c-ü")))
    out = decode_batch([plain, b"\xff{", lookalike, b"  ", wide, b"{", plain], SCHEMA)
    assert out.valid["row"].to_list() == [0, 2, 4, 6]
    assert out.rejects["row"].to_list() == [1, 3, 5]
    first, second = out.valid.row(0, named=True), out.valid.row(1, named=True)
    assert {**first, "id": "", "row": 0} == {**second, "id": "", "row": 0}
    assert out.valid["data"][2]["customer_id"] == "c-ü"


def test_a_screened_record_after_one_the_parser_misplaces_is_a_dead_letter_once() -> None:
    """The columnar parser names the row after `{}/{}` (two values on one line) as the one it
    refused; when that row is a screened record (here not UTF-8), it was rejected twice."""
    plain = variant(lambda e: e.update(id="plain"))
    not_utf8 = variant(lambda e: e.update(id="not-utf8")).replace(b'"not-utf8"', b'"\x93"')
    out = decode_batch([plain, b"{}/{}", not_utf8, plain], SCHEMA)
    assert out.valid["row"].to_list() == [0, 3]
    assert out.rejects["row"].to_list() == [1, 2]
    assert "not UTF-8" in out.rejects["reason"][1]


@pytest.mark.parametrize("position", ["first", "middle", "last", "every"])
@pytest.mark.parametrize("brk", [b"\n", b"\r", b"\r\n"])
def test_raw_line_breaks_split_no_record_and_decide_like_the_exact_path(
    position: str, brk: bytes
) -> None:
    """A raw line break between tokens is whitespace (the record is valid); inside a string
    it is invalid JSON; at a record's end it is trailing whitespace. None of them may split
    the record in two or shift another record's row, wherever it sits in the batch."""
    plain = [variant(lambda e, i=i: e.update(id=f"id-{i}")) for i in range(6)]
    spaced = json.dumps(GOOD, indent=1).encode().replace(b"\n", brk)
    in_string = variant(lambda e: e.update(id="in-string")).replace(b"in-string", b"in" + brk)
    trailing = variant(lambda e: e.update(id="trailing")) + brk
    broken = [spaced, in_string, trailing]
    slots = {"first": [0, 1, 2], "middle": [3, 4, 5], "last": [6, 7, 8], "every": [0, 4, 8]}
    records = list(plain)
    for slot, record in zip(slots[position], broken, strict=True):
        records.insert(slot, record)
    out = decode_batch(records, SCHEMA)
    assert sorted(out.valid["row"].to_list() + out.rejects["row"].to_list()) == list(range(9))
    in_string_row = slots[position][1]
    assert out.rejects["row"].to_list() == [in_string_row]
    assert "not valid JSON" in out.rejects["reason"][0]
    ids = dict(zip(out.valid["row"].to_list(), out.valid["id"].to_list(), strict=True))
    assert ids[slots[position][0]] == GOOD["id"]
    assert ids[slots[position][2]] == "trailing"
    assert [ids[r] for r in sorted(ids) if r not in (slots[position][0], slots[position][2])] == [
        f"id-{i}" for i in range(6)
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(store_id=2**70), "data.store_id: 1180591620717411303424 does not fit"),
        (lambda d: d.update(store_id=-(2**63) - 1), "data.store_id: -9223372036854775809 does not"),
        (lambda d: d.update(store_id=1e30), "data.store_id: 1000000000000000019884624838656 does"),
        (lambda d: d["items"][0].update(qty=10**60), "data.items.0.qty: 1000000000000000000000000"),
        # Decoded the exact way for its integral float, with a number too large for a float.
        (lambda d: d.update(store_id=17.0, total=10**400), "data.total: 1000000000000000000000"),
    ],
    ids=["above", "below", "integral float", "in a list", "beyond a float"],
)
def test_a_number_beyond_64_bits_is_a_reject_where_the_schema_sets_no_bound(
    change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    """A schema may bound no integer (the flows' output schemas do not): a record with one
    too large for the frame's 64 bits is a reject, and the batch around it decodes."""
    unbounded = copy.deepcopy(SCHEMA.document)
    data = unbounded["properties"]["data"]["properties"]
    for node in (data["store_id"], data["items"]["items"]["properties"]["qty"]):
        del node["maximum"], node["minimum"]
    schema = compile_schema(unbounded)
    bad = copy.deepcopy(GOOD)
    change(bad["data"])
    out = decode_batch([json.dumps(GOOD).encode(), json.dumps(bad).encode()], schema)
    assert out.valid["row"].to_list() == [0]
    assert out.rejects["row"].to_list() == [1]
    [told] = out.rejects["reason"].to_list()
    kind = "float" if "total" in reason else "integer"
    assert told.startswith(reason) and told.endswith(f"does not fit a 64-bit {kind}")
    assert out.valid["data"][0]["store_id"] == 17


def test_a_number_written_as_an_integer_beyond_64_bits_decodes_as_a_float() -> None:
    """Valid JSON Schema (a number may be written without a fraction), decoded the exact
    way here for its integral float in an integer field."""
    big = variant(lambda e: e["data"].update(store_id=17.0, total=2**70))
    out = decode_batch([json.dumps(GOOD).encode(), big], SCHEMA)
    assert out.rejects.is_empty()
    assert out.valid["data"][1]["total"] == float(2**70)


CLICKS = load_schema("shop.click.v1")
CLICK: dict[str, Any] = CLICKS.document["examples"][0]


def click(text: str) -> bytes:
    """The example click with `"product_id"`'s key and value written as `text`."""
    event = copy.deepcopy(CLICK)
    event["data"]["product_id"] = "\x00"
    return json.dumps(event).replace('"product_id": "\\u0000"', text).encode()


@pytest.mark.parametrize(
    "text",
    [
        '"product_id": null',
        '"product_id" :\t null',
        '"product\\u005fid": null',  # the key spelt with an escape
    ],
    ids=["null", "spaced", "escaped key"],
)
@pytest.mark.parametrize("exact", [False, True], ids=["columnar", "exact"])
def test_a_null_where_the_schema_allows_none_is_a_reject_on_either_path(
    text: str, exact: bool
) -> None:
    """`"type": "string"` does not allow null, although the field may be absent: the columnar
    parser reads both alike, so such a record takes the exact path (here, or because
    another of its fields is an integral float) and is refused there."""
    record = click(text)
    if exact:
        record = record.replace(b'"shop_id": 3', b'"shop_id": 3.0')
        assert b'"shop_id": 3.0' in record
    out = decode_batch([json.dumps(CLICK).encode(), record], CLICKS)
    assert out.valid["row"].to_list() == [0]
    assert out.rejects["reason"].to_list() == ["data.product_id: None is not of type 'string'"]
    absent = copy.deepcopy(CLICK)
    del absent["data"]["product_id"]
    assert decode_batch([json.dumps(absent).encode()], CLICKS).rejects.is_empty()


def nullable_clicks() -> dict[str, Any]:
    document = copy.deepcopy(CLICKS.document)
    document["properties"]["data"]["properties"]["product_id"]["type"] = ["string", "null"]
    return document


def test_a_null_where_the_schema_allows_it_decodes_as_null() -> None:
    schema = compile_schema(nullable_clicks())
    out = decode_batch([click('"product_id": null'), click('"product_id": "p-1"')], schema)
    assert out.rejects.is_empty()
    assert [d["product_id"] for d in out.valid["data"]] == [None, "p-1"]
    short = decode_batch([click('"product_id": ""')], schema)
    assert short.rejects["reason"].to_list() == ["data.product_id is shorter than 1"]


def test_a_field_allowing_null_decodes_its_numbers_as_one_that_does_not() -> None:
    """The per-record decode reads a nullable field's type as the plain one's: an integer
    beyond 64 bits in a nullable number field is a float, one beyond a float a reject, and
    the batch around them decodes (the frame could not hold the integer)."""
    document = copy.deepcopy(CLICKS.document)
    document["properties"]["data"]["properties"]["amount"]["type"] = ["number", "null"]
    schema = compile_schema(document)
    records = []
    for amount in (2**70, 10**400):
        event = copy.deepcopy(CLICK)
        event["data"].update(shop_id=3.0, amount=amount)  # the integral float: exact path
        records.append(json.dumps(event).encode())
    out = decode_batch(records, schema)
    assert [d["amount"] for d in out.valid["data"]] == [float(2**70)]
    [reason] = out.rejects["reason"].to_list()
    assert reason.startswith("data.amount: 1000") and reason.endswith("does not fit a 64-bit float")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: d["required"].append("product_id"), "required field cannot also allow null"),
        (
            lambda d: d["properties"]["product_id"].update(type=["string", "integer"]),
            "a list of types must be one of string, integer, number, boolean and null",
        ),
        (
            lambda d: d["properties"]["product_id"].update(type=["object", "null"]),
            "a list of types must be one of",
        ),
    ],
    ids=["required", "two types", "object"],
)
def test_a_schema_allowing_null_where_the_decode_cannot_tell_is_refused(
    change: Callable[[dict[str, Any]], None], error: str
) -> None:
    document = nullable_clicks()
    change(document["properties"]["data"])
    with pytest.raises(ValueError, match=error):
        compile_schema(document)


def test_a_null_item_in_a_list_of_values_is_a_reject() -> None:
    """A list has no absent items: the columnar parser's null item is a written null."""
    document = copy.deepcopy(CLICKS.document)
    document["properties"]["data"]["properties"]["tags"] = {
        "type": "array",
        "items": {"type": "string"},
    }
    schema = compile_schema(document)
    events = []
    for tags in (["a", "b"], ["a", None]):
        event = copy.deepcopy(CLICK)
        event["data"]["tags"] = tags
        events.append(json.dumps(event).encode())
    out = decode_batch(events, schema)
    assert out.valid["row"].to_list() == [0]
    assert out.rejects["reason"].to_list() == ["data.tags[] must not be null"]
