"""PostgreSQL types for Arrow result columns: OIDs, text and binary encodings, parameter decoding.

Text encodings follow PostgreSQL's own output (ISO dates, `t`/`f`, `\\x` bytea,
`{...}` arrays, `1 day 02:03:04` intervals) so clients parse them as they would
from PostgreSQL. Nested values without a PostgreSQL counterpart (structs, maps,
lists of structs) are sent as `json`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

BOOL, BYTEA, INT8, INT2, INT4, TEXT, JSON, FLOAT4, FLOAT8 = 16, 17, 20, 21, 23, 25, 114, 700, 701
VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID = (
    1043, 1082, 1083, 1114, 1184, 1186, 1700, 2950,
)  # fmt: skip
UNKNOWN = 705
VARBIT = 1562
ARRAY_OF = {
    BOOL: 1000, BYTEA: 1001, INT2: 1005, INT4: 1007, TEXT: 1009, VARCHAR: 1015, INT8: 1016,
    FLOAT4: 1021, FLOAT8: 1022, TIMESTAMP: 1115, DATE: 1182, TIMESTAMPTZ: 1185, INTERVAL: 1187,
    NUMERIC: 1231, UUID: 2951, JSON: 199,
}  # fmt: skip
TYPE_SIZE = {BOOL: 1, INT2: 2, INT4: 4, INT8: 8, FLOAT4: 4, FLOAT8: 8, DATE: 4, TIME: 8,
             TIMESTAMP: 8, TIMESTAMPTZ: 8, INTERVAL: 16, UUID: 16}  # fmt: skip

PG_EPOCH = dt.datetime(2000, 1, 1)
PG_EPOCH_UTC = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
PG_EPOCH_DATE = dt.date(2000, 1, 1)

Encoder = Callable[[Any], bytes]


@dataclass(frozen=True)
class ColumnType:
    """How one result column goes over the wire."""

    oid: int
    text: Encoder
    binary: Encoder

    @property
    def size(self) -> int:
        return TYPE_SIZE.get(self.oid, -1)


# -- text encodings -------------------------------------------------------------------------


def _text_float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _text_timestamp(v: dt.datetime) -> str:
    text = v.strftime("%Y-%m-%d %H:%M:%S")
    if v.microsecond:
        text += f".{v.microsecond:06d}".rstrip("0")
    return text


def _text_timestamptz(v: dt.datetime) -> str:
    return _text_timestamp(v.astimezone(dt.UTC)) + "+00"


def _text_interval(v: Any) -> str:
    months, days, nanos = v.months, v.days, v.nanoseconds
    parts = []
    years, months = divmod(months, 12) if months >= 0 else (-((-months) // 12), -((-months) % 12))
    if years:
        parts.append(f"{years} year{'s' if abs(years) != 1 else ''}")
    if months:
        parts.append(f"{months} mon{'s' if abs(months) != 1 else ''}")
    if days:
        parts.append(f"{days} day{'s' if abs(days) != 1 else ''}")
    micros = nanos // 1000
    if micros or not parts:
        sign = "-" if micros < 0 else ""
        secs, us = divmod(abs(micros), 1_000_000)
        h, rem = divmod(secs, 3600)
        m, s = divmod(rem, 60)
        clock = f"{sign}{h:02d}:{m:02d}:{s:02d}"
        if us:
            clock += f".{us:06d}".rstrip("0")
        parts.append(clock)
    return " ".join(parts)


def _text_bytea(v: bytes) -> str:
    return "\\x" + v.hex()


def _array_item(text: str | None) -> str:
    if text is None:
        return "NULL"
    if text == "" or any(c in text for c in ' ,{}"\\') or text.upper() == "NULL":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _json_default(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def _text_json(v: Any) -> str:
    if isinstance(v, list) and v and isinstance(v[0], tuple):  # a map
        v = dict(v)
    return json.dumps(v, default=_json_default, separators=(",", ":"))


# -- binary encodings -----------------------------------------------------------------------


def _bin_timestamp(v: dt.datetime) -> bytes:
    delta = v - PG_EPOCH
    return struct.pack("!q", (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _bin_timestamptz(v: dt.datetime) -> bytes:
    delta = v.astimezone(dt.UTC) - PG_EPOCH_UTC
    return struct.pack("!q", (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _bin_time(v: dt.time) -> bytes:
    return struct.pack("!q", ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond)


def _bin_interval(v: Any) -> bytes:
    return struct.pack("!qii", v.nanoseconds // 1000, v.days, v.months)


def _bin_numeric(v: Decimal) -> bytes:
    """PostgreSQL's base-10000 numeric format."""
    if v.is_nan():
        return struct.pack("!hhHH", 0, 0, 0xC000, 0)
    sign, digits, exponent = v.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    text = "".join(map(str, digits))
    int_len = len(text) + exponent  # digits before the decimal point
    int_part = text[:int_len] if int_len > 0 else "0"
    frac_part = text[int_len:] if int_len >= 0 else "0" * (-int_len) + text
    int_part = int_part.lstrip("0")
    int_pad = (-len(int_part)) % 4
    frac_pad = (-len(frac_part)) % 4
    int_groups = "0" * int_pad + int_part
    frac_groups = frac_part + "0" * frac_pad
    groups = [int(int_groups[i : i + 4]) for i in range(0, len(int_groups), 4)]
    weight = len(groups) - 1
    groups += [int(frac_groups[i : i + 4]) for i in range(0, len(frac_groups), 4)]
    while groups and groups[-1] == 0:
        groups.pop()
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    if not groups:
        weight = 0
    return struct.pack(
        f"!hhHH{len(groups)}H", len(groups), weight, 0x4000 if sign else 0, dscale, *groups
    )


