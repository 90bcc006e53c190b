"""EPCIS 2.0 JSON-LD building (EPCIS 2.0 §9 JSON binding; CBV 2.0 vocabulary).

Events are built once, when the pipeline commits them to the outbox, and stored as JSON text
with their eventID: a retransmission sends the very same bytes, so the cloud recognises it.
The document wrapper (creationDate) is added per MQTT message by the forwarder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agent.model import TagRead

EPCIS_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
# Our extension namespace for read diagnostics (EPCIS 2.0 §9.2: extensions are namespaced
# keys whose prefix is declared in @context).
TEA_PREFIX = "tea"
TEA_NS = "https://ns.trace-edge-agent.org/epcis/1#"
CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {TEA_PREFIX: TEA_NS}]
CONTENT_TYPE = "application/ld+json"


def iso_ms(dt: datetime) -> str:
    """UTC, ISO-8601 with exactly three fractional digits: ``2024-05-01T07:59:58.123Z``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def raw_epc_uri(epc_hex: str) -> str:
    """TDS §12.3 EPC raw URI: ``urn:epc:raw:<bits>.x<HEX>``."""
    return f"urn:epc:raw:{len(epc_hex) * 4}.x{epc_hex.upper()}"


def read_detail(read: TagRead) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "tea:reader": read.reader,
        "tea:epcHex": read.epc.upper(),
        "tea:readTime": iso_ms(read.read_at),
        "tea:clockSynced": read.clock_synced,
    }
    if read.antenna is not None:
        detail["tea:antenna"] = read.antenna
    if read.rssi_dbm is not None:
        detail["tea:rssiDbm"] = read.rssi_dbm
    return detail


def provisional_event_id(event: dict[str, Any]) -> str:
    """Stable content hash in the RFC 6920 form the CBV 2.0 event hash uses."""
    body = {k: v for k, v in event.items() if k != "eventID"}
    digest = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


def observe_event(
    read: TagRead, *, timezone: str, source_id: str
) -> dict[str, Any]:
    """One ObjectEvent OBSERVE for one read (the walking skeleton's mapping).

    ``source_id`` (buffer generation + read id) makes two reads identical to the millisecond
    two distinct events, so no cloud deduplication can merge them.
    """
    detail = read_detail(read)
    detail["tea:readId"] = source_id
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": iso_ms(read.read_at),
        "eventTimeZoneOffset": timezone,
        "epcList": [raw_epc_uri(read.epc)],
        "action": "OBSERVE",
        "tea:reads": [detail],
    }
    event["eventID"] = provisional_event_id(event)
    return event


def document(events: Sequence[dict[str, Any]], *, created: datetime) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_ms(created),
        "epcisBody": {"eventList": list(events)},
    }
