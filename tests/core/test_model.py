"""The busy line's constructors (issue 12) make exactly the values the dataclasses make.

They set slots through their descriptors to skip a frozen dataclass's per-field
object.__setattr__; these tests keep them honest: the same value (equal, same hash, still
frozen) for any input, and a field added to one of the classes fails here until the
constructor sets it too.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.buffer.api import PRIORITY_EVENT, Claimed, OutEvent, claimed_row, event_out
from agent.model import BarcodeRead, barcode_read

times = st.datetimes(timezones=st.just(UTC))


@given(st.text(), st.binary(), st.none() | st.text(max_size=3), times, st.booleans())
def test_barcode_read_is_the_dataclass_value(reader: str, data: bytes, symbology: str | None,
                                             at: datetime, synced: bool) -> None:
    made = barcode_read(reader, data, symbology, at, synced)
    assert made == BarcodeRead(reader=reader, data=data, symbology=symbology, read_at=at,
                               clock_synced=synced)
    assert hash(made) == hash(BarcodeRead(reader=reader, data=data, symbology=symbology,
                                          read_at=at, clock_synced=synced))
    assert type(made) is BarcodeRead


@given(st.text(), st.floats(allow_nan=False))
def test_event_out_is_the_dataclass_value(payload: str, created: float) -> None:
    assert event_out(payload, created) == OutEvent(kind="event", payload=payload,
                                                   created_at_s=created)
    assert event_out(payload, created).priority == PRIORITY_EVENT


@given(st.integers(), st.text(), st.text(), st.integers(), st.floats(allow_nan=False),
       st.integers())
def test_claimed_row_is_the_dataclass_value(i: int, kind: str, payload: str, priority: int,
                                            created: float, attempts: int) -> None:
    assert claimed_row((i, kind, payload, priority, created, attempts)) == Claimed(
        id=i, kind=kind, payload=payload, priority=priority, created_at_s=created,
        attempts=attempts)


@pytest.mark.parametrize(("cls", "fields"), [
    (BarcodeRead, ["reader", "data", "symbology", "read_at", "clock_synced"]),
    (OutEvent, ["kind", "payload", "priority", "created_at_s"]),
    (Claimed, ["id", "kind", "payload", "priority", "created_at_s", "attempts"]),
])
def test_the_constructors_know_every_field(cls: type, fields: list[str]) -> None:
    """A field added to the class must be added to its fast constructor (agent/model.py,
    agent/buffer/api.py), or its values would lack it: this list is theirs."""
    assert [f.name for f in dataclasses.fields(cls)] == fields


def test_the_values_stay_frozen() -> None:
    made = barcode_read("r", b"x", None, datetime(2026, 1, 1, tzinfo=UTC), True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.reader = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event_out("{}", 0.0).payload = "x"  # type: ignore[misc]
