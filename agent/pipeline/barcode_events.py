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

from dataclasses import dataclass
from datetime import date
from typing import Any

import biip

from agent.model import BarcodeRead
from agent.pipeline.digital_link import DIGITAL_LINK_HOST, digital_link_escape
from agent.pipeline.epcis import iso_ms, object_event
from agent.pipeline.mapping import EventMapping

_URN_ESCAPES = str.maketrans({'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C",
                              ">": "%3E", "?": "%3F"})


def _seg(value: str) -> str:
    return digital_link_escape(value.translate(_URN_ESCAPES))


@dataclass(frozen=True, slots=True, kw_only=True)
class BarcodeData:
    """What a scan identifies (GS1 keys as element-string values)."""

    text: str
    gtin: str | None = None  # GTIN-14
    serial: str | None = None
    lot: str | None = None
    expiry: date | None = None
    sscc: str | None = None
    error: str | None = None  # why nothing GS1 was found

    @property
    def epc_list(self) -> list[str] | None:
        if self.sscc:
            return [f"{DIGITAL_LINK_HOST}/00/{self.sscc}"]
        if self.gtin and self.serial is not None:
            return [f"{DIGITAL_LINK_HOST}/01/{self.gtin}/21/{_seg(self.serial)}"]
        if self.gtin:
            return None
        return []

    @property
    def quantity_list(self) -> list[dict[str, Any]] | None:
        if self.sscc or not self.gtin or self.serial is not None:
            return None
        epc_class = f"{DIGITAL_LINK_HOST}/01/{self.gtin}"
        if self.lot is not None:
            epc_class += f"/10/{_seg(self.lot)}"
        return [{"epcClass": epc_class, "quantity": 1}]

    @property
    def ilmd(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.gtin and self.lot is not None:
            out["cbvmda:lotNumber"] = self.lot
        if self.gtin and self.expiry is not None:
            out["cbvmda:itemExpirationDate"] = self.expiry.isoformat()
        return out


def parse_barcode(read: BarcodeRead) -> BarcodeData:
    text = read.data.decode("latin-1")
    value = (read.symbology or "") + text
    try:
        result = biip.parse(value)
    except biip.ParseError as exc:  # never crash on a label
        return BarcodeData(text=text, error=str(exc))
    fields: dict[str, Any] = {}
    strings = None
    if result.gs1_message is not None:
        strings = result.gs1_message.element_strings
    elif result.gs1_digital_link_uri is not None:
        strings = result.gs1_digital_link_uri.element_strings
    if strings is not None:
        for es in strings:
            ai = es.ai.ai
            if ai == "00":
                fields["sscc"] = es.value
            elif ai == "01":
                fields["gtin"] = es.value
            elif ai == "21":
                fields["serial"] = es.value
            elif ai == "10":
                fields["lot"] = es.value
            elif ai == "17" and es.date is not None:
                fields["expiry"] = es.date
    elif result.sscc is not None:
        fields["sscc"] = result.sscc.value
    elif result.gtin is not None:
        fields["gtin"] = result.gtin.value.zfill(14)
    if "gtin" in fields:
        fields["gtin"] = fields["gtin"].zfill(14)
    if not fields.get("gtin") and not fields.get("sscc"):
        errors = [e for e in (result.gs1_message_error, result.gtin_error, result.sscc_error) if e]
        return BarcodeData(text=text, error=errors[0] if errors else "no GS1 key in the code")
    return BarcodeData(text=text, **fields)


def barcode_event(
    read: BarcodeRead, *, timezone: str, mapping: EventMapping, source_id: str,
    data: BarcodeData | None = None,
) -> dict[str, Any]:
    """One ObjectEvent for one scan; ``tea:reads`` carries the raw scan and its read id."""
    data = data or parse_barcode(read)
    detail: dict[str, Any] = {
        "tea:reader": read.reader,
        "tea:barcode": data.text,
        "tea:readTime": iso_ms(read.read_at),
        "tea:clockSynced": read.clock_synced,
        "tea:readId": source_id,
    }
    if read.symbology:
        detail["tea:symbology"] = read.symbology
    if data.error:
        detail["tea:parseError"] = data.error
    ilmd = data.ilmd
    if mapping.action != "ADD":
        # EPCIS 2.0 allows ILMD only where instances are created (action ADD; the schema
        # enforces it): elsewhere lot and expiry stay with the read, in our namespace.
        if "cbvmda:lotNumber" in ilmd:
            detail["tea:lotNumber"] = ilmd["cbvmda:lotNumber"]
        if "cbvmda:itemExpirationDate" in ilmd:
            detail["tea:itemExpirationDate"] = ilmd["cbvmda:itemExpirationDate"]
        ilmd = {}
    return object_event(
        event_time=iso_ms(read.read_at), timezone=timezone, mapping=mapping,
        action=mapping.action, epc_list=data.epc_list, quantity_list=data.quantity_list,
        ilmd=ilmd or None, extensions={"tea:reads": [detail]},
    )
