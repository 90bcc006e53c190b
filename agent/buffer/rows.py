"""Compact row encoding of reads for the `reads` table (pure functions, no I/O).

Row layout (columns of ``reads`` after ``id``)::

    kind          INTEGER  0 = TagRead, 1 = BarcodeRead
    reader        TEXT
    read_at_us    INTEGER  microseconds since 1970-01-01T00:00:00Z (exact, no float rounding)
    clock_synced  INTEGER  0 / 1
    epc           BLOB     the EPC's bytes when it is even-length upper-case hex (half the size),
                  TEXT     otherwise exactly as read
    antenna, rssi_dbm, pc, phase, frequency_khz
    data          BLOB     barcode bytes exactly as received
    symbology     TEXT     AIM identifier such as "]d2"
    extra         TEXT     JSON object of a tag read's driver-specific tea: fields, or NULL
                           (schema v2; a row salvaged from a v1 file has no value: NULL)
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.model import BarcodeRead, Read, TagRead

READ_COLUMNS = (
    "kind, reader, read_at_us, clock_synced, epc, antenna, rssi_dbm, pc, phase, frequency_khz, "
    "data, symbology, extra"
)
READ_COLUMN_COUNT = READ_COLUMNS.count(",") + 1
KIND_TAG = 0
KIND_BARCODE = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_UPPER_HEX = re.compile(r"^(?:[0-9A-F]{2})*$")

ReadRow = tuple[Any, ...]


def datetime_to_us(dt: datetime) -> int:
    """tz-aware datetime -> integer microseconds since the epoch (UTC)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"read_at must be timezone-aware (UTC), got naive {dt.isoformat()}")
    return (dt - _EPOCH) // _ONE_US


def us_to_datetime(us: int) -> datetime:
    """Integer microseconds since the epoch -> tz-aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def _epc_in(epc: str) -> str | bytes:
    return bytes.fromhex(epc) if _UPPER_HEX.match(epc) else epc


def _epc_out(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, str):
        return value
    raise TypeError(f"bad epc column value {value!r}")


def encode_read(read: Read) -> ReadRow:
    """A read -> the values for READ_COLUMNS (raises ValueError for a naive read_at)."""
    us = datetime_to_us(read.read_at)
    synced = 1 if read.clock_synced else 0
    if isinstance(read, TagRead):
        return (
            KIND_TAG, read.reader, us, synced, _epc_in(read.epc), read.antenna, read.rssi_dbm,
            read.pc, read.phase, read.frequency_khz, None, None,
            json.dumps(dict(read.extra), separators=(",", ":")) if read.extra else None,
        )
    if isinstance(read, BarcodeRead):
        return (
            KIND_BARCODE, read.reader, us, synced, None, None, None, None, None, None,
            bytes(read.data), read.symbology, None,
        )
    raise TypeError(f"not a read: {read!r}")


def decode_read(row: ReadRow) -> Read:
    """The values of READ_COLUMNS -> the read (raises TypeError/ValueError on a bad row)."""
    if len(row) == READ_COLUMN_COUNT - 1:  # a v1 row (salvage): no extra
        row = (*row, None)
    (kind, reader, us, synced, epc, antenna, rssi, pc, phase, freq, data, symbology,
     extra) = row
    if not isinstance(reader, str) or not isinstance(us, int):
        raise TypeError(f"bad read row {row!r}")
    read_at = us_to_datetime(us)
    if kind == KIND_TAG:
        return TagRead(
            reader=reader, epc=_epc_out(epc), read_at=read_at, antenna=antenna,
            rssi_dbm=None if rssi is None else float(rssi), pc=pc, phase=phase,
            frequency_khz=freq, clock_synced=bool(synced), extra=_extra_out(extra),
        )
    if kind == KIND_BARCODE:
        if not isinstance(data, bytes):
            raise TypeError(f"bad barcode data {data!r}")
        return BarcodeRead(
            reader=reader, data=data, symbology=symbology, read_at=read_at,
            clock_synced=bool(synced),
        )
    raise ValueError(f"unknown read kind {kind!r}")


def _extra_out(value: object) -> tuple[tuple[str, float | int | str], ...]:
    if value is None:
        return ()
    if not isinstance(value, str):
        raise TypeError(f"bad extra column value {value!r}")
    fields = json.loads(value)  # JSONDecodeError is a ValueError: a bad row
    if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, float | int | str) and not isinstance(v, bool)
            for k, v in fields.items()):
        raise ValueError(f"bad extra column value {value!r}")
    return tuple(fields.items())
