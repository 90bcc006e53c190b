"""GS1 keys and the constrained canonical GS1 Digital Link form used by EPCIS 2.0.

Pure functions, no I/O, never raise on bad input from the field (they return ``None``).

* :func:`gs1_check_digit` - GS1 General Specifications §7.9.1 mod-10 check digit.
* :func:`urn_to_digital_link` - EPC pure-identity / class / id-pattern URN (TDS §6, §8) to the
  constrained canonical Digital Link (GS1 Digital Link URI Syntax 1.2 §4.11 as constrained by the
  CBV 2.0 event hash, see docs/gs1-epcis.md §1.9 and §3.5).
* :func:`canonical_digital_link` - any URI carrying a GS1 key (URN or Digital Link with a custom
  domain, short names, query string, several qualifiers) to that same constrained canonical form.

The percent-encoding follows the CBV 2.0 event-hash reference implementation (RalphTro/
epcis-event-hash-generator), which is *not* ``urllib.parse.quote``: the URN escapes of TDS Table
A-1 (``%22 %25 %26 %2F %3C %3E %3F``) are kept as written and ``! ( ) * + , :`` are escaped in
addition (GS1 Digital Link 1.2 Table 7-1); ``' ; = - . _`` stay literal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final
from urllib.parse import quote

__all__ = [
    "DIGITAL_LINK_HOST",
    "canonical_digital_link",
    "digital_link_escape",
    "gs1_check_digit",
    "is_valid_gs1_check_digit",
    "urn_to_digital_link",
    "value_segment",
]

DIGITAL_LINK_HOST: Final = "https://id.gs1.org"

# TDS 1.13 Table A-1: the 82 characters allowed in alphanumeric serials (GS1 AI encodable
# character set 82). URI form: the character itself, except the seven below that are %-escaped.
_TABLE_A1_CHARS: Final = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
_URN_ESCAPED: Final = frozenset('"%&/<>?')
_URN_LITERAL: Final = _TABLE_A1_CHARS - _URN_ESCAPED

# GS1 Digital Link 1.2 Table 7-1 characters that the reference percent-encodes on top of the
# URN escapes when it turns a URN component into a Digital Link path segment.
_DL_EXTRA_ESCAPES: Final = str.maketrans(
    {"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"}
)

_DIGITS: Final = frozenset("0123456789")

_Converter = Callable[[str], "str | None"]
_PatternRenderer = Callable[[list[str]], "str | None"]


def gs1_check_digit(digits: str) -> int:
    """GS1 mod-10 check digit (GS1 General Specifications §7.9.1) for a key without it.

    Weights 3, 1, 3, ... from the right-most digit; ``(10 - sum % 10) % 10``. Works for GTIN-8/12/
    13/14, GLN, SSCC, GSRN, GSIN, GDTI, GRAI bodies. Raises ``ValueError`` on non-digits (this is a
    helper for already validated keys; use :func:`is_valid_gs1_check_digit` on field data).
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"GS1 key body must be ASCII digits, got {digits!r}")
    odd = sum(map(int, digits[-1::-2]))  # right-most digit and every second one: weight 3
    even = sum(map(int, digits[-2::-2]))
    return (10 - (3 * odd + even) % 10) % 10


def is_valid_gs1_check_digit(key: str) -> bool:
    """True when ``key`` is all digits and its last digit is the GS1 check digit of the rest."""
    if not isinstance(key, str) or len(key) < 2 or not key.isascii() or not key.isdigit():
        return False
    return gs1_check_digit(key[:-1]) == int(key[-1])


def _gs3a3_length(component: str) -> int | None:
    """Character count of a TDS §5 GS3A3 component (an escape triplet counts as one), or None.

    Literal characters must be Table A-1 characters that need no escape; ``%XX`` must name one
    of the 82 Table A-1 characters (hex digits in either case).
    """
    raw = _unescape(component, _TABLE_A1_CHARS, literal=_URN_LITERAL)
    return None if raw is None else len(raw)


def _gs3a3(component: str, max_chars: int) -> bool:
    n = _gs3a3_length(component)
    return n is not None and 1 <= n <= max_chars


