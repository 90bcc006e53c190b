"""CBV 2.0 EPCIS event hash: the ``eventID`` ``ni:///sha-256;<hex>?ver=CBV2.0``.

Pure functions, no I/O. The hash is SHA-256 over a *pre-hash string* (RFC 6920 ``ni`` URI); the
pre-hash canonicalisation is the CBV 2.0 "EPCIS Event Hash ID" as implemented by the reference
RalphTro/epcis-event-hash-generator (docs/gs1-epcis.md §3.5). Where its README and its code
differ, we follow the code, because its published ``*.hashes`` are what other parties check
against:

* Canonical property order (reference ``PROP_ORDER``): eventTime, eventTimeZoneOffset,
  certificationInfo, parentID, epcList, inputEPCList, childEPCs, quantityList,
  childQuantityList, inputQuantityList, outputEPCList, outputQuantityList, action,
  transformationID, bizStep, disposition, persistentDisposition (set, unset), readPoint (id),
  bizLocation (id), sensorElementList (sensorMetadata, sensorReport in their field order).
  Note certificationInfo right after the time zone and parentID *before* epcList.
* Everything else - bizTransactionList, sourceList, destinationList, ilmd, user extensions and
  whatever an ordered element left over - is rendered generically (``key=value``, children
  appended) and these strings are sorted together at the end. So ``destinationList`` comes
  before ``sourceList`` and a ``{namespace}local`` extension after ``ilmd``.
* Elements of bizTransactionList / sourceList / destinationList keep ``type`` before the
  identifier and are not sorted inside; the elements themselves are sorted.
* List values (``epc=...``, quantity elements, sensor reports, ...) are sorted as strings.
* User extensions inside readPoint / bizLocation / sensor elements whose namespace ends with
  ``/`` are appended right after their parent's fields; other nested extensions end up in the
  sorted tail under their parent's name (a quirk of the reference, reproduced on purpose).
* Values: whitespace stripped; ``urn:epcglobal:cbv:{bizstep,disp,btt,sdt,er}:`` and bare CBV
  words -> ``https://ref.gs1.org/cbv/...``, CBV measurement types / exceptions ->
  ``https://gs1.org/voc/...``; anything ``float()`` accepts is written without trailing zeros
  (``600.0`` -> ``600``, ``12.10`` -> ``12.1``); EPC URNs and Digital Links -> constrained
  canonical Digital Link (see :mod:`agent.pipeline.digital_link`); ``prefix:local`` keys ->
  ``{namespace}local`` and ``prefix:local`` values -> ``namespace + local`` for the prefixes
  in ``context``.
* Times (elements whose name contains "time" but not "offset", in the ordered part only):
  UTC, exactly three fractional digits, the third rounded up when the fourth is 5-9 (README
  rule 9), ``Z``.
* ``eventID``, ``recordTime``, ``errorDeclaration`` (and ``comment`` / ``rdfs:comment``) are
  not hashed.

Deliberate differences from the reference, all outside what the agent emits: JSON ``true`` /
``false`` hash as ``true`` / ``false`` (the XML lexical form; the reference's JSON path writes
``True``), ``null`` members are treated as absent, a time without offset is taken as UTC (the
reference uses the machine's local zone), an exact half millisecond rounds up (README rule 9;
the reference's ``round()`` goes to even), the type of a bizTransaction / source / destination
comes first whatever the JSON key order, and the bare-word expansion that the reference does
across a whole document (JSON-LD expansion, then replacing any string equal to the tail of an
expanded CBV term) is done within the one event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final

from agent.pipeline.digital_link import canonical_digital_link

_encode_str: Final = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str

__all__ = ["HASH_VERSION", "EventTemplates", "event_hash", "jsonld_prefixes", "prehash_string"]

log = logging.getLogger(__name__)

HASH_VERSION: Final = "CBV2.0"

# --- Vocabularies (CBV 2.0 §7; EPCIS 2.0 JSON-LD context term definitions) ----------------------


def _words(text: str) -> list[str]:
    return text.split()


def _vocabulary_terms(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CBV: Final = "https://ref.gs1.org/cbv/"
_GS1_VOC: Final = "https://gs1.org/voc/"
_STANDARD_PREFIXES: Final = {  # prefixes the EPCIS 2.0 JSON-LD context defines
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": _CBV,
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": _GS1_VOC,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
_BIZ_STEPS: Final = _vocabulary_terms(
    "accepting arriving assembling collecting commissioning consigning "
    "creating_class_instance cycle_counting decommissioning departing destroying "
    "disassembling dispensing encoding entering_exiting holding inspecting installing killing "
    "loading other packing picking receiving removing repackaging repairing replacing "
    "reserving retail_selling sampling sensor_reporting shipping staging_outbound "
    "stock_taking stocking storing transporting unloading unpacking void_shipping"
)
_DISPOSITIONS: Final = _vocabulary_terms(
    "active available completeness_verified completeness_inferred conformant container_closed "
    "container_open damaged destroyed dispensed disposed encoded expired in_progress "
    "in_transit inactive mismatch_instance mismatch_class mismatch_quantity needs_replacement "
    "no_pedigree_match non_conformant non_sellable_other partially_dispensed recalled "
    "reserved retail_sold returned sellable_accessible sellable_not_accessible stolen "
    "unavailable unknown"
)
_BIZ_TRANSACTION_TYPES: Final = _vocabulary_terms(
    "bol cert desadv inv pedigree po poc prodorder recadv rma testprd testres upevt"
)
_SOURCE_DESTINATION_TYPES: Final = _vocabulary_terms("owning_party possessing_party location")
_ERROR_REASONS: Final = _vocabulary_terms("did_not_occur incorrect_data")
_MEASUREMENT_TYPES: Final = _vocabulary_terms(
    "AbsoluteHumidity AbsorbedDose AbsorbedDoseRate Acceleration Altitude AmountOfSubstance "
    "AmountOfSubstancePerUnitVolume Angle AngularAcceleration AngularMomentum AngularVelocity "
    "Area Capacitance Conductance Conductivity Count Density Dimensionless DoseEquivalent "
    "DoseEquivalentRate DynamicViscosity ElectricCharge ElectricCurrent "
    "ElectricCurrentDensity ElectricFieldStrength Energy Exposure Force Frequency Illuminance "
    "Inductance Irradiance KinematicViscosity Length LinearMomentum Luminance LuminousFlux "
    "LuminousIntensity MagneticFlux MagneticFluxDensity MagneticVectorPotential Mass "
    "MassConcentration MassFlowRate MassPerAreaTime MemoryCapacity MolalityOfSolute "
    "MolarEnergy MolarMass MolarVolume Power Pressure RadiantFlux RadiantIntensity "
    "Radioactivity RelativeHumidity Resistance Resistivity SolidAngle SpecificVolume Speed "
    "SurfaceDensity SurfaceTension Temperature Time Torque Voltage Volume VolumeFlowRate "
    "VolumeFraction VolumetricFlux Wavenumber"
)
_SENSOR_EXCEPTIONS: Final = _vocabulary_terms("ALARM_CONDITION ERROR_CONDITION")
_COMPONENTS: Final = _vocabulary_terms(
    "altitude axial_distance azimuth easting elevation_angle height latitude longitude "
    "northing polar_angle spherical_radius x y z"
)
# Only expanded values under these two roots take part in the bare-word replacement.
_EXPANDED_ROOTS: Final = ("https://ref.gs1.org/cbv", "https://gs1.org/voc")
_CBV_URNS: Final = (  # CBV 2.0 §6: URN forms of the standard vocabularies -> Web URIs
    ("urn:epcglobal:cbv:bizstep:", _CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", _CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", _CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", _CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", _CBV + "ER-"),
)

# --- Canonical property order (reference PROP_ORDER) --------------------------------------------
_Order = tuple[tuple[str, "_Order | None"], ...]
_EPC: Final[_Order] = (("epc", None),)
_QUANTITY: Final[_Order] = (
    ("quantityElement", (("epcClass", None), ("quantity", None), ("uom", None))),
)
_SENSOR_METADATA: Final[_Order] = tuple(
    (name, None)
    for name in _words(
        "time startTime endTime deviceID deviceMetadata rawData dataProcessingMethod bizRules"
    )
)
_SENSOR_REPORT: Final[_Order] = tuple(
    (name, None)
    for name in _words(
        "type exception deviceID deviceMetadata rawData dataProcessingMethod time microorganism "
        "chemicalSubstance value component stringValue booleanValue hexBinaryValue uriValue "
        "minValue maxValue meanValue sDev percRank percValue uom coordinateReferenceSystem"
    )
)
_SENSOR_ELEMENT: Final[_Order] = (
    ("sensorMetadata", _SENSOR_METADATA),
    ("sensorReport", _SENSOR_REPORT),
)
_EVENT_ORDER: Final[_Order] = (
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("parentID", None),
    ("epcList", _EPC),
    ("inputEPCList", _EPC),
    ("childEPCs", _EPC),
    ("quantityList", _QUANTITY),
    ("childQuantityList", _QUANTITY),
    ("inputQuantityList", _QUANTITY),
    ("outputEPCList", _EPC),
    ("outputQuantityList", _QUANTITY),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", (("set", None), ("unset", None))),
    ("readPoint", (("id", None),)),
    ("bizLocation", (("id", None),)),
    ("sensorElementList", (("sensorElement", _SENSOR_ELEMENT),)),
)
_NOT_HASHED: Final = frozenset({"eventID", "recordTime", "errorDeclaration", "type"})
_SKIPPED_KEYS: Final = frozenset({"#text", "comment", "rdfs:comment"})
_PAIR_LISTS: Final = frozenset({"bizTransactionList", "sourceList", "destinationList"})
_PAIR_IDS: Final = frozenset({"bizTransaction", "source", "destination"})


# --- The event as a tree (the reference's JSON -> XML data model alignment) ---------------------


@dataclass(frozen=True, slots=True)
class _Node:
    """One element: name (namespace-expanded), text value, children in input order."""

    name: str
    value: str
    children: tuple[_Node | _Pair, ...] = ()


@dataclass(frozen=True, slots=True)
class _Pair:
    """One bizTransaction / source / destination: ``type`` first, then the identifier."""

    members: tuple[_Node, ...]


_Child = _Node | _Pair


class _Converter:
    """Mapping/list/scalar JSON -> ``_Node`` trees, with key and value expansion."""

    __slots__ = ("_context", "_vocabulary")

    def __init__(self, context: Mapping[str, str], vocabulary: frozenset[str]) -> None:
        self._context = context
        self._vocabulary = vocabulary

    def key(self, key: str) -> str:
        prefix, colon, local = key.partition(":")
        namespace = self._context.get(prefix) if colon else None
        return key if namespace is None else "{" + namespace + "}" + local

    def scalar(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str):
            return str(value)
        text = _replace_bare_word(value, self._vocabulary)
        prefix, colon, local = text.partition(":")
        namespace = self._context.get(prefix) if colon else None
        return text if namespace is None else namespace + local

    def children(self, mapping: Mapping[str, Any]) -> tuple[_Child, ...]:
        nodes: list[_Node] = []
        for key, value in mapping.items():
            if key in _SKIPPED_KEYS or value is None:
                continue
            name = self.key(str(key))
            if isinstance(value, list | tuple):
                nodes.extend(self.node(name, item) for item in value if item is not None)
            else:
                nodes.append(self.node(name, value))
        return _align(nodes)

    def node(self, name: str, value: Any) -> _Node:
        if isinstance(value, str | int | float):  # the common case first: no ABC check
            return _Node(name, self.scalar(value))
        if isinstance(value, Mapping):
            text = self.scalar(value["#text"]) if value.get("#text") is not None else ""
            return _Node(name, text, self.children(value))
        if isinstance(value, list | tuple):  # a list inside a list: unnamed children
            return _Node(name, "", tuple(self.node("", v) for v in value if v is not None))
        return _Node(name, self.scalar(value))


def _align(nodes: list[_Node]) -> tuple[_Child, ...]:
    """Reproduce the reference's JSON -> XML model corrections on one level.

    ``xList: [a, b]`` becomes ``xList`` with children ``x=a``, ``x=b`` (``inputEPC`` /
    ``outputEPC`` renamed ``epc``, quantity elements ``quantityElement``); ``childEPCs`` items
    become ``epc`` children; source / destination / bizTransaction elements become pairs.
    """
    out: list[_Child] = []
    lists: dict[str, list[_Node]] = {}
    child_epcs: list[_Child] = []
    for node in nodes:
        if node.name.endswith("List"):
            lists.setdefault(node.name, []).append(node)
        elif node.name == "childEPCs":
            child_epcs.append(_Node("epc", node.value))
        else:
            out.append(_renamed(node))
    for name, items in lists.items():
        if name in _PAIR_LISTS:
            out.append(_Node(name, "", tuple(_pair(item) for item in items)))
        else:
            out.append(
                _Node(
                    name, "", tuple(_renamed(_Node(name[:-4], i.value, i.children)) for i in items)
                )
            )
    if child_epcs:
        out.append(_Node("childEPCs", "", tuple(child_epcs)))
    return tuple(out)


def _renamed(node: _Node) -> _Node:
    name = node.name
    if name in ("inputEPC", "outputEPC"):
        name = "epc"
    elif name in ("inputQuantity", "outputQuantity", "childQuantity") or (
        name == "quantity" and node.children
    ):
        name = "quantityElement"
    return node if name == node.name else _Node(name, node.value, node.children)


def _pair(element: _Node) -> _Pair:
    members = [c for c in element.children if isinstance(c, _Node)]
    members.sort(key=lambda c: c.name != "type")  # stable: type first, the rest as given
    return _Pair(tuple(members))


# --- Bare CBV words ------------------------------------------------------------------------------


def _walk_strings(value: Any) -> Iterator[str]:
    # Iterative (a generator per level was 9 % of the hash on an every-read event, issue 12).
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, int | float):
            continue
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None else [value]


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in _as_list(value) if isinstance(v, Mapping)]


def _vocabulary(event: Mapping[str, Any], context: Mapping[str, str]) -> frozenset[str]:
    """The expanded CBV / GS1 vocabulary IRIs of this event (what JSON-LD expansion yields).

    Values of vocabulary-typed fields are expanded from bare words or CURIEs; every literal
    string already under a vocabulary root counts too.
    """
    found: set[str] = set()

    def expand(value: Any, terms: frozenset[str], base: str) -> None:
        if not isinstance(value, str):
            return
        if value in terms:
            found.add(base + value)
            return
        prefix, colon, local = value.partition(":")
        namespace = (_STANDARD_PREFIXES.get(prefix) or context.get(prefix)) if colon else None
        if namespace is not None and not local.startswith("//"):
            found.add(namespace + local)

    expand(event.get("bizStep"), _BIZ_STEPS, _CBV + "BizStep-")
    expand(event.get("disposition"), _DISPOSITIONS, _CBV + "Disp-")
    for persistent in _mappings(event.get("persistentDisposition")):
        for key in ("set", "unset"):
            for value in _as_list(persistent.get(key)):
                expand(value, _DISPOSITIONS, _CBV + "Disp-")
    for element in _mappings(event.get("bizTransactionList")):
        expand(element.get("type"), _BIZ_TRANSACTION_TYPES, _CBV + "BTT-")
    for key in ("sourceList", "destinationList"):
        for element in _mappings(event.get(key)):
            expand(element.get("type"), _SOURCE_DESTINATION_TYPES, _CBV + "SDT-")
    for sensor_element in _mappings(event.get("sensorElementList")):
        for report in _mappings(sensor_element.get("sensorReport")):
            expand(report.get("type"), _MEASUREMENT_TYPES, _GS1_VOC)
            expand(report.get("exception"), _SENSOR_EXCEPTIONS, _GS1_VOC)
            expand(report.get("component"), _COMPONENTS, _CBV + "Comp-")
    for declaration in _mappings(event.get("errorDeclaration")):
        expand(declaration.get("reason"), _ERROR_REASONS, _CBV + "ER-")
    found.update(_walk_strings(event))
    return frozenset(v for v in found if v.startswith(_EXPANDED_ROOTS))


def _replace_bare_word(value: str, vocabulary: frozenset[str]) -> str:
    """A string equal to the tail (after '-' or '/') of exactly one expanded term -> that term."""
    if not value or not vocabulary:
        return value
    term = _tails(vocabulary).get(value)
    return term if term is not None else value


@lru_cache(maxsize=256)
def _tails(vocabulary: frozenset[str]) -> dict[str, str]:
    """Every tail (the text after any '-' or '/') of the terms -> the term, for the tails that
    exactly one term has: what :func:`_replace_bare_word` looks up (an event's vocabulary is a
    handful of terms, the same for every event of a mapping, so this is built once)."""
    found: dict[str, set[str]] = {}
    for term in vocabulary:
        for i, c in enumerate(term):
            if c in "-/" and i + 1 < len(term):
                found.setdefault(term[i + 1:], set()).add(term)
    return {tail: next(iter(terms)) for tail, terms in found.items() if len(terms) == 1}


# --- Value canonicalisation ----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _canonical_value(text: str) -> str:
    """CBV URN vocabularies -> Web URIs, numbers without trailing zeros, GS1 IDs -> canonical DL."""
    for urn, web in _CBV_URNS:
        if urn in text:
            text = text.replace(urn, web)
    text = _canonical_number(text)
    return canonical_digital_link(text) or text


# What float() accepts starts with one of these or with a non-ASCII character (other scripts'
# digits, Unicode spaces): ASCII digits, a sign, a point, "inf" / "nan" in any case, a space.
_NUMBER_STARTS: Final = frozenset("0123456789+-.iInN \t\n\r\f\v")


def _canonical_number(text: str) -> str:
    """Anything ``float()`` accepts, written as the reference does (``1.0`` -> ``1``).

    Like the reference this goes through a binary double, so long digit strings lose precision
    (``"12345678901234567890"`` -> ``"12345678901234567168"``); NaN and infinities are left as
    written (the reference leaves NaN and fails on infinities).
    """
    if not text or (text[0] not in _NUMBER_STARTS and text[0].isascii()):
        return text  # float() would fail: the exception is the slow part (issue 12)
    try:
        number = float(text)
    except ValueError:
        return text
    if number.is_integer():
        return str(int(number))
    if number != number or number in (float("inf"), float("-inf")):
        return text
    return str(number)


_TIMESTAMP: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"\s*(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2})?)?"
)


_CANONICAL_UTC: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def _utc_millis(text: str) -> str | None:
    """ISO 8601 date-time -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (README rules 8 and 9), or None.

    Three fractional digits; the third is rounded up when the fourth is 5-9. No offset = UTC.
    """
    if _CANONICAL_UTC.fullmatch(text):
        # Already the output form (every time the agent writes): parsing it back would give
        # the same text, or fail for an impossible date, where the caller keeps the text too.
        return text
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = m.groups()
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
    tz = timezone(-offset if sign == "-" else offset) if sign else UTC
    digits = fraction or ""
    millis = int(digits[:3].ljust(3, "0")) + (len(digits) > 3 and digits[3] >= "5")
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz
        )
        moment = (moment + timedelta(milliseconds=millis)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


# --- Rendering -----------------------------------------------------------------------------------


def _is_time(name: str) -> bool:
    lowered = name.lower()
    return "time" in lowered and "offset" not in lowered


def _render_ordered(children: tuple[_Child, ...], order: _Order) -> tuple[str, tuple[_Child, ...]]:
    """Render ``children`` in ``order``; return the text and the children not (fully) consumed.

    README rule "user extensions in standard fields with an extension point": extension
    elements (``{namespace/}local``) are appended after the parent's ordered fields - except at
    event level (recognised, like the reference does, by an ``eventTime`` / ``action`` child).
    """
    rest = list(children)
    extensions: list[_Child] = []
    if len(rest) > 1 and not any(
        isinstance(c, _Node) and ("eventTime" in c.name or "action" in c.name) for c in rest
    ):
        extensions = [c for c in rest if isinstance(c, _Node) and "{" in c.name and "/}" in c.name]
        rest = [c for c in rest if not any(c is e for e in extensions)]
    # One pass to find each ordered name's children (the names of an order are distinct), then
    # render them name by name; a child's unconsumed remainder keeps the child's place.
    slots: list[_Child | None] = list(rest)
    where: dict[str, list[int]] = {}
    wanted = {name for name, _ in order}
    for i, child in enumerate(slots):
        if isinstance(child, _Node) and child.name in wanted:
            where.setdefault(child.name, []).append(i)
    text = ""
    for name, sub_order in order:
        indexes = where.get(name)
        if not indexes:
            continue
        parts: list[str] = []
        for i in indexes:
            node = slots[i]
            assert isinstance(node, _Node)
            part, leftover = _render_ordered_node(node, sub_order)
            if part:
                parts.append(part)
            slots[i] = leftover
        parts.sort()
        text += "".join(parts)
    if extensions:
        text += _render_generic(tuple(extensions))
    return text, tuple(c for c in slots if c is not None)


def _render_ordered_node(node: _Node, sub_order: _Order | None) -> tuple[str, _Node | None]:
    if sub_order is None:
        inner, rest = "", node.children
    else:
        inner, rest = _render_ordered(node.children, sub_order)
    value = node.value.strip()
    if value:
        value = (_utc_millis(value) or value) if _is_time(node.name) else _canonical_value(value)
    text = node.name + ("=" + value if value else "") + inner if (value or inner) else ""
    return text, (_Node(node.name, node.value, rest) if rest else None)


def _render_generic(children: tuple[_Child, ...]) -> str:
    """``name=value`` + rendered children, siblings sorted (the parts of a pair are not)."""
    parts: list[str] = []
    for child in children:
        if isinstance(child, _Pair):
            parts.append(_render_generic(child.members))
            continue
        value = child.value.strip()
        rendered_value = "=" + _canonical_value(value) if value else ""
        parts.append(child.name + rendered_value + _render_generic(child.children))
    if len(parts) > 1 and not any(isinstance(c, _Node) and c.name in _PAIR_IDS for c in children):
        parts.sort()
    return "".join(parts)


# --- Public API ----------------------------------------------------------------------------------


def prehash_string(event: Mapping[str, Any], context: Mapping[str, str] | None = None) -> str:
    """The CBV 2.0 pre-hash string of one EPCIS 2.0 JSON(-LD) event.

    ``context``: prefix -> namespace IRI for the CURIEs used in the event, i.e. the object
    entries of the document's ``@context`` (see :func:`jsonld_prefixes`), e.g.
    ``{"tea": "https://ns.trace-edge-agent.org/epcis/1#"}``.
    """
    prefixes = dict(context or {})
    converter = _Converter(prefixes, _vocabulary(event, prefixes))
    event_type = event.get("type")
    children = converter.children(event)
    ordered, rest = _render_ordered(children, _EVENT_ORDER)
    tail = _render_generic(
        tuple(c for c in rest if not (isinstance(c, _Node) and c.name in _NOT_HASHED))
    )
    type_text = event_type if isinstance(event_type, str) else ""
    return "eventType=" + type_text + ordered + tail


def event_hash(event: Mapping[str, Any], context: Mapping[str, str] | None = None) -> str:
    """The CBV 2.0 event hash ID: ``ni:///sha-256;<64 hex>?ver=CBV2.0`` (RFC 6920)."""
    digest = hashlib.sha256(prehash_string(event, context).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver={HASH_VERSION}"


def jsonld_prefixes(at_context: Any) -> dict[str, str]:
    """Prefix -> IRI mapping from the object entries of a JSON-LD ``@context`` (list or object).

    URL entries (the standard EPCIS context) contribute nothing, as in the reference.
    """
    prefixes: dict[str, str] = {}
    for entry in _as_list(at_context):
        if isinstance(entry, Mapping):
            prefixes.update({k: v for k, v in entry.items() if isinstance(v, str)})
    return prefixes


# --- Templates: the pre-hash of events that differ only in a few leaves ------------------------
#
# The agent builds thousands of events a second that differ only in their times, read id, EPC
# or barcode text, while the generic canonicalisation above walks the whole event for each
# (about 75 % of building a barcode event, issue 12). So the pre-hash of one event *shape* is
# rendered once with a placeholder in each variable leaf ("slot"), and later events of the
# same shape fill in their slots' canonical text. That is the same string because:
# * a placeholder is a fixed point of every value rule (no colon, no URN, not a number, not a
#   time, not a Digital Link, not a CBV word), so it is kept where the value would be;
# * siblings are ordered by their rendered ``name=value`` strings and names never contain
#   ``=``, so distinct names decide the order before any value is compared; slots are only
#   taken where no sibling has the same name (lists of one element);
# * a value that could change the rest of the rendering is not slotted: the event goes the
#   generic way (empty or padded text, a vocabulary IRI, a CURIE, a bare CBV word, a time not
#   in canonical form, the placeholder character itself anywhere in the event).
# A template is checked against the generic rendering when it is made and again every
# ``_RECHECK_EVERY`` uses; a mismatch (a bug) is logged and the shape goes the generic way.

_SLOT_KEYS: Final = frozenset({
    "eventTime", "tea:readTime", "tea:readId", "tea:barcode", "tea:epcHex", "tea:rssiDbm",
    "tea:firstSeen", "tea:lastSeen", "tea:lotNumber", "tea:itemExpirationDate",
    "tea:readerClockOffsetS", "tea:rfPhaseRad", "tea:dopplerHz", "epcClass",
})
_SLOT_LISTS: Final = frozenset({"epcList"})  # a one-element list of these: its item is a slot
_ORDERED_TIMES: Final = frozenset({"eventTime"})  # slots rendered by the time rule, not values
_MARK: Final = "\ue000"
_SENTINEL: Final = re.compile("\ue000([0-9]+)\ue001")
_RECHECK_EVERY: Final = 1024
# A read id: the buffer's generation (a UUID; digits in tests) and the read's id; ASCII only
_READ_ID: Final = re.compile(
    r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9]{1,20}):[0-9]{1,20}")


