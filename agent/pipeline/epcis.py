"""EPCIS 2.0 JSON-LD building (EPCIS 2.0 §9 JSON binding; CBV 2.0 vocabulary).

Events are built once, when the pipeline commits them to the outbox, and stored as JSON text
with their eventID (the CBV 2.0 event hash): a retransmission sends the very same bytes, and the
cloud recognises a duplicate by its eventID. The document wrapper (creationDate) is added per
MQTT message by the forwarder.

Every event: ``type``, ``eventID``, ``eventTime`` (UTC, milliseconds), ``eventTimeZoneOffset``
(gateway.timezone), ``epcList`` / ``quantityList``, ``action``, then ``bizStep``,
``disposition``, ``readPoint``, ``bizLocation`` when configured, then our ``tea:`` extensions
(read diagnostics; they are hashed as ``{namespace}localName``). See docs/pipeline.md.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from agent.model import TagRead
from agent.pipeline.epc import EpcIdentity, decode_epc
from agent.pipeline.eventhash import EventTemplates, jsonld_prefixes
from agent.pipeline.mapping import EventMapping

EPCIS_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
# Our extension namespace for read diagnostics (EPCIS 2.0 §9.2: extensions are namespaced
# keys whose prefix is declared in @context).
TEA_PREFIX = "tea"
TEA_NS = "https://ns.trace-edge-agent.org/epcis/1#"
CONTEXT: list[Any] = [EPCIS_CONTEXT_URL, {TEA_PREFIX: TEA_NS}]
CONTENT_TYPE = "application/ld+json"
# Prefixes for the event hash: ours from @context, plus cbvmda (ILMD) from the standard context.
HASH_CONTEXT: Final = {"cbvmda": "urn:epcglobal:cbv:mda:", **jsonld_prefixes(CONTEXT)}
# The eventID and JSON of the events the agent builds: templated per event shape (eventhash.py).
_EVENTS: Final = EventTemplates(HASH_CONTEXT)

ARRIVED: Final = "arrived"
DEPARTED: Final = "departed"
PRESENT: Final = "present"  # heartbeat: still present


def iso_ms(dt: datetime) -> str:
    """UTC, ISO-8601 with exactly three fractional digits: ``2024-05-01T07:59:58.123Z``."""
    global _LAST_SECOND
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    # Formatted by hand, the text up to the second kept from the last call: strftime was 5 %
    # of the agent's CPU on a busy line, and most reads share their second with the last one
    # (issue 12). One tuple is swapped whole, so a call from another thread sees a pair.
    second = (dt.second, dt.minute, dt.hour, dt.day, dt.month, dt.year)
    last, prefix = _LAST_SECOND
    if second != last:
        prefix = (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
                  f"{dt.second:02d}.")
        _LAST_SECOND = (second, prefix)
    return f"{prefix}{dt.microsecond // 1000:03d}Z"


_LAST_SECOND: tuple[tuple[int, ...], str] = ((), "")


def iso_ms_s(epoch_s: float) -> str:
    """:func:`iso_ms` of epoch seconds (the presence engine's time scale)."""
    return iso_ms(datetime.fromtimestamp(epoch_s, UTC))


def raw_epc_uri(epc_hex: str) -> str:
    """TDS §12.3 EPC raw URI: ``urn:epc:raw:<bits>.x<HEX>``."""
    return f"urn:epc:raw:{len(epc_hex) * 4}.x{epc_hex.upper()}"


def finish(event: dict[str, Any]) -> dict[str, Any]:
    """Add the eventID (CBV 2.0 event hash over everything else), placed right after ``type``."""
    eid = _EVENTS.event_hash(event)
    return {"type": event["type"], "eventID": eid,
            **{k: v for k, v in event.items() if k != "type"}}


def finish_json(event: dict[str, Any]) -> str:
    """``json.dumps(finish(event), separators=(",", ":"))``, from the shape's templates."""
    return _EVENTS.finish_json(event)


def finish_json_keyed(key: Hashable, slots: Mapping[str, Any],
                      build: Callable[[], Mapping[str, Any]]) -> str:
    """:func:`finish_json` of ``build()`` for a caller that knows the event's shape by ``key``
    (eventhash.EventTemplates.finish_json_keyed)."""
    return _EVENTS.finish_json_keyed(key, slots, build)


def _context_fields(event: dict[str, Any], mapping: EventMapping, *, depart: bool) -> None:
    if depart:
        biz_step, disposition = mapping.depart_biz_step, mapping.depart_disposition
    else:
        biz_step, disposition = mapping.biz_step, mapping.disposition
    if biz_step is not None:
        event["bizStep"] = biz_step
    if disposition is not None:
        event["disposition"] = disposition
    if mapping.read_point is not None:
        event["readPoint"] = {"id": mapping.read_point}
    if mapping.biz_location is not None:
        event["bizLocation"] = {"id": mapping.biz_location}


def object_event(
    *, event_time: str, timezone: str, mapping: EventMapping, action: str,
    epc_list: Sequence[str] | None = None, quantity_list: Sequence[dict[str, Any]] | None = None,
    ilmd: dict[str, Any] | None = None, depart: bool = False, extensions: dict[str, Any],
) -> dict[str, Any]:
    """An ObjectEvent with its eventID, fields in the EPCIS order."""
    return finish(object_event_body(
        event_time=event_time, timezone=timezone, mapping=mapping, action=action,
        epc_list=epc_list, quantity_list=quantity_list, ilmd=ilmd, depart=depart,
        extensions=extensions))


def object_event_body(
    *, event_time: str, timezone: str, mapping: EventMapping, action: str,
    epc_list: Sequence[str] | None = None, quantity_list: Sequence[dict[str, Any]] | None = None,
    ilmd: dict[str, Any] | None = None, depart: bool = False, extensions: dict[str, Any],
) -> dict[str, Any]:
    """:func:`object_event` without its eventID (for :func:`finish` or :func:`finish_json`)."""
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": event_time,
        "eventTimeZoneOffset": timezone,
    }
    if epc_list is not None:
        event["epcList"] = list(epc_list)
    if quantity_list is not None:
        event["quantityList"] = list(quantity_list)
    event["action"] = action
    _context_fields(event, mapping, depart=depart)
    if ilmd:
        event["ilmd"] = ilmd
    event.update(extensions)
    return event