def _digits(s: str, min_len: int = 1, max_len: int = 99) -> bool:
    return min_len <= len(s) <= max_len and all(c in _DIGITS for c in s)


def _cp_and_ref(cp: str, ref: str, total: int) -> bool:
    """GS1 Company Prefix (6-12 digits) and a numeric reference, ``total`` digits together."""
    return _digits(cp, 6, 12) and _digits(ref, 0, 12) and len(cp) + len(ref) == total


# Escaped in a canonical Digital Link path segment: the URN escapes, the reference's extra
# ones (GS1 Digital Link 1.2 Table 7-1), and '#' (CPI, AI 8010). Everything else is literal.
_DL_ESCAPED: Final = frozenset('"%&/<>?!()*+,:#')
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _unescape(component: str, allowed: frozenset[str],
              literal: frozenset[str] | None = None) -> str | None:
    """Decode ``%XX`` escapes (either hex case); every character must be in ``allowed``, and
    one written as itself in ``literal`` too (when given)."""
    out: list[str] = []
    i = 0
    end = len(component)
    while i < end:
        c = component[i]
        if c == "%":
            pair = component[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                return None
            c = chr(int(pair, 16))
            i += 3
        else:
            if literal is not None and c not in literal:
                return None
            i += 1
        if c not in allowed:
            return None
        out.append(c)
    return "".join(out)


def _dl_segment(value: str) -> str:
    """A decoded value -> its one canonical Digital Link form (upper-case escapes)."""
    return "".join(f"%{ord(c):02X}" if c in _DL_ESCAPED else c for c in value)


def value_segment(value: str) -> str:
    """A raw GS1 value (a scanned serial, lot ...) -> its canonical Digital Link path segment.

    Characters outside Table A-1 (a space, non-ASCII) cannot be in a valid GS1 key, but a
    scanned label may carry them anyway: they are percent-encoded as UTF-8 so the URI stays
    valid (and such a URI is simply not canonical: canonical_digital_link refuses it).
    """
    return quote(_dl_segment(value), safe="%'-._;=")


def digital_link_escape(urn_component: str) -> str:
    """URN component (TDS Table A-1 URI form) -> Digital Link path segment, reference style.

    The URN escapes stay; ``! ( ) * + , :`` become ``%21 %28 %29 %2A %2B %2C %3A``. The result
    is canonical, so that converting it again gives the same string: escapes are written in
    upper case and an escape of a character that needs none (``%41``) becomes the character.
    (The reference keeps such non-canonical escapes as written; URNs the agent decodes from
    tags never contain them.)
    """
    raw = _unescape(urn_component, _TABLE_A1_CHARS | {"#"})
    if raw is None:
        return urn_component.translate(_DL_EXTRA_ESCAPES)
    return _dl_segment(raw)


_dl_escape = digital_link_escape


def _with_check(body: str) -> str:
    return body + str(gs1_check_digit(body))


def _gtin14(cp: str, indicator_and_item_ref: str) -> str:
    """TDS §7.1.2: indicator digit, company prefix, rest of the item reference, check digit."""
    return _with_check(indicator_and_item_ref[:1] + cp + indicator_and_item_ref[1:])


# --- URN -> Digital Link ------------------------------------------------------------------------


def _sgtin(body: str) -> str | None:  # TDS §6.3.1
    parts = body.split(".", 2)
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 13) or not _gs3a3(parts[2], 20):
        return None
    return f"/01/{_gtin14(parts[0], parts[1])}/21/{_dl_escape(parts[2])}"


def _sscc(body: str) -> str | None:  # TDS §6.3.2
    parts = body.split(".")
    if len(parts) != 2 or not _cp_and_ref(parts[0], parts[1], 17):
        return None
    cp, ref = parts
    return f"/00/{_with_check(ref[:1] + cp + ref[1:])}"


def _sgln(body: str) -> str | None:  # TDS §6.3.3; extension "0" means "no extension"
    parts = body.split(".", 2)
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 12) or not _gs3a3(parts[2], 20):
        return None
    gln = _with_check(parts[0] + parts[1])
    if parts[2] == "0":
        return f"/414/{gln}"
    return f"/414/{gln}/254/{_dl_escape(parts[2])}"