def _utf8(text: Callable[[Any], str]) -> Encoder:
    return lambda v: text(v).encode()


def _array(element: ColumnType) -> ColumnType:
    def as_text(values: list[Any]) -> bytes:
        items = (_array_item(None if v is None else element.text(v).decode()) for v in values)
        return ("{" + ",".join(items) + "}").encode()

    def as_binary(values: list[Any]) -> bytes:
        has_null = any(v is None for v in values)
        out = [struct.pack("!iiiii", 1, int(has_null), element.oid, len(values), 1)]
        for v in values:
            if v is None:
                out.append(struct.pack("!i", -1))
            else:
                raw = element.binary(v)
                out.append(struct.pack("!i", len(raw)) + raw)
        return b"".join(out)

    return ColumnType(ARRAY_OF[element.oid], as_text, as_binary)


_TEXT_ONLY = _utf8(str)
TEXT_TYPE = ColumnType(TEXT, lambda v: str(v).encode(), lambda v: str(v).encode())
JSON_TYPE = ColumnType(JSON, _utf8(_text_json), _utf8(_text_json))


def column_type(arrow: pa.DataType) -> ColumnType:
    """The wire type for an Arrow column type (DuckDB results arrive as Arrow)."""
    t = pa.types
    if t.is_boolean(arrow):
        return ColumnType(BOOL, lambda v: b"t" if v else b"f", lambda v: b"\x01" if v else b"\x00")
    if t.is_int8(arrow) or t.is_int16(arrow) or t.is_uint8(arrow):
        return ColumnType(INT2, _TEXT_ONLY, lambda v: struct.pack("!h", v))
    if t.is_int32(arrow) or t.is_uint16(arrow):
        return ColumnType(INT4, _TEXT_ONLY, lambda v: struct.pack("!i", v))
    if t.is_int64(arrow) or t.is_uint32(arrow):
        return ColumnType(INT8, _TEXT_ONLY, lambda v: struct.pack("!q", v))
    if t.is_uint64(arrow):
        return ColumnType(NUMERIC, _TEXT_ONLY, lambda v: _bin_numeric(Decimal(v)))
    if t.is_float32(arrow):
        return ColumnType(FLOAT4, _utf8(_text_float), lambda v: struct.pack("!f", v))
    if t.is_float64(arrow):
        return ColumnType(FLOAT8, _utf8(_text_float), lambda v: struct.pack("!d", v))
    if t.is_decimal(arrow):
        return ColumnType(NUMERIC, _TEXT_ONLY, _bin_numeric)
    if t.is_string(arrow) or t.is_large_string(arrow) or t.is_string_view(arrow):
        return TEXT_TYPE
    if t.is_binary(arrow) or t.is_large_binary(arrow) or t.is_fixed_size_binary(arrow):
        return ColumnType(BYTEA, _utf8(_text_bytea), bytes)
    if t.is_date(arrow):
        return ColumnType(
            DATE, _utf8(dt.date.isoformat), lambda v: struct.pack("!i", (v - PG_EPOCH_DATE).days)
        )
    if t.is_time(arrow):
        return ColumnType(TIME, _utf8(dt.time.isoformat), _bin_time)
    if t.is_timestamp(arrow):
        if arrow.tz:
            return ColumnType(TIMESTAMPTZ, _utf8(_text_timestamptz), _bin_timestamptz)
        return ColumnType(TIMESTAMP, _utf8(_text_timestamp), _bin_timestamp)
    if arrow == pa.month_day_nano_interval():
        return ColumnType(INTERVAL, _utf8(_text_interval), _bin_interval)
    if t.is_list(arrow) or t.is_large_list(arrow) or t.is_fixed_size_list(arrow):
        element = column_type(arrow.value_type)
        if element.oid in ARRAY_OF and element.oid != JSON:
            return _array(element)
        return JSON_TYPE
    if t.is_struct(arrow) or t.is_map(arrow):
        return JSON_TYPE
    if isinstance(arrow, pa.ExtensionType) or t.is_null(arrow):
        return TEXT_TYPE if t.is_null(arrow) else column_type(arrow.storage_type)
    return TEXT_TYPE