class _Poison:
    """A leaf that rules the event out of templates (it contains the placeholder character)."""


_POISON: Final = _Poison()


@dataclass(frozen=True, slots=True)
class _Template:
    parts: tuple[str, ...]  # literal pre-hash text around the slots: len(order) + 1 pieces
    order: tuple[int, ...]  # which slot goes after parts[i]
    tails: frozenset[str]  # bare CBV words of the shape's vocabulary: such a value is no slot
    json_parts: tuple[str, ...] | None  # the event's JSON text around its slots, or None
    json_order: tuple[int, ...]  # as ``order``; the index len(slots) is the eventID
    # parts and order as one str.format() pattern ("{2}" where slot 2 goes): filled in C
    fmt: str = field(init=False)
    json_fmt: str = field(init=False)  # "" when json_parts is None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmt", _pattern(self.parts, self.order))
        object.__setattr__(self, "json_fmt", "" if self.json_parts is None
                           else _pattern(self.json_parts, self.json_order))


def _pattern(parts: tuple[str, ...], order: tuple[int, ...]) -> str:
    def literal(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")
    return literal(parts[0]) + "".join(
        f"{{{slot}}}{literal(part)}" for slot, part in zip(order, parts[1:], strict=True))


def _ni(prehash: str) -> str:
    digest = hashlib.sha256(prehash.encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver={HASH_VERSION}"


def _with_id(event: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """The event with its eventID right after ``type`` (EPCIS field order), as epcis.finish
    writes it (an eventID already there stays)."""
    return {"type": event.get("type"), "eventID": event_id,
            **{k: v for k, v in event.items() if k != "type"}}


def _json(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


_JSON_SENTINEL: Final = re.compile(r'"\\ue000([0-9]+)\\ue001"')  # as json.dumps writes it


def _json_value(value: Any) -> str:
    return _encode_str(value) if type(value) is str else json.dumps(value)


class EventTemplates:
    """The eventID (and the JSON text) of the agent's events, with the pre-hash string and the
    JSON of each event shape rendered once (see above)."""

    def __init__(self, context: Mapping[str, str], *, max_shapes: int = 256) -> None:
        self._context = dict(context)
        self._max = max_shapes
        # shape -> its template; None: this shape goes the generic way
        self._templates: dict[tuple[Any, ...], _Template | None] = {}
        self._seen: set[tuple[Any, ...]] = set()  # shapes seen once: a template the second time
        # A caller's shape key -> the template of its events and their slot names in walking
        # order (finish_json_keyed); None: that key goes the way of finish_json
        self._keyed: dict[Hashable, tuple[_Template, tuple[str, ...]] | None] = {}
        self._uses = 0
        self.generic = 0  # events hashed the generic way (for the benchmark and the tests)
        self.templated = 0

    def event_hash(self, event: Mapping[str, Any]) -> str:
        return _ni(self.prehash_string(event))

    def prehash_string(self, event: Mapping[str, Any]) -> str:
        return self._render(event, with_json=False)[0]

    def finish_json(self, event: Mapping[str, Any]) -> str:
        """``json.dumps`` (compact) of the event with its eventID placed after ``type``: the
        exact text the generic way gives, for one shape's events built by filling slots."""
        return self._render(event, with_json=True)[1]

    def finish_json_keyed(self, key: Hashable, slots: Mapping[str, Any],
                          build: Callable[[], Mapping[str, Any]]) -> str:
        """:meth:`finish_json` of ``build()``, for a caller that knows its event's shape
        without building it: ``key`` stands for everything in the event but ``slots``, its
        slot leaves by name (issue 12: a busy scanner's event is neither built nor walked).

        The caller's word is checked: the key is learnt from a built event whose shape already
        has a template and whose slots are exactly ``slots``, and every ``_RECHECK_EVERY``
        uses the event is built and rendered the generic way again; a difference (a bug) is
        logged and the key goes the way of finish_json from then on."""
        known = self._keyed.get(key)
        if known is None:
            event = build()
            text = self.finish_json(event)
            if key not in self._keyed:
                self._learn(key, event, slots)
            return text
        template, names = known
        tails = template.tails
        slot_text = self._slot_text
        fixed_point = self._fixed_point
        texts: list[str] = []
        jsons: list[str] = []
        fixed: str | None = None  # the last fixed point met (a scan's event and read time)
        for name in names:
            value = slots[name]
            if fixed is not None and value is fixed:
                texts.append(fixed)
                jsons.append(f'"{fixed}"')
                continue
            if type(value) is str and fixed_point(value):
                fixed = value
                texts.append(value)
                jsons.append(f'"{value}"')
                continue
            slotted = slot_text(name, value)
            if slotted is None or value in tails:
                return self.finish_json(build())  # this event's values need the generic rules
            texts.append(slotted)
            jsons.append(_encode_str(value) if type(value) is str else json.dumps(value))
        jsons.append(f'"{_ni(template.fmt.format(*texts))}"')
        text = template.json_fmt.format(*jsons)
        self._uses += 1
        self.templated += 1
        if self._uses % _RECHECK_EVERY == 0:
            checked = self._generic(build(), True)[1]
            if checked != text:
                log.error("event templates: the event of a shape key disagrees with the generic "
                          "rules (a bug); events of this key go the generic way from now on: "
                          "%.200r", key)
                self._keyed[key] = None
                return checked
        return text

    def _learn(self, key: Hashable, event: Mapping[str, Any], slots: Mapping[str, Any]) -> None:
        tokens: list[Any] = []
        values: list[tuple[str, Any]] = []
        _shape(event, tokens, values, "")
        template = self._templates.get(tuple(tokens), _MISSING)
        if template is _MISSING:
            return  # not yet: the shape's template comes with its second event
        if len(self._keyed) >= self._max:
            self._keyed.clear()
        names = tuple(k for k, _ in values)
        if not isinstance(template, _Template) or template.json_parts is None or (
                len(set(names)) != len(names) or dict(values) != dict(slots)):
            self._keyed[key] = None  # the shape goes the generic way, or the slots are not these
            return
        self._keyed[key] = (template, names)

    def _render(self, event: Mapping[str, Any], *, with_json: bool) -> tuple[str, str]:
        values: list[tuple[str, Any]] = []
        tokens: list[Any] = []
        _shape(event, tokens, values, "")
        texts = [self._slot_text(k, v) for k, v in values]
        if not values or None in texts:
            return self._generic(event, with_json)
        key = tuple(tokens)
        template = self._templates.get(key, _MISSING)
        if isinstance(template, _Template):
            if any(isinstance(v, str) and v in template.tails for _, v in values):
                return self._generic(event, with_json)  # a bare CBV word: the generic rules
            prehash = template.fmt.format(*texts)
            text = ""
            if with_json:
                if template.json_parts is None:
                    return prehash, _json(_with_id(event, _ni(prehash)))
                text = template.json_fmt.format(*[_json_value(v) for _, v in values],
                                                f'"{_ni(prehash)}"')
            self._uses += 1
            self.templated += 1
            if self._uses % _RECHECK_EVERY == 0:
                checked = self._generic(event, with_json)
                if checked != (prehash, text):
                    self._broken(key)
                    return checked
            return prehash, text
        if template is None:
            return self._generic(event, with_json)
        if key not in self._seen:  # one-off shapes (EPC lists, lots) never cost a template
            if len(self._seen) >= 4 * self._max:
                self._seen.clear()
            self._seen.add(key)
            return self._generic(event, with_json)
        made = self._make(event, len(values))
        if len(self._templates) >= self._max:
            self._templates.clear()
        self._templates[key] = made
        checked = self._generic(event, True)
        if made is not None:
            prehash = made.fmt.format(*texts)
            text = checked[1] if made.json_parts is None else made.json_fmt.format(
                *[_json_value(v) for _, v in values], f'"{_ni(prehash)}"')
            if any(isinstance(v, str) and v in made.tails for _, v in values) or (
                    prehash, text) != checked:
                self._broken(key)
        return checked if with_json else (checked[0], "")

    def _generic(self, event: Mapping[str, Any], with_json: bool) -> tuple[str, str]:
        self.generic += 1
        prehash = prehash_string(event, self._context)
        return prehash, (_json(_with_id(event, _ni(prehash))) if with_json else "")

    def _fixed_point(self, text: str) -> bool:
        """A fixed point of every rule, clear of all the tests in :meth:`_slot_text`, whatever
        the leaf's name; ASCII that JSON writes as it is; never a CBV word: the agent's own
        times, and read ids "generation:id" (no number, no URN, no time, not a CURIE)."""
        return bool(_CANONICAL_UTC.fullmatch(text) or (
            _READ_ID.fullmatch(text) and text.partition(":")[0] not in self._context))

    def _slot_text(self, key: str, value: Any) -> str | None:
        """What the generic rules write for this leaf, or None: it must not be a slot."""
        if value is _POISON:
            return None
        text = value if isinstance(value, str) else str(value)
        if self._fixed_point(text):
            return text
        if not text or text != text.strip() or "\ue000" in text or "\ue001" in text:
            return None
        if text.startswith(_EXPANDED_ROOTS):
            return None  # it would join the event's vocabulary
        if key in _ORDERED_TIMES or _TIMESTAMP.fullmatch(text):
            return None  # a time in another form: the time rule and the value rule differ
        if ":" not in text:
            if text[0] not in _NUMBER_STARTS and text[0].isascii():
                return text  # _canonical_value's rules all need a colon or a number
        elif isinstance(value, str) and text.partition(":")[0] in self._context:
            return None  # a CURIE: expanded by the generic rules
        return _canonical_value(text)

    def _make(self, event: Mapping[str, Any], slots: int) -> _Template | None:
        numbered = _numbered(event, iter(range(slots)), "")
        pieces = _SENTINEL.split(prehash_string(numbered, self._context))
        order = tuple(int(p) for p in pieces[1::2])
        if sorted(order) != list(range(slots)):  # a slot vanished or doubled: not templatable
            return None
        vocabulary = _vocabulary(numbered, self._context)
        text = _json(_with_id(numbered, f"\ue000{slots}\ue001"))
        jpieces = _JSON_SENTINEL.split(text)
        jorder = tuple(int(p) for p in jpieces[1::2])
        json_parts: tuple[str, ...] | None = tuple(jpieces[0::2])
        if sorted(jorder) != list(range(slots + 1)):
            json_parts = None  # the hash is templated, the JSON text written the generic way
        return _Template(tuple(pieces[0::2]), order, frozenset(_tails(vocabulary)), json_parts,
                         jorder)

    def _broken(self, key: tuple[Any, ...]) -> None:
        log.error("event templates: a template disagrees with the generic pre-hash string or "
                  "JSON (a bug); events of this shape go the generic way from now on: %.200r",
                  key)
        self._templates[key] = None
        self._keyed.clear()  # a key may name that template: learn the keys again


_MISSING: Final = object()


def _is_slot(key: str, value: Any) -> bool:
    kind = type(value)
    return (kind is str or kind is int or kind is float) and key in _SLOT_KEYS  # not bool


def _shape(value: Any, tokens: list[Any], values: list[tuple[str, Any]], key: str) -> None:
    """The event's shape as tokens (constants, structure, a mark per slot), slots appended to
    ``values`` in walking order (the order :func:`_numbered` numbers them)."""
    if isinstance(value, Mapping):
        tokens.append("{")
        for k, v in value.items():
            tokens.append(k)
            kind = type(v)
            if kind is str or kind is int or kind is float:
                if k in _SLOT_KEYS:
                    values.append((k, v))
                    tokens.append(_MARK)
                    continue
                if kind is str and "\ue000" in v:
                    values.append((k, _POISON))
                tokens.append(v)
            elif kind is bool or v is None:
                tokens.append(v)
            else:
                _shape(v, tokens, values, k)
        tokens.append("}")
    elif isinstance(value, list | tuple):
        tokens.append("[")
        if len(value) == 1 and key in _SLOT_LISTS and type(value[0]) is str:
            values.append((key, value[0]))
            tokens.append(_MARK)
        elif len(value) == 1:
            _shape(value[0], tokens, values, key)
        else:  # siblings of one name are sorted by their values: no slots in here
            probe: list[tuple[str, Any]] = []
            for item in value:
                _shape(item, tokens, probe, key)
            for k, v in probe:  # slots inside are constants of the shape here
                tokens.append(v)
                if v is _POISON or (type(v) is str and "\ue000" in v):
                    values.append((k, _POISON))
        tokens.append("]")
    else:
        if type(value) is str and "\ue000" in value:
            values.append((key, _POISON))
        tokens.append(value)


def _numbered(value: Any, numbers: Iterator[int], key: str) -> Any:
    """A copy of the event with the n-th slot (in :func:`_shape`'s order) replaced by the
    n-th placeholder."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[k] = f"\ue000{next(numbers)}\ue001" if _is_slot(k, v) else _numbered(v, numbers, k)
        return out
    if isinstance(value, list | tuple):
        if len(value) == 1 and key in _SLOT_LISTS and type(value[0]) is str:
            return [f"\ue000{next(numbers)}\ue001"]
        if len(value) == 1:
            return [_numbered(value[0], numbers, key)]
        return list(value)
    return value