def _grai(body: str) -> str | None:  # TDS §6.3.4; AI 8003 = "0" + GRAI-13 + serial
    parts = body.split(".", 2)
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 12) or not _gs3a3(parts[2], 16):
        return None
    return f"/8003/0{_with_check(parts[0] + parts[1])}{_dl_escape(parts[2])}"


def _giai(body: str) -> str | None:  # TDS §6.3.5; AI 8004 = company prefix + asset reference
    parts = body.split(".", 1)
    if len(parts) != 2 or not _digits(parts[0], 6, 12):
        return None
    n = _gs3a3_length(parts[1])
    if n is None or n < 1 or len(parts[0]) + n > 30:
        return None
    return f"/8004/{parts[0]}{_dl_escape(parts[1])}"


def _gsrn(ai: str) -> _Converter:  # TDS §6.3.6 (GSRN, AI 8018) and §6.3.7 (GSRNP, AI 8017)
    def convert(body: str) -> str | None:
        parts = body.split(".")
        if len(parts) != 2 or not _cp_and_ref(parts[0], parts[1], 17):
            return None
        return f"/{ai}/{_with_check(parts[0] + parts[1])}"

    return convert


def _gdti(body: str) -> str | None:  # TDS §6.3.8; AI 253 = GDTI-13 + serial (<= 17 chars)
    parts = body.split(".", 2)
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 12) or not _gs3a3(parts[2], 17):
        return None
    return f"/253/{_with_check(parts[0] + parts[1])}{_dl_escape(parts[2])}"


_CPI_LITERAL: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-")


def _cpi_ref_length(ref: str) -> int | None:
    """TDS §6.3.9 CPI component reference: digits, upper-case letters, '-'; escapes for those,
    '#' (%23) and '/' (%2F). Returns the character count or None."""
    n = 0
    i = 0
    while i < len(ref):
        if ref[i] == "%":
            pair = ref[i + 1 : i + 3].upper()
            if len(pair) != 2 or not all(h in "0123456789ABCDEF" for h in pair):
                return None
            if chr(int(pair, 16)) not in _CPI_LITERAL | {"#", "/"}:
                return None
            i += 3
        elif ref[i] in _CPI_LITERAL:
            i += 1
        else:
            return None
        n += 1
    return n


def _cpi(body: str) -> str | None:  # TDS §6.3.9; AI 8010 + AI 8011
    head, _, serial = body.rpartition(".")
    cp, _, ref = head.partition(".")
    n = _cpi_ref_length(ref)
    if not _digits(cp, 6, 12) or n is None or n < 1 or len(cp) + n > 30:
        return None
    if not _digits(serial, 1, 12):
        return None
    return f"/8010/{cp}{_dl_escape(ref)}/8011/{serial}"


def _sgcn(body: str) -> str | None:  # TDS §6.3.10; AI 255 = GCN-13 + serial (<= 12 digits)
    parts = body.split(".")
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 12) or not _digits(parts[2], 1, 12):
        return None
    return f"/255/{_with_check(parts[0] + parts[1])}{parts[2]}"


def _ginc(body: str) -> str | None:  # TDS §6.3.11; AI 401
    parts = body.split(".", 1)
    if len(parts) != 2 or not _digits(parts[0], 6, 12):
        return None
    n = _gs3a3_length(parts[1])
    if n is None or n < 1 or len(parts[0]) + n > 30:
        return None
    return f"/401/{parts[0]}{_dl_escape(parts[1])}"


def _gsin(body: str) -> str | None:  # TDS §6.3.12; AI 402
    parts = body.split(".")
    if len(parts) != 2 or not _cp_and_ref(parts[0], parts[1], 16):
        return None
    return f"/402/{_with_check(parts[0] + parts[1])}"


def _itip(body: str) -> str | None:  # TDS §6.3.13; AI 8006 (GTIN + piece + total) + AI 21
    parts = body.split(".", 4)
    if len(parts) != 5 or not _cp_and_ref(parts[0], parts[1], 13):
        return None
    if not _digits(parts[2], 2, 2) or not _digits(parts[3], 2, 2) or not _gs3a3(parts[4], 20):
        return None
    itip = _gtin14(parts[0], parts[1]) + parts[2] + parts[3]
    return f"/8006/{itip}/21/{_dl_escape(parts[4])}"