def read_detail(read: TagRead, identity: EpcIdentity | None = None,
                step_s: float = 0.0, *, read_time: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "tea:reader": read.reader,
        "tea:epcHex": read.epc.upper(),
        "tea:readTime": read_time or iso_ms(read.read_at),
        "tea:clockSynced": read.clock_synced,
    }
    if step_s:
        detail["tea:clockStepS"] = round(step_s, 3)
    if read.antenna is not None:
        detail["tea:antenna"] = read.antenna
    if read.rssi_dbm is not None:
        detail["tea:rssiDbm"] = read.rssi_dbm
    if identity is not None and identity.raw_reason is not None:
        detail["tea:rawReason"] = identity.raw_reason
    for key, value in read.extra:  # driver-specific fields (LLRP clock offset, Impinj RF)
        detail.setdefault(key, value)
    return detail


def every_read_event(
    read: TagRead, *, timezone: str, mapping: EventMapping, source_id: str,
    step_s: float = 0.0,
) -> dict[str, Any]:
    """``mode: every_read``: one ObjectEvent per read (the walking skeleton's mapping).

    ``source_id`` (buffer generation + read id) makes two reads identical to the millisecond
    two distinct events, so no cloud deduplication can merge them. ``step_s``: the clock-step
    correction already applied to ``read.read_at`` (reported as ``tea:clockStepS``).
    """
    return finish(every_read_body(read, timezone=timezone, mapping=mapping,
                                  source_id=source_id, step_s=step_s))


