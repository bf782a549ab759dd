"""Several versions of an event type in one stream: decode each by its own schema, upcast to the newest.

A flow works on the newest version of its input type. Older versions are
accepted when an upcaster chain leads from them to the newest: each upcaster
turns one version's `data` into the next version's (the anti-corruption layer
at the boundary, so nothing downstream knows old shapes). Upcasters live in
`schemas/upcasters.py` and register themselves with `@upcaster(from, to)`.

The version of each record is its CloudEvents `type`. A record is first
decoded by the schema its `type` appears to name; one whose `type` turns out to
be another accepted version is decoded again by that one, so a misleading field
elsewhere in the record cannot misfile it. A record of no accepted version is a
dead letter ("unknown event type ..."). Upcast rows keep their original `type`,
so metrics per type and version show an old version going quiet.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

import numpy as np
import polars as pl

from streamlane.decode import Decoded, decode_batch
from streamlane.schemas import EventSchema, load_schema

Upcaster = Callable[[pl.Expr], pl.Expr]
"""Turns one version's `data` struct expression into the next version's."""

_UPCASTERS: dict[str, tuple[str, Upcaster]] = {}
_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]*)"')
_UNKNOWN_TYPE = re.compile(r"^unknown event type '(.*)'$")


def upcaster(older: str, newer: str) -> Callable[[Upcaster], Upcaster]:
    """Register `function` as the upcaster from event type `older` to `newer`."""

    def register(function: Upcaster) -> Upcaster:
        if older in _UPCASTERS:
            raise ValueError(f"two upcasters from {older}")
        _UPCASTERS[older] = (newer, function)
        return function

    return register


def _load_upcasters() -> None:
    importlib.import_module("schemas.upcasters")


def upcast_chain(older: str, newest: str) -> list[tuple[str, Upcaster]]:
    """The upcasters leading from `older` to `newest`, in order; ValueError when there are none."""
    _load_upcasters()
    chain: list[tuple[str, Upcaster]] = []
    current = older
    while current != newest:
        if current not in _UPCASTERS or len(chain) > len(_UPCASTERS):
            raise ValueError(f"no upcaster chain from {older} to {newest} (schemas/upcasters.py)")
        current, step = _UPCASTERS[current]
        chain.append((current, step))
    return chain


_SAMPLE = 64


def _guess_types(values: list[bytes], accepted: list[str]) -> np.ndarray:
    """Per record, the index in `accepted` of the type it appears to name (-1: none of them).

    A batch is usually of one version: when the records of an even sample that name
    an accepted type all name the same one, every record is guessed to be of it (a
    record that is not is decoded again by its own version). Otherwise compact JSON
    (`"type":"..."`) is matched column-wise, and only records written with spaces
    around the colon one by one.
    """
    sample = _type_indexes(values[:: max(1, len(values) // _SAMPLE)], accepted)
    named = sample[sample >= 0]
    if len(named) and (named == named[0]).all():
        return np.full(len(values), named[0], dtype=np.int64)
    return _type_indexes(values, accepted)


def _type_indexes(values: list[bytes], accepted: list[str]) -> np.ndarray:
    raw = pl.Series(values, dtype=pl.Binary)
    guesses = np.full(len(values), -1, dtype=np.int64)
    for index, event_type in enumerate(accepted):
        named = raw.bin.contains(f'"type":"{event_type}"'.encode()).to_numpy()
        guesses[(guesses == -1) & named] = index
    for row in np.flatnonzero(guesses == -1):
        found = _TYPE.search(values[row])
        name = found.group(1).decode("utf-8", "replace") if found else None
        if name in accepted:
            guesses[row] = accepted.index(name)
    return guesses


def _upcast(valid: pl.DataFrame, older: str, newest: EventSchema) -> pl.DataFrame:
    data = pl.col("data")
    for _, step in upcast_chain(older, newest.event_type):
        data = step(data)
    target = pl.from_arrow(newest.arrow_schema.empty_table())
    assert isinstance(target, pl.DataFrame)
    data_type = target.schema["data"]
    assert isinstance(data_type, pl.Struct)
    present = _fields_of(valid, data)
    fields = [
        data.struct.field(f.name).cast(f.dtype).alias(f.name)
        if f.name in present
        else pl.lit(None, f.dtype).alias(f.name)
        for f in data_type.fields
    ]
    return valid.with_columns(data=pl.struct(fields))


def _fields_of(frame: pl.DataFrame, data: pl.Expr) -> set[str]:
    shape = frame.head(0).select(data.alias("data")).schema["data"]
    return {f.name for f in shape.fields} if isinstance(shape, pl.Struct) else set()


def decode_versions(values: list[bytes], newest: str, older: tuple[str, ...]) -> Decoded:
    """Decode records of the `newest` type or any of the `older` ones, upcast to the newest.

    As `decode_batch`, loss-free: every input row ends up in `valid` (in input order)
    or `rejects`, identified by its position `row`.
    """
    if not older:
        return decode_batch(values, load_schema(newest))
    accepted = [newest, *older]
    schema = load_schema(newest)
    guesses = np.maximum(_guess_types(values, accepted), 0)  # unknown types: the newest says so
    pending = {t: np.flatnonzero(guesses == i) for i, t in enumerate(accepted)}
    valid_parts: list[pl.DataFrame] = []
    reject_rows: list[int] = []
    reject_reasons: list[str] = []
    tried: dict[int, set[str]] = {}
    while any(len(rows) for rows in pending.values()):
        retry: dict[str, list[int]] = {t: [] for t in accepted}
        for event_type, rows in pending.items():
            if not len(rows):
                continue
            # A batch of one version (the usual case) is decoded as it is, without a copy.
            whole = len(rows) == len(values)
            decoded = decode_batch(
                values if whole else [values[i] for i in rows], load_schema(event_type)
            )
            valid = decoded.valid
            if not whole:
                valid = valid.with_columns(row=pl.Series(rows[valid["row"].to_numpy()]))
            if event_type != newest:
                valid = _upcast(valid, event_type, schema)
            valid_parts.append(valid)
            for local, reason in decoded.rejects.iter_rows():
                row = int(rows[local])
                named = _UNKNOWN_TYPE.match(reason)
                tried.setdefault(row, set()).add(event_type)
                if named and named.group(1) in accepted and named.group(1) not in tried[row]:
                    retry[named.group(1)].append(row)
                else:
                    reject_rows.append(row)
                    reject_reasons.append(reason)
        pending = {t: np.asarray(rows, dtype=np.int64) for t, rows in retry.items()}
    if not valid_parts:
        return decode_batch(values, schema)
    if len(valid_parts) == 1:
        valid = valid_parts[0]
    else:
        # Aligned by name: the versions' envelopes may list their attributes in another order.
        valid = pl.concat(valid_parts, how="diagonal_relaxed").sort("row")
    rejects = pl.DataFrame(
        {"row": reject_rows, "reason": reject_reasons},
        schema={"row": pl.Int64, "reason": pl.String},
    ).sort("row")
    return Decoded(valid=valid, rejects=rejects)