def _upui(body: str) -> str | None:  # TDS §6.3.14; AI 01 + AI 235 (TPX, <= 28 chars)
    parts = body.split(".", 2)
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 13) or not _gs3a3(parts[2], 28):
        return None
    return f"/01/{_gtin14(parts[0], parts[1])}/235/{_dl_escape(parts[2])}"


def _pgln(body: str) -> str | None:  # TDS §6.3.15; AI 417
    parts = body.split(".")
    if len(parts) != 2 or not _cp_and_ref(parts[0], parts[1], 12):
        return None
    return f"/417/{_with_check(parts[0] + parts[1])}"


def _lgtin(body: str) -> str | None:  # TDS §8.2 EPC Class URI: GTIN + batch/lot (AI 10)
    parts = body.split(".", 2)
    if len(parts) != 3 or not _cp_and_ref(parts[0], parts[1], 13) or not _gs3a3(parts[2], 20):
        return None
    return f"/01/{_gtin14(parts[0], parts[1])}/10/{_dl_escape(parts[2])}"


def _pattern(keys: int, total: int, render: _PatternRenderer) -> _Converter:
    """TDS §8.1 EPC ID Pattern URI ``CP.ref[.more].*`` -> the class-level key."""

    def convert(body: str) -> str | None:
        parts = body.split(".")
        if len(parts) != keys + 1 or parts[-1] != "*":
            return None
        valid = _cp_and_ref(parts[0], parts[1], total) if total else _digits(parts[0], 6, 12)
        return render(parts[:-1]) if valid else None

    return convert


def _pat_cpi(parts: list[str]) -> str | None:
    n = _cpi_ref_length(parts[1])
    if n is None or n < 1 or len(parts[0]) + n > 30:
        return None
    return f"/8010/{parts[0]}{_dl_escape(parts[1])}"


def _pat_itip(parts: list[str]) -> str | None:
    if not _digits(parts[2], 2, 2) or not _digits(parts[3], 2, 2):
        return None
    return f"/8006/{_gtin14(parts[0], parts[1])}{parts[2]}{parts[3]}"


def _pat_gtin(parts: list[str]) -> str | None:
    return f"/01/{_gtin14(parts[0], parts[1])}"


def _pat_grai(parts: list[str]) -> str | None:
    return f"/8003/0{_with_check(parts[0] + parts[1])}"


def _pat_gdti(parts: list[str]) -> str | None:
    return f"/253/{_with_check(parts[0] + parts[1])}"


def _pat_sgcn(parts: list[str]) -> str | None:
    return f"/255/{_with_check(parts[0] + parts[1])}"


_URN_CONVERTERS: Final[dict[str, _Converter]] = {
    "urn:epc:id:sgtin": _sgtin,
    "urn:epc:id:sscc": _sscc,
    "urn:epc:id:sgln": _sgln,
    "urn:epc:id:grai": _grai,
    "urn:epc:id:giai": _giai,
    "urn:epc:id:gsrn": _gsrn("8018"),
    "urn:epc:id:gsrnp": _gsrn("8017"),
    "urn:epc:id:gdti": _gdti,
    "urn:epc:id:cpi": _cpi,
    "urn:epc:id:sgcn": _sgcn,
    "urn:epc:id:ginc": _ginc,
    "urn:epc:id:gsin": _gsin,
    "urn:epc:id:itip": _itip,
    "urn:epc:id:upui": _upui,
    "urn:epc:id:pgln": _pgln,
    "urn:epc:class:lgtin": _lgtin,
    "urn:epc:idpat:sgtin": _pattern(2, 13, _pat_gtin),
    "urn:epc:idpat:upui": _pattern(2, 13, _pat_gtin),
    "urn:epc:idpat:grai": _pattern(2, 12, _pat_grai),
    "urn:epc:idpat:gdti": _pattern(2, 12, _pat_gdti),
    "urn:epc:idpat:sgcn": _pattern(2, 12, _pat_sgcn),
    "urn:epc:idpat:cpi": _pattern(2, 0, _pat_cpi),
    "urn:epc:idpat:itip": _pattern(4, 13, _pat_itip),
}


