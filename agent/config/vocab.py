"""CBV 2.0 vocabularies the agent writes as bare words (EPCIS 2.0 JSON schema enums).

``bizStep`` and ``disposition`` values are either one of these bare CBV 2.0 words or a full URI
outside the CBV namespace (schema ``vocab-other-uri``: not ``urn:epcglobal:cbv...`` nor
``http(s)://ns.gs1.org/cbv/``). The lists are the enums of the official EPCIS 2.0 JSON Schema
(docs/gs1-epcis.md §3.4); tests check them against the schema file.
"""

from __future__ import annotations

import re
from typing import Final

BIZ_STEPS: Final = frozenset({
    "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning",
    "creating_class_instance", "cycle_counting", "decommissioning", "departing", "destroying",
    "disassembling", "dispensing", "encoding", "entering_exiting", "holding", "inspecting",
    "installing", "killing", "loading", "other", "packing", "picking", "receiving", "removing",
    "repackaging", "repairing", "replacing", "reserving", "retail_selling", "shipping",
    "staging_outbound", "stock_taking", "stocking", "storing", "transporting", "unloading",
    "unpacking", "void_shipping", "sensor_reporting", "sampling",
})

DISPOSITIONS: Final = frozenset({
    "active", "container_closed", "damaged", "destroyed", "dispensed", "disposed", "encoded",
    "expired", "in_progress", "in_transit", "inactive", "no_pedigree_match", "non_sellable_other",
    "partially_dispensed", "recalled", "reserved", "retail_sold", "returned",
    "sellable_accessible", "sellable_not_accessible", "stolen", "unknown", "available",
    "completeness_verified", "completeness_inferred", "conformant", "container_open",
    "mismatch_instance", "mismatch_class", "mismatch_quantity", "needs_replacement",
    "non_conformant", "unavailable",
})

# RFC 3986 scheme ":" then something without spaces; enough to catch typos like "receiveing".
_URI_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
_CBV_NS_RE: Final = re.compile(r"^(urn:epcglobal:cbv|https?://ns\.gs1\.org/cbv/)")

_EXAMPLES: Final = {
    "bizStep": "receiving, shipping or commissioning",
    "disposition": "in_progress, in_transit or active",
}


def is_uri(value: str) -> bool:
    return bool(_URI_RE.match(value))


def check_vocabulary(kind: str, value: str) -> str | None:
    """``None`` when ``value`` is a valid ``kind`` ("bizStep" | "disposition"), else why not."""
    words = BIZ_STEPS if kind == "bizStep" else DISPOSITIONS
    if value in words:
        return None
    expected = f"expected a CBV 2.0 {kind} such as {_EXAMPLES[kind]}, or a URI"
    if is_uri(value):
        if _CBV_NS_RE.match(value):
            return (f"got {value!r}, {expected} outside the CBV namespace (write CBV values "
                    "as bare words)")
        return None
    near = sorted(w for w in words if w.replace("_", "") == value.lower().replace("_", ""))
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"got {value!r}, {expected}{hint}"


def check_uri(value: str) -> str | None:
    """``None`` when ``value`` looks like an absolute URI (readPoint / bizLocation id)."""
    if is_uri(value):
        return None
    return (f"got {value!r}, expected a URI such as urn:epc:id:sgln:0614141.00777.0 or "
            "https://id.gs1.org/414/0614141007770")
