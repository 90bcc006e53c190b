"""Helpers for the pipeline tests: tag reads at chosen times, plans, the official EPCIS schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agent.model import TagRead
from agent.pipeline.mapping import EventMapping, PresenceParams, ReaderPlan

T0 = 1_800_000_000.0  # epoch seconds, 2027-01-15
# SGTIN-96 0614141.812345.<serial> (TDS E.3 style) with serial n
SGTIN_PREFIX = "3074257BF7194E4"


def sgtin_hex(n: int) -> str:
    return f"{SGTIN_PREFIX}{n:09X}"


def read(t: float, epc: str, *, reader: str = "dock", antenna: int | None = 1,
         rssi: float | None = -55.0, synced: bool = True) -> TagRead:
    return TagRead(reader=reader, epc=epc, read_at=datetime.fromtimestamp(t, UTC),
                   antenna=antenna, rssi_dbm=rssi, pc=0x3000, clock_synced=synced)


DOOR_A = "urn:epc:id:sgln:0614141.00777.1"
DOOR_B = "urn:epc:id:sgln:0614141.00777.2"


def dock_plan(**presence: Any) -> ReaderPlan:
    """A reader serving two doors: antennas 1-2 door A receiving, 3-4 door B shipping."""
    a = EventMapping(read_point=DOOR_A, biz_location="urn:epc:id:sgln:0614141.00777.0",
                     biz_step="receiving", disposition="in_progress",
                     depart_biz_step="storing", depart_disposition="in_progress")
    b = EventMapping(read_point=DOOR_B, biz_location="urn:epc:id:sgln:0614141.00777.0",
                     biz_step="shipping", disposition="in_transit")
    return ReaderPlan(name="dock", mapping=a, antennas={1: a, 2: a, 3: b, 4: b},
                      presence=PresenceParams(**presence))


SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared/data/epcis"


@cache
def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("rfc3986_validator")  # else FORMAT_CHECKER does not check format uri
    path = SCHEMA_DIR / "EPCIS-JSON-Schema.json"
    if not path.exists():
        pytest.skip(f"official EPCIS 2.0 JSON schema not found at {path}")
    schema = json.loads(path.read_text())
    cls = jsonschema.Draft7Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Validation errors of one EPCISDocument against the official schema (skip if absent)."""
    v = _validator()
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in v.iter_errors(doc)]


def schema_path() -> Path:
    _validator()
    return SCHEMA_DIR