def urn_to_digital_link(urn: str) -> str | None:
    """EPC URN -> constrained canonical GS1 Digital Link URI, or None if not convertible.

    Handles the pure-identity URNs of TDS §6.3 that carry a GS1 key (sgtin, sscc, sgln, grai,
    giai, gsrn, gsrnp, gdti, cpi, sgcn, ginc, gsin, itip, upui, pgln), the ``lgtin`` EPC Class URI
    (TDS §8.2, ``/01/{gtin}/10/{lot}``) and the class-level ID pattern URIs (TDS §8.1,
    ``urn:epc:idpat:sgtin:CP.ref.*`` -> ``/01/{gtin}``). GID, USDoD, ADI and raw URIs have no GS1
    key and give None, as does anything malformed. Serial-like components keep their URN
    escapes and get ``! ( ) * + , :`` percent-encoded in addition (see the module docstring).

    >>> urn_to_digital_link("urn:epc:id:sgtin:0614141.812345.6789")
    'https://id.gs1.org/01/80614141123458/21/6789'
    """
    if not isinstance(urn, str) or not urn.startswith("urn:epc:"):
        return None
    # Split off the scheme with a bounded split: serials may contain ':' and '.' (TDS Table A-1).
    head = urn.split(":", 4)
    if len(head) != 5:
        return None
    convert = _URN_CONVERTERS.get(":".join(head[:4]))
    if convert is None:
        return None
    path = convert(head[4])
    return None if path is None else DIGITAL_LINK_HOST + path


# --- Digital Link -> constrained canonical Digital Link -----------------------------------------

# GS1 Digital Link 1.2 §6.3 short names (the reference still maps them) -> AI.
_SHORT_NAMES: Final = {
    "gtin": "01",
    "itip": "8006",
    "cpid": "8010",
    "gln": "414",
    "party": "417",
    "gsrnp": "8017",
    "gsrn": "8018",
    "gcn": "255",
    "sscc": "00",
    "gdti": "253",
    "ginc": "401",
    "gsin": "402",
    "grai": "8003",
    "giai": "8004",
    "cpv": "22",
    "lot": "10",
    "ser": "21",
}

# Primary keys the CBV 2.0 event hash keeps, with the value syntax and the single key qualifier
# (if any) allowed in the constrained form. Values are checked *decoded* (%-escapes resolved):
# any of the 82 Table A-1 characters, each counted once, so that a canonical Digital Link with
# escapes (``/21/32a%2Fb``) is accepted again unchanged. (The reference's final check admits
# only the characters that need no escape, and hashes such URIs as they are written: for the
# canonical forms this module outputs that is the very same string.)
_X: Final = "".join(re.escape(c) for c in sorted(_TABLE_A1_CHARS))
_KEY_SYNTAX: Final[dict[str, tuple[re.Pattern[str], dict[str, re.Pattern[str]]]]] = {
    "00": (re.compile(r"[0-9]{18}"), {}),
    "01": (
        re.compile(r"[0-9]{14}"),
        {
            "21": re.compile(f"[{_X}]{{0,20}}"),
            "10": re.compile(f"[{_X}]{{0,20}}"),
            "235": re.compile(f"[{_X}]{{0,28}}"),
        },
    ),
    "253": (re.compile(f"[0-9]{{13}}[{_X}]{{0,17}}"), {}),
    "255": (re.compile(r"[0-9]{13}[0-9]{0,12}"), {}),
    "401": (re.compile(f"[{_X}]{{0,30}}"), {}),
    "402": (re.compile(r"[0-9]{17}"), {}),
    "414": (re.compile(r"[0-9]{13}"), {"254": re.compile(f"[{_X}]{{0,20}}")}),
    "417": (re.compile(r"[0-9]{13}"), {}),
    "8003": (re.compile(f"[0-9]{{14}}[{_X}]{{0,16}}"), {}),
    "8004": (re.compile(f"[{_X}]{{0,30}}"), {}),
    "8006": (
        re.compile(r"[0-9]{18}"),
        {"21": re.compile(f"[{_X}]{{0,20}}"), "10": re.compile(f"[{_X}]{{0,20}}")},
    ),
    "8010": (re.compile(r"[#\-/0-9A-Z]{0,30}"), {"8011": re.compile(r"[0-9]{0,12}")}),
    "8017": (re.compile(r"[0-9]{18}"), {}),
    "8018": (re.compile(r"[0-9]{18}"), {}),
}