def _bits(v: bytes) -> str:
    """A DuckDB bit string from its stored bytes: a count of padding bits, then the bits,
    the padding first."""
    return "".join(f"{byte:08b}" for byte in v[1:])[v[0] :]


def _bin_varbit(v: bytes) -> bytes:
    bits = _bits(v)
    padded = bits + "0" * (-len(bits) % 8)
    data = bytes(int(padded[i : i + 8], 2) for i in range(0, len(padded), 8))
    return struct.pack("!i", len(bits)) + data


def _bignum(v: bytes) -> int:
    """A DuckDB big number from its stored bytes: a 3-byte header whose top bit says the sign
    (set: not negative), then the magnitude's bytes, big-endian; a negative number's bytes
    are all inverted."""
    if v[0] & 0x80:
        return int.from_bytes(v[3:], "big")
    return -int.from_bytes(bytes(255 - b for b in v[3:]), "big")


def result_type(arrow: pa.DataType, duckdb_type: str) -> ColumnType:
    """Wire type of a result column. JSON, UUID, BIT and BIGNUM are only visible in DuckDB's
    own type name; the last two arrive as their stored bytes, sent as `bit varying` and
    `numeric`."""
    if duckdb_type == "JSON":
        return JSON_TYPE
    if duckdb_type == "UUID":
        return ColumnType(UUID, _TEXT_ONLY, lambda v: bytes.fromhex(str(v).replace("-", "")))
    if duckdb_type == "BIT":
        return ColumnType(VARBIT, _utf8(_bits), _bin_varbit)
    if duckdb_type in ("BIGNUM", "VARINT"):
        return ColumnType(
            NUMERIC, _utf8(lambda v: str(_bignum(v))), lambda v: _bin_numeric(Decimal(_bignum(v)))
        )
    return column_type(arrow)


# -- parameters -----------------------------------------------------------------------------


def decode_parameter(raw: bytes | None, oid: int, binary: bool) -> Any:
    """A bound parameter value for DuckDB. Text values stay strings: DuckDB casts them."""
    if raw is None:
        return None
    if not binary:
        return raw.decode()
    if oid == INT2:
        return struct.unpack("!h", raw)[0]
    if oid == INT4:
        return struct.unpack("!i", raw)[0]
    if oid == INT8:
        return struct.unpack("!q", raw)[0]
    if oid == FLOAT4:
        return struct.unpack("!f", raw)[0]
    if oid == FLOAT8:
        return struct.unpack("!d", raw)[0]
    if oid == BOOL:
        return raw != b"\x00"
    if oid == BYTEA:
        return raw
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        micros = struct.unpack("!q", raw)[0]
        base = PG_EPOCH_UTC if oid == TIMESTAMPTZ else PG_EPOCH
        return base + dt.timedelta(microseconds=micros)
    if oid == DATE:
        return PG_EPOCH_DATE + dt.timedelta(days=struct.unpack("!i", raw)[0])
    if oid == NUMERIC:
        return _numeric_from_binary(raw)
    return raw.decode()


def _numeric_from_binary(raw: bytes) -> Decimal:
    ndigits, weight, sign, dscale = struct.unpack("!hhHH", raw[:8])
    if sign == 0xC000:
        return Decimal("NaN")
    groups = struct.unpack(f"!{ndigits}H", raw[8 : 8 + 2 * ndigits])
    value = Decimal(0)
    for i, group in enumerate(groups):
        value += Decimal(group).scaleb(4 * (weight - i))
    value = value.quantize(Decimal(1).scaleb(-dscale)) if dscale else value
    return -value if sign == 0x4000 else value
