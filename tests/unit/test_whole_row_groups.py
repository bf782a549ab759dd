"""Which of a poll's records the landing writes: in a backlog, an output's in whole row groups."""

from __future__ import annotations

from sinks.warehouse import WholeRowGroups

OUTPUT, WINDOWS, DEAD_LETTERS = "orders.enriched", "orders.revenue", "orders.dlq"


def batching(row_group_rows: int = 150, max_batch: int = 100) -> WholeRowGroups:
    return WholeRowGroups(row_group_rows, max_batch, {OUTPUT, WINDOWS})


def test_a_full_poll_writes_whole_row_groups_and_holds_back_the_rest() -> None:
    whole = batching()
    assert whole.take({OUTPUT: list(range(100))}, full_poll=True) == {}
    # Held records come first, so each partition's records stay in the order consumed.
    assert whole.take({OUTPUT: list(range(100, 200))}, full_poll=True) == {OUTPUT: list(range(150))}
    assert whole.held == {OUTPUT: list(range(150, 200))}


def test_a_poll_that_is_not_full_writes_everything_held_back() -> None:
    whole = batching()
    whole.take({OUTPUT: list(range(100))}, full_poll=True)
    assert whole.take({OUTPUT: [100], WINDOWS: [7]}, full_poll=False) == {
        OUTPUT: list(range(101)),
        WINDOWS: [7],
    }
    assert whole.held == {}
    # Held records of a topic the last poll did not read are written too.
    whole.take({WINDOWS: list(range(100))}, full_poll=True)
    assert whole.take({}, full_poll=False) == {WINDOWS: list(range(100))}


def test_no_more_than_a_poll_is_held_back() -> None:
    whole = batching()
    taken = whole.take({WINDOWS: list(range(40)), OUTPUT: list(range(60))}, full_poll=True)
    assert taken == {}
    # 105 of the output now: less than a row group, but more than a poll, so written as they
    # are; the 95 windows can still be held.
    taken = whole.take({WINDOWS: list(range(40, 95)), OUTPUT: list(range(60, 105))}, True)
    assert taken == {OUTPUT: list(range(105))}
    assert whole.held == {WINDOWS: list(range(95))}


def test_the_largest_topic_is_held_back_first() -> None:
    whole = batching()
    # 170 of the output (20 beyond a row group) and 90 windows: 110 would be too many.
    taken = whole.take({WINDOWS: list(range(90)), OUTPUT: list(range(170))}, full_poll=True)
    assert taken == {WINDOWS: list(range(90)), OUTPUT: list(range(150))}
    assert whole.held == {OUTPUT: list(range(150, 170))}


def test_records_whose_table_is_not_parsed_from_its_output_are_never_held() -> None:
    whole = batching()
    assert whole.take({DEAD_LETTERS: [1, 2]}, full_poll=True) == {DEAD_LETTERS: [1, 2]}


def test_polls_too_small_to_make_a_row_group_hold_nothing_back() -> None:
    whole = batching(row_group_rows=300, max_batch=100)
    assert whole.take({OUTPUT: list(range(100))}, full_poll=True) == {OUTPUT: list(range(100))}
