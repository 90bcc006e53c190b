"""Barcode scan -> EPCIS ObjectEvent (pure; GS1 parsing by biip).

* SSCC (AI 00)                      -> ``epcList: [https://id.gs1.org/00/{sscc}]``
* GTIN + serial (AI 01 + 21)        -> ``epcList: [https://id.gs1.org/01/{gtin14}/21/{serial}]``
* GTIN + lot (AI 01 + 10), no serial -> ``quantityList: [{epcClass: .../01/{gtin14}/10/{lot},
  quantity: 1}]`` (class level, one item scanned)
* GTIN alone (EAN/UPC, ITF-14, ...)  -> ``quantityList: [{epcClass: .../01/{gtin14}, quantity: 1}]``
* lot (AI 10) / expiry (AI 17)       -> ``ilmd: {cbvmda:lotNumber, cbvmda:itemExpirationDate}``
  at ``action: ADD`` points (the schema allows ILMD only there); elsewhere ``tea:lotNumber`` /
  ``tea:itemExpirationDate`` in the read detail
* anything else (not GS1)            -> ``epcList: []`` and the raw data in ``tea:barcode``:
  nothing is dropped, the cloud decides (docs/gs1-epcis.md §4: keep non-GS1 codes verbatim).

Digital Link URIs are in the constrained canonical form the event hash uses
(docs/gs1-epcis.md §1.9): serial and lot are URN-escaped (TDS Table A-1) then DL-escaped.
"""

from __future__ import annotations

from typing import Any

from agent.model import BarcodeRead
from agent.pipeline.barcode_data import BarcodeData, digital_link, interpret, plain_text
from agent.pipeline.epcis import finish, finish_json, finish_json_keyed, iso_ms, object_event_body
from agent.pipeline.mapping import EventMapping


def epc_list(data: BarcodeData) -> list[str] | None:
    """Instance-level identities, or None when the scan names a class (use quantity_list)."""
    if data.sscc:
        return [f"{digital_link(sscc=data.sscc)}"]
    if data.gtin and data.serial is not None:
        return [f"{digital_link(gtin=data.gtin, serial=data.serial)}"]
    if data.gtin:
        return None
    return []


def quantity_list(data: BarcodeData) -> list[dict[str, Any]] | None:
    if data.sscc or not data.gtin or data.serial is not None:
        return None
    return [{"epcClass": digital_link(gtin=data.gtin, lot=data.lot), "quantity": 1}]


def ilmd(data: BarcodeData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.gtin and data.lot is not None:
        out["cbvmda:lotNumber"] = data.lot
    if data.gtin and data.expiry is not None:
        out["cbvmda:itemExpirationDate"] = data.expiry.isoformat()
    return out


def parse_barcode(read: BarcodeRead) -> BarcodeData:
    return interpret(read.data, read.symbology)


def barcode_event(
    read: BarcodeRead, *, timezone: str, mapping: EventMapping, source_id: str,
    data: BarcodeData | None = None, step_s: float = 0.0,
) -> dict[str, Any]:
    """One ObjectEvent for one scan; ``tea:reads`` carries the raw scan and its read id.

    ``step_s``: the clock-step correction already applied to ``read.read_at``.
    """
    return finish(barcode_body(read, timezone=timezone, mapping=mapping, source_id=source_id,
                               data=data, step_s=step_s))


def barcode_json(
    read: BarcodeRead, *, timezone: str, mapping: EventMapping, source_id: str,
    data: BarcodeData | None = None, step_s: float = 0.0,
) -> str:
    """:func:`barcode_event` as the JSON text stored in the buffer."""
    if data is None:
        text = plain_text(read.data, read.symbology)
        if text is not None:
            return _plain_json(read, text, timezone=timezone, mapping=mapping,
                               source_id=source_id, step_s=step_s)
    return finish_json(barcode_body(read, timezone=timezone, mapping=mapping,
                                    source_id=source_id, data=data, step_s=step_s))


def _plain_json(read: BarcodeRead, text: str, *, timezone: str, mapping: EventMapping,
                source_id: str, step_s: float) -> str:
    """A plain-data scan's event (the busy line's kind): everything in it but its times, its
    read id and its text follows from the key, so it is filled in, not built (issue 12)."""
    read_time = iso_ms(read.read_at)
    key = ("barcode", read.reader, read.symbology, read.clock_synced, step_s, timezone, mapping)
    slots = {"eventTime": read_time, "tea:readTime": read_time, "tea:readId": source_id,
             "tea:barcode": text}

    def build() -> dict[str, Any]:
        data = BarcodeData(text=text, symbology=read.symbology, is_gs1=False)
        return barcode_body(read, timezone=timezone, mapping=mapping, source_id=source_id,
                            data=data, step_s=step_s)

    return finish_json_keyed(key, slots, build)


def barcode_body(
    read: BarcodeRead, *, timezone: str, mapping: EventMapping, source_id: str,
    data: BarcodeData | None = None, step_s: float = 0.0,
) -> dict[str, Any]:
    """:func:`barcode_event` without its eventID."""
    data = data or parse_barcode(read)
    epcs, quantities, instance_data = epc_list(data), quantity_list(data), ilmd(data)
    read_time = iso_ms(read.read_at)
    detail: dict[str, Any] = {
        "tea:reader": read.reader,
        "tea:barcode": data.text,
        "tea:readTime": read_time,
        "tea:clockSynced": read.clock_synced,
        "tea:readId": source_id,
    }
    if step_s:
        detail["tea:clockStepS"] = round(step_s, 3)
    if read.symbology:
        detail["tea:symbology"] = read.symbology
    if data.error:
        detail["tea:parseError"] = data.error
    if mapping.action != "ADD":
        # EPCIS 2.0 allows ILMD only where instances are created (action ADD; the schema
        # enforces it): elsewhere lot and expiry stay with the read, in our namespace.
        if "cbvmda:lotNumber" in instance_data:
            detail["tea:lotNumber"] = instance_data["cbvmda:lotNumber"]
        if "cbvmda:itemExpirationDate" in instance_data:
            detail["tea:itemExpirationDate"] = instance_data["cbvmda:itemExpirationDate"]
        instance_data = {}
    return object_event_body(
        event_time=read_time, timezone=timezone, mapping=mapping,
        action=mapping.action, epc_list=epcs, quantity_list=quantities,
        ilmd=instance_data or None, extensions={"tea:reads": [detail]},
    )
