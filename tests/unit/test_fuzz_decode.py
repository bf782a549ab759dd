"""Fuzzing the decoder: more than 100,000 generated and mutated records, in batches, through
the columnar decode; every record is accounted for exactly once, and each decision (and each
accepted value) matches the independent oracle in tests/hostile.py."""

from __future__ import annotations

import json
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flows.orders import FLOW
from streamlane.dataflow import decoder
from tests.hostile import FIELDS, _set, base_event, dumps, expected_of, mutate

RECORDS_WANTED = 100_000
PER_EXAMPLE = 250
ORACLE_PROCESSES = 2
ORACLE_CHUNK = 50
"""The oracle validates record by record in Python, most of the test's time: other
processes work it out while this one decodes."""
FUZZED_AT = datetime(2026, 11, 23, 12, 4, 31, 724155, tzinfo=UTC)
"""The generated events' times count back from this instant, not the clock, so the same
records are fuzzed on every run (their lengths, and where mutations land, follow the time)."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
drawn_record = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, 10_000), st.sampled_from(FIELDS), json_values),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def _materialize(drawn: Any) -> bytes:
    if isinstance(drawn, bytes):
        return drawn
    index, path, value = drawn
    event = base_event(index, FUZZED_AT)
    _set(event, path, value)
    return dumps(event)


def check_batch(values: list[bytes], oracle: ProcessPoolExecutor) -> None:
    now = datetime.now(UTC)
    asked = [
        oracle.submit(expected_of, values[i : i + ORACLE_CHUNK], now)
        for i in range(0, len(values), ORACLE_CHUNK)
    ]
    decoded = decoder(FLOW)(values)
    valid_rows = decoded.valid["row"].to_list()
    reject_rows = decoded.rejects["row"].to_list()
    assert sorted(valid_rows + reject_rows) == list(range(len(values))), "a record lost or doubled"
    assert all(decoded.rejects["reason"].to_list()), "a dead letter without a reason"
    accepted = set(valid_rows)
    oracles = [answer for part in asked for answer in part.result()]
    for row, (raw, oracle) in enumerate(zip(values, oracles, strict=True)):
        if (oracle is not None) != (row in accepted):
            reason = dict(zip(reject_rows, decoded.rejects["reason"].to_list(), strict=True)).get(
                row
            )
            raise AssertionError(
                f"record {raw[:300]!r}: oracle {'accepts' if oracle else 'rejects'}, "
                f"decoder {'accepts' if row in accepted else f'rejects ({reason})'}"
            )
    frame = decoded.valid
    for row, event_id, data in zip(
        valid_rows, frame["id"].to_list(), frame["data"].to_list(), strict=True
    ):
        oracle = oracles[row]
        assert oracle is not None
        assert event_id == oracle["id"]
        want = oracle["data"]
        # v1 records come out upcast to the flow's v2: total {value, currency}.
        assert data["store_id"] == want["store_id"]
        assert data["total"] == {"value": float(want["total"]), "currency": want["currency"]}
        assert [i["qty"] for i in data["items"]] == [i["qty"] for i in want["items"]]


@pytest.mark.timeout(600)
def test_more_than_100k_hostile_records_are_each_decided_like_the_oracle() -> None:
    seen: list[int] = []

    @settings(
        max_examples=RECORDS_WANTED // PER_EXAMPLE + 10,
        deadline=None,
        derandomize=True,
        database=None,
        # A failure names the record; shrinking batches of 250 records would take long.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.integers(0, 2**32), st.lists(drawn_record, max_size=20))
    def one_batch(seed: int, drawn: list[Any]) -> None:
        rng = random.Random(seed)
        values = [
            mutate(rng, rng.randrange(10_000), FUZZED_AT) for _ in range(PER_EXAMPLE - len(drawn))
        ]
        for record in drawn:
            values.insert(rng.randrange(len(values) + 1), _materialize(record))
        check_batch(values, oracle)
        seen.append(len(values))

    # Started fresh, not forked: this process runs the columnar engines' threads.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(ORACLE_PROCESSES, mp_context=spawn) as oracle:
        one_batch()
    assert sum(seen) >= RECORDS_WANTED, f"only {sum(seen)} records were fuzzed"


def test_known_hostile_records_are_dead_letters_with_reasons() -> None:
    event = base_event(1)
    text = json.dumps(event)
    hostile = {
        b"\xff\xfe": "not UTF-8",
        text.replace('"data": {', '"data": {"d": ' + "[" * 5000 + "]" * 5000 + ", ").encode(): (
            "nested deeper"
        ),
        text.replace("{", '{"id": "x", ', 1).encode(): "duplicate key 'id'",
        text.replace(f'"total": {json.dumps(event["data"]["total"])}', '"total": NaN').encode(): (
            "NaN is not valid JSON"
        ),
    }
    decoded = decoder(FLOW)(list(hostile))
    assert decoded.valid.is_empty()
    for reason, want in zip(decoded.rejects["reason"].to_list(), hostile.values(), strict=True):
        assert want in reason
