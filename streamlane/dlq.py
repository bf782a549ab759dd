"""Dead-letter tooling: list, show and replay the records a flow could not accept.

A dead letter keeps the rejected record's key and bytes as they arrived; its record
headers say why (`reason`) and where it came from (`topic`, `partition`, `offset`).
A dead letter is named by its own position in the dead-letter topic, `partition:offset`.
Replay publishes the chosen dead letters' original key and bytes, unchanged (so the
CloudEvents id stays the same), to the topic each came from, for a flow that has been
fixed (new reference data, a relaxed schema) to take them again. Replaying does not
remove anything from the dead-letter topic, and a replayed record that is still bad
becomes a new dead letter. An event whose id the flow has already accepted is dropped
as a duplicate; one whose window has closed by now is a late event.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from streamlane.errors import UserError
from streamlane.publish import publish
from streamlane.topicread import read_to_end

_REF = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    origin_topic: str
    origin_partition: int | None
    origin_offset: int | None

    @property
    def ref(self) -> str:
        """`partition:offset` in the dead-letter topic."""
        return f"{self.partition}:{self.offset}"


def parse_ref(text: str) -> tuple[int, int]:
    """`partition:offset` as numbers; UserError when it is not of that form."""
    match = _REF.match(text.strip())
    if match is None:
        raise UserError(f"{text!r} is not a dead letter reference (partition:offset, e.g. 0:17)")
    return int(match.group(1)), int(match.group(2))


def header_integer(text: str | None) -> int | None:
    """A dead letter's origin partition or offset header as a number; None when it is
    missing or not an integer."""
    return int(text) if text and text.lstrip("-").isdigit() else None


def read_dead_letters(brokers: str, topic: str, default_origin: str) -> Iterator[DeadLetter]:
    """Every record of `topic` from its start to its current end, in partition order.

    A record without origin headers is taken to come from `default_origin`.
    """
    for m in read_to_end(brokers, topic):
        headers: dict[str, str] = {}
        for header in m.headers() or []:
            name, raw = header[0], header[1]
            if raw:
                headers[name] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        key = m.key()
        yield DeadLetter(
            partition=int(m.partition() or 0),
            offset=int(m.offset() or 0),
            key=key.encode() if isinstance(key, str) else key,
            value=m.value() or b"",
            reason=headers.get("reason", ""),
            origin_topic=headers.get("topic", default_origin),
            origin_partition=header_integer(headers.get("partition")),
            origin_offset=header_integer(headers.get("offset")),
        )


def select(
    letters: Iterator[DeadLetter], reason: str | None = None, refs: list[str] | None = None
) -> list[DeadLetter]:
    """The dead letters whose reason contains `reason` (case-insensitive) and, when `refs`
    are given, that are among them; UserError for a ref that names no dead letter."""
    wanted = {parse_ref(r) for r in refs or []}
    chosen = []
    found = set()
    for letter in letters:
        if reason is not None and reason.lower() not in letter.reason.lower():
            continue
        if wanted:
            position = (letter.partition, letter.offset)
            if position not in wanted:
                continue
            found.add(position)
        chosen.append(letter)
    missing = wanted - found
    if missing:
        names = ", ".join(f"{p}:{o}" for p, o in sorted(missing))
        raise UserError(
            f"no dead letter at {names}" + (f" with reason {reason!r}" if reason else "")
        )
    return chosen


def replay(brokers: str, letters: list[DeadLetter]) -> dict[str, int]:
    """Publish each dead letter's original key and bytes to its origin topic; return how many
    went to each topic. Order is kept per origin topic and key."""
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for letter in letters:
        by_topic.setdefault(letter.origin_topic, []).append((letter.key, letter.value))
    return {topic: publish(brokers, topic, records) for topic, records in by_topic.items()}
