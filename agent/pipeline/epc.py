"""EPC memory bank (Gen2 bank 01) -> EPC pure-identity URN, per the GS1 EPC Tag Data Standard.

Pure functions, no I/O. :func:`decode_epc` never raises: whatever a reader hands over (garbage
hex, odd lengths, empty strings, TID copies, ISO UIIs), the result carries either a
``urn:epc:id:`` URI or the TDS §12 / §15.2.1 EPC Raw URI ``urn:epc:raw:...`` with a
``raw_reason``. A GS1 identity is never invented.

Section references are to TDS 1.13 (ratified Nov 2019); the binary layouts of these legacy
schemes are unchanged in TDS 2.x (docs/gs1-epcis.md §1.1):

* §15.1 / §15.2 Gen2 EPC bank: PC word length (bits 10h-14h), UMI 15h, XI 16h, toggle 17h,
  attribute bits / ISO AFI 18h-1Fh; EPC from 20h. §15.2.1 raw URI, §15.2.3 pure identity.
* §14.2 Table 14-1 headers; §14.4 decoding procedure (truncate to the scheme's bit count, then
  decode each segment); §14.4.1 Integer, §14.4.2 String (7-bit, Table A-1), §14.4.3 Partition
  Table, §14.4.4 Unpadded Partition Table, §14.4.5 String Partition Table.
* §14.5 coding tables and partition tables (14-2 SGTIN, 14-5 SSCC, 14-7 SGLN, 14-10 GRAI,
  14-12 / 14-15 GIAI); §12.3 tag URI; §6.3 pure identity URNs; §7 GS1 keys; Table A-1 escaping.

Supported: SGTIN-96/198, SSCC-96, SGLN-96/195, GRAI-96/170, GIAI-96/202, GID-96. Other Table
14-1 schemes and the TDS 2.x "+" / "++" schemes are recognised and named in ``raw_reason`` but
left raw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from agent.pipeline.digital_link import (
    DIGITAL_LINK_HOST,
    canonical_digital_link,
    digital_link_escape,
    gs1_check_digit,
    urn_to_digital_link,
)

__all__ = [
    "EpcIdentity",
    "canonical_digital_link",
    "decode_cache_clear",
    "decode_epc",
    "gs1_check_digit",
    "urn_to_digital_link",
]

DECODE_CACHE_SIZE: Final = 8192  # distinct (hex, pc) pairs; ~1 KiB each
# Gen2 EPC banks hold at most 31 words after the PC (496 bits, 124 hex digits); longer input is
# still decoded but not cached, so a flood of junk cannot pin memory.
CACHEABLE_HEX_DIGITS: Final = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class EpcIdentity:
    """What one EPC bank says, decoded once.

    ``uri`` is what goes into EPCIS (``epcList`` etc.): the pure-identity URN, or the EPC Raw URI
    when the bank holds no decodable EPC. ``tag_uri`` and ``filter_value`` are diagnostics
    (TDS §12.2.1: the filter is not part of the identity). GS1 key fields are set where the scheme
    carries that key, values unescaped (``serial="32a/b"`` for URN ``...32a%2Fb``).
    """

    uri: str
    hex: str  # upper-case hex of the EPC bits considered (PC length applied), "" if none
    scheme: str | None = None  # binary coding scheme, e.g. "sgtin-96"; None when raw
    tag_uri: str | None = None  # e.g. "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
    filter_value: int | None = None  # TDS §10; None for GID and raw
    gtin: str | None = None  # SGTIN: GTIN-14 (AI 01)
    serial: str | None = None  # SGTIN serial (AI 21) or GRAI serial component
    sscc: str | None = None  # SSCC-18 (AI 00)
    gln: str | None = None  # SGLN: GLN-13 (AI 414)
    gln_extension: str | None = None  # SGLN: AI 254, None when the extension is "0"
    grai: str | None = None  # full AI 8003 value: "0" + GRAI-13 + serial
    giai: str | None = None  # AI 8004 value
    element_string: str | None = None  # HRI element string, e.g. "(01)80614141123458(21)6789"
    digital_link: str | None = None  # constrained canonical GS1 Digital Link URI
    raw_reason: str | None = None  # why ``uri`` is an EPC Raw URI; None when decoded
    afi: int | None = None  # ISO/IEC 15961 AFI when the PC toggle bit (17h) is set

    @property
    def is_raw(self) -> bool:
        return self.raw_reason is not None


# --- Gen2 PC word (TDS §15.1.1 Figure 15-1; bit 10h is the PC's most significant bit) ----------
PC_LENGTH_SHIFT: Final = 11  # bits 10h-14h: number of 16-bit words after the PC
PC_TOGGLE: Final = 0x0100  # bit 17h: 1 = non-GS1 (ISO) UII, bits 18h-1Fh are an AFI
PC_AFI_MASK: Final = 0x00FF  # bits 18h-1Fh: attribute bits (toggle 0) or AFI (toggle 1)

_HEX_CHARS: Final = "0123456789ABCDEF"

# --- Partition tables (TDS §14.5): P -> (company prefix bits, digits, other bits, digits) ------
_Partition = tuple[int, int, int, int]
_SGTIN_PARTITIONS: Final[tuple[_Partition, ...]] = (  # Table 14-2, CP + item ref = 44 bits
    (40, 12, 4, 1),
    (37, 11, 7, 2),
    (34, 10, 10, 3),
    (30, 9, 14, 4),
    (27, 8, 17, 5),
    (24, 7, 20, 6),
    (20, 6, 24, 7),
)
_SSCC_PARTITIONS: Final[tuple[_Partition, ...]] = (  # Table 14-5, CP + serial ref = 58 bits
    (40, 12, 18, 5),
    (37, 11, 21, 6),
    (34, 10, 24, 7),
    (30, 9, 28, 8),
    (27, 8, 31, 9),
    (24, 7, 34, 10),
    (20, 6, 38, 11),
)
_SGLN_PARTITIONS: Final[tuple[_Partition, ...]] = (  # Table 14-7, CP + location ref = 41 bits
    (40, 12, 1, 0),
    (37, 11, 4, 1),
    (34, 10, 7, 2),
    (30, 9, 11, 3),
    (27, 8, 14, 4),
    (24, 7, 17, 5),
    (20, 6, 21, 6),
)
_GRAI_PARTITIONS: Final[tuple[_Partition, ...]] = (  # Table 14-10, CP + asset type = 44 bits
    (40, 12, 4, 0),
    (37, 11, 7, 1),
    (34, 10, 10, 2),
    (30, 9, 14, 3),
    (27, 8, 17, 4),
    (24, 7, 20, 5),
    (20, 6, 24, 6),
)
# GIAI-96 (Table 14-12, unpadded: "other" is an integer of that many bits, no digit limit) and
# GIAI-202 (Table 14-15, "other" is a 7-bit string of at most that many characters).
_GIAI96_PARTITIONS: Final[tuple[_Partition, ...]] = (
    (40, 12, 42, 13),
    (37, 11, 45, 14),
    (34, 10, 48, 15),
    (30, 9, 52, 16),
    (27, 8, 55, 17),
    (24, 7, 58, 18),
    (20, 6, 62, 19),
)
_GIAI202_PARTITIONS: Final[tuple[_Partition, ...]] = (
    (40, 12, 148, 18),
    (37, 11, 151, 19),
    (34, 10, 154, 20),
    (30, 9, 158, 21),
    (27, 8, 161, 22),
    (24, 7, 164, 23),
    (20, 6, 168, 24),
)

_POW10: Final = tuple(10**k for k in range(32))

# TDS Table A-1: 7-bit code -> URI form ("%2F" for '/', the character itself otherwise).
_A1_URI_FORM: Final[dict[int, str]] = {
    ord(c): (f"%{ord(c):02X}" if c in '"%&/<>?' else c)
    for c in "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
}

# TDS 2.x "+AIDC" (0xF0-0xFB) and "++" (custom Digital Link host; 0xE6-0xEF, 0xFC, 0xFD)
# headers, named after the TDT 2.0 scheme files (docs/gs1-epcis.md §1.3). Recognised, not decoded.
_PLUS_SCHEMES: Final[dict[int, str]] = {
    0xF0: "CPI+",
    0xF1: "GRAI+",
    0xF2: "SGLN+",
    0xF3: "ITIP+",
    0xF4: "GSRN+",
    0xF5: "GSRNP+",
    0xF6: "GDTI+",
    0xF7: "SGTIN+",
    0xF8: "SGCN+",
    0xF9: "SSCC+",
    0xFA: "GIAI+",
    0xFB: "DSGTIN+",
    0xE6: "CPI++",
    0xE7: "GSRN++",
    0xE8: "GSRNP++",
    0xE9: "SGLN++",
    0xEA: "GDTI++",
    0xEB: "GRAI++",
    0xEC: "SGCN++",
    0xED: "ITIP++",
    0xEE: "GIAI++",
    0xEF: "SSCC++",
    0xFC: "DSGTIN++",
    0xFD: "SGTIN++",
}

# Table 14-1 schemes this decoder knows but does not decode.
_UNSUPPORTED_SCHEMES: Final[dict[int, str]] = {
    0x2C: "GDTI-96",
    0x2D: "GSRN-96",
    0x2E: "GSRNP-96",
    0x2F: "USDoD-96",
    0x3A: "GDTI-113",
    0x3B: "ADI-var",
    0x3C: "CPI-96",
    0x3D: "CPI-var",
    0x3E: "GDTI-174",
    0x3F: "SGCN-96",
    0x40: "ITIP-110",
    0x41: "ITIP-212",
}


class _Invalid(Exception):
    """A validity check of TDS §14.4 failed; the message becomes ``raw_reason``."""


def _raw(hex_digits: str, nbits: int, reason: str, afi: int | None = None) -> EpcIdentity:
    """EPC Raw URI per TDS §15.2.1 (control fields omitted: they are tag state, not identity)."""
    afi_part = "" if afi is None else f"x{afi:02X}."
    return EpcIdentity(
        uri=f"urn:epc:raw:{nbits}.{afi_part}x{hex_digits}",
        hex=hex_digits,
        raw_reason=reason,
        afi=afi,
    )


def _string7(value: int, nbits: int, field: str, *, min_chars: int = 1, max_chars: int = 99) -> str:
    """TDS §14.4.2 / §14.4.5 7-bit string: Table A-1 characters, then only zero bits.

    Returns the URI form (with %-escapes). ``nbits`` need not be a multiple of 7 (GIAI-202).
    """
    out: list[str] = []
    shift = nbits - 7
    while shift >= 0:
        code = (value >> shift) & 0x7F
        if code == 0:
            break
        form = _A1_URI_FORM.get(code)
        if form is None:
            raise _Invalid(f"invalid character 0x{code:02X} in {field}")
        out.append(form)
        shift -= 7
    rest = shift + 7  # bits not consumed: the terminating segment onward, or a short remainder
    if rest > 0 and value & ((1 << rest) - 1):
        raise _Invalid(f"non-zero bits after the end of {field}")
    if len(out) < min_chars:
        raise _Invalid(f"empty {field}")
    if len(out) > max_chars:
        raise _Invalid(f"{field} longer than {max_chars} characters")
    return "".join(out)


def _unescape(uri_form: str) -> str:
    """URN component -> plain value (only Table A-1 escapes can occur in decoder output)."""
    if "%" not in uri_form:
        return uri_form
    parts = uri_form.split("%")
    return parts[0] + "".join(chr(int(p[:2], 16)) + p[2:] for p in parts[1:])


_dl = digital_link_escape


def _partition(
    value: int, rest_bits: int, table: tuple[_Partition, ...], other_name: str, *, padded: bool
) -> tuple[str, int, int]:
    """TDS §14.4.3 (padded) / §14.4.4 (unpadded) partition-table segment.

    ``value`` holds the partition field in its top 3 bits of ``rest_bits`` bits. Returns the
    zero-padded company prefix, the other field's integer value, and the bits left below it.
    """
    p = (value >> (rest_bits - 3)) & 7
    if p == 7:
        raise _Invalid("invalid partition 7")
    cp_bits, cp_digits, other_bits, other_digits = table[p]
    below = rest_bits - 3 - cp_bits - other_bits
    company_prefix = (value >> (below + other_bits)) & ((1 << cp_bits) - 1)
    other = (value >> below) & ((1 << other_bits) - 1)
    if company_prefix >= _POW10[cp_digits]:
        raise _Invalid(f"company prefix overflows 10^{cp_digits}")
    if padded and other >= _POW10[other_digits]:
        raise _Invalid(f"{other_name} overflows 10^{other_digits}")
    return f"{company_prefix:0{cp_digits}d}", other, below


def _padded(other: int, digits: int) -> str:
    return f"{other:0{digits}d}" if digits else ""


def _check(body: str) -> str:
    return body + str(gs1_check_digit(body))


def _sgtin(bits: int, nbits: int, hex_digits: str, scheme: str) -> EpcIdentity:
    """SGTIN-96 / SGTIN-198 (TDS §14.5.1): filter 3, partition table 14-2, serial."""
    filt = (bits >> (nbits - 11)) & 7
    serial_bits = nbits - 58
    cp, item_ref, _ = _partition(bits, nbits - 11, _SGTIN_PARTITIONS, "item reference", padded=True)
    ir = _padded(item_ref, 13 - len(cp))
    serial_value = bits & ((1 << serial_bits) - 1)
    if serial_bits == 38:  # SGTIN-96: Integer (§14.4.1)
        serial_urn = str(serial_value)
        serial = serial_urn
    else:  # SGTIN-198: String (§14.4.2), 140 bits, at most 20 characters
        serial_urn = _string7(serial_value, serial_bits, "serial", max_chars=20)
        serial = _unescape(serial_urn)
    gtin = _check(ir[:1] + cp + ir[1:])
    body = f"{cp}.{ir}.{serial_urn}"
    return EpcIdentity(
        uri=f"urn:epc:id:sgtin:{body}",
        hex=hex_digits,
        scheme=scheme,
        tag_uri=f"urn:epc:tag:{scheme}:{filt}.{body}",
        filter_value=filt,
        gtin=gtin,
        serial=serial,
        element_string=f"(01){gtin}(21){serial}",
        digital_link=f"{DIGITAL_LINK_HOST}/01/{gtin}/21/{_dl(serial_urn)}",
    )


def _sscc(bits: int, nbits: int, hex_digits: str, scheme: str) -> EpcIdentity:
    """SSCC-96 (TDS §14.5.2): filter, partition table 14-5, then 24 reserved zero bits."""
    filt = (bits >> 85) & 7
    cp, serial_ref, below = _partition(bits, 85, _SSCC_PARTITIONS, "serial reference", padded=True)
    if bits & ((1 << below) - 1):
        raise _Invalid("non-zero reserved bits after the serial reference")
    sr = _padded(serial_ref, 17 - len(cp))
    sscc = _check(sr[:1] + cp + sr[1:])
    body = f"{cp}.{sr}"
    return EpcIdentity(
        uri=f"urn:epc:id:sscc:{body}",
        hex=hex_digits,
        scheme=scheme,
        tag_uri=f"urn:epc:tag:{scheme}:{filt}.{body}",
        filter_value=filt,
        sscc=sscc,
        element_string=f"(00){sscc}",
        digital_link=f"{DIGITAL_LINK_HOST}/00/{sscc}",
    )


def _sgln(bits: int, nbits: int, hex_digits: str, scheme: str) -> EpcIdentity:
    """SGLN-96 / SGLN-195 (TDS §14.5.3): partition table 14-7, extension (AI 254)."""
    filt = (bits >> (nbits - 11)) & 7
    cp, loc_ref, ext_bits = _partition(
        bits, nbits - 11, _SGLN_PARTITIONS, "location reference", padded=True
    )
    ext_value = bits & ((1 << ext_bits) - 1)
    if ext_bits == 41:  # SGLN-96: Integer extension
        ext_urn = str(ext_value)
    else:  # SGLN-195: String extension, 140 bits
        ext_urn = _string7(ext_value, ext_bits, "extension", max_chars=20)
    lr = _padded(loc_ref, 12 - len(cp))
    gln = _check(cp + lr)
    body = f"{cp}.{lr}.{ext_urn}"
    if ext_urn == "0":  # "0" = no extension (TDS §6.3.3)
        extension = None
        element_string = f"(414){gln}"
        digital_link = f"{DIGITAL_LINK_HOST}/414/{gln}"
    else:
        extension = _unescape(ext_urn)
        element_string = f"(414){gln}(254){extension}"
        digital_link = f"{DIGITAL_LINK_HOST}/414/{gln}/254/{_dl(ext_urn)}"
    return EpcIdentity(
        uri=f"urn:epc:id:sgln:{body}",
        hex=hex_digits,
        scheme=scheme,
        tag_uri=f"urn:epc:tag:{scheme}:{filt}.{body}",
        filter_value=filt,
        gln=gln,
        gln_extension=extension,
        element_string=element_string,
        digital_link=digital_link,
    )


def _grai(bits: int, nbits: int, hex_digits: str, scheme: str) -> EpcIdentity:
    """GRAI-96 / GRAI-170 (TDS §14.5.4): partition table 14-10, serial."""
    filt = (bits >> (nbits - 11)) & 7
    cp, asset_type, serial_bits = _partition(
        bits, nbits - 11, _GRAI_PARTITIONS, "asset type", padded=True
    )
    serial_value = bits & ((1 << serial_bits) - 1)
    if serial_bits == 38:  # GRAI-96: Integer serial
        serial_urn = str(serial_value)
    else:  # GRAI-170: String serial, 112 bits, at most 16 characters
        serial_urn = _string7(serial_value, serial_bits, "serial", max_chars=16)
    at = _padded(asset_type, 12 - len(cp))
    serial = _unescape(serial_urn)
    grai13 = _check(cp + at)
    body = f"{cp}.{at}.{serial_urn}"
    return EpcIdentity(
        uri=f"urn:epc:id:grai:{body}",
        hex=hex_digits,
        scheme=scheme,
        tag_uri=f"urn:epc:tag:{scheme}:{filt}.{body}",
        filter_value=filt,
        serial=serial,
        grai=f"0{grai13}{serial}",
        element_string=f"(8003)0{grai13}{serial}",
        digital_link=f"{DIGITAL_LINK_HOST}/8003/0{grai13}{_dl(serial_urn)}",
    )


def _giai(bits: int, nbits: int, hex_digits: str, scheme: str) -> EpcIdentity:
    """GIAI-96 (TDS §14.5.5.1, unpadded integer) / GIAI-202 (§14.5.5.2, 7-bit string)."""
    filt = (bits >> (nbits - 11)) & 7
    if nbits == 96:
        cp, asset_ref, _ = _partition(bits, 85, _GIAI96_PARTITIONS, "asset reference", padded=False)
        ref_urn = str(asset_ref)
    else:
        p = (bits >> 188) & 7
        if p == 7:
            raise _Invalid("invalid partition 7")
        cp_bits, cp_digits, ref_bits, max_chars = _GIAI202_PARTITIONS[p]
        company_prefix = (bits >> ref_bits) & ((1 << cp_bits) - 1)
        if company_prefix >= _POW10[cp_digits]:
            raise _Invalid(f"company prefix overflows 10^{cp_digits}")
        cp = f"{company_prefix:0{cp_digits}d}"
        ref_value = bits & ((1 << ref_bits) - 1)
        ref_urn = _string7(ref_value, ref_bits, "asset reference", max_chars=max_chars)
    giai = cp + _unescape(ref_urn)
    body = f"{cp}.{ref_urn}"
    return EpcIdentity(
        uri=f"urn:epc:id:giai:{body}",
        hex=hex_digits,
        scheme=scheme,
        tag_uri=f"urn:epc:tag:{scheme}:{filt}.{body}",
        filter_value=filt,
        giai=giai,
        element_string=f"(8004){giai}",
        digital_link=f"{DIGITAL_LINK_HOST}/8004/{cp}{_dl(ref_urn)}",
    )


def _gid(bits: int, nbits: int, hex_digits: str, scheme: str) -> EpcIdentity:
    """GID-96 (TDS §14.5.7): manager 28, object class 24, serial 36 bits; no filter, no GS1 key."""
    manager = (bits >> 60) & ((1 << 28) - 1)
    object_class = (bits >> 36) & ((1 << 24) - 1)
    serial = bits & ((1 << 36) - 1)
    body = f"{manager}.{object_class}.{serial}"
    return EpcIdentity(
        uri=f"urn:epc:id:gid:{body}",
        hex=hex_digits,
        scheme=scheme,
        tag_uri=f"urn:epc:tag:{scheme}:{body}",
    )


# Table 14-1: header -> (coding scheme, bit count B, decoder).
_SchemeDecoder = Callable[[int, int, str, str], EpcIdentity]
_SCHEMES: Final[dict[int, tuple[str, int, _SchemeDecoder]]] = {
    0x30: ("sgtin-96", 96, _sgtin),
    0x36: ("sgtin-198", 198, _sgtin),
    0x31: ("sscc-96", 96, _sscc),
    0x32: ("sgln-96", 96, _sgln),
    0x39: ("sgln-195", 195, _sgln),
    0x33: ("grai-96", 96, _grai),
    0x37: ("grai-170", 170, _grai),
    0x34: ("giai-96", 96, _giai),
    0x38: ("giai-202", 202, _giai),
    0x35: ("gid-96", 96, _gid),
}


def _header_reason(header: int) -> str:
    if header == 0x00:
        return "unprogrammed tag (header 0x00)"
    if header == 0xE2:
        return "unknown header 0xE2 (permanently reserved: looks like a TID, TDS Table 14-1)"
    plus = _PLUS_SCHEMES.get(header)
    if plus is not None:
        kind = "'++'" if plus.endswith("++") else "'+'"
        return f"TDS 2.x {kind} scheme {plus} (header 0x{header:02X}) not decoded"
    legacy = _UNSUPPORTED_SCHEMES.get(header)
    if legacy is not None:
        return f"scheme {legacy} (header 0x{header:02X}) not supported"
    return f"unknown header 0x{header:02X}"


def decode_epc(epc_hex: str, pc: int | None = None) -> EpcIdentity:
    """Decode the EPC bank contents a reader reported. Never raises.

    ``epc_hex``: the EPC as hex (bits 20h onward), any case, surrounding whitespace ignored.
    ``pc``: the Gen2 PC word when the reader reports it. Then only ``(pc >> 11)`` 16-bit words
    are decoded (anything after them, e.g. an Impinj FastTID, is ignored) and a set toggle bit
    (17h) means an ISO UII with AFI ``pc & 0xFF``: ``urn:epc:raw:<bits>.x<AFI>.x<HEX>``
    (TDS §15.2.1 step 3). Without ``pc`` the whole hex string is the EPC; bits beyond the
    scheme's length are dropped as padding (TDS §14.4 step 3).

    Results are cached per ``(epc_hex, pc)``.
    """
    if not isinstance(epc_hex, str):
        return _raw("", 0, f"not a hex string: {type(epc_hex).__name__}")
    if pc is not None and (type(pc) is not int or not 0 <= pc <= 0xFFFF):
        return _raw("", 0, f"invalid PC word {pc!r}")
    if len(epc_hex) > CACHEABLE_HEX_DIGITS:
        return _decode(epc_hex, pc)
    return _decode_cached(epc_hex, pc)


def _decode(epc_hex: str, pc: int | None) -> EpcIdentity:
    hex_digits = epc_hex.strip()
    if not hex_digits.isascii():  # before upper(): "\ufb00".upper() == "FF"
        return _raw("", 0, "not hexadecimal")
    hex_digits = hex_digits.upper()
    if hex_digits.strip(_HEX_CHARS):
        return _raw("", 0, "not hexadecimal")
    nbits = 4 * len(hex_digits)
    if pc is not None:
        pc_bits = 16 * (pc >> PC_LENGTH_SHIFT)
        if nbits < pc_bits:
            reason = f"truncated: PC length is {pc_bits} bits, only {nbits} read"
            if pc & PC_TOGGLE:
                return _raw(hex_digits, nbits, reason, pc & PC_AFI_MASK)
            return _raw(hex_digits, nbits, reason)
        hex_digits = hex_digits[: pc_bits // 4]
        nbits = pc_bits
        if pc & PC_TOGGLE:  # TDS §15.2.1: not an EPC; AFI in bits 18h-1Fh
            afi = pc & PC_AFI_MASK
            return _raw(hex_digits, nbits, f"toggle bit set (ISO AFI 0x{afi:02X})", afi)
    if nbits == 0:
        return _raw("", 0, "empty EPC")
    if nbits < 8:
        return _raw(hex_digits, nbits, "truncated: no complete header")
    header = int(hex_digits[:2], 16)
    known = _SCHEMES.get(header)
    if known is None:
        return _raw(hex_digits, nbits, _header_reason(header))
    scheme, scheme_bits, decoder = known
    if nbits < scheme_bits:  # TDS §14.4 step 2
        return _raw(hex_digits, nbits, f"truncated: {scheme} needs {scheme_bits} bits, got {nbits}")
    bits = int(hex_digits, 16) >> (nbits - scheme_bits)  # §14.4 step 3: drop trailing padding
    try:
        return decoder(bits, scheme_bits, hex_digits, scheme)
    except _Invalid as exc:
        return _raw(hex_digits, nbits, f"{exc} ({scheme})")


_decode_cached = lru_cache(maxsize=DECODE_CACHE_SIZE)(_decode)


def decode_cache_clear() -> None:
    """Forget cached decodes (tests, or after a configuration change)."""
    _decode_cached.cache_clear()