def every_read_json(
    read: TagRead, *, timezone: str, mapping: EventMapping, source_id: str,
    step_s: float = 0.0,
) -> str:
    """:func:`every_read_event` as the JSON text stored in the buffer."""
    return finish_json(every_read_body(read, timezone=timezone, mapping=mapping,
                                       source_id=source_id, step_s=step_s))


def every_read_body(
    read: TagRead, *, timezone: str, mapping: EventMapping, source_id: str,
    step_s: float = 0.0,
) -> dict[str, Any]:
    identity = decode_epc(read.epc, read.pc)
    read_time = iso_ms(read.read_at)
    detail = read_detail(read, identity, step_s, read_time=read_time)
    detail["tea:readId"] = source_id
    return object_event_body(
        event_time=read_time, timezone=timezone, mapping=mapping,
        action=mapping.action, epc_list=[identity.uri], extensions={"tea:reads": [detail]},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TagSummary:
    """One EPC at one read point, folded: what a presence event says about it."""

    reader: str
    antenna: int | None
    epc: str  # upper-case hex
    pc: int | None
    first_seen: float  # epoch seconds (read_at of the first read)
    last_seen: float
    count: int
    peak_rssi: float | None
    clock_synced: bool
    clock_step_s: float = 0.0  # correction applied to its times after a wall-clock step


def presence_event(
    transition: str, tags: Iterable[TagSummary], *, timezone: str, mapping: EventMapping,
    at: float,
) -> dict[str, Any]:
    """One ObjectEvent for one transition batch at one read point (all its EPCs).

    arrived: ``action`` from config, eventTime = earliest first read; departed: OBSERVE with the
    ``on_depart`` bizStep/disposition, eventTime = latest last read; present (heartbeat):
    OBSERVE without bizStep/disposition, eventTime = ``at`` (the agent's clock when the heartbeat
    fell due).
    """
    ordered = sorted(tags, key=lambda t: (t.epc, t.reader, t.antenna or 0))
    uris: list[str] = []
    seen: set[str] = set()
    details: list[dict[str, Any]] = []
    for t in ordered:
        identity = decode_epc(t.epc, t.pc)
        if identity.uri not in seen:  # epcList is a set (schema: uniqueItems)
            seen.add(identity.uri)
            uris.append(identity.uri)
        d: dict[str, Any] = {"tea:reader": t.reader, "tea:epcHex": t.epc}
        if t.antenna is not None:
            d["tea:antenna"] = t.antenna
        if t.peak_rssi is not None:
            d["tea:rssiDbm"] = t.peak_rssi
        d["tea:readTime"] = iso_ms_s(t.first_seen)
        d["tea:firstSeen"] = iso_ms_s(t.first_seen)
        d["tea:lastSeen"] = iso_ms_s(t.last_seen)
        d["tea:count"] = t.count
        d["tea:clockSynced"] = t.clock_synced
        if t.clock_step_s:
            d["tea:clockStepS"] = round(t.clock_step_s, 3)
        if identity.raw_reason is not None:
            d["tea:rawReason"] = identity.raw_reason
        details.append(d)
    if transition == ARRIVED:
        when, action = min(t.first_seen for t in ordered), mapping.action
    elif transition == DEPARTED:
        when, action = max(t.last_seen for t in ordered), "OBSERVE"
    else:  # a heartbeat repeats where the tags are, not the business step of their arrival
        when, action = at, "OBSERVE"
        mapping = replace(mapping, biz_step=None, disposition=None)
    return object_event(
        event_time=iso_ms_s(when), timezone=timezone, mapping=mapping, action=action,
        epc_list=uris, depart=transition == DEPARTED,
        extensions={"tea:transition": transition, "tea:reads": details},
    )


def document(events: Sequence[dict[str, Any]], *, created: datetime) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_ms(created),
        "epcisBody": {"eventList": list(events)},
    }
