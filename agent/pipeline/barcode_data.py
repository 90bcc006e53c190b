"""What a barcode scan means: GS1 keys and attributes through ``biip``, or plain data.

Source: docs reader-protocols.md §4.2-§4.4. The AIM symbology identifier decides (§4.3): a GS1
symbology (``]C1`` GS1-128, ``]d2`` GS1 DataMatrix, ``]Q3`` GS1 QR, ``]e0`` DataBar, ``]J1``
DotCode, ``]E0``/``]E3``/``]E4`` EAN/UPC, ``]I1`` ITF-14) is parsed as GS1; a non-GS1 one (``]C0``
plain Code 128, ``]Q1`` plain QR, ``]A0`` Code 39, ...) passes through as plain data, unless it is
an ``http(s)`` URI, which may be a GS1 Digital Link (those are usually printed as plain QR).
Without an identifier ``biip`` tries every GS1 parser (ambiguous by nature: configure scanners to
send AIM identifiers).

Never raises: ``biip`` reports bad GS1 data in its ``*_error`` fields (and raises ``ParseError``,
or worse, on some inputs); both end up in ``BarcodeData.error``. Keep the raw bytes in the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from agent.pipeline.digital_link import DIGITAL_LINK_HOST, value_segment
from agent.readers.codecs.barcode import Scan

if TYPE_CHECKING:
    # biip is imported on first use: it costs ~16 MB of RSS, wasted on RFID-only gateways.
    import biip
    from biip.gs1_element_strings import GS1ElementStrings

DL_ORIGIN = DIGITAL_LINK_HOST
# AIM identifiers whose data is GS1 (GS1 General Specifications fig. 5.1.2-2; biip symbology.py).
GS1_MESSAGE_SYMBOLOGIES = frozenset({"]C1", "]e0", "]e1", "]e2", "]d2", "]Q3", "]J1"})
GTIN_SYMBOLOGIES = frozenset({"]E0", "]E3", "]E4", "]I1"})
GS1_SYMBOLOGIES = GS1_MESSAGE_SYMBOLOGIES | GTIN_SYMBOLOGIES


@dataclass(frozen=True, slots=True, kw_only=True)
class BarcodeData:
    text: str  # the data as text (UTF-8, else Latin-1), GS (0x1D) kept, no AIM identifier
    symbology: str | None
    is_gs1: bool
    gtin: str | None = None  # GTIN-14
    sscc: str | None = None  # 18 digits
    lot: str | None = None  # AI (10)
    expiry: date | None = None  # AI (17)
    serial: str | None = None  # AI (21)
    digital_link: str | None = None  # constrained canonical GS1 Digital Link URI
    hri: str | None = None  # "(01)09506000134352(17)201231(10)ABC123(21)SN0001"
    error: str | None = None  # why data that should be GS1 is not


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _is_uri(text: str) -> bool:
    head = text[:8].lower()
    return head.startswith(("http://", "https://"))


def digital_link(
    *,
    gtin: str | None = None,
    serial: str | None = None,
    lot: str | None = None,
    sscc: str | None = None,
) -> str | None:
    """The constrained canonical GS1 Digital Link URI the events use.

    SSCC -> ``/00/{sscc}``; serialised item -> ``/01/{gtin}/21/{serial}``; a lot but no serial
    (class level) -> ``/01/{gtin}/10/{lot}``; GTIN alone -> ``/01/{gtin}``. Values are
    escaped as path segments the way the event hash reference does (TDS A-1, then DL).
    """
    if sscc:
        return f"{DL_ORIGIN}/00/{sscc}"
    if not gtin:
        return None
    base = f"{DL_ORIGIN}/01/{gtin}"
    if serial is not None:
        return f"{base}/21/{value_segment(serial)}"
    if lot is not None:
        return f"{base}/10/{value_segment(lot)}"
    return base


_MAY_START_GS1 = frozenset("0123456789(]\x1d")


def preload() -> None:
    """Import biip and parse one GS1 string now, at start, when a barcode reader is configured.

    The first import (and biip's lazily loaded company-prefix table) took 150-250 ms on the
    event loop at the first scan, long enough for a busy serial line to overrun its 4 KB tty
    buffer (issue 12). RFID-only gateways never call this and never pay biip's RSS.
    """
    interpret("]d201095011010209171719050810ABC", "]d2")


def plain_text(data: bytes | str, symbology: str | None = None) -> str | None:
    """The scan's text when it is plain data by its identifier and first character alone
    (:func:`interpret` gives ``BarcodeData(text=..., is_gs1=False)`` without asking biip),
    else None."""
    text = _text(data)
    return text if _is_plain(text, symbology, _is_uri(text)) else None


def _is_plain(text: str, symbology: str | None, uri: bool) -> bool:
    if not text.strip() or (symbology is not None and symbology not in GS1_SYMBOLOGIES
                            and not uri):
        return True
    # No identifier, not a URI, and not starting the way any GS1 form does (an AI digit, an
    # HRI "(", a "]" identifier, FNC1): biip would only say "not GS1". It costs 10 % of the
    # agent's CPU on a busy line (issue 12), so skip it.
    return symbology is None and not uri and text.lstrip()[:1] not in _MAY_START_GS1


def interpret(data: bytes | str, symbology: str | None = None) -> BarcodeData:
    """Interpret one scan's data (without its AIM identifier) given the identifier, if any."""
    text = _text(data)
    uri = _is_uri(text)
    if _is_plain(text, symbology, uri):
        return BarcodeData(text=text, symbology=symbology, is_gs1=False)
    expect_gs1 = symbology in GS1_SYMBOLOGIES
    # A URI in a non-GS1 symbology goes to biip without the identifier, so it tries Digital Link.
    value = text if uri and not expect_gs1 else (symbology or "") + text
    try:
        import biip

        result = biip.parse(value)
        return _from_result(text, symbology, result, expect_gs1=expect_gs1)
    except Exception as exc:  # a third-party parser on untrusted input: report, never raise
        return BarcodeData(
            text=text,
            symbology=symbology,
            is_gs1=False,
            error=f"{type(exc).__name__}: {exc}",
        )


def interpret_scan(scan: Scan) -> BarcodeData:
    return interpret(scan.data, scan.symbology)


def _from_result(
    text: str, symbology: str | None, result: biip.ParseResult, *, expect_gs1: bool
) -> BarcodeData:
    elements: GS1ElementStrings | None = None
    hri: str | None = None
    if result.gs1_message is not None:
        elements = result.gs1_message.element_strings
        hri = result.gs1_message.as_hri()
    elif result.gs1_digital_link_uri is not None:
        elements = result.gs1_digital_link_uri.element_strings
        hri = result.gs1_digital_link_uri.as_gs1_message().as_hri()
    gtin = result.gtin.as_gtin_14() if result.gtin is not None else None
    sscc = result.sscc.value if result.sscc is not None else None
    lot = serial = None
    expiry = None
    if elements:
        if (es := elements.get(ai="10")) is not None:
            lot = es.value
        if (es := elements.get(ai="21")) is not None:
            serial = es.value
        if (es := elements.get(ai="17")) is not None:
            expiry = es.date
    if hri is None:
        hri = f"(00){sscc}" if sscc else f"(01){gtin}" if gtin else None
    is_gs1 = bool(elements) or gtin is not None or sscc is not None
    error = None
    if not is_gs1 and expect_gs1:
        errors = (
            result.gs1_message_error,
            result.gtin_error,
            result.gs1_digital_link_uri_error,
            result.sscc_error,
        )
        error = next((e for e in errors if e), "not a GS1 element string")
    return BarcodeData(
        text=text,
        symbology=symbology,
        is_gs1=is_gs1,
        gtin=gtin,
        sscc=sscc,
        lot=lot,
        expiry=expiry,
        serial=serial,
        digital_link=digital_link(gtin=gtin, serial=serial, lot=lot, sscc=sscc) if is_gs1 else None,
        hri=hri,
        error=error,
    )