def canonical_digital_link(uri: str) -> str | None:
    """Any URI carrying a GS1 key -> constrained canonical Digital Link, or None.

    EPC URNs go through :func:`urn_to_digital_link`. For ``http(s)`` Digital Link URIs the rules
    of the CBV 2.0 event hash (reference README, rule "constrained canonical GS1 Digital Link"):
    the host becomes ``https://id.gs1.org``, query string and fragment are dropped, short names
    (``/gtin/``, ``/ser/`` ...) become AIs, GTIN-8/12/13 are padded to 14 digits, the CPV (AI 22)
    is dropped, a lot (AI 10) is dropped when a serial (AI 21) is present, and only the most
    fine-grained key + qualifier of the list in that README is kept. Anything else (unknown AI,
    bad key length, %-escaped characters in the path) gives None.

    >>> canonical_digital_link("https://example.com/gtin/09780345418913/21/765tz?abc=211121")
    'https://id.gs1.org/01/09780345418913/21/765tz'
    """
    if not isinstance(uri, str):
        return None
    if uri.startswith("urn:"):
        return urn_to_digital_link(uri)
    if uri.startswith("https://"):
        rest = uri[8:]
    elif uri.startswith("http://"):
        rest = uri[7:]
    else:
        return None
    if "." not in uri:  # the reference requires a dot somewhere (a host name); keep parity
        return None
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    _authority, slash, path = rest.partition("/")
    if not slash:
        return None
    segments = path.split("/")
    if segments and segments[-1] == "":  # one trailing slash is allowed
        segments.pop()
    for i, segment in enumerate(segments[:-1]):
        ai = _SHORT_NAMES.get(segment, segment)
        lead = segments[i + 1][:4]  # a key value starts with at least four digits
        if ai in _KEY_SYNTAX and len(lead) == 4 and all(c in _DIGITS for c in lead):
            # Short names name AIs, never values: a serial "sscc" stays "sscc".
            after = segments[i + 2 :]
            qualifiers = [_SHORT_NAMES.get(q, q) if j % 2 == 0 else q
                          for j, q in enumerate(after)]
            return _constrain(ai, segments[i + 1], qualifiers)
    return None


def _constrain(ai: str, value_uri: str, qualifiers: list[str]) -> str | None:
    if len(qualifiers) % 2:
        return None
    allowed = _TABLE_A1_CHARS | {"#"} if ai == "8010" else _TABLE_A1_CHARS
    value = _unescape(value_uri, allowed)
    decoded: list[tuple[str, str]] = []
    for q_ai, q_uri in zip(qualifiers[::2], qualifiers[1::2], strict=True):
        q_value = _unescape(q_uri, _TABLE_A1_CHARS)
        if q_value is None:
            return None
        decoded.append((q_ai, q_value))
    if value is None:
        return None
    pairs = decoded
    if ai == "01" and all(c in _DIGITS for c in value) and len(value) in (8, 12, 13):
        value = value.zfill(14)  # GTIN-8/12/13 -> GTIN-14
    if ai in ("01", "8006"):
        pairs = [p for p in pairs if p[0] != "22"]  # CPV is not part of the constrained form
        if {"10", "21"} <= {p[0] for p in pairs}:
            pairs = [p for p in pairs if p[0] != "10"]  # serial is finer than lot
    value_syntax, qualifier_syntax = _KEY_SYNTAX[ai]
    if not value_syntax.fullmatch(value) or len(pairs) > 1:
        return None
    path = f"/{ai}/{_dl_segment(value)}"
    for q_ai, q_value in pairs:
        q_syntax = qualifier_syntax.get(q_ai)
        if q_syntax is None or not q_syntax.fullmatch(q_value):
            return None
        path += f"/{q_ai}/{_dl_segment(q_value)}"
    return DIGITAL_LINK_HOST + path
